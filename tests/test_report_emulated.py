"""Every report says what a target latency is: emulated (instructions counted on an emulated Cortex-M core x
the core's fitted CPI / clock) or estimated (the profile's cost model), with its band, and for an emulated one
the instructions and what counted them; an emulated RAM figure is the 32-bit arena, the host's beside it.

Asserted on `edgekit bench kws.tflite --target nucleo-l4r5zi --target esp32-s3 --target rpi4 --json` (the
MLPerf Tiny KWS DS-CNN, int8), captured from a real run into tests/data/bench_kws_emulated.json: nucleo-l4r5zi
ran on an emulated Cortex-M4 (QEMU), esp32-s3 (Xtensa) and rpi4 kept their cost-model estimates. Nothing here
needs the emulator or TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_report_contract import actual, documented

from edgekit import targets
from edgekit.bench import BenchResult
from edgekit.report import html, plots
from edgekit.report import latency as latencies
from edgekit.report.contract import cross_target
from edgekit.report.terminal import bench_text
from edgekit.report.text import CROSS_TARGET_COLUMNS, cross_target_row, variant_row
from edgekit.results import TargetResult, of_file, ranked_targets

DATA = Path(__file__).parent / "data" / "bench_kws_emulated.json"
COUNTED = ("7,700,229 instructions counted on an emulated Cortex-M4 (QEMU 7.2.22 mps2-an386; tflite-micro 90b983c, "
           "CMSIS-NN 4ab83cc) x 1.88 cycles per instruction (fitted) / 120 MHz")


@pytest.fixture(scope="module")
def captured() -> dict[str, dict[str, Any]]:
    """The bench results by target, as `edgekit bench --json` printed them."""
    return {result["target"]: result for result in json.loads(DATA.read_text())}


@pytest.fixture(scope="module")
def judged(captured) -> list[TargetResult]:
    return ranked_targets([of_file(BenchResult.from_dict(r), targets.load(name)) for name, r in captured.items()])


def _variant(judged: list[TargetResult], name: str) -> dict[str, Any]:
    """The target's variant as report.json holds it (JSON: lists, not tuples)."""
    return json.loads(json.dumps(next(t for t in judged if t.name == name).selected.to_dict()))


def test_the_capture_is_an_emulated_and_two_estimated_targets(captured):
    nucleo = captured["nucleo-l4r5zi"]["target_latency"]
    assert nucleo["basis"] == "emulated" and nucleo["instructions"] == 7700229 and nucleo["band"] == "x/÷1.7"
    assert captured["nucleo-l4r5zi"]["ram"]["basis"] == "emulated"
    assert {captured[t]["target_latency"]["basis"] for t in ("esp32-s3", "rpi4")} == {"estimated"}


def test_bench_text_says_emulated_with_its_band_count_and_arena(judged):
    text = bench_text("kws.tflite", [t.selected.measured for t in judged], judged)
    lines = text.splitlines()
    assert ("target latency on nucleo-l4r5zi: 121 ms emulated (72.8-200 ms, x/÷1.7), TFLite Micro with CMSIS-NN "
            "(tflite-micro 90b983c, CMSIS-NN 4ab83cc)") in lines
    assert f"  {COUNTED}" in lines
    assert ("RAM on nucleo-l4r5zi: 22,928 B, the 32-bit tensor arena TFLite Micro used on an emulated Cortex-M4 "
            "(22,916 B, rounded up to 16); 24,368 B on this host (64-bit)") in lines
    assert ("target latency on esp32-s3: 10.5 ms estimated (4.19-16.8 ms, ±60%), TFLite Micro with ESP-NN "
            "kernels (PIE SIMD)") in lines
    assert not any(line.startswith(("RAM on esp32-s3", "RAM on rpi4")) for line in lines)
    assert text.count("instructions counted") == 1
    assert "latency (target)" in text and "est." not in text


