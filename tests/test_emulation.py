"""Models on emulated Cortex-M cores: the real TFLM + CMSIS-NN cross-compiled, the bundle's own program, QEMU's
MPS2/MPS3 boards, counted with edgekit's plugin. Compiled objects are cached (EDGEKIT_CACHE_DIR or
~/.cache/edgekit), so only a first run on a machine compiles; CI compiles the M4 and M55 objects it needs.

Without arm-none-eabi-gcc or qemu-system-arm these tests skip, except where EDGEKIT_REQUIRE_EMULATION=1
(.ci/run sets it): there a missing tool fails them."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_tflm import int8_conv, streaming_model

from edgekit.cli import main
from edgekit.errors import StageError
from edgekit.runtimes import emulated
from edgekit.runtimes import tflm as micro
from edgekit.toolchains import cores, firmware, qemu, sources, tflm_library, tools

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def toolchain():
    missing = tools.missing()
    if missing:
        message = tools.install_hint(missing)
        if os.environ.get("EDGEKIT_REQUIRE_EMULATION") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("emulated")
    paths = {"conv.tflite": int8_conv(8), "streaming.tflite": streaming_model()}
    for name, data in paths.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in paths}


def host_run(path: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A raw input in the model's own type and the host TFLite Micro runtime's output for it."""
    from edgekit.model_info import inspect_tflite

    info = inspect_tflite(path)
    dtype = np.dtype(info.inputs[0].dtype)
    rng = np.random.default_rng(seed)
    raw = rng.integers(-128, 128, info.inputs[0].shape[1:]).astype(dtype) if dtype.kind == "i" else \
        rng.uniform(0, 1, info.inputs[0].shape[1:]).astype(dtype)
    result = micro.measure(path, sample=raw, find_min_arena=False)
    return raw, np.asarray(result.output, dtype=np.dtype(info.outputs[0].dtype))


@pytest.fixture(scope="module")
def m4_run(models):
    raw, expected = host_run(models["conv.tflite"])
    return emulated.run_model(models["conv.tflite"], cores.core("Cortex-M4"), raw, expected)


