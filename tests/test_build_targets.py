"""`edgekit build --target A --target B` and `edgekit bench --html` (issue 8): one build judged on several
targets, one table across them, a bundle and a verdict card per target. Started from a copy of the tiny
build's folder, so the multi-target build reuses its training (and the shared folder stays as it was)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from click.testing import CliRunner
from test_report_html import Page

from edgekit.cli import main
from edgekit.report.text import cross_target_row

TARGETS = ("rpi4", "nucleo-l4r5zi")


def _build(recipe, out, *targets: str):
    arguments = ["build", "--recipe", str(recipe), "--out", str(out), "--runs", "10", "--warmup", "1"]
    for target in targets:
        arguments += ["--target", str(target)]
    return CliRunner().invoke(main, arguments)


def _table_targets(stdout: str) -> list[str]:
    """The first column of the rows of the table across targets (the one headed "target"), top to bottom: stdout
    is a pipe here, so the table is plain text, one line a row, up to the lines that follow it (Ship: ...)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("target  "))
    rows = []
    for line in lines[start + 1:]:
        if not line or line.startswith(("Ship: ", "Build folder: ")):
            break
        rows.append(re.split(r" {2,}", line)[0])
    return rows


@pytest.fixture(scope="module")
def two_targets(tiny_build, tiny_recipe, tmp_path_factory):
    """The tiny build copied to OUT/tiny-digits-rpi4, then `build --target rpi4 --target nucleo-l4r5zi` into
    OUT: (result, OUT, the multi-target folder OUT/tiny-digits-rpi4-nucleo-l4r5zi, its report)."""
    _, directory, _ = tiny_build
    out = tmp_path_factory.mktemp("targets")
    shutil.copytree(directory, out / directory.name)
    result = _build(tiny_recipe, out, *TARGETS)
    assert result.exit_code == 0, result.output + repr(result.exception)
    folder = out / "tiny-digits-rpi4-nucleo-l4r5zi"
    return result, out, folder, json.loads((folder / "report.json").read_text())


def test_one_training_judged_on_each_target(two_targets):
    _, _, _, report = two_targets
    cache = report["cache"]
    assert cache["reused"] == ["train", "baseline", "optimize"]  # from the single-target folder beside it
    # (its bench results were timed with other --runs, so they are measured again)
    assert cache["computed"] == [f"bench-{t}-{v}" for v in ("float32", "int8", "onnx") for t in TARGETS]
    assert [t["target"] for t in report["targets"]] == list(TARGETS)
    for entry in report["targets"]:
        assert [v["name"] for v in entry["variants"]] == ["float32", "int8", "onnx"]
        assert all(v["target"] == entry["target"] for v in entry["variants"])
        assert entry["selected"] == "int8" and entry["bundle"] == f"bundle/{entry['target']}"
    # One host measurement per artifact serves every target; the verdicts differ by target.
    rpi4, nucleo = ({v["name"]: v for v in t["variants"]} for t in report["targets"])
    assert rpi4["int8"]["latency_ms"] == nucleo["int8"]["latency_ms"]
    assert rpi4["int8"]["target_latency"]["ms"] != nucleo["int8"]["target_latency"]["ms"]
    assert "arena_bytes" in nucleo["int8"]["ram"] and "rss_rise_bytes" in rpi4["int8"]["ram"]
    assert rpi4["int8"]["sparsity"] == nucleo["int8"]["sparsity"]  # over the pruned layers, for both
    # The top level is the first target's, as a single-target report.
    assert report["target"] == "rpi4" and report["variants"] == report["targets"][0]["variants"]


def test_the_table_ranks_targets_by_fit_then_estimated_latency(two_targets):
    result, _, folder, report = two_targets
    rows = report["cross_target"]
    assert {row["target"] for row in rows} == set(TARGETS)
    order = [(not row["fits"], row["latency_ms_estimate"]) for row in rows]
    assert order == sorted(order)
    assert _table_targets(result.stdout) == [row["target"] for row in rows]
    assert result.stdout.strip().splitlines()[-1] == f"Build folder: {folder}"
    selected = {t["target"]: next(v for v in t["variants"] if v["name"] == t["selected"]) for t in report["targets"]}
    budgets = {t["target"]: t["budgets"] for t in report["targets"]}
    for row in rows:
        assert row["latency_ms_estimate"] == selected[row["target"]]["target_latency"]["ms"]
        assert row["flash_bytes"] == selected[row["target"]]["size_bytes"]
        assert row["budgets"] == budgets[row["target"]]  # every figure sits beside its budget
        assert f"of {budgets[row['target']]['latency_ms']:g} ms" in " ".join(cross_target_row(row))


