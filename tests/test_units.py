"""One unit convention and the wording of figures (issue 19 items 1 and 5): sizes in B, KiB, MiB and GiB by
magnitude, a measured arena and its margin each said, counts with their plural, Vela's figure without a band."""

from __future__ import annotations

from edgekit import verdict
from edgekit.report import latency as latencies
from edgekit.targets import DeviceClass
from edgekit.units import count_text, kib_text, size_text


def test_sizes_take_the_unit_of_their_magnitude():
    assert [size_text(n) for n in (0, 812, 1024, 14_848, 3_600_000, 3 * 1024**3)] == [
        "0 B", "812 B", "1 KiB", "14.5 KiB", "3.4 MiB", "3 GiB"]
    assert kib_text(576) == "576 KiB" and kib_text(3 * 1024 * 1024) == "3 GiB" and kib_text(1843.2) == "1.8 MiB"


def test_counts_say_one_thread_and_four_threads():
    assert count_text(1, "thread") == "1 thread" and count_text(4, "thread") == "4 threads"


def test_a_ram_check_says_the_measured_arena_and_the_margin_apart():
    check = verdict.quantity("ram", 10.92, 320.0, "KB", "measured", measured=9.1, margin=0.2)
    assert check.summary == "9.1 KiB measured + 20% margin = 10.9 KiB of 320 KiB, 97% headroom"
    plain = verdict.quantity("flash", 3992.0, 3145728.0, "KB", "measured")
    assert plain.summary == "3.9 MiB of 3 GiB, 100% headroom (measured)"
    assert verdict.quantity("latency", None, 50.0, "ms", "estimated").summary == "not measured"


def test_a_vela_figure_has_no_band_of_its_own():
    vela = {"ms": 0.412, "low_ms": 0.412, "high_ms": 0.412, "expected_error": 0.0, "band": "±0%",
            "basis": "estimated"}
    assert latencies.figure(vela, budget=" of 100 ms") == "0.412 ms of 100 ms (Vela's estimate)"
    assert latencies.range_text(vela) == "0.412 ms, Vela's estimate"
    with_cpu = {**vela, "high_ms": 0.6, "low_ms": 0.45, "ms": 0.5}
    assert "±0%" not in latencies.range_text(with_cpu) + latencies.figure(with_cpu)
    cost_model = {"ms": 41.2, "low_ms": 20.6, "high_ms": 61.8, "expected_error": 0.5, "basis": "estimated"}
    assert latencies.figure(cost_model) == "41.2 ms ±50% (estimated)"


def test_device_classes_read_as_nouns():
    assert [c.noun for c in DeviceClass] == ["a phone", "a single-board computer", "a microcontroller"]
