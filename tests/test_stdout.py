"""stdout carries results only (issue 19 items 3 and 4): every command, run through the real CLI in a child
process (so TensorFlow's C++ logs, absl, Keras's prints and the runtimes' child processes are all real), with
`--json` where it has one and TensorFlow's native logging turned up, prints JSON that parses, or its one result
line; a dataset that has to be downloaded, offline, is one `Error:` line on stderr and nothing on stdout.
Piped tables print every value whole.

Time on 2 cores (measured): about 30 s for the fast selection once the session's tiny build is made (20-40 s,
shared with other tests; the commands run two at a time), and 30 s more for the slow tests (optimize, sweep,
`bench --target all`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edgekit import targets
from edgekit.report.table import render_table

ROOT = Path(__file__).resolve().parents[1]
# TensorFlow's native logs at their loudest, and edgekit's debug lines: none of it may reach stdout
LOUD = {"TF_CPP_MIN_LOG_LEVEL": "0", "TF_CPP_MAX_VLOG_LEVEL": "0"}


def edgekit(*args: object, keras_home: Path | None = None) -> subprocess.CompletedProcess:
    """`edgekit -v ARGS` in a child process, stdout and stderr piped (not terminals)."""
    env = {**os.environ, **LOUD, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if keras_home is not None:
        env["KERAS_HOME"] = str(keras_home)  # an empty Keras cache: builtin:mnist has to be downloaded
    return subprocess.run([sys.executable, "-m", "edgekit", "-v", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory) -> Path:
    """An int8 .tflite of a 1,210-parameter dense model on 8x8x1 inputs (the digits' shape)."""
    from edgekit._files import captured_stderr_fd
    from edgekit._tf import keras
    from edgekit.convert import int8_converter

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    samples = np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 1)).astype(np.float32)
    path = tmp_path_factory.mktemp("stdout") / "tiny.tflite"
    with captured_stderr_fd():
        path.write_bytes(int8_converter(model, samples).convert())
    return path


def _serial_log(folder: Path) -> Path:
    log = folder / "serial.log"
    log.write_text("boot\n" + "".join(f'{{"run": {i}, "latency_ms": {20 + i % 3}, "ok": true}}\n' for i in range(5)))
    return log


def _commands(tiny_build, tiny_recipe, tflite: Path, work: Path, slow: bool) -> dict[str, tuple]:
    """name -> (arguments, what stdout holds: "json" or a regular expression of the one result line)."""
    _, folder, _ = tiny_build
    out = work / "build"
    shutil.copytree(folder, out / folder.name)  # `build` below resumes from it, and rewrites its copy only
    if slow:
        tight = work / "tight.toml"  # 1 KB of flash: the sweep's one point is skipped before training
        tight.write_text(re.sub(r"(?m)^flash_kb = 1792.*$", "flash_kb = 1", targets.load("nucleo-l4r5zi")
                                .file.read_text()))
        (work / "grid.toml").write_text('[grid]\n"model.args.dense_units" = [16]\n')
        return {
            "optimize": (["optimize", folder / "float32.keras", "--data", "digits", "--out", work / "opt.tflite",
                          "--sparsity", "0", "--quantize", "ptq", "--calibration-samples", "16", "--json"], "json"),
            "sweep": (["sweep", "--recipe", tiny_recipe, "--target", tight, "--grid", work / "grid.toml", "--out",
                       work / "sweep", "--json"], "json"),
        }
    return {
        "build": (["build", "--target", "rpi4", "--recipe", tiny_recipe, "--out", out, "--runs", "20", "--warmup",
                   "2", "--json"], "json"),
        "bench": (["bench", tflite, "--target", "rpi4", "--data", "digits", "--runs", "10", "--warmup", "1",
                   "--json"], "json"),
        "inspect": (["inspect", tflite, "--json"], "json"),
        "compare": (["compare", folder, _serial_log(work), "--variant", "int8", "--force", "--json"], "json"),
        "targets": (["targets", "--json"], "json"),
        "targets show": (["targets", "show", "rpi4", "--json"], "json"),
        "models": (["models", "--json"], "json"),
        "report": (["report", folder, "--format", "json"], "json"),
        "convert": (["convert", folder / "float32.keras", "--to", "tflite-float32", "--out", work / "float.tflite"],
                    r"tflite-float32: .*float\.tflite, [\d.]+ KiB; .*"),
        "export": (["export", tflite, "--target", "rpi4", "--out", work / "bundle", "--data", "digits"],
                   r".*bundle: README\.md, .*"),
        "verify": (["verify", folder], r".*: every file matches manifest\.json"),
    }