def test_a_bundle_per_target_in_the_manifest(two_targets):
    _, _, folder, _ = two_targets
    assert (folder / "bundle" / "rpi4" / "bench_on_device.py").is_file()
    assert (folder / "bundle" / "nucleo-l4r5zi" / "model_data.cc").is_file()
    assert not [f for f in (folder / "bundle").iterdir() if f.is_file()]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [t["name"] for t in manifest["targets"]] == list(TARGETS)
    assert manifest["fits"] == {t: {"selected": "int8", "fits": True} for t in TARGETS}
    assert {"bundle/rpi4/bench_on_device.py", "bundle/nucleo-l4r5zi/model_data.cc"} <= set(manifest["files"])
    verified = CliRunner().invoke(main, ["verify", str(folder)])
    assert verified.exit_code == 0, verified.output


def test_the_page_has_the_table_and_a_card_per_target(two_targets):
    _, _, folder, report = two_targets
    page = Page((folder / "report.html").read_text())
    assert not page.misnested and not page.open
    assert {"targets", "verdict", *(f"target-{t}" for t in TARGETS)} <= set(page.ids)
    text = page.visible
    assert f"Across targets ({len(TARGETS)})" in text
    for row in report["cross_target"]:
        assert f"{row['latency_ms_estimate']:.3g} ms" in text
    markdown = CliRunner().invoke(main, ["report", str(folder), "--format", "md"]).stdout
    assert "## Across targets" in markdown and markdown.count("| int8 |") >= len(TARGETS)


def test_adding_a_target_benchmarks_only_for_it_and_a_miss_exits_3(two_targets, tiny_recipe, tmp_path):
    from edgekit import targets

    _, _, folder, _ = two_targets
    copy = tmp_path / "out"
    shutil.copytree(folder, copy / folder.name)
    grown = copy / f"{folder.name}-slow-pi"
    board = tmp_path / "slow-pi.toml"
    board.write_text(targets.load("rpi4").file.read_text().replace('name = "rpi4"', 'name = "slow-pi"')
                     .replace("latency_ms = 50", "latency_ms = 1e-6"))
    result = _build(tiny_recipe, copy, *TARGETS, board)
    assert result.exit_code == 3, result.output
    report = json.loads((grown / "report.json").read_text())
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: the build is complete in {grown}, but int8 does not fit slow-pi: "
        + next(c["summary"] for t in report["targets"] if t["target"] == "slow-pi" for v in t["variants"]
               if v["name"] == "int8" for c in v["fit"]["checks"] if c["ok"] is False))
    assert report["cache"]["computed"] == [f"bench-slow-pi-{v}" for v in ("float32", "int8", "onnx")]
    assert _table_targets(result.stdout)[-1] == "slow-pi"  # the table is printed, the miss ranked last
    assert (grown / "bundle" / "slow-pi" / "run.sh").is_file()
    assert report["cache"]["reused"][:3] == ["train", "baseline", "optimize"]  # from the two-target folder


def test_bench_writes_the_page_across_targets(tiny_build, tmp_path):
    _, directory, _ = tiny_build
    page_file = tmp_path / "bench.html"
    result = CliRunner().invoke(main, ["bench", str(directory / "int8.tflite"), "--target", "nucleo-l4r5zi",
                                       "--target", "rpi4", "--runs", "10", "--warmup", "1", "--flash-kb", "1",
                                       "--html", str(page_file)])
    assert result.exit_code == 3, result.output  # 1 KB of flash: neither fits
    page = Page(page_file.read_text())
    assert not page.misnested and {"targets", "target-rpi4", "target-nucleo-l4r5zi"} <= set(page.ids)
    assert not page.references and not page.images
    assert "edgekit bench: int8.tflite on rpi4, nucleo-l4r5zi" in page.visible and "flash 1 KiB" in page.visible
    assert result.stderr.splitlines()[-2:] == [f"HTML: {page_file}", result.stderr.splitlines()[-1]]
    # The terminal table, and the page's cards, by fit, then estimated latency (not in the order asked for).
    assert _table_targets(result.stdout) == ["rpi4", "nucleo-l4r5zi"]
    assert [i for i in page.ids if i.startswith("target-")] == ["target-rpi4", "target-nucleo-l4r5zi"]


