"""Ethos-U NPU targets through the real Vela (ethos-u-vela, the npu extra): the profiles, Vela's figures labelled as its
estimate, an operator Vela keeps on the CPU reported with Vela's reason and timed on the emulated Cortex-M55."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgekit import npu, targets
from edgekit.errors import StageError, UsageError

pytest.importorskip("ethosu.vela", reason="the npu extra (ethos-u-vela) is not installed")


def _int8(model, shape, path: Path) -> Path:
    from edgekit._files import captured_stderr_fd
    from edgekit.convert import int8_converter

    rng = np.random.default_rng(1)  # non-zero biases: the converter drops all-zero ones
    model.set_weights([rng.normal(0, 0.2, w.shape).astype(np.float32) for w in model.get_weights()])
    with captured_stderr_fd():
        path.write_bytes(int8_converter(model, rng.uniform(0, 1, (4, *shape)).astype(np.float32)).convert())
    return path


@pytest.fixture(scope="module")
def all_npu_model(tmp_path_factory) -> Path:
    """Convolution, dense and softmax: every operator maps to an Ethos-U55 and U65."""
    from edgekit._tf import keras

    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(4, activation="softmax")])
    return _int8(model, (16, 16, 1), tmp_path_factory.mktemp("npu") / "all_npu.tflite")


@pytest.fixture(scope="module")
def fallback_model(tmp_path_factory) -> Path:
    """One DEPTH_TO_SPACE between NPU operators: Vela 5.2 has no Ethos-U55 support for it, TFLite Micro has."""
    from edgekit._tf import keras, tf

    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Dense(16)(keras.layers.Flatten()(x))
    x = keras.layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2), name="d2s")(keras.layers.Reshape((2, 2, 4))(x))
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(x))
    return _int8(keras.Model(inputs, outputs), (16, 16, 1), tmp_path_factory.mktemp("npu") / "fallback.tflite")


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