def _run_all(commands: dict[str, tuple]) -> dict[str, subprocess.CompletedProcess]:
    with ThreadPoolExecutor(max_workers=2) as pool:  # two at a time: most of each is TensorFlow's start-up
        futures = {name: pool.submit(edgekit, *arguments) for name, (arguments, _) in commands.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def fast_runs(tiny_build, tiny_recipe, tiny_tflite, tmp_path_factory):
    commands = _commands(tiny_build, tiny_recipe, tiny_tflite, tmp_path_factory.mktemp("runs"), slow=False)
    return commands, _run_all(commands)


@pytest.fixture(scope="module")
def slow_runs(tiny_build, tiny_recipe, tiny_tflite, tmp_path_factory):
    commands = _commands(tiny_build, tiny_recipe, tiny_tflite, tmp_path_factory.mktemp("runs"), slow=True)
    return commands, _run_all(commands)


def _check(commands: dict[str, tuple], runs: dict[str, subprocess.CompletedProcess], name: str) -> None:
    run, expected = runs[name], commands[name][1]
    assert run.returncode == 0, run.stderr[-3000:]
    if expected == "json":
        json.loads(run.stdout)  # the whole of stdout: nothing before or after the JSON
    else:
        assert re.fullmatch(f"{expected}\n", run.stdout), run.stdout


FAST = ["build", "bench", "inspect", "compare", "targets", "targets show", "models", "report", "convert", "export",
        "verify"]


@pytest.mark.parametrize("name", FAST)
def test_stdout_holds_the_result_only(fast_runs, name):
    _check(*fast_runs, name)


SLOW = ["optimize", "sweep"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_stdout_holds_the_result_only_in_the_long_commands(slow_runs, name):
    _check(*slow_runs, name)


def test_every_command_is_run():
    from edgekit.cli import main

    names = {name for name, command in main.commands.items() if not hasattr(command, "commands")}
    names |= {f"targets {name}" for name in main.commands["targets"].commands} | {"targets"}
    assert names == set(FAST) | set(SLOW)


@pytest.mark.parametrize("command", ["bench", "build"])
def test_a_failed_download_is_one_error_line_and_nothing_on_stdout(tiny_tflite, tiny_recipe, tmp_path, command):
    """Offline, builtin:mnist cannot download: Keras's "Downloading data from ..." goes to stderr with the error."""
    arguments = [tiny_tflite, "--target", "rpi4"] if command == "bench" else ["--recipe", tiny_recipe, "--target",
                                                                             "rpi4", "--out", tmp_path / "out"]
    run = edgekit(command, *arguments, "--data", "mnist", "--json", keras_home=tmp_path / "keras")
    assert run.returncode == 2 and run.stdout == ""
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [run.stderr.splitlines()[-1]] and "could not download" in errors[0], run.stderr
    assert "Downloading data from https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz" in run.stderr


def test_native_writes_and_prints_go_to_stderr_while_a_command_runs():
    code = ("import os\nfrom edgekit.output import echo, results_only\n"
            "with results_only():\n    os.write(1, b'native\\n')\n    print('print')\n    echo('result')\n"
            "    os.system('echo child')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert run.stdout == "result\n"
    assert run.stderr.split() == ["native", "print", "child"]


def _plain_rows(stdout: str) -> list[list[str]]:
    return [re.split(r" {2,}", line) for line in stdout.splitlines()]


def test_piped_targets_print_whole_names_and_no_title():
    run = edgekit("targets")
    assert run.returncode == 0, run.stderr
    header, *rows = _plain_rows(run.stdout)
    assert header[:3] == ["name", "class", "core"] and "runtime" in header
    assert all(len(row) == len(header) for row in rows), run.stdout
    every = targets.load_all()
    assert [row[0] for row in rows] == [t.name for t in every]
    cores = {row[0]: row[header.index("core")] for row in rows}
    assert cores["rpi4"] == "Cortex-A72" and "tflite-micro" in {row[header.index("runtime")] for row in rows}
    assert "…" not in run.stdout and not any(line != line.rstrip() for line in run.stdout.splitlines())


@pytest.mark.slow
def test_piped_bench_on_every_target_prints_whole_target_names(tiny_tflite):
    run = edgekit("bench", tiny_tflite, "--target", "all", "--runs", "10", "--warmup", "1")
    assert run.returncode in (0, 3), run.stderr[-3000:]
    lines = run.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("target  "))
    assert lines[header - 1].startswith("tiny.tflite against ")  # the title, unpadded, above the header
    names = [re.split(r" {2,}", line)[0] for line in lines[header + 1:]]
    assert sorted(names) == sorted(t.name for t in targets.load_all())
    assert "…" not in run.stdout


ROWS = [[t.name, t.summary()["core"], t.summary()["runtime"], t.summary()["precisions"]]
        for t in targets.load_all()]


@pytest.mark.parametrize("width", [100, 130, 200])
def test_a_terminal_table_fits_the_width_and_keeps_words_whole(monkeypatch, width):
    monkeypatch.setenv("COLUMNS", str(width))
    text = re.sub(r"\x1b\[[0-9;]*m", "", render_table("targets", ["name", "core", "runtime", "precisions"], ROWS,
                                                      terminal=True))
    assert max(len(line) for line in text.splitlines()) <= width
    cells = [cell.strip() for line in text.splitlines() for cell in line.split("│")]
    for name, core, runtime, _ in ROWS:
        assert name in cells and core in cells and runtime in cells
    assert "…" not in text


def test_a_terminal_too_narrow_for_the_words_folds_rather_than_cuts(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    text = re.sub(r"\x1b\[[0-9;]*m", "", render_table(None, ["name", "core", "runtime", "precisions"], ROWS,
                                                      terminal=True))
    assert max(len(line) for line in text.splitlines()) <= 40 and "…" not in text