def test_every_target_is_checked_before_training(tiny_recipe, tmp_path):
    recipe = tmp_path / "tiny-int16.toml"
    recipe.write_text(tiny_recipe.read_text().replace('name = "tiny-digits"', 'name = "tiny-int16"')
                      .replace("[optimize]\n", '[optimize]\nquantize = "int16x8"\n'))
    result = _build(recipe, tmp_path / "out", "nucleo-l4r5zi", "rpi4")  # the one it cannot run first
    assert result.exit_code == 2, result.output
    assert result.stderr == ("Error: target 'nucleo-l4r5zi' runs int8 with tflite-micro; this build produces "
                             "int16x8 and float32 TFLite models\n")
    assert not (tmp_path / "out").exists()  # nothing trained, no folder
    every = CliRunner().invoke(main, ["build", "--recipe", str(recipe), "--out", str(tmp_path / "out"),
                                      "--target", "all"])
    # the first built-in target (by name) that runs int8 only
    assert every.exit_code == 2 and every.stderr.startswith("Error: target 'alif-ensemble-e7' runs int8 ")


def test_repeated_targets_keep_the_order_first_given(two_targets, tiny_recipe):
    """rpi4, nucleo-l4r5zi, rpi4 is rpi4 then nucleo-l4r5zi: the first target given leads the build."""
    from edgekit import recipes, targets
    from edgekit.build import build

    _, out, folder, _ = two_targets
    rpi4, nucleo = targets.load("rpi4"), targets.load("nucleo-l4r5zi")
    result = build(recipes.load(tiny_recipe), [rpi4, nucleo, rpi4], out, runs=10, warmup=1)
    report = json.loads((result.directory / "report.json").read_text())
    assert report["target"] == "rpi4" and [t["target"] for t in report["targets"]] == list(TARGETS)
    assert [t.name for t in result.targets] == list(TARGETS) and result.directory == folder
    assert report["cache"]["computed"] == []  # every stage of this very build was cached


def test_bench_json_is_one_result_a_target(tiny_build):
    _, directory, _ = tiny_build
    for names in (["rpi4"], ["rpi4", "nucleo-l4r5zi"]):
        arguments = ["bench", str(directory / "int8.tflite"), "--runs", "10", "--warmup", "1", "--json"]
        result = CliRunner().invoke(main, arguments + [part for name in names for part in ("--target", name)])
        assert result.exit_code == 0, result.output
        assert [r["target"] for r in json.loads(result.stdout)] == names


def test_compare_judges_a_measurement_against_the_target_it_ran_on(two_targets, tmp_path):
    from edgekit.compare import compare
    from edgekit.errors import UsageError

    _, _, folder, report = two_targets
    log = tmp_path / "serial.log"
    log.write_text("".join(f'{{"run": {i}, "latency_ms": 40.0}}\n' for i in range(5)))
    nucleo = next(t for t in report["targets"] if t["target"] == "nucleo-l4r5zi")
    estimate = next(v for v in nucleo["variants"] if v["name"] == "int8")["target_latency"]["ms"]
    comparison = compare(folder, log, "int8", "nucleo-l4r5zi")
    assert comparison["target"] == "nucleo-l4r5zi" and comparison["estimate"]["ms"] == pytest.approx(estimate)
    # by default the first of the build's targets a serial log can belong to: the microcontroller, not the lead
    assert compare(folder, log, "int8")["target"] == "nucleo-l4r5zi"
    with pytest.raises(UsageError, match="serial.log cannot be a measurement of rpi4: the result ran TFLite Micro"):
        compare(folder, log, "int8", "rpi4")
    with pytest.raises(UsageError, match="not made for target 'esp32-s3'; it was for rpi4, nucleo-l4r5zi"):
        compare(folder, log, "int8", "esp32-s3")
