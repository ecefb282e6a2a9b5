"""Ethos-U NPU targets through the real Vela (ethos-u-vela, the npu extra): the profiles, Vela's figures labelled as its
estimate, an operator Vela keeps on the CPU reported with Vela's reason and timed on the emulated Cortex-M55."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import npu_models
import numpy as np
import pytest

from edgekit import npu, targets
from edgekit.errors import StageError, UsageError

pytest.importorskip("ethosu.vela", reason="the npu extra (ethos-u-vela) is not installed")


@pytest.fixture(scope="module")
def all_npu_model(tmp_path_factory) -> Path:
    return npu_models.all_npu(tmp_path_factory.mktemp("npu") / "all_npu.tflite")


@pytest.fixture(scope="module")
def fallback_model(tmp_path_factory) -> Path:
    return npu_models.fallback(tmp_path_factory.mktemp("npu") / "fallback.tflite")


def test_the_npu_profiles_name_a_u55_and_a_u65():
    profiles = {t.name: t for t in targets.load_all() if t.npu is not None}
    assert {p.npu.accelerator for p in profiles.values()} >= {"ethos-u55-256", "ethos-u65-256"}
    alif = profiles["alif-ensemble-e7"]
    assert alif.cpu.core == "Cortex-M55" and alif.npu.system_config == "Ethos_U55_High_End_Embedded"
    assert alif.to_dict()["npu"]["memory_mode"] == "Shared_Sram"


def test_an_unknown_accelerator_is_one_line(tmp_path):
    text = targets.load("alif-ensemble-e7").file.read_text().replace('"ethos-u55-256"', '"ethos-u55-100"')
    (tmp_path / "board.toml").write_text(text.replace('name = "alif-ensemble-e7"', 'name = "board"'))
    with pytest.raises(UsageError, match=r"key 'npu.accelerator': expected one of 'ethos-u55-32'.*got 'ethos-u55-100'"):
        targets.load(tmp_path / "board.toml")


@pytest.mark.parametrize("name", ["alif-ensemble-e7", "nxp-imx93"])
def test_vela_compiles_every_op_onto_the_npu(all_npu_model, name):
    target = targets.load(name)
    result = npu.compile_model(all_npu_model, target.npu)
    assert result.vela_version == npu.PINNED and result.accelerator == target.npu.accelerator
    assert "Vela's performance estimate (ethos-u-vela 5.2.0" in result.label and "not measured" in result.label
    assert result.cpu_ops == () and result.npu_ops >= 3
    assert result.cycles_total >= result.cycles_npu > 0
    assert result.npu_ms == pytest.approx(result.cycles_total / (target.npu.clock_mhz * 1e3))
    assert result.sram_bytes > 0 and result.flash_bytes + result.dram_bytes > 0
    compiled = Path(result.model_path).read_bytes()
    assert hashlib.sha256(compiled).hexdigest() == result.model_sha256 and len(compiled) == result.model_bytes


def test_a_system_config_vela_lacks_is_one_line(all_npu_model):
    bad = replace(targets.load("alif-ensemble-e7").npu, system_config="Ethos_U55_Imaginary")
    with pytest.raises(StageError, match=r"npu.system_config 'Ethos_U55_Imaginary' is not in Vela's vela.ini; "
                                         r"valid: .*Ethos_U55_High_End_Embedded"):
        npu.compile_model(all_npu_model, bad)


def test_a_float_file_keeps_the_cpu_figures(all_npu_model):
    from edgekit.model_info import inspect_model

    target = targets.load("alif-ensemble-e7")
    ram, ops, latency, flash, figures = npu.judge(all_npu_model, inspect_model(all_npu_model), target, "float32",
                                                  {"basis": "measured"}, {"supported": True}, None)
    assert figures["compiled"] is False and "Vela compiles quantized models; this file is float32" in figures["reason"]
    assert ram == {"basis": "measured"} and latency is None


def test_an_op_vela_keeps_on_the_cpu_is_reported_and_timed_on_the_emulated_m55(fallback_model):
    """The split: Vela's NPU estimate plus the DEPTH_TO_SPACE's share of the emulated Cortex-M55 run, both shown."""
    from edgekit.bench import bench_targets

    result = bench_targets(fallback_model, [targets.load("alif-ensemble-e7")], runs=5, warmup=1)[0]
    figures = result.npu
    assert figures["compiled"] and figures["vela_version"] == "5.2.0"
    assert [(op["op"], op["reason"]) for op in figures["cpu_ops"]] == [("DEPTH_TO_SPACE", "Unsupported opType")]
    assert figures["source_ops_on_npu"] == figures["source_ops"] - 1
    cpu = figures["cpu_part"]
    assert cpu["basis"] == "emulated" and cpu["ms"] > 0 and "emulated Cortex-M55" in cpu["method"]
    latency = result.target_latency
    assert latency.ms == pytest.approx(figures["npu_ms"] + cpu["ms"])
    assert [op.op for op in latency.per_op] == ["DEPTH_TO_SPACE"] and latency.per_op[0].instructions > 0
    assert "Vela's performance estimate (ethos-u-vela 5.2.0" in latency.method and "Cortex-M55" in latency.method
    assert result.ram["basis"] == "Vela" and result.ram["required_bytes"] == figures["sram_bytes"]
    assert result.fit.fits and "9 of 10 operators" in result.ops["npu"]


def test_the_cpu_operators_cut_alone_compute_what_they_compute_in_the_file(fallback_model):
    """npu.cut: the DEPTH_TO_SPACE alone, a model of its own that LiteRT runs, gives numpy's depth-to-space of its
    input (block 2, NHWC: each pixel's 4 channels spread over a 2x2 block)."""
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.model_info import inspect_model

    index = next(op.index for op in inspect_model(fallback_model).ops if op.op == "DEPTH_TO_SPACE")
    interpreter = Interpreter(model_content=npu.cut(fallback_model.read_bytes(), [index]))
    interpreter.allocate_tensors()
    (given,), (taken,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert list(given["shape"]) == [1, 2, 2, 4] and list(taken["shape"]) == [1, 4, 4, 1]
    values = np.arange(-8, 8, dtype=np.int8).reshape(1, 2, 2, 4)
    interpreter.set_tensor(given["index"], values)
    interpreter.invoke()
    expected = values.reshape(1, 2, 2, 2, 2, 1).transpose(0, 1, 3, 2, 4, 5).reshape(1, 4, 4, 1)
    assert np.array_equal(interpreter.get_tensor(taken["index"]), expected)


@pytest.mark.slow  # the cut model in LiteRT's aarch64 build on the emulated Cortex-A53 (cached after the first run)
def test_an_op_vela_keeps_off_an_ethos_u65_is_counted_alone_on_the_emulated_cortex_a(fallback_model):
    """On the i.MX 93 the CPU is a Cortex-A55, whose emulated LiteRT run counts the whole invoke: the operator Vela
    leaves there is counted alone, cut from the file, and added to Vela's NPU estimate."""
    from edgekit.bench import bench_targets

    result = bench_targets(fallback_model, [targets.load("nxp-imx93")], runs=5, warmup=1)[0]
    figures = result.npu
    assert [op["op"] for op in figures["cpu_ops"]] == ["DEPTH_TO_SPACE"]
    cpu = figures["cpu_part"]
    assert cpu["basis"] == "emulated" and cpu["ms"] > 0 and cpu["band"].startswith("x/÷")
    assert "cut from the file into a model of their own, fed zeros" in cpu["method"]
    assert "instructions counted in one invoke of LiteRT's aarch64 build on an emulated cortex-a53" in cpu["method"]
    latency = result.target_latency
    assert latency.ms == pytest.approx(figures["npu_ms"] + cpu["ms"])
    assert latency.low_ms < latency.ms < latency.high_ms and "lower bound" not in latency.method
    assert latency.instructions is not None and latency.instructions > 0
