"""Progress bars (issue 8): drawn on a terminal for epochs, calibration and benchmark runs; plain log lines
when stderr is not a terminal; nothing from rich on stdout."""

from __future__ import annotations

import io
import logging
import math
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from edgekit import progress

ESCAPE = "\x1b["
BAR = "━"


def _terminal() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=110, color_system="standard"), buffer


@pytest.fixture(scope="module")
def digits():
    from edgekit import data

    return data.load("digits", input_shape=(8, 8, 1))


def _tiny_model(digits):
    from edgekit._tf import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(digits.input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(digits.num_classes, activation="softmax")])


def test_without_a_display_nothing_is_drawn_and_logs_stay_plain():
    bar = progress.begin("train", 10)
    bar.advance(3)
    bar.describe("train epoch 1/2")
    bar.close()
    assert bar.completed == 3
    stream = io.StringIO()
    handler = progress.LogHandler(stream)
    handler.emit(logging.LogRecord("edgekit", logging.INFO, __file__, 1, "train epoch 1/2  loss 0.5", None, None))
    assert stream.getvalue() == "train epoch 1/2  loss 0.5\n"


def test_a_terminal_shows_a_bar_per_training_phase_with_the_log_lines_above_it(digits):
    from edgekit.train import fit

    console, buffer = _terminal()
    plain = io.StringIO()
    logger = logging.getLogger("edgekit")
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers[:] = [progress.LogHandler(plain)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        from edgekit._tf import keras

        with progress.display(console):
            fit(_tiny_model(digits), digits, "classification", 2, 64, keras.optimizers.Adam(0.01), phase="train")
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    steps = 2 * math.ceil(len(digits.x_train) / 64)
    drawn = buffer.getvalue()
    assert ESCAPE in drawn and BAR in drawn
    assert "train epoch 2/2" in drawn and f"{steps}/{steps}" in drawn  # the bar counts every training step
    assert "train epoch 1/2  loss " in drawn and plain.getvalue() == ""  # log lines go above the bars
    assert progress._active is None


def test_a_terminal_shows_calibration_and_benchmark_runs(digits):
    from edgekit import convert
    from edgekit.bench import measure_latency

    console, buffer = _terminal()
    model = _tiny_model(digits)
    with progress.display(console):
        convert.int8_converter(model, digits.x_train[:40]).convert()
        stats = measure_latency(lambda: None, runs=100, warmup=10, threads=1, label="bench tiny.tflite")
    drawn = buffer.getvalue()
    assert "calibrate" in drawn and "40/40" in drawn
    assert "bench tiny.tflite" in drawn and "110/110" in drawn and stats.runs == 100


def _in_a_terminal(arguments: list[str]) -> tuple[int, str, str]:
    """Run `python -m edgekit ARGUMENTS` with stderr on a pseudo-terminal and stdout on a pipe: (exit code,
    what the terminal showed, stdout)."""
    leader, follower = pty.openpty()
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "COLUMNS": "110"}
    process = subprocess.Popen([sys.executable, "-m", "edgekit", *arguments], stdout=subprocess.PIPE,
                               stderr=follower, stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    shown = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            process.kill()
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not chunk:
            break
        shown += chunk
    stdout = process.stdout.read().decode()
    code = process.wait(timeout=60)
    os.close(leader)
    return code, shown.decode(errors="replace"), stdout


def test_the_command_draws_bars_on_a_terminal_and_keeps_stdout_plain(tiny_build):
    _, directory, _ = tiny_build
    arguments = ["bench", str(directory / "int8.tflite"), "--target", "rpi4", "--runs", "50", "--warmup", "20"]
    code, shown, stdout = _in_a_terminal(arguments)
    assert code == 0, shown
    assert "bench int8.tflite" in shown and "70/70" in shown and ESCAPE in shown
    assert ESCAPE not in stdout and "rpi4: FITS" in stdout
    quiet_code, quiet_shown, quiet_stdout = _in_a_terminal(["--quiet", *arguments])
    assert quiet_code == 0 and ESCAPE not in quiet_shown and "bench int8.tflite" not in quiet_shown
    assert len(quiet_stdout.splitlines()) == len(stdout.splitlines()) and "rpi4: FITS" in quiet_stdout


def test_without_a_terminal_the_build_logs_one_plain_line_per_epoch(tiny_build):
    result, _, _ = tiny_build
    for line in ("train epoch 6/6  loss ", "prune epoch 2/2  loss ", "qat epoch 1/1  loss "):
        assert line in result.stderr
    assert ESCAPE not in result.stderr and BAR not in result.stderr and ESCAPE not in result.stdout
    assert not [line for line in result.stderr.splitlines() if line.startswith(("calibrate", "bench "))]
