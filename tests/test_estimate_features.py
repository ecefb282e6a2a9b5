"""cpu.features choose the latency rates: a core without the SIMD extension a [latency.<precision>] table
requires gets its [latency.<precision>.fallback] rates; the ESP32-S3's PIE rates are derived from ESP-NN's
kernels (benchmarks/esp_nn_rates.py), not fitted."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import esp_nn_rates
import pytest

from edgekit import targets
from edgekit.compare import refit
from edgekit.errors import UsageError
from edgekit.estimate import MAC_KINDS, estimate_latency
from edgekit.model_info import ModelInfo, OpInfo, TensorInfo

ROOT = Path(__file__).resolve().parents[1]
S3_FEATURES = 'features = ["pie-simd", "fpu-sp"]'

# A small keyword spotter as the cost model sees it (DS-CNN-like, 49x10 MFCC input): per op MACs and bytes.
KWS_OPS = (
    OpInfo(0, "CONV_2D", "conv", macs=320_000, params=2_624, bytes=490 + 2_624 + 8_000),
    OpInfo(1, "DEPTHWISE_CONV_2D", "depthwise_conv", macs=72_000, params=640, bytes=8_000 + 640 + 8_000),
    OpInfo(2, "CONV_2D", "conv", macs=512_000, params=4_160, bytes=8_000 + 4_160 + 8_000),
    OpInfo(3, "AVERAGE_POOL_2D", "pool", bytes=8_000 + 64, element_ops=8_000),
    OpInfo(4, "FULLY_CONNECTED", "dense", macs=768, params=780, bytes=64 + 780 + 12),
)
KWS = ModelInfo(format="tflite", size_bytes=12_000, inputs=(TensorInfo("input", (1, 49, 10, 1), "int8"),),
                outputs=(TensorInfo("output", (1, 12), "int8"),), ops=KWS_OPS,
                params=sum(op.params for op in KWS_OPS), macs=sum(op.macs for op in KWS_OPS),
                element_ops=8_000, weight_sparsity=0.0, weight_dtypes=("int8",))


def copy_of(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = targets.load(name).file.read_text()
    assert old in text
    path = tmp_path / f"{name}-copy.toml"
    path.write_text(text.replace(old, new))
    return path


def test_esp32_s3_without_pie_simd_is_estimated_slower(tmp_path):
    with_pie = targets.load("esp32-s3")
    without = targets.load(copy_of(tmp_path, "esp32-s3", S3_FEATURES, 'features = ["fpu-sp"]'))
    fast, slow = estimate_latency(KWS, with_pie, "int8"), estimate_latency(KWS, without, "int8")
    assert slow.ms > 5 * fast.ms  # PIE runs the convolutions ~14x, depthwise ~3x, dense ~6x the C kernels
    for a, b in zip(fast.per_op, slow.per_op, strict=True):
        if a.macs:
            assert b.ms > a.ms, a.op
        else:
            assert b.ms == pytest.approx(a.ms), a.op  # pooling: bytes and overhead only, no SIMD term
    assert "fallback" not in fast.method
    assert "Rates of [latency.int8.fallback]: cpu.features lacks pie-simd." in slow.method


def test_features_are_read_when_estimating_not_only_when_loading():
    s3 = targets.load("esp32-s3")
    no_pie = dataclasses.replace(s3, cpu=dataclasses.replace(s3.cpu, features=("fpu-sp",)))
    assert estimate_latency(KWS, no_pie, "int8").ms > estimate_latency(KWS, s3, "int8").ms
    assert s3.latency.rates("int8", no_pie.cpu.features) == (s3.latency.fallback["int8"], ("pie-simd",))
    assert s3.latency.rates("int8", s3.cpu.features) == (s3.latency.macs_per_cycle["int8"], ())
    # float32 (TFLM's reference kernels) needs no SIMD: the same rates either way
    assert estimate_latency(KWS, no_pie, "float32").ms == estimate_latency(KWS, s3, "float32").ms


@pytest.mark.parametrize("name", [t.name for t in targets.load_all() if t.latency])  # Cortex-M: emulated
def test_every_built_in_profile_gets_its_own_rates(name):
    target = targets.load(name)
    rates, missing = target.latency.rates("int8", target.cpu.features)
    assert missing == () and rates == target.latency.macs_per_cycle["int8"]
    for precision, fallback in target.latency.fallback.items():  # a fallback is slower than the SIMD rates
        assert all(fallback[k] < target.latency.macs_per_cycle[precision][k] for k in MAC_KINDS), name
    assert estimate_latency(KWS, target, "int8").ms > 0


def test_requiring_a_feature_the_core_lacks_without_a_fallback_is_a_one_line_error(tmp_path):
    text = targets.load("esp32-s3").file.read_text()
    head, tail = text[:text.index("\n[latency.int8.fallback]")], text[text.index("\n[latency.float32]"):]
    path = tmp_path / "no-fallback.toml"
    path.write_text(head.replace(S3_FEATURES, 'features = ["fpu-sp"]') + tail)
    with pytest.raises(UsageError) as caught:
        targets.load(path)
    assert str(caught.value) == (
        f"{path}: key 'latency.int8.requires': cpu.features lacks 'pie-simd', which the int8 rates assume, "
        "and there is no [latency.int8.fallback] table with rates for a core without it")
    # with pie-simd the same profile loads: the fallback is only needed when a feature is missing
    path.write_text(head + tail)
    assert targets.load(path).latency.fallback == {}


@pytest.mark.parametrize(("old", "new", "message"), [
    ('requires = ["pie-simd"]', 'requires = ["pie_simd"]',
     "key 'latency.int8.requires': unknown feature 'pie_simd'; valid: " + ", ".join(targets.FEATURES)),
    ('requires = ["pie-simd"]', "requires = []",
     "key 'latency.int8.fallback': a fallback is used when cpu.features lacks a feature of "
     "'latency.int8.requires', which is missing or empty"),
    ("depthwise_conv = 0.0729", "depthwise_conv = 0",
     "key 'latency.int8.fallback.depthwise_conv': expected a number >= 1e-06, got 0.0"),
    ("dense = 0.0985", "dense = 0.0985\nsimd = 1", "unknown key 'latency.int8.fallback.simd'"),
    ("dense = 0.0985", "dens = 0.0985", "unknown key 'latency.int8.fallback.dens'; did you mean "
     "'latency.int8.fallback.dense'? valid keys here: conv, dense, depthwise_conv"),
])
def test_bad_requires_and_fallback_tables_name_the_key(tmp_path, old, new, message):
    with pytest.raises(UsageError) as caught:
        targets.load(copy_of(tmp_path, "esp32-s3", old, new))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_esp32_s3_rates_are_the_esp_nn_derivation():
    s3 = targets.load("esp32-s3")
    method = s3.latency.method
    assert method.startswith("Derived, not fitted") and "ESP-NN" in method and "esp-nn" in method
    assert s3.latency.requires == {"int8": ("pie-simd",)}
    derived = esp_nn_rates.derive()
    for table, key in ((s3.latency.macs_per_cycle["int8"], "pie-simd"), (s3.latency.fallback["int8"], "scalar")):
        assert table == {k: pytest.approx(derived[key][k], rel=0.005) for k in MAC_KINDS}
    # the derivation in calibration.json is the current one
    stored = json.loads((ROOT / "benchmarks" / "calibration.json").read_text())[esp_nn_rates.KEY]
    assert stored == json.loads(json.dumps(derived))


def test_refit_scales_the_fallback_rates_too(tmp_path):
    s3 = targets.load("esp32-s3")
    estimate = estimate_latency(KWS, s3, "int8").ms
    path = tmp_path / "s3-refit.toml"
    path.write_text(refit(s3, KWS, 2 * estimate, precision="int8"))
    refitted = targets.load(path)
    assert estimate_latency(KWS, refitted, "int8").ms == pytest.approx(2 * estimate, rel=0.01)
    for kind in MAC_KINDS:
        assert refitted.latency.fallback["int8"][kind] == pytest.approx(s3.latency.fallback["int8"][kind] / 2)
        assert refitted.latency.macs_per_cycle["int8"][kind] == pytest.approx(
            s3.latency.macs_per_cycle["int8"][kind] / 2)
    assert refitted.latency.requires == s3.latency.requires


@pytest.mark.parametrize(("new", "message"), [
    ("args = { alpha = [1.0] }", "key 'latency.calibration[0].args.alpha': expected a number (like 0.25), got [1.0]"),
    ("args = { alpa = 1.0 }", "unknown key 'latency.calibration[0].args.alpa'; did you mean "
     "'latency.calibration[0].args.alpha'? builder 'mobilenet-v1' takes: alpha, weight_decay"),
])
def test_calibration_args_are_checked_against_the_builder(tmp_path, new, message):
    path = copy_of(tmp_path, "rpi4", "args = { alpha = 1.0 }", new)
    with pytest.raises(UsageError) as caught:
        targets.load(path)
    assert str(caught.value) == f"{path}: {message}"
