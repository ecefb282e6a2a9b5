"""Resume, lock, interruption and determinism of `edgekit build` (issue 7): builds killed with SIGKILL at
several stages resume from the cache and end where an uninterrupted build ends."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit._files import folder_lock
from edgekit.cache import Entry, StageCache
from edgekit.cli import main
from edgekit.errors import EdgekitError
from edgekit.report.manifest import VARIES_BY_NATURE

# Whole builds or many trainings: outside the fast selection (pytest -m "not slow"), run by CI.
pytestmark = pytest.mark.slow

OPTIONS = ["--target", "rpi4", "--runs", "20", "--warmup", "2"]  # as the tiny_build fixture builds
FOLDER = "tiny-digits-rpi4"
EVERY_STAGE = ["train", "baseline", "optimize", "bench-rpi4-float32", "bench-rpi4-int8", "bench-rpi4-onnx"]
# Where the kill loop stops the build: (stage, the stderr line it waits for, stages a re-run must find cached).
# A random delay of up to 0.3 s follows each line, so the kill lands at a different point inside the stage.
KILL_POINTS = [
    ("data", "[data]", []),
    ("train", "train epoch 2/", []),
    ("baseline", "[baseline]", ["train"]),
    ("optimize", "prune epoch 1/", ["train", "baseline"]),
    ("convert", "[convert]", ["train", "baseline"]),  # optimize + convert are cached as one
    ("bench", "float32 on rpi4: accuracy", ["train", "baseline", "optimize", "bench-rpi4-float32"]),
    ("export", "[export rpi4]", EVERY_STAGE),
]


def _command(recipe: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edgekit", "build", "--recipe", str(recipe), "--out", str(out), *OPTIONS, *extra]


def _build(recipe: Path, out: Path, *extra: str):
    return CliRunner().invoke(main, ["build", "--recipe", str(recipe), "--out", str(out), *OPTIONS, *extra])


def _run_and_kill(command: list[str], line: str, delay: float) -> tuple[int, list[str]]:
    """Start a build, SIGKILL it `delay` seconds after it logs a line starting with `line`; its exit status
    (negative: the signal) and its stderr lines."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd="/")
    lines = []
    for text in process.stderr:
        lines.append(text.rstrip("\n"))
        if text.startswith(line):
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            break
    lines += process.stderr.read().splitlines()
    return process.wait(), lines


def _reused(lines: list[str]) -> list[str]:
    return [line.split(":")[0] for line in lines if ": reused from cache (key " in line]


def _metrics(report: dict) -> dict:
    return {"keras": report["keras_test_metric"], "variants": {v["name"]: v["metric"] for v in report["variants"]}}


def _identical_files_match(directory: Path, reference: Path) -> None:
    """Every file the manifest says a rebuild reproduces has the reference build's bytes. model.onnx too: the
    reference build ran inside this pytest process, after other ONNX conversions, and the resumed one in a fresh
    process (edgekit.convert renames what tf2onnx names per process)."""
    manifest = json.loads((directory / "manifest.json").read_text())
    expected = json.loads((reference / "manifest.json").read_text())
    identical = manifest["deterministic"]["identical"]
    if not _has_gpu():  # on a GPU, training is not deterministic and the manifest says so
        assert {"float32.keras", "float32.tflite", "int8.tflite", "model.onnx",
                "bundle/rpi4/int8.tflite"} <= set(identical)
        assert set(manifest["deterministic"]["differ"]) == set(VARIES_BY_NATURE)
    for name in identical:
        assert manifest["files"][name]["sha256"] == expected["files"][name]["sha256"], name


def _has_gpu() -> bool:
    from edgekit._tf import tf

    return bool(tf.config.list_physical_devices("GPU"))


