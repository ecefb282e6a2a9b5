"""Microcontroller bundles for an Ethos-U board (issue 20): the model Vela compiled as the C array, a main that starts
Arm's Ethos-U driver and registers the Ethos-U custom operator beside the operators Vela leaves on the CPU, the driver
at the revision the pinned TFLite Micro names (read from its tree), and an arena that says it is estimated; and
`edgekit build` on the Ethos-U55 board and `edgekit bench` on the Ethos-U65 board from the command line."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import npu_models
import pytest
from click.testing import CliRunner

from edgekit import npu, targets
from edgekit.cli import main
from edgekit.errors import UsageError
from edgekit.export import ethosu

pytest.importorskip("ethosu.vela", reason="the npu extra (ethos-u-vela) is not installed")

U55_BOARD, U65_BOARD = "alif-ensemble-e7", "nxp-imx93"


@pytest.fixture(scope="module")
def fallback_model(tmp_path_factory) -> Path:
    return npu_models.fallback(tmp_path_factory.mktemp("npu") / "fallback.tflite")


@pytest.fixture(scope="module")
def bundle(fallback_model, tmp_path_factory) -> tuple[str, Path]:
    """`edgekit export` of the fallback model for the Ethos-U55 board: (stdout, the bundle folder)."""
    out = tmp_path_factory.mktemp("npu-bundle") / "bundle"
    result = CliRunner().invoke(main, ["export", str(fallback_model), "--target", U55_BOARD, "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output, out


def _array(source: Path) -> bytes:
    body = re.search(r"\[\]\s*=\s*\{([^}]*)\}", source.read_text())
    assert body is not None
    return bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", body.group(1)))


def test_the_bundle_carries_the_model_vela_compiled(fallback_model, bundle):
    output, out = bundle
    compiled = npu.compile_model(fallback_model, targets.load(U55_BOARD).npu)
    array = _array(out / "model_data.cc")
    assert hashlib.sha256(array).hexdigest() == compiled.model_sha256 and len(array) == compiled.model_bytes
    described = json.loads((out / "model.json").read_text())
    assert described["model"] == "fallback_vela.tflite" and described["sha256"] == compiled.model_sha256
    assert described["npu"]["source_sha256"] == hashlib.sha256(fallback_model.read_bytes()).hexdigest()
    assert described["npu"]["compiler"] == "ethos-u-vela 5.2.0" and described["npu"]["cpu_ops"] == ["DEPTH_TO_SPACE"]
    assert "compiled by ethos-u-vela 5.2.0" in output and "ethosu_npu.c" in output
    # the resolver: Vela's custom operator (TFLM's Ethos-U kernel) and the operator Vela left on the CPU, no others
    assert described["ops"] == ["DEPTH_TO_SPACE", "ethos-u"]
    ops = (out / "model_ops.h").read_text()
    assert "constexpr int kGModelOpCount = 2;" in ops
    assert "resolver.AddEthosU()" in ops and "resolver.AddDepthToSpace()" in ops
    main_cc = (out / "main.cc").read_text()
    assert '#include "ethosu_npu.h"' in main_cc
    assert main_cc.index("edgekit_npu_init() != 0") < main_cc.index("RegisterGModelOps(resolver)")


def test_the_arena_is_vela_s_plan_plus_tflm_s_persistent_data_and_says_it_is_estimated(fallback_model, bundle):
    from edgekit.runtimes import tflm

    _, out = bundle
    compiled = npu.compile_model(fallback_model, targets.load(U55_BOARD).npu)
    persistent = tflm.measure(fallback_model).arena_persistent_bytes
    described = json.loads((out / "model.json").read_text())
    assert described["arena_basis"] == "estimated" and described["arena_measured_bytes"] is None
    assert described["arena_bytes"] == -(-(compiled.sram_bytes + persistent) // 16) * 16  # margin 0 on this board
    header = (out / "model_arena.h").read_text()
    assert "Estimated, not measured" in header and f"kGModelArenaSize = {described['arena_bytes']};" in header
    assert "**estimated, not measured**" in (out / "README.md").read_text()


def test_the_driver_is_the_revision_the_pinned_tflm_fetches(bundle):
    from edgekit.toolchains import sources

    _, out = bundle
    tflm = sources.source_root() / "tflite-micro"
    script = (tflm / ethosu.DOWNLOAD_SCRIPT).read_text()
    driver = json.loads((out / "model.json").read_text())["npu"]["driver"]
    assert re.fullmatch(r"[0-9a-f]{40}", driver["commit"]) and f"checkout {driver['commit']}" in script
    assert driver["url"] in script and driver["arch"] == "u55"
    assert driver["definitions"] == ["ETHOSU_LOG_SEVERITY=ETHOSU_LOG_WARN", "ETHOSU_ARCH=u55", "ETHOSU55"]
    assert driver["sources"] == ["src/ethosu_pmu.c", "src/ethosu_driver.c", "src/ethosu_device_u55_u65.c"]
    readme = (out / "README.md").read_text()
    assert f"revision `{driver['commit']}`" in readme and "CO_PROCESSOR=ethos_u ETHOSU_ARCH=u55" in readme
    assert "LOCAL_NPU_BASE" in readme  # where an Alif board's device header has the NPU's registers
    lists = (out / "CMakeLists.txt").read_text()
    assert "add_compile_definitions(ETHOSU_LOG_SEVERITY=ETHOSU_LOG_WARN ETHOSU_ARCH=u55 ETHOSU55)" in lists
    assert '"${ETHOSU_DRIVER_DIR}/src/ethosu_device_u55_u65.c"' in lists and "ethosu_device_u85" not in lists
    assert "set(APP_SOURCES main.cc model_data.cc test_data.cc ethosu_npu.c ${ETHOSU_DRIVER_SOURCES})" in lists
    # TFLM's Ethos-U kernel in place of the stub that registers nothing (TFLM's CO_PROCESSOR=ethos_u build)
    kernels = (out / "tflm_sources.cmake").read_text()
    assert f'"${{TFLM_DIR}}/{ethosu.NPU_KERNEL}"' in kernels and f'"${{TFLM_DIR}}/{ethosu.STUB_KERNEL}"' not in kernels
    assert (tflm / ethosu.NPU_KERNEL).is_file() and (tflm / ethosu.STUB_KERNEL).is_file()


def test_the_driver_of_each_architecture_is_read_from_tflm():
    from edgekit.toolchains import sources

    tflm = sources.source_root() / "tflite-micro"
    u65, u85 = ethosu.driver(tflm, "ethos-u65-256"), ethosu.driver(tflm, "ethos-u85-256")
    assert u65.sources[-1] == "src/ethosu_device_u55_u65.c" and "ETHOSU65" in u65.definitions
    assert u85.sources[-1] == "src/ethosu_device_u85.c" and "ETHOSU85" in u85.definitions
    assert u65.commit == u85.commit


@pytest.mark.slow  # about 15 s: the TFLM headers for the Cortex-M55, and three files compiled against them
def test_the_program_compiles_for_the_cortex_m55_and_starts_the_driver_first(bundle, tmp_path):
    """main.cc, the model and the test data compile with Arm GCC and the flags edgekit builds TFLM with for the
    Cortex-M55; main.o leaves edgekit_npu_init to ethosu_npu.c (the driver's part, which the user's build compiles)."""
    from edgekit.toolchains import cores, tflm_library

    _, out = bundle
    library = tflm_library.library(cores.CORES["Cortex-M55"])
    for name in ("main.cc", "model_data.cc", "test_data.cc"):
        result = subprocess.run(["arm-none-eabi-g++", *library.application_flags, f"-I{out}", "-c", str(out / name),
                                 "-o", str(tmp_path / f"{name}.o")], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
    symbols = subprocess.run(["arm-none-eabi-nm", str(tmp_path / "main.cc.o")], capture_output=True, text=True,
                             check=True).stdout
    assert re.search(r"^\s+U edgekit_npu_init$", symbols, re.M), symbols


def test_cmake_without_the_driver_says_where_to_point_it(bundle, tmp_path):
    from edgekit.toolchains import sources

    _, out = bundle
    cmake = shutil.which("cmake")
    assert cmake, "cmake not found (apt-get install cmake)"
    root = sources.source_root()
    result = subprocess.run([cmake, "-S", str(out), "-B", str(tmp_path / "build"),
                             f"-DTFLM_DIR={root / 'tflite-micro'}", f"-DETHOSU_DRIVER_DIR={tmp_path / 'nothing'}"],
                            capture_output=True, text=True)
    message = " ".join(result.stderr.split())  # CMake wraps a message's lines
    assert result.returncode != 0
    assert f"ETHOSU_DRIVER_DIR='{tmp_path / 'nothing'}' is not an ethos-u-core-driver tree" in message
    assert "pass -DETHOSU_DRIVER_DIR=PATH (ethos-u-core-driver at 9622608a5cc3, see README.md)" in message


def test_a_float_model_goes_to_the_cpu_and_other_layouts_or_memory_modes_are_one_line(fallback_model, tmp_path):
    from edgekit.model_info import inspect_model

    target, info = targets.load(U55_BOARD), inspect_model(fallback_model)
    float_model = npu_models.all_npu(tmp_path / "float.tflite", quantized=False)
    assert ethosu.part(float_model, inspect_model(float_model), target, "cmake") == (
        None, "Vela compiles quantized models and this one is float32: the bundle runs it on the CPU")
    with pytest.raises(UsageError, match=r"an Ethos-U bundle is a CMake project .*use --layout cmake$"):
        ethosu.part(fallback_model, info, target, "arduino")
    dedicated = replace(target, npu=replace(target.npu, memory_mode="Dedicated_Sram"))
    with pytest.raises(UsageError, match=r"needs Vela's memory mode Shared_Sram or Sram_Only .* this profile has "
                                         r"Dedicated_Sram$"):
        ethosu.part(fallback_model, info, dedicated, "cmake")
    result = CliRunner().invoke(main, ["export", str(fallback_model), "--target", U55_BOARD, "--layout", "arduino",
                                       "--out", str(tmp_path / "sketch")])
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("Error: an Ethos-U bundle is a CMake project")
    assert not (tmp_path / "sketch").exists()


@pytest.mark.slow  # about 30 s: the tiny build's artifacts benchmarked on the Ethos-U55 board and its bundle written
def test_build_for_the_ethos_u55_board(tiny_build, tiny_recipe, tmp_path):
    """`edgekit build --target alif-ensemble-e7` (the training reused from the tiny build beside it): the Vela model
    is an artifact in the manifest, Vela's summary and the fit verdict are in the report, the bundle ships it."""
    _, directory, _ = tiny_build
    shutil.copytree(directory, tmp_path / directory.name)
    result = CliRunner().invoke(main, ["build", "--recipe", str(tiny_recipe), "--target", U55_BOARD, "--out",
                                       str(tmp_path), "--runs", "10", "--warmup", "1"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    folder = tmp_path / f"tiny-digits-{U55_BOARD}"
    report = json.loads((folder / "report.json").read_text())
    int8 = next(v for v in report["variants"] if v["name"] == "int8")
    figures = int8["npu"]
    assert figures["compiled"] and figures["vela_version"] == npu.PINNED and figures["accelerator"] == "ethos-u55-256"
    assert figures["cycles_total"] > 0 and figures["sram_bytes"] > 0 and "not measured" in figures["label"]
    assert int8["target_latency"]["ms"] == pytest.approx(figures["npu_ms"] + (figures["cpu_part"]["ms"] or 0))
    assert int8["fit"]["fits"] is True and report["selected"] == "int8"
    files = json.loads((folder / "manifest.json").read_text())["files"]
    vela = files[f"vela/{U55_BOARD}/int8_vela.tflite"]
    assert vela["sha256"] == figures["model_sha256"] == hashlib.sha256(
        (folder / "vela" / U55_BOARD / "int8_vela.tflite").read_bytes()).hexdigest()
    shipped = folder / "bundle" / U55_BOARD
    assert json.loads((shipped / "model.json").read_text())["sha256"] == figures["model_sha256"]
    assert hashlib.sha256(_array(shipped / "model_data.cc")).hexdigest() == figures["model_sha256"]
    assert f"bundle/{U55_BOARD}/ethosu_npu.c" in files
    assert "Vela's estimate" in result.output


@pytest.mark.slow  # the model in LiteRT's aarch64 build on the emulated Cortex-A53 (cached after the first run)
def test_bench_on_the_ethos_u65_board(tmp_path):
    model = npu_models.all_npu(tmp_path / "all_npu.tflite")
    result = CliRunner().invoke(main, ["bench", str(model), "--target", U65_BOARD, "--json"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    (entry,) = json.loads(result.output)
    figures = entry["npu"]
    assert figures["compiled"] and figures["accelerator"] == "ethos-u65-256" and figures["cpu_ops"] == []
    assert figures["memory_mode"] == "Dedicated_Sram" and figures["cycles_total"] > 0
    assert entry["target_latency"]["ms"] == pytest.approx(figures["npu_ms"])
    assert "Vela's performance estimate (ethos-u-vela 5.2.0" in entry["target_latency"]["method"]
    assert entry["fit"]["fits"] is True and entry["ram"]["basis"] == "Vela"
    text = CliRunner().invoke(main, ["bench", str(model), "--target", U65_BOARD])
    assert text.exit_code == 0 and f"{U65_BOARD}: FITS" in text.output and "(Vela's estimate)" in text.output
