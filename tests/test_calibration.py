"""Every target's latency model reproduces the published measurements it cites, within its own stated
expected error; the ones without measurements say how they were derived."""

from __future__ import annotations

import pytest
from calibration import estimated_ms, point_info

from edgekit import targets

# Whole builds or many trainings: outside the fast selection (pytest -m "not slow"), run by CI.
pytestmark = pytest.mark.slow

POINTS = [(t.name, i) for t in targets.load_all() if t.latency for i in range(len(t.latency.calibration))]


def test_every_target_has_a_latency_model_with_a_method_or_an_emulated_core():
    from edgekit.cycles import cpi_table
    from edgekit.runtimes.emulated import emulable_core

    for target in targets.load_all():
        core = emulable_core(target)
        if core is not None:  # counted on the emulated core, timed with its CPI
            assert target.latency is None and core.name in cpi_table(), target.name
            continue
        model = target.latency
        if model is None:  # a Cortex-A profile with no cost model to fall back to: counted on its emulated core
            assert target.cpu.emulated_as, target.name
            continue
        assert "int8" in model.macs_per_cycle, target.name
        assert model.calibration or model.method.startswith("Derived"), target.name


def test_the_emulated_cores_cpi_is_fitted_on_the_shared_points_and_reproduced():
    """calibration.md's points: the MLPerf Tiny L4R5 submission and the TinyEngine H743 table; the stored
    fit is what benchmarks/fit_cpi.py computes from the stored counts."""
    import json

    import fit_cpi

    from edgekit.cycles import cpi_table

    published = sorted(point[3] for point in fit_cpi.POINTS)
    assert published == [10.05, 53.0, 97.0, 181.92, 478.0, 600.6, 704.23]
    cpi7, g2020 = fit_cpi.fit(fit_cpi.observations(json.loads(fit_cpi.COUNTS.read_text())))
    table = cpi_table()
    assert table["Cortex-M7"].cpi == pytest.approx(cpi7) and table["Cortex-M7"].basis == "fitted"
    assert table["Cortex-M4"].cpi == pytest.approx(cpi7 * fit_cpi.M4_PER_M7)
    assert g2020 > 1  # the 2020 kernels executed more instructions than today's
    assert all(entry.error_factor > 1 for entry in table.values())
    assert {name for name, entry in table.items() if entry.basis == "derived"} == {
        "Cortex-M0+", "Cortex-M3", "Cortex-M33", "Cortex-M55", "Cortex-M85"}


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

    target = targets.load("rpi4")  # the MCUs are emulated now; the boards keep a cost model
    info = point_info(target.latency.calibration[0])
    at_120 = estimate_latency(info, target, "int8")
    at_60 = estimate_latency(info, target, "int8", clock_mhz=target.cpu.clock_mhz / 2)
    assert at_60.ms == pytest.approx(2 * at_120.ms)
    assert at_120.basis == "estimated" and "per-op cost model" in at_120.method
    assert at_120.low_ms < at_120.ms < at_120.high_ms
    assert sum(op.ms for op in at_120.per_op) == pytest.approx(at_120.ms)
    assert estimate_latency(info, target, "int16x8") is None  # no constants: no figure, not a guess