def test_killed_builds_resume_from_the_cache_and_end_as_an_uninterrupted_one(tmp_path, tiny_recipe, tiny_build):
    _, reference, expected = tiny_build
    directory = tmp_path / FOLDER
    delays = random.Random(7)
    killed_at, cached = [], []
    for stage, line, cached_now in KILL_POINTS:
        status, lines = _run_and_kill(_command(tiny_recipe, tmp_path), line, delays.uniform(0, 0.3))
        assert set(cached) <= set(_reused(lines)), (stage, lines)  # what the run killed before finished
        if killed_at:  # the build killed before this one held the lock
            assert any(s.startswith("taking over the lock of a build that stopped") for s in lines), lines
        cached = cached_now
        if status == 0 or (stage == "export" and (directory / "manifest.json").exists()):
            # the last stage can finish before the kill lands (export takes milliseconds; the kill may hit the
            # interpreter's shutdown, after the manifest was written): then the folder must be whole
            from edgekit.report.manifest import verify

            assert stage == "export" and status in (0, -signal.SIGKILL), (stage, status)
            assert verify(directory) == [], verify(directory)
            continue
        assert status == -signal.SIGKILL, (stage, lines)
        assert not (directory / "manifest.json").exists(), f"killed in {stage}, yet the folder looks finished"
        assert (directory / "UNFINISHED").read_text().startswith("edgekit build started "), stage
        killed_at.append(stage)
    assert len(killed_at) >= 6, killed_at

    final = subprocess.run(_command(tiny_recipe, tmp_path), capture_output=True, text=True, cwd="/")
    assert final.returncode == 0, final.stderr
    report = json.loads((directory / "report.json").read_text())
    assert report["cache"]["resumed"] is True and report["cache"]["reused"] == EVERY_STAGE
    assert report["cache"]["computed"] == []
    assert _metrics(report) == _metrics(expected)
    assert not (directory / "UNFINISHED").exists()
    verified = CliRunner().invoke(main, ["verify", str(directory)])
    assert verified.exit_code == 0, verified.output
    _identical_files_match(directory, reference)


def test_a_second_build_into_a_busy_folder_fails_at_once_naming_the_holder(tmp_path, tiny_recipe):
    first = subprocess.Popen(_command(tiny_recipe, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, cwd="/")
    try:
        for line in first.stderr:
            if line.startswith("[train]"):
                break
        started = time.perf_counter()
        second = _build(tiny_recipe, tmp_path)
        assert time.perf_counter() - started < 5
    finally:
        first.kill()
        first.wait()
    assert second.exit_code == 1
    directory = tmp_path / FOLDER
    prefix = f"Error: {directory} is in use by another build (PID {first.pid} on "
    assert second.stderr.startswith(prefix) and second.stderr.count("\n") == 1, second.stderr
    assert second.stderr.endswith("); wait for it to finish, or build into another --out\n")


def test_force_rebuilds_everything_and_takes_over_a_stale_lock(tmp_path, tiny_recipe, tiny_build):
    _, reference, expected = tiny_build
    directory = tmp_path / FOLDER
    shutil.copytree(reference, directory)
    (directory / ".lock").write_text(json.dumps({"pid": 999999999, "host": "gone", "started": "2020-01-01"}))
    result = _build(tiny_recipe, tmp_path, "--force")
    assert result.exit_code == 0, result.output
    assert ("taking over the lock of a build that stopped without releasing it (pid 999999999, host gone, "
            "started 2020-01-01)") in result.stderr
    report = json.loads((directory / "report.json").read_text())
    assert report["cache"] == {**report["cache"], "resumed": False, "reused": [], "computed": EVERY_STAGE}
    assert _metrics(report) == _metrics(expected)
    _identical_files_match(directory, reference)
    assert (directory / ".lock").read_text() == "", "a finished build leaves its lock released"


def test_a_changed_recipe_field_reruns_from_optimize(tmp_path, tiny_recipe, tiny_build):
    _, reference, _ = tiny_build
    shutil.copytree(reference, tmp_path / FOLDER)
    changed = tmp_path / "tiny-digits.toml"
    changed.write_text(tiny_recipe.read_text().replace("qat_epochs = 1", "qat_epochs = 2"))
    result = _build(changed, tmp_path)
    assert result.exit_code == 0, result.output
    assert "train: reused from cache (key " in result.stderr and "[train]" not in result.stderr
    report = json.loads((tmp_path / FOLDER / "report.json").read_text())
    # the float artifacts did not change, so their bench results still hold
    assert report["cache"]["reused"] == ["train", "baseline", "bench-rpi4-float32", "bench-rpi4-onnx"]
    assert report["cache"]["computed"] == ["optimize", "bench-rpi4-int8"]
    assert report["training"]["qat"]["epochs"] == 2


def test_raising_max_drop_reuses_every_stage(tmp_path, tiny_recipe, tiny_build):
    """max_drop only judges the result: accepting a bigger drop must not re-run quantization-aware training."""
    _, reference, _ = tiny_build
    shutil.copytree(reference, tmp_path / FOLDER)
    changed = tmp_path / "tiny-digits.toml"
    changed.write_text(tiny_recipe.read_text().replace("max_drop = 5.0", "max_drop = 9.0"))
    result = _build(changed, tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / FOLDER / "report.json").read_text())["cache"]["reused"] == EVERY_STAGE


