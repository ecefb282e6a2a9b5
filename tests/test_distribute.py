"""Training scale-out (issue 10): `--distribute mirrored` on two logical CPU devices, `--distribute multiworker`
on a two-process localhost cluster, and the checks of TF_CONFIG and EDGEKIT_CPU_DEVICES.

The distributed builds run as `python -m edgekit` subprocesses: logical CPU devices and a multiworker
strategy can only be set up before TensorFlow initialises, which this test session's TensorFlow already did."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY_RECIPE

from edgekit import distribute
from edgekit.cli import main
from edgekit.errors import UsageError

# Whole builds or many trainings: outside the fast selection (pytest -m "not slow"), run by CI.
pytestmark = pytest.mark.slow


def _edgekit(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgekit", *args], cwd=cwd, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out + err


@pytest.fixture(scope="module")
def mirrored_build(tmp_path_factory, tiny_recipe):
    out = tmp_path_factory.mktemp("mirrored")
    code, output = _finish(_edgekit(["build", "--target", "rpi4", "--recipe", str(tiny_recipe), "--out", str(out),
                                     "--runs", "20", "--warmup", "2", "--distribute", "mirrored"],
                                    out, EDGEKIT_CPU_DEVICES="2"))
    assert code == 0, output
    return json.loads((out / "tiny-digits-rpi4" / "report.json").read_text())


def _metrics(report):
    return {v["name"]: v["metric"]["value"] for v in report["variants"]}


def test_two_logical_device_mirrored_training_reaches_the_single_device_accuracy_band(mirrored_build, tiny_build):
    _, _, single = tiny_build
    record = mirrored_build["distribute"]
    assert record["strategy"] == "mirrored" and record["replicas"] == 2, record
    assert [device.rsplit(":", 2)[-2:] for device in record["devices"]] == [["CPU", "0"], ["CPU", "1"]]
    mirrored, alone = _metrics(mirrored_build), _metrics(single)
    assert mirrored["float32"] >= 0.85 and abs(mirrored["float32"] - alone["float32"]) <= 0.05, (mirrored, alone)
    # Pruning and QAT ran under the same strategy: the int8 file keeps the sparsity and the accuracy.
    assert abs(mirrored["int8"] - alone["int8"]) <= 0.05, (mirrored, alone)
    quantized = next(v for v in mirrored_build["variants"] if v["name"] == "int8")
    assert quantized["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert mirrored_build["optimization"]["steps"][-1]["step"] == "qat"


def test_the_strategy_is_part_of_the_train_and_optimize_cache_keys(mirrored_build, tiny_build):
    # Same recipe file content, data, seed and code: only the strategy tells the keys apart.
    _, _, single = tiny_build
    for stage in ("train", "optimize"):
        assert mirrored_build["cache"]["keys"][stage] != single["cache"]["keys"][stage], stage


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_a_two_process_multiworker_build_trains_together_and_only_the_chief_writes(tmp_path):
    recipe = tmp_path / "tiny-digits.toml"
    recipe.write_text(TINY_RECIPE.replace("epochs = 6", "epochs = 4").replace("pruning_epochs = 2",
                                                                               "pruning_epochs = 1"))
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
    processes = []
    for index in range(2):
        (tmp_path / f"w{index}").mkdir()
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(_edgekit(["build", "--target", "rpi4", "--recipe", str(recipe), "--out", "out", "--runs",
                                   "10", "--warmup", "1", "--distribute", "multiworker"], tmp_path / f"w{index}",
                                  TF_CONFIG=config))
    (chief_code, chief_output), (worker_code, worker_output) = [_finish(p) for p in processes]
    assert chief_code == 0, chief_output
    assert worker_code == 0, worker_output
    assert "the chief writes the build folder" in worker_output
    assert not (tmp_path / "w1" / "out").exists()  # the worker built in a temporary folder, now gone
    report = json.loads((tmp_path / "w0" / "out" / "tiny-digits-rpi4" / "report.json").read_text())
    assert report["distribute"]["strategy"] == "multiworker" and report["distribute"]["replicas"] == 2
    assert report["distribute"]["workers"] == 2
    assert (tmp_path / "w0" / "out" / "tiny-digits-rpi4" / "manifest.json").is_file()
    assert _metrics(report)["float32"] >= 0.8, _metrics(report)


CLUSTER = {"worker": ["localhost:12345", "localhost:23456"]}


@pytest.mark.parametrize(("value", "expected"), [
    (None, "--distribute multiworker needs TF_CONFIG (the cluster's addresses and this worker's task) in the "
           "environment; see docs/distributed.md for one worker's TF_CONFIG"),
    ("{cluster", "TF_CONFIG is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); "
                 "see docs/distributed.md for one worker's TF_CONFIG"),
    (json.dumps({"task": {"type": "worker", "index": 0}}),
     'TF_CONFIG has no "cluster" table of task types and host:port lists; see docs/distributed.md for one worker\'s '
     "TF_CONFIG"),
    (json.dumps({"cluster": {"ps": ["localhost:1"], **CLUSTER}, "task": {"type": "worker", "index": 0}}),
     "TF_CONFIG cluster task type 'ps': expected chief or worker (MultiWorkerMirroredStrategy has no parameter "
     "servers; edgekit runs no evaluator)"),
    (json.dumps({"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}),
     "TF_CONFIG cluster 'worker': expected a list of \"host:port\" addresses, got ['localhost']"),
    (json.dumps({"cluster": CLUSTER}),
     'TF_CONFIG has no "task" with a "type" and an integer "index" (this worker\'s place in the cluster); see '
     "docs/distributed.md for one worker's TF_CONFIG"),
    (json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 2}}),
     "TF_CONFIG task worker 2 is not in the cluster (2 worker addresses); the index counts from 0"),
    (json.dumps({"cluster": CLUSTER, "task": {"type": "chief", "index": 0}}),
     "TF_CONFIG task chief 0 is not in the cluster (0 chief addresses); the index counts from 0"),
])
def test_tf_config_problems_are_one_line_each(value, expected):
    with pytest.raises(UsageError) as error:
        distribute.tf_config({} if value is None else {"TF_CONFIG": value})
    assert str(error.value) == expected


def test_who_writes_on_a_cluster(monkeypatch):
    def chief(cluster, kind, index):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}}))
        return distribute.is_chief("multiworker")

    assert chief(CLUSTER, "worker", 0) and not chief(CLUSTER, "worker", 1)
    with_chief = {"chief": ["localhost:1"], **CLUSTER}
    assert chief(with_chief, "chief", 0) and not chief(with_chief, "worker", 0)
    assert distribute.is_chief(None) and distribute.is_chief("mirrored")


def test_multiworker_without_tf_config_exits_2_before_any_work(monkeypatch, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = CliRunner().invoke(main, ["build", "--distribute", "multiworker", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: --distribute multiworker needs TF_CONFIG (the cluster's addresses and this worker's task) in the "
        "environment; see docs/distributed.md for one worker's TF_CONFIG"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["0", "two", "-1", "65"])
def test_a_bad_cpu_device_count_is_one_line(value):
    with pytest.raises(UsageError, match=r"^EDGEKIT_CPU_DEVICES='.*': expected a whole number of logical CPU devices"):
        distribute.cpu_device_count({"EDGEKIT_CPU_DEVICES": value})
    assert distribute.cpu_device_count({"EDGEKIT_CPU_DEVICES": "3"}) == 3
    assert distribute.cpu_device_count({}) is None


def test_a_bad_cpu_device_count_stops_a_mirrored_build_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKIT_CPU_DEVICES", "two")
    result = CliRunner().invoke(main, ["build", "--distribute", "mirrored", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: EDGEKIT_CPU_DEVICES='two': expected a whole number of logical CPU devices from 1 to 64"]
    assert list(tmp_path.iterdir()) == []


STARTED_WITHOUT = ("distribute 'multiworker' has to be chosen before TensorFlow starts (its collective ops are "
                   "configured at start-up), and TensorFlow already started in this process without it; run the "
                   "command in a fresh process")


def test_multiworker_after_tensorflow_started_without_it_is_one_line(monkeypatch):
    """Start-up does not depend on who imported TensorFlow first: it starts from its arguments and the environment,
    and asking for multiworker once it started without it is an error, never a quietly different run."""
    from edgekit._tf import tf  # noqa: F401  (starts TensorFlow with the defaults, as any earlier stage does)

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    with pytest.raises(UsageError) as error:
        distribute.check("multiworker")
    assert str(error.value) == STARTED_WITHOUT


def test_multiworker_asked_first_starts_tensorflow_with_it(tmp_path):
    code = ("from edgekit import distribute\n"
            "distribute.check('multiworker')\n"
            "from edgekit._tf import tf\n"  # a later import finds TensorFlow started, with the strategy
            "distribute.check('multiworker')\n"
            "print(distribute.strategy('multiworker').num_replicas_in_sync)\n")
    config = json.dumps({"cluster": {"worker": [f"localhost:{_free_ports(1)[0]}"]},
                         "task": {"type": "worker", "index": 0}})
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env={**os.environ, "TF_CONFIG": config})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "1"
