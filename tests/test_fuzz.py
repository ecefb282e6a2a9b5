"""Fuzz (issue 7): 300 damaged copies of a valid int8 model, each given to `edgekit bench` for a TFLite Micro
target and a LiteRT target, in this pytest process. That the process is still here to count the outcomes
is the proof that no crash reached it; every run ends with a result or exactly one `Error:` line."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

# 300 bench runs: outside the fast selection (pytest -m "not slow"), run by CI.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("edgekit_benchmarks_fuzz", ROOT / "benchmarks" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

MUTATIONS = 300


def test_no_mutation_takes_edgekit_down(tmp_path):
    started = time.perf_counter()
    # fuzz.bench_once raises on anything but a result, or one `Error:` line with exit 1 or 2
    counts = fuzz.fuzz(MUTATIONS, seed=0, folder=tmp_path)
    assert counts["runs"] == 2 * MUTATIONS
    assert counts["results"] + counts["clean_errors"] + counts["crashes_contained"] == counts["runs"]
    assert set(counts["by_mutation"]) == {"flip", "truncate", "splice"}
    # Both ends are exercised: damage the model survives (flipped weights), and damage refused with a reason.
    assert counts["results"] > 0 and counts["clean_errors"] > 0
    # one example of each kind of message: each names the file
    assert all(line.startswith("Error: ") and "mutant.tflite: " in line for line in counts["error_examples"])
    assert time.perf_counter() - started < 240  # about 60 s on 2 cores; the bound only catches a hang
