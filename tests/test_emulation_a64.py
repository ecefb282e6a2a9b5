"""Models in the real LiteRT runtime (ai-edge-litert's aarch64 wheel, XNNPACK) on emulated Cortex-A cores:
qemu-aarch64 with a Debian arm64 sysroot edgekit builds once and caches (EDGEKIT_CACHE_DIR or
~/.cache/edgekit; building it fetches about 11 MB of .debs and 40 MB of wheels), counted by edgekit's plugin.

Without qemu-aarch64 (or apt-get, dpkg-deb, a C compiler) these tests skip, and so they do where the sysroot
cannot be fetched, except where EDGEKIT_REQUIRE_EMULATION=1: there either fails them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from test_tflm import int8_conv

from edgekit.errors import StageError, UsageError
from edgekit.runtimes import emulated_a64
from edgekit.toolchains import aarch64, tools

pytestmark = pytest.mark.slow
REQUIRED = os.environ.get("EDGEKIT_REQUIRE_EMULATION") == "1"


@pytest.fixture(scope="module", autouse=True)
def toolchain():
    missing = aarch64.missing()
    if missing:
        message = tools.install_hint(missing)
        pytest.fail(message) if REQUIRED else pytest.skip(message)
    try:
        aarch64.sysroot()
    except StageError as error:
        pytest.fail(str(error)) if REQUIRED else pytest.skip(str(error))


@pytest.fixture(scope="module")
def conv(tmp_path_factory) -> tuple[Path, np.ndarray, str]:
    """The int8 conv model (16 channels), a raw input, and the host LiteRT's output for it as hex."""
    from ai_edge_litert.interpreter import Interpreter

    path = tmp_path_factory.mktemp("a64") / "conv16.tflite"
    path.write_bytes(int8_conv(16))
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    given = interpreter.get_input_details()[0]
    raw = np.random.default_rng(0).integers(-128, 128, given["shape"]).astype(given["dtype"])
    interpreter.set_tensor(given["index"], raw)
    interpreter.invoke()
    return path, raw, interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).tobytes().hex()


@pytest.fixture(scope="module")
def runs(conv) -> dict[str, emulated_a64.LiteRTRun]:
    path, raw, _ = conv
    return {core: emulated_a64.run_litert(path, core, raw) for core in ("cortex-a72", "cortex-a76")}


def test_int8_conv_on_emulated_a72_and_a76_matches_the_host_bit_exactly(conv, runs):
    _, _, expected = conv
    for core, run in runs.items():
        assert run.core == core and run.output_hex == expected and run.output_dtype == "int8"
        assert run.output_shape == (1, 4)
        assert run.versions == {"python": "3.11.2", "numpy": "2.2.6", "litert": "2.3.0"}
        assert run.qemu.startswith("qemu-aarch64 version") and run.threads == 1
        assert any(wheel.startswith("ai_edge_litert-2.3.0-cp311") for wheel in run.wheels)


def test_the_invoke_is_counted_apart_from_the_python_run(runs):
    for run in runs.values():
        # a whole Python run is hundreds of millions of instructions; one invoke of this model, tens of thousands
        assert 1_000 < run.instructions < 1_000_000 < run.total_instructions
        assert run.window_instructions == run.instructions + run.mark_instructions
        assert 0 < run.mark_instructions < 5_000


def test_counts_repeat_within_half_a_percent(conv, runs):
    # Measured here: six runs of a 42,800-instruction invoke vary by up to 29 instructions on the A72 and 17 on
    # the A76 (the allocator's and mutexes' paths differ between runs); a tenth of a percent failed once in CI-like
    # conditions, so the bound is half a percent, far below any band.
    path, raw, _ = conv
    again = emulated_a64.run_litert(path, "cortex-a72", raw)
    assert abs(again.instructions - runs["cortex-a72"].instructions) <= 0.005 * runs["cortex-a72"].instructions


def test_a76_dot_product_kernels_execute_fewer_instructions_than_a72(runs):
    assert runs["cortex-a76"].instructions < 0.8 * runs["cortex-a72"].instructions