@pytest.mark.parametrize("stage", ["train", "bench"])
def test_an_interrupted_build_keeps_nothing_that_looks_finished(stage, tmp_path, tiny_recipe, tiny_build,
                                                                 monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    directory = tmp_path / FOLDER
    if stage == "bench":  # from a finished build: its artifacts are rewritten, then bench is interrupted
        shutil.copytree(tiny_build[1], directory)
    # the build measures through bench_targets (one host measurement for every target of a multi-target build)
    monkeypatch.setattr({"train": "edgekit.train.train", "bench": "edgekit.bench.bench_targets"}[stage], interrupt)
    result = _build(tiny_recipe, tmp_path, "--runs", "11")  # 11 runs: bench's cached results do not apply
    assert result.exit_code == 130, result.output
    assert f"[{stage}]" in result.stderr  # interrupted where meant, with the stages before it done or reused
    assert result.stderr.splitlines()[-1] == (
        f"Interrupted: {directory} is not finished (no manifest.json); run the same command again to resume "
        "from the last finished stage, or add --force to start over")
    assert not (directory / "manifest.json").exists()
    assert not [p for p in directory.rglob("*") if "partial" in p.name and not p.name.startswith(".")]
    assert (directory / ".lock").read_text() == "", "an interrupted build releases its lock"
    assert (directory / "UNFINISHED").read_text().startswith("edgekit build stopped (")
    assert ": interrupted\n" in (directory / "UNFINISHED").read_text()


def test_a_nan_loss_stops_training_at_once_with_a_hint(tmp_path, tiny_recipe):
    diverging = tmp_path / "tiny-digits.toml"
    diverging.write_text(tiny_recipe.read_text().replace("learning_rate = 0.003",
                                                         'learning_rate = 1e12\noptimizer = "sgd"'))
    result = _build(diverging, tmp_path)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == ("Error: train failed: loss became nan in epoch 1 (try a lower "
                                              "learning rate, or check the input normalisation)")
    assert "train epoch 1/6" not in result.stderr, "training went on past the batch that diverged"
    assert not (tmp_path / FOLDER / ".cache" / "train").exists(), "a failed stage must not be cached"


def test_the_lock_names_its_holder_and_reports_a_stale_one(tmp_path):
    with folder_lock(tmp_path) as stale:
        assert stale is None
        with pytest.raises(EdgekitError, match=rf"is in use by another build \(PID {os.getpid()} on "):
            with folder_lock(tmp_path):
                pass
    (tmp_path / ".lock").write_text('{"pid": 1, "host": "h", "started": "t"}')
    with folder_lock(tmp_path) as stale:
        assert stale == {"pid": 1, "host": "h", "started": "t"}


def test_a_damaged_or_half_written_cache_entry_is_computed_again(tmp_path):
    cache = StageCache(tmp_path)
    computed = []

    def compute():
        computed.append(1)
        return Entry({"n": len(computed)}, {"model.bin": b"weights"})

    key = cache.key("train", seed=0)
    assert cache.run("train", key, compute).values == {"n": 1}
    assert cache.run("train", key, compute).values == {"n": 1} and cache.reused == ["train"]
    (tmp_path / ".cache" / "train" / "model.bin").write_bytes(b"weightz")
    assert cache.run("train", key, compute).values == {"n": 2}
    (tmp_path / ".cache" / "train" / "entry.json").unlink()  # as if killed before the entry was written
    assert cache.load("train", key) is None
    assert cache.run("train", cache.key("train", seed=1), compute).values == {"n": 3}


def test_the_code_in_the_keys_is_what_the_stages_run():
    """Editing the CLI or adding a command keeps the cache; editing a stage's module (or one it imports,
    even inside a function) does not."""
    import edgekit
    from edgekit.cache import stage_sources

    package = Path(edgekit.__file__).parent
    names = {str(path.relative_to(package)) for path in stage_sources(package)}
    assert {"train.py", "optimize.py", "convert.py", "bench.py", "runtimes/host.py", "data/core.py", "zoo.py"} <= names
    assert not {"cli.py", "compare.py", "__main__.py", "progress.py", "report/html.py"} & names
