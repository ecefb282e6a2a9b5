"""The examples run as written."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_python_api_example_runs(tmp_path, capsys):
    report = _load("python_api").main(["--quick", "--out", str(tmp_path)])
    assert report["selected"] == "int8"
    printed = capsys.readouterr().out
    assert "float32:" in printed and "int8:" in printed
    assert (tmp_path / "digits-cnn-rpi4" / "manifest.json").exists()