def test_the_rows_across_targets_carry_basis_band_and_instructions(judged, captured):
    rows = {row["target"]: row for row in cross_target(judged)}
    nucleo, esp32 = rows["nucleo-l4r5zi"], rows["esp32-s3"]
    estimate = captured["nucleo-l4r5zi"]["target_latency"]
    assert (nucleo["latency_basis"], nucleo["latency_band"], nucleo["latency_instructions"]) == \
        ("emulated", "x/÷1.7", 7700229)
    assert (nucleo["latency_low_ms"], nucleo["latency_high_ms"]) == (estimate["low_ms"], estimate["high_ms"])
    assert nucleo["ram_basis"] == "emulated" and nucleo["ram_bytes"] == 22928
    assert (esp32["latency_basis"], esp32["latency_band"], esp32["latency_instructions"], esp32["ram_basis"]) == \
        ("estimated", "±60%", None, "measured")
    cells = dict(zip(CROSS_TARGET_COLUMNS, cross_target_row(nucleo), strict=True))
    assert cells["latency (target)"] == "121 ms x/÷1.7 of 1000 ms (emulated)"
    assert cells["RAM"] == "22.4 KiB of 576 KiB (emulated)"
    cells = dict(zip(CROSS_TARGET_COLUMNS, cross_target_row(esp32), strict=True))
    assert cells["latency (target)"] == "10.5 ms ±60% of 1000 ms (estimated)" and cells["RAM"] == "28.6 KiB of 320 KiB"


def test_a_row_of_a_report_written_before_emulation_reads_as_estimated(judged):
    row = {k: v for k, v in cross_target(judged)[0].items() if k not in ("latency_basis", "latency_band")}
    row.update(latency_ms_estimate=41.2, latency_expected_error=0.3)
    assert cross_target_row(row)[3] == "41.2 ms ±30% of 50 ms (estimated)"  # rpi4 leads the ranking


def test_the_variant_table_cell_names_the_basis(judged):
    assert variant_row(_variant(judged, "nucleo-l4r5zi"))[8] == "121 x/÷1.7 (emulated)"
    assert variant_row(_variant(judged, "rpi4"))[8] == "0.4 ±50% (estimated)"


def test_the_documented_fields_cover_an_emulated_variant_and_row(judged):
    """docs/report-json.md lists every field an emulated target adds, with its type (a variant as a build
    writes it: bench's result plus the build's own fields, which this capture lacks)."""
    fields = documented()
    variants = [{k: v for k, v in _variant(judged, t.name).items() if k not in ("verification", "metric")}
                for t in judged]
    found = actual({"metric": "accuracy", "variants": variants, "cross_target": cross_target(judged)}, fields)
    assert not sorted(set(found) - set(fields)), "fields not in docs/report-json.md"
    for path, value in found.items():
        assert {"bool": "boolean", "int": "integer", "float": "number", "str": "string", "NoneType": "null",
                "list": "list", "dict": "object"}[type(value).__name__] in fields[path][0], path
    emulated = [path for path, (_, present) in fields.items() if present in ("emulated", "emulated Cortex-M")]
    assert len(emulated) >= 10 and not [path for path in emulated if path not in found]


def test_the_per_op_chart_shows_instructions_counted_on_the_emulated_core(judged, monkeypatch):
    from matplotlib.axes import Axes

    variant = _variant(judged, "nucleo-l4r5zi")
    rows = plots.op_rows(variant)
    assert [r["instructions"] for r in rows] == [op["instructions"] for op in variant["target_latency"]["per_op"]]
    assert rows[0]["instructions"] == 1118452
    labels: list[str] = []

    def recording(original):
        def record(self, text, *args, **kwargs):
            labels.append(text)
            return original(self, text, *args, **kwargs)
        return record

    for name in ("set_title", "set_xlabel"):
        monkeypatch.setattr(Axes, name, recording(getattr(Axes, name)))
    assert plots.op_breakdown(variant, "nucleo-l4r5zi").startswith(b"\x89PNG")
    assert "instructions per op, counted (x CPI / clock = ms)" in labels
    assert "7,700,229 instructions counted on an emulated Cortex-M4\nnucleo-l4r5zi: 121 ms x/÷1.7 (emulated)" in labels
    assert not any("estimated" in label or "±" in label for label in labels)
    labels.clear()
    plots.op_breakdown(_variant(judged, "esp32-s3"), "esp32-s3")
    assert "10.5 ms ±60% (estimated) on esp32-s3" in labels and "estimated ms per op" in labels


