"""Fuzz (issues 7 and 18): damaged copies of valid tiny models given to the real commands in this pytest process:
.tflite files to `edgekit bench` on a TFLite Micro and a LiteRT target, .onnx files to `edgekit bench` and
`edgekit inspect`, .keras archives (tf_keras and Keras 3) to `edgekit convert`. That the process is still here
to count the outcomes is the proof that no crash reached it; every run ends with a result or exactly one
`Error:` line naming the file, never a traceback."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

# Hundreds of runs: outside the fast selection (pytest -m "not slow"), run by CI.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("edgekit_benchmarks_fuzz", ROOT / "benchmarks" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)
import fuzz_formats  # noqa: E402  (benchmarks/ is on the tests' path; fuzz.py imports it the same way)

MUTATIONS = 300
# Fewer for the other formats, to fit CI's budget: together 74 s measured (the .tflite test: about 200 s).
ONNX_MUTATIONS = 100
KERAS_MUTATIONS = 60


def _check(counts: dict, runs: int, kinds: set[str], name: str) -> None:
    # a failure (an exception out of a command, or an error that is not one `Error:` line) with its mutant
    assert counts["tracebacks"] == 0, counts["failures"]
    assert counts["runs"] == runs
    assert counts["results"] + counts["clean_errors"] + counts["crashes_contained"] == counts["runs"]
    assert set(counts["by_mutation"]) == kinds
    # Both ends are exercised: damage the model survives (flipped weights), and damage refused with a reason.
    assert counts["results"] > 0 and counts["clean_errors"] > 0
    # one example of each kind of message: each names the file
    assert counts["error_examples"]
    assert all(line.startswith("Error: ") and name in line for line in counts["error_examples"])


def test_no_mutation_takes_edgekit_down(tmp_path, monkeypatch):
    from edgekit.toolchains import aarch64

    # The host's checks are what is fuzzed: each surviving mutant is a new file, and counting it on the emulated
    # Cortex-A72 (3-5 s) would add minutes; rpi4 keeps its labelled cost model here (test_target_properties runs
    # the emulated path).
    monkeypatch.setattr(aarch64, "missing", lambda: ["qemu-aarch64"])
    started = time.perf_counter()
    counts = fuzz.fuzz(MUTATIONS, seed=0, folder=tmp_path)
    _check(counts, 2 * MUTATIONS, {"flip", "truncate", "splice"}, "mutant.tflite: ")
    # about 200 s on 2 cores (the mutants that load also run on the emulated Cortex-M4); the bound catches a hang
    assert time.perf_counter() - started < 480


def test_no_onnx_mutation_takes_edgekit_down(tmp_path):
    started = time.perf_counter()
    counts = fuzz_formats.fuzz_onnx(ONNX_MUTATIONS, seed=0, folder=tmp_path)
    _check(counts, 2 * ONNX_MUTATIONS, {*fuzz_formats.BYTE_KINDS, *fuzz_formats.ONNX_KINDS}, "mutant.onnx")
    # 36 s on 2 cores shared with a fuzz.py run (load 7; tf2onnx making the model included); the bound catches a hang
    assert time.perf_counter() - started < 120


def test_no_keras_mutation_takes_edgekit_down(tmp_path):
    started = time.perf_counter()
    counts = fuzz_formats.fuzz_keras(KERAS_MUTATIONS, seed=0, folder=tmp_path)
    _check(counts, KERAS_MUTATIONS, {*fuzz_formats.BYTE_KINDS, *fuzz_formats.KERAS_KINDS}, "mutant.keras")
    # both archives are read, and both load past their checks sometimes
    assert {"keras3 result", "tf_keras result"} <= set(counts["by_source"])
    # 38 s on 2 cores shared with a fuzz.py run (load 7; saving both models included); the bound catches a hang
    assert time.perf_counter() - started < 180