def test_instructions_split_by_symbol_name_xnnpack_kernels(conv):
    path, raw, _ = conv
    run = emulated_a64.run_litert(path, "cortex-a76", raw, symbols=True)
    names = [count.symbol for count in run.per_symbol]
    assert any("neondot" in name for name in names[:3])  # the dot-product GEMM leads
    assert sum(count.instructions for count in run.per_symbol) == run.window_instructions


def test_a720_runs_as_qemu_max_without_sme_and_uses_the_i8mm_kernels(conv):
    # QEMU's max with SME left on runs KleidiAI's SME kernels (kai_..._sme), which an A720 has not.
    spec = aarch64.core("cortex-a720")
    assert spec.qemu_cpu.startswith("max,sme=off") and aarch64.core("cortex-a76").qemu_cpu == "cortex-a76"
    path, raw, expected = conv
    run = emulated_a64.run_litert(path, "cortex-a720", raw, symbols=True)
    assert run.core == "cortex-a720" and run.output_hex == expected
    names = [count.symbol for count in run.per_symbol]
    assert any(name.endswith("__neoni8mm") for name in names[:3])  # the int8 matrix-multiply GEMM leads
    assert not [name for name in names if name.startswith("kai_") or (name.startswith("xnn_") and "sme" in name)]


def test_heap_counters_see_the_interpreter_and_xnnpack_packing_weights_in_allocate_tensors(conv, runs, tmp_path):
    # Measured (A76): the constructor ~105 KB whatever the weights (the file is mapped); allocate_tensors 20 KB
    # for 16 channels, 28 KB for 64: XNNPACK's operators (~19 KB), its workspace for the conv's output and its
    # packed weights (~1.8x the raw int8 ones); an invoke, tens of bytes.
    path, raw, _ = conv
    bigger = tmp_path / "conv64.tflite"
    bigger.write_bytes(int8_conv(64))  # 4x the channels: 4x the weights, 4x the conv's output
    small, big = runs["cortex-a76"].memory, emulated_a64.run_litert(bigger, "cortex-a76", raw, warmup=1).memory
    for memory in (runs["cortex-a72"].memory, small, big):
        assert memory["outside_malloc_bytes"] == 0  # nothing mapped past malloc: mallinfo2 saw it all
        assert memory["model_mapped_bytes"] >= memory["model_file_bytes"] > 0
        assert 50_000 < memory["interpreter_bytes"] < 200_000
        intermediate, constant = memory["tensor_bytes_all_intermediate"], memory["tensor_bytes_constant"]
        assert 0 < memory["tensor_bytes_largest"] < intermediate
        assert memory["tensor_bytes_largest"] + constant <= memory["allocate_bytes"]
        assert memory["allocate_bytes"] <= intermediate + 4 * constant + 24_000
        assert abs(memory["first_invoke_bytes"]) < 1_000 and abs(memory["warmup_bytes"]) < 1_000
        assert memory["total_bytes"] == sum(memory[key] for key in ("interpreter_bytes", "allocate_bytes",
                                                                    "first_invoke_bytes", "warmup_bytes"))
    assert big["tensor_bytes_constant"] > 3.5 * small["tensor_bytes_constant"]
    grown = big["allocate_bytes"] - small["allocate_bytes"]
    weights = big["tensor_bytes_constant"] - small["tensor_bytes_constant"]
    assert big["tensor_bytes_largest"] - small["tensor_bytes_largest"] + weights <= grown
    assert grown <= big["tensor_bytes_all_intermediate"] - small["tensor_bytes_all_intermediate"] + 4 * weights


def test_unknown_core_and_missing_qemu_are_one_line(monkeypatch):
    with pytest.raises(UsageError, match="no emulated aarch64 core 'cortex-x9'"):
        aarch64.core("cortex-x9")
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    with pytest.raises(StageError, match="apt-get install qemu-user"):
        aarch64.qemu()