def test_the_ram_of_an_emulated_core_is_its_arena_not_the_hosts_split(judged):
    variant = _variant(judged, "nucleo-l4r5zi")
    parts = plots.ram_parts(variant["ram"])
    assert parts == [("tensor arena (emulated core, 32-bit)", 22928)] and variant["ram"]["arena_bytes"] == 22916
    assert variant["ram"]["persistent_bytes"] + variant["ram"]["nonpersistent_bytes"] == 24368  # the host's split
    report = {"target": "nucleo-l4r5zi", "budgets": {"ram_kb": 576.0, "flash_kb": 1792.0}}
    assert plots.memory(report, variant).startswith(b"\x89PNG")


def _report(judged: list[TargetResult], name: str) -> dict[str, Any]:
    """The fields of report.json the page's per-op, memory and method sections read."""
    variant = _variant(judged, name)
    return {"target": name, "variants": [variant], "selected": variant["name"], "metric": "accuracy",
            "budgets": {"latency_ms": 1000.0, "ram_kb": 576.0, "flash_kb": 1792.0},
            "host": {"cpu": "cpu", "cores": 2, "system": "Linux", "python": "3.11"}, "dataset": {"test": 1},
            "targets": [{"target": t.name, "variants": [_variant(judged, t.name)]} for t in judged]}


def test_the_page_names_the_emulated_figures_and_what_made_them(judged):
    report = _report(judged, "nucleo-l4r5zi")
    ops = html._ops(report, {})
    assert ("Emulated for nucleo-l4r5zi: 120.7 ms (x/÷1.7, 72.79 to 200 ms) on an emulated Cortex-M4 (QEMU 7.2.22 "
            "mps2-an386; tflite-micro 90b983c, CMSIS-NN 4ab83cc): 7,700,229 instructions counted") in ops
    assert "<th>instructions</th>" in ops and "1,118,452" in ops and "emulated ms" in ops
    assert "est. ms" not in ops and "±" not in ops
    memory = html._memory(report, {})
    assert "RAM: tensor arena (emulated core, 32-bit)</td><td>22.4 KiB" in memory
    assert "tensor arena on this host (64-bit; Cortex-M4&#x27;s replaces it)</td><td>23.8 KiB" in memory
    assert "RAM (emulated): the arena TFLite Micro used" in memory
    method = html._method(report)
    assert "Target latency on nucleo-l4r5zi: emulated." in method
    assert "an emulated Cortex-M4 (QEMU 7.2.22 mps2-an386; tflite-micro 90b983c, CMSIS-NN 4ab83cc)" in method
    assert "Target latency on rpi4, esp32-s3: an estimate" in method
    page = html.render_targets_html(judged)
    assert "121 ms x/÷1.7 of 1000 ms (emulated)" in page and "10.5 ms ±60% of 1000 ms (estimated)" in page
    assert "Latency is counted on an emulated core" in page and "emulated or estimated, as each figure says" in page


def test_an_estimated_target_keeps_the_cost_model_wording(judged):
    report = _report(judged, "esp32-s3")
    ops = html._ops(report, {})
    assert "Estimated for esp32-s3: 10.48 ms (±60%, 4.194 to 16.77 ms): per-op cost model" in ops
    assert "estimated ms" in ops and "<th>instructions</th>" not in ops and "instructions counted and" not in ops
    assert "RAM and flash are measured; latency is an estimate, with its band." == \
        latencies.figures_note(["estimated"], ["measured"])


def _build(folder: Path, judged: list[TargetResult], name: str) -> Path:
    """A build folder as compare reads it: report.json only (no model file: the stored figure stands)."""
    folder.mkdir()
    report = _report(judged, name)
    lead = {"target": name, "variants": report["variants"], "selected": report["selected"]}
    (folder / "report.json").write_text(json.dumps({**report, "targets": [lead], "schema_version": 2}))
    return folder


def _serial(folder: Path, ms: float) -> Path:
    log = folder / f"serial-{ms}.log"
    log.write_text("".join(f'{{"run": {i}, "latency_ms": {ms}, "arena_used": 23000}}\n' for i in range(3)))
    return log


@pytest.mark.parametrize("measured, within", [(190.0, "yes"), (75.0, "yes"), (70.0, "no"), (210.0, "no")])
def test_compare_judges_an_emulated_figure_by_its_band(judged, tmp_path, measured, within):
    from edgekit.compare import compare

    build = _build(tmp_path / "build", judged, "nucleo-l4r5zi")
    comparison = compare(build, _serial(tmp_path, measured))
    latency, memory = comparison["rows"]
    assert comparison["estimate"]["basis"] == "emulated"
    assert latency["estimate"] == "121 ms emulated (1 thread, 7,700,229 instructions)"
    assert latency["within"] == within and latency["expected"] == "x/÷1.7: 72.8-200 ms"
    assert memory["estimate"] == "22.4 KiB (emulated 32-bit arena; 23.8 KiB on the host)"


