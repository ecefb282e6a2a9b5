"""Shared fixtures: one tiny end-to-end build per session, reused by every test that reads its folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli import main

# The pinned TFLM, CMSIS-NN, ... archives this project's tests build from (edgekit fetches the same commits
# for users; offline, EDGEKIT_SOURCES names such a folder). Set unless the environment already says.
VENDOR = Path(__file__).resolve().parents[1].parent / "shared" / "vendor"
if VENDOR.is_dir():
    os.environ.setdefault("EDGEKIT_SOURCES", str(VENDOR))

# The default recipe shrunk to seconds: fewer filters and epochs, same stages.
TINY_RECIPE = """
name = "tiny-digits"
description = "digits-cnn at test size"
dataset = "digits"
task = "classification"
metric = "accuracy"

[model]
builder = "small-cnn"

[model.args]
filters = [8, 16]
dense_units = 32

[train]
epochs = 6
batch_size = 32
learning_rate = 0.003

[optimize]
sparsity = 0.5
pruning_epochs = 2
qat_epochs = 1
calibration_samples = 64
max_drop = 5.0
"""


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipes") / "tiny-digits.toml"
    path.write_text(TINY_RECIPE)
    return path


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory, tiny_recipe):
    """`edgekit build` on the tiny recipe; returns (result, build folder, report)."""
    out = tmp_path_factory.mktemp("build")
    result = CliRunner().invoke(main, ["build", "--target", "rpi4", "--recipe", str(tiny_recipe),
                                       "--out", str(out), "--runs", "20", "--warmup", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    directory = out / "tiny-digits-rpi4"
    return result, directory, json.loads((directory / "report.json").read_text())
