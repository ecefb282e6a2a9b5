"""Every target's latency model reproduces the published measurements it cites, within its own stated
expected error; the ones without measurements say how they were derived."""

from __future__ import annotations

import pytest
from calibration import estimated_ms, point_info

from edgekit import targets

# Whole builds or many trainings: outside the fast selection (pytest -m "not slow"), run by CI.
pytestmark = pytest.mark.slow

POINTS = [(t.name, i) for t in targets.load_all() for i in range(len(t.latency.calibration))]


def test_every_target_has_a_latency_model_with_a_method():
    for target in targets.load_all():
        model = target.latency
        assert model is not None, target.name
        assert "int8" in model.macs_per_cycle, target.name
        assert model.calibration or model.method.startswith("Derived"), target.name


def test_the_microcontrollers_are_calibrated_on_the_shared_points():
    """calibration.md's points: the MLPerf Tiny L4R5 submission and the TinyEngine H743 table."""
    l4r5 = targets.load("nucleo-l4r5zi").latency.calibration
    assert sorted(p.published_ms for p in l4r5) == [10.05, 181.92, 600.6, 704.23]
    h743 = targets.load("stm32h743").latency.calibration
    assert sorted(p.published_ms for p in h743) == [53.0, 97.0, 478.0]


@pytest.mark.parametrize(("name", "index"), POINTS, ids=[f"{n}-{i}" for n, i in POINTS])
def test_calibration_point_is_reproduced_within_the_expected_error(name, index):
    target = targets.load(name)
    point = target.latency.calibration[index]
    if not point.proxy:
        assert point_info(point).macs == pytest.approx(point.macs, rel=0.001), "a different model was measured"
    estimate = estimated_ms(point, target)
    error = estimate / point.published_ms - 1
    assert abs(error) <= target.latency.expected_error, f"{estimate:.1f} ms vs {point.published_ms} ms"


def test_an_estimate_scales_with_clock_and_carries_its_label():
    from edgekit.estimate import estimate_latency

    target = targets.load("nucleo-l4r5zi")
    info = point_info(target.latency.calibration[0])
    at_120 = estimate_latency(info, target, "int8")
    at_60 = estimate_latency(info, target, "int8", clock_mhz=60)
    assert at_60.ms == pytest.approx(2 * at_120.ms)
    assert at_120.basis == "estimated" and "per-op cost model" in at_120.method
    assert at_120.low_ms < at_120.ms < at_120.high_ms
    assert sum(op.ms for op in at_120.per_op) == pytest.approx(at_120.ms)
    assert estimate_latency(info, target, "int16x8") is None  # no constants: no figure, not a guess