@pytest.mark.parametrize("measured, within", [(5.0, "yes"), (20.0, "no")])
def test_compare_judges_an_estimate_by_its_low_and_high(judged, tmp_path, measured, within):
    """Within means low_ms <= measured <= high_ms for an estimate too (10.5 ms ±60%: 4.19 to 16.8 ms;
    |estimate / measured - 1| <= 60% would say no to 5 ms and yes to 20 ms)."""
    from edgekit.compare import compare

    build = _build(tmp_path / "build", judged, "esp32-s3")
    latency = compare(build, _serial(tmp_path, measured))["rows"][0]
    assert latency["estimate"].startswith("10.5 ms estimated") and latency["within"] == within
    assert latency["expected"] == "±60%: 4.19-16.8 ms"


def test_report_md_says_how_each_target_latency_was_made(judged):
    from edgekit.report.text import to_markdown

    report = {**_report(judged, "nucleo-l4r5zi"), "recipe": "kws", "task": "classification", "seed": 0,
              "selection_reason": "the model benchmarked", "training": {},
              "dataset": {"name": "kws", "train": 1, "val": 1, "test": 1},
              "cross_target": json.loads(json.dumps(cross_target(judged)))}
    text = to_markdown(report)
    assert "| target ms |" in text and "| 121 x/÷1.7 (emulated) |" in text and "(est.)" not in text
    assert "- Target latency on nucleo-l4r5zi: emulated. The bundle's program ran on an emulated Cortex-M4 (QEMU " \
           "7.2.22 mps2-an386; tflite-micro 90b983c, CMSIS-NN 4ab83cc)" in text
    assert "- Target latency on rpi4, esp32-s3: an estimate from the target profile's per-op cost model" in text
    assert "- RAM on nucleo-l4r5zi: 22,928 B, the 32-bit tensor arena" in text
    assert ("| nucleo-l4r5zi | yes | kws.tflite | 121 ms x/÷1.7 of 1000 ms (emulated) | 22.4 KiB of 576 KiB "
            "(emulated) |") in text


def test_an_estimate_made_without_the_emulator_reads_as_estimated_with_its_multiplicative_band():
    """A core edgekit emulates, benched where the emulator is missing: estimated, the band x/÷f."""
    from edgekit.estimate import LatencyEstimate

    estimate = LatencyEstimate(ms=100.0, low_ms=40.0, high_ms=250.0, precision="int8", threads=1,
                               runtime="TFLite Micro with CMSIS-NN (not run: estimated)", expected_error=1.5,
                               method="no qemu-system-arm. Estimated: ...", per_op=(), error_factor=2.5).to_dict()
    assert latencies.figure(estimate) == "100 ms x/÷2.5 (estimated)" and latencies.counted(estimate) is None
    assert [latencies.within(estimate, ms) for ms in (39.0, 40.0, 250.0, 251.0)] == [False, True, True, False]
    assert latencies.method_lines([("nucleo-l4r5zi", estimate)]) == [
        "Target latency on nucleo-l4r5zi: estimated, not emulated (each figure's method says why and how), with a "
        "multiplicative band (x/÷2.5)."]


def test_only_the_cost_models_figures_say_what_limits_an_op(judged):
    counted = html._ops(_report(judged, "nucleo-l4r5zi"), {})  # instructions counted: no roofline, no bound
    assert "bound" not in counted and "limited by" not in counted.lower()
    estimated = html._ops(_report(judged, "esp32-s3"), {})
    assert "<th>limited by</th>" in estimated and html.escape(html.BOUND_NOTE) in estimated
    scaled = _report(judged, "esp32-s3")  # instructions scaled from MACs where no emulator ran (edgekit.cycles)
    latency = scaled["variants"][0]["target_latency"]
    latency["per_op"] = [{**op, "bound": "scaled"} for op in latency["per_op"]]
    assert "limited by" not in html._ops(scaled, {}).lower()
