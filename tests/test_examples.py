"""The examples run as written (the ones that need no download), on generated or built-in data."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit import data, targets

# Whole builds or many trainings: outside the fast selection (pytest -m "not slow"), run by CI.
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@functools.cache
def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _environment(**extra: str) -> dict[str, str]:
    """This interpreter's `edgekit` and `python` first on PATH, for scripts run as a user would."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def test_python_api_example_runs(tmp_path, capsys):
    report = _load("python_api").main(["--quick", "--out", str(tmp_path)])
    assert report["selected"] == "int8"
    printed = capsys.readouterr().out
    assert "float32:" in printed and "int8:" in printed
    assert (tmp_path / "digits-cnn-rpi4" / "manifest.json").exists()


@pytest.fixture(scope="module")
def mnist_npz(tmp_path_factory) -> Path:
    """scikit-learn's digits scaled up to 28x28 uint8 and saved as MNIST's .npz is (the real file needs a
    download this machine cannot make; the reading code is the same)."""
    from scipy.ndimage import zoom

    digits = data.load("digits")

    def to_mnist(x):
        return np.clip(zoom(x[..., 0], (1, 3.5, 3.5), order=1) * 255, 0, 255).astype(np.uint8)

    path = tmp_path_factory.mktemp("mnist") / "mnist.npz"
    np.savez(path, x_train=to_mnist(np.concatenate([digits.x_train, digits.x_val])),
             y_train=np.concatenate([digits.y_train, digits.y_val]), x_test=to_mnist(digits.x_test),
             y_test=digits.y_test)
    return path


def test_mnist_walkthrough_runs_on_an_mnist_file(tmp_path, capsys, mnist_npz):
    report = _load("mnist_walkthrough").main(["--quick", "--data", str(mnist_npz), "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert report["recipe"] == "mnist-mlp" and report["selected"] == "int8"
    assert report["dataset"]["input_shape"] == [28, 28, 1] and report["dataset"]["test"] == 360
    evaluated = float(re.search(r"evaluate: test loss \S+, test accuracy (\S+)", printed).group(1))
    assert evaluated > 0.7
    variants = {v["name"]: v for v in report["variants"]}
    assert variants["int8"]["accuracy"] > 0.8 and variants["int8"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert "rpi4: FITS" in printed and "nucleo-l4r5zi: FITS" in printed
    assert (tmp_path / "mnist-mlp-rpi4" / "manifest.json").exists()


def test_mnist_walkthrough_without_network_stops_with_one_error_line(tmp_path):
    # An empty Keras cache and a proxy that refuses connections: offline, whatever this machine can reach.
    refused = "http://127.0.0.1:9"
    result = subprocess.run([sys.executable, str(EXAMPLES / "mnist_walkthrough.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120,
                            env=_environment(KERAS_HOME=str(tmp_path / "keras"), HTTPS_PROXY=refused,
                                             https_proxy=refused, HTTP_PROXY=refused, http_proxy=refused,
                                             NO_PROXY="", no_proxy=""))
    assert result.returncode == 2, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("Error: builtin:mnist: could not download https://") and "mnist.npz" in last
    assert str(tmp_path / "keras" / "datasets" / "mnist.npz") in last  # where to put the file by hand
    assert "Traceback" not in result.stderr and result.stdout.count("\n") <= 1  # at most Keras's "Downloading"


def test_mnist_walkthrough_shell_script_runs_on_an_mnist_file(tmp_path, mnist_npz):
    result = subprocess.run(["bash", str(EXAMPLES / "mnist_walkthrough.sh"), str(mnist_npz), str(tmp_path / "out")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_environment())
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Ship: int8" in result.stdout
    assert "nucleo-l4r5zi: FITS" in result.stdout and "accuracy: " in result.stdout
    assert (tmp_path / "out" / "mnist-mlp-rpi4" / "manifest.json").exists()


NUMERIC_LINE = re.compile(r"^\s*[A-Za-z0-9_-]+\s*=\s*[-+]?(\d|\.\d)")  # as tests/test_targets.py checks built-ins


def test_custom_target_profile_loads_and_cites_every_figure():
    path = EXAMPLES / "custom_target.toml"
    board = targets.load(path)
    assert board.name == "my-f411-board" and board.device_class == targets.DeviceClass.MCU
    assert (board.cpu.core, board.cpu.clock_mhz, board.memory.ram_kb, board.memory.flash_kb) == \
        ("Cortex-M4F", 100, 128, 512)
    assert board.budgets.ram_kb == board.memory.ram_available_kb
    assert board.latency is None  # an emulated Cortex-M4: no cost model to copy
    lines = path.read_text().splitlines()
    uncited = [line for number, line in enumerate(lines) if NUMERIC_LINE.match(line)
               and "#" not in line and not (number > 0 and lines[number - 1].lstrip().startswith("#"))]
    assert uncited == []


def test_custom_target_example_prints_the_fit_verdicts(tmp_path, capsys):
    verdicts = _load("custom_target").main(["--out", str(tmp_path)])
    assert verdicts == {"digits-cnn.int8.tflite": {"my-f411-board": True, "nucleo-l4r5zi": True},
                        "mnist-cnn.int8.tflite": {"my-f411-board": False, "nucleo-l4r5zi": True}}
    printed = capsys.readouterr().out
    assert "my-f411-board: DOES NOT FIT (" in printed
    assert re.search(r"flash +MISS +1\.\d MiB of 384 KiB", printed)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    return _load("image_folder").write_example_images(tmp_path_factory.mktemp("images"), per_class=40)


def test_image_folder_example_builds_from_a_folder_of_pngs(tmp_path, capsys, image_folder):
    report = _load("image_folder").main(["--quick", "--folder", str(image_folder), "--out", str(tmp_path)])
    assert report["recipe"] == "my-images" and report["selected"] == "int8"
    dataset = report["dataset"]
    assert dataset["input_shape"] == [32, 32, 3] and dataset["num_classes"] == 3
    assert dataset["preprocessing"]["resize"]["size"] == [32, 32]  # the PNGs have other sizes
    int8 = next(v for v in report["variants"] if v["name"] == "int8")
    assert int8["accuracy"] > 0.8
    assert (tmp_path / "my-images-rpi4" / "labels.txt").read_text().split() == ["checks", "horizontal", "vertical"]
    assert "ship int8" in capsys.readouterr().out


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    return _load("audio_clips").write_example_clips(tmp_path_factory.mktemp("clips"), per_class=40)


def test_audio_clips_example_builds_a_keyword_spotter_for_a_microcontroller(tmp_path, capsys, clip_folder):
    report = _load("audio_clips").main(["--quick", "--folder", str(clip_folder), "--out", str(tmp_path)])
    assert (report["recipe"], report["target"], report["selected"], report["fits"]) == \
        ("kws-ds-cnn", "nucleo-l4r5zi", "int8", True)
    dataset = report["dataset"]
    assert dataset["input_shape"] == [49, 10, 1] and dataset["num_classes"] == 4
    assert dataset["preprocessing"]["features"]["type"] == "mfcc"
    int8 = next(v for v in report["variants"] if v["name"] == "int8")
    assert int8["accuracy"] > 0.8
    assert "nucleo-l4r5zi: FITS" in capsys.readouterr().out