def test_int8_model_on_emulated_m4_is_bit_exact_and_counted_per_op(models, m4_run):
    assert m4_run.output_matches and m4_run.core == "Cortex-M4" and m4_run.board == "mps2-an386"
    assert [op.op for op in m4_run.per_op] == ["CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    assert all(op.instructions > 0 for op in m4_run.per_op)
    # the timed window holds the ops and a little more (the input copy, the interpreter's loop)
    assert sum(op.instructions for op in m4_run.per_op) < m4_run.instructions < 1.2 * sum(
        op.instructions for op in m4_run.per_op)
    assert 0 < m4_run.arena_bytes < m4_run.arena_given_bytes
    assert m4_run.sources["tflite-micro"].startswith("90b983c") and m4_run.qemu.startswith("QEMU")


def test_counts_repeat_exactly_and_hardly_move_with_the_input_values(models, m4_run):
    raw, expected = host_run(models["conv.tflite"])
    same = emulated.run_model(models["conv.tflite"], cores.core("Cortex-M4"), raw, expected)
    assert same.instructions == m4_run.instructions and same.per_op == m4_run.per_op  # exact, run after run
    raw, expected = host_run(models["conv.tflite"], seed=1)
    other = emulated.run_model(models["conv.tflite"], cores.core("Cortex-M4"), raw, expected)
    assert other.output_matches
    # other values, same shapes: CMSIS-NN's int8 kernels branch little on data (requantisation, clamping)
    assert abs(other.instructions - m4_run.instructions) <= 0.01 * m4_run.instructions


def test_m55_runs_the_same_model_bit_exact_in_fewer_instructions_with_helium(models, m4_run):
    raw, expected = host_run(models["conv.tflite"])
    run = emulated.run_model(models["conv.tflite"], cores.core("Cortex-M55"), raw, expected)
    assert run.output_matches and run.board == "mps3-an547"
    conv4, conv55 = m4_run.per_op[0].instructions, run.per_op[0].instructions
    assert conv55 < conv4 / 1.5, (conv4, conv55)


def test_wrong_expected_output_is_caught(models):
    raw, expected = host_run(models["conv.tflite"])
    run = emulated.run_model(models["conv.tflite"], cores.core("Cortex-M4"), raw, (expected + 1).astype(expected.dtype))
    assert not run.output_matches
    with pytest.raises(StageError, match="does not count"):
        emulated.checked(run, models["conv.tflite"])


def test_bench_json_on_nucleo_has_instruction_counts_arena_and_check(models):
    result = CliRunner().invoke(main, ["bench", str(models["conv.tflite"]), "--target", "nucleo-l4r5zi",
                                       "--runs", "10", "--warmup", "1", "--json"])
    assert result.exit_code == 0, result.output
    bench = json.loads(result.stdout)[0]
    latency, ram, ops = bench["target_latency"], bench["ram"], bench["ops"]
    assert latency["basis"] == "emulated" and latency["instructions"] > 0
    assert [op["instructions"] for op in latency["per_op"]] and all(op["instructions"] for op in latency["per_op"])
    assert latency["emulation"]["core"] == "Cortex-M4" and latency["emulation"]["output_matches"] is True
    assert latency["low_ms"] < latency["ms"] < latency["high_ms"] and latency["band"].startswith("x/÷")
    # ms = instructions x CPI / clock (120 MHz)
    assert latency["ms"] == pytest.approx(latency["instructions"] * latency["emulation"]["cpi"] / 120e3)
    assert ram["basis"] == "emulated" and ram["arena_bytes"] != ram["arena_host_bytes"]
    assert ops["supported"] and "emulated Cortex-M4" in ops["checked_with"]


def test_profile_with_only_core_clock_and_memory_gets_an_emulated_latency(models, tmp_path):
    profile = tmp_path / "my-m33.toml"
    profile.write_text('name = "my-m33"\n[cpu]\ncore = "Cortex-M33"\nclock_mhz = 150\n'
                       "[memory]\nram_kb = 256\nflash_kb = 1024\n")
    result = CliRunner().invoke(main, ["bench", str(models["conv.tflite"]), "--target", str(profile),
                                       "--runs", "10", "--warmup", "1", "--json"])
    assert result.exit_code == 0, result.output
    latency = json.loads(result.stdout)[0]["target_latency"]
    assert latency["basis"] == "emulated" and latency["emulation"]["core"] == "Cortex-M33"
    assert latency["ms"] == pytest.approx(latency["instructions"] * latency["emulation"]["cpi"] / 150e3)


def test_streaming_model_with_resource_variables_exports_and_runs_on_the_emulated_core(models, tmp_path):
    out = tmp_path / "bundle"
    result = CliRunner().invoke(main, ["export", str(models["streaming.tflite"]), "--target", "nucleo-l4r5zi",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "constexpr int kGModelResourceVariables = 1;" in (out / "model_ops.h").read_text()
    assert "MicroResourceVariables::Create" in (out / "main.cc").read_text()
    described = json.loads((out / "model.json").read_text())
    assert described["arena_basis"] == "emulated Cortex-M4" and described["arena_margin"] == 0
    assert {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"} <= set(described["ops"])
    # The bundle as written, built and run again on the emulated core: it loads in its own arena constant
    # and its first run gives the host's output bytes.
    files = {name: (out / name).read_text() for name in ("main.cc", "model_data.cc", "model_data.h", "model_ops.h",
                                                           "model_arena.h", "test_data.cc", "test_data.h")}
    library = tflm_library.library(cores.core("Cortex-M4"))
    elf = firmware.build_program(library, files, tmp_path / "program")
    run = qemu.run(cores.core("Cortex-M4"), elf)
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith('{"run"')]
    assert lines and lines[0]["ok"] is True and run.exit_status == 0, run.stdout


def program(body: str) -> dict[str, str]:
    return {"main.cc": '#include <cstdint>\nextern "C" uint32_t edgekit_micros(void);\nint main() {\n' + body + "\n}\n"}


def test_hard_fault_is_one_line(tmp_path):
    core = cores.core("Cortex-M4")
    elf = firmware.build_program(tflm_library.library(core), program(
        "  edgekit_micros();\n  return *reinterpret_cast<volatile int*>(0xF0000000);"), tmp_path)
    with pytest.raises(StageError) as caught:
        qemu.run(core, elf, timeout=30)
    assert "Fault" in str(caught.value) and "\n" not in str(caught.value)


def test_hang_stops_at_the_time_limit_with_one_line(tmp_path):
    core = cores.core("Cortex-M4")
    elf = firmware.build_program(tflm_library.library(core), program("  for (;;) {}"), tmp_path)
    with pytest.raises(StageError, match="did not finish within 3 s") as caught:
        qemu.run(core, elf, timeout=3)
    assert "\n" not in str(caught.value)


def test_sources_are_checked_against_their_pinned_trees(tmp_path, monkeypatch):
    fake = tmp_path / "offline"
    fake.mkdir()
    top = tmp_path / sources.ARCHIVES[0].top
    top.mkdir()
    (top / "README.md").write_text("not tflite-micro\n")
    with tarfile.open(fake / sources.ARCHIVES[0].archive, "w:gz") as tar:
        tar.add(top, arcname=sources.ARCHIVES[0].top)
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGEKIT_SOURCES", str(fake))
    with pytest.raises(StageError, match="its files are not TensorFlow Lite Micro at 90b983c"):
        sources.source_root()
    assert not (tmp_path / "cache" / "sources").exists() or not any(
        (p / ".complete").exists() for p in (tmp_path / "cache" / "sources").iterdir())


def test_a_program_too_large_for_the_emulated_board_says_so(tmp_path):
    core = cores.core("Cortex-M55")  # 2 MB for code and read-only data on QEMU's mps3-an547
    with pytest.raises(firmware.BoardTooSmall, match="does not fit QEMU's mps3-an547"):
        firmware.build_program(tflm_library.library(core), program(
            "  static const volatile char weights[3 << 20] = {1};\n  edgekit_micros();\n  return weights[12345];"),
            tmp_path)


def test_qemus_own_exec_log_counts_what_the_plugin_counts(models, tmp_path):
    """The fallback for a QEMU that cannot load plugins gives the same total and per-op marks."""
    raw, expected = host_run(models["conv.tflite"])
    core = cores.core("Cortex-M4")
    from edgekit.export.mcu import program_sources
    from edgekit.model_info import tflite_graph_ops

    files = program_sources(models["conv.tflite"].read_bytes(), tflite_graph_ops(models["conv.tflite"]), "g_model",
                            raw, expected, emulated.default_arena(core), "test")
    elf = firmware.build_program(tflm_library.library(core), files, tmp_path)
    by_plugin, by_log = qemu.run(core, elf), qemu.run(core, elf, counter="log")
    assert by_log.stdout == by_plugin.stdout
    assert by_log.marks == by_plugin.marks and by_log.total_instructions == by_plugin.total_instructions


def test_a_setup_failure_reports_tflite_micros_own_words(models):
    raw, expected = host_run(models["conv.tflite"])
    with pytest.raises(emulated.SetupFailed) as caught:
        emulated.run_model(models["conv.tflite"], cores.core("Cortex-M4"), raw, expected, arena_bytes=256)
    assert "Failed starting model allocation" in str(caught.value) and "missing:" in caught.value.log
    assert "arena too small" not in str(caught.value)


def test_every_kernel_tflm_declares_is_found_where_it_is_defined():
    """The linker's missing symbols are looked up in the kernel sources by name; a registration defined on one
    line (`TFLMRegistration Register_L2_NORMALIZATION() { return Register_L2NORM_REF(); }`) was once not found,
    and a model with L2_NORMALIZATION failed to link for every emulated core."""
    import re

    library = tflm_library.library(cores.core("Cortex-M4"))
    header = sources.source_root() / "tflite-micro" / "tensorflow" / "lite" / "micro" / "kernels" / "micro_ops.h"
    declared = set(re.findall(r"TFLMRegistration\s+(Register_\w+)\(\)", header.read_text()))
    assert len(declared) > 90
    assert sorted(declared - set(library.definitions)) == []


def test_the_arena_search_steps_over_sizes_where_tflite_micro_faults(tmp_path):
    """A dense int8 model (8x8x1 -> 16 -> 10, softmax) faults on the emulated Cortex-M4 (a precise bus fault in
    a kernel's Prepare) with arenas a few bytes short of loading: 1,120-1,132 and 1,168-1,180 bytes fault, the
    others below 1,408 fail cleanly. The search for the smallest arena takes a fault as "too small", as it
    takes a setup failure, and still returns a size that ran; `edgekit export` used to stop on the fault."""
    from edgekit._files import captured_stderr_fd
    from edgekit._tf import keras
    from edgekit.convert import int8_converter

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    path = tmp_path / "dense.tflite"
    with captured_stderr_fd():
        path.write_bytes(int8_converter(model, np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 1))
                                        .astype(np.float32)).convert())
    raw, expected = host_run(path)
    core = cores.core("Cortex-M4")
    with pytest.raises(qemu.Fault, match="HardFault"):
        emulated.run_model(path, core, raw, expected, arena_bytes=1120)
    run = emulated.smallest_arena(path, core, raw, expected, used=1120)
    assert 1120 < run.arena_given_bytes <= 1600
