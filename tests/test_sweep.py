"""`edgekit sweep` (issue 10): a 4-point grid on the tiny digits recipe, built by a local process pool and by
a local Ray instance; the early skip; resuming; the grid file's errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY_RECIPE
from test_report_html import Page, _pixels

from edgekit import sweep as sweeps
from edgekit.cli import main
from edgekit.units import size_text

# Whole builds or many trainings: outside the fast selection (pytest -m "not slow"), run by CI.
pytestmark = pytest.mark.slow

TARGET = "nucleo-l4r5zi"  # TFLite Micro: its arena is measured exactly, so fronts compare exactly
GRID = '[grid]\n"model.args.dense_units" = [16, 32]\n"optimize.sparsity" = [0.0, 0.5]\n'
QUICK = (TINY_RECIPE.replace("epochs = 6", "epochs = 2").replace("pruning_epochs = 2", "pruning_epochs = 1"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "recipe.toml").write_text(QUICK)
    (folder / "grid.toml").write_text(GRID)
    return folder


def _sweep(files, out, **options):
    return sweeps.sweep(files / "recipe.toml", [TARGET], files / "grid.toml", files / out, runs=10, warmup=1,
                        **options)


@pytest.fixture(scope="module")
def pool(files):
    return _sweep(files, "pool", workers=2)


@pytest.fixture(scope="module")
def on_ray(files):
    pytest.importorskip("ray")
    return _sweep(files, "ray", workers=2, ray_address="local")


def _figures(summary):
    return {row["point"]: row["targets"][TARGET] for row in summary["points"]}


def test_a_local_pool_and_local_ray_give_the_same_front(pool, on_ray):
    assert [tuple(row["changes"].values()) for row in pool["points"]] == [(16, 0.0), (16, 0.5), (32, 0.0), (32, 0.5)]
    assert pool["per_target"][TARGET]["front"], pool["per_target"]
    assert pool["per_target"] == on_ray["per_target"]
    for name, figures in _figures(pool).items():
        other = _figures(on_ray)[name]
        for key in ("metric", "ram_bytes", "flash_bytes", "latency_ms", "variant", "fits"):
            assert figures[key] == other[key], (name, key)


def test_the_front_holds_no_point_another_beats_everywhere(pool):
    rows = [{"point": name, **figures} for name, figures in _figures(pool).items()]
    front = set(pool["per_target"][TARGET]["front"])
    def better(a, b):  # by more than the measurement noise the front allows
        return a < b * (1 - sweeps.NOISE)

    for row in rows:
        beaten = any(o["metric"] >= row["metric"] and not better(row["latency_ms"], o["latency_ms"])
                     and not better(row["ram_bytes"], o["ram_bytes"])
                     and (o["metric"] > row["metric"] or better(o["latency_ms"], row["latency_ms"])
                          or better(o["ram_bytes"], row["ram_bytes"])) for o in rows if o["fits"])
        assert (row["point"] in front) == (row["fits"] and not beaten), row
    best = pool["per_target"][TARGET]["best"]
    assert _figures(pool)[best]["metric"] == max(r["metric"] for r in rows if r["fits"])


def test_a_resumed_sweep_reruns_nothing_finished(files, pool, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished point ran again")

    monkeypatch.setattr(sweeps, "run_point", must_not_run)
    monkeypatch.setattr(sweeps, "early_check", must_not_run)
    again = _sweep(files, "pool", workers=2)
    assert _figures(again) == _figures(pool) and again["per_target"] == pool["per_target"]
    assert json.loads((files / "pool" / "sweep.json").read_text())["per_target"] == pool["per_target"]


def test_a_point_that_cannot_fit_is_skipped_before_training(files, tmp_path, monkeypatch):
    (tmp_path / "grid.toml").write_text('[grid]\n"model.args.dense_units" = [16, 40000]\n')
    built = []
    monkeypatch.setattr(sweeps, "run_point", lambda mapping, *args: built.append(mapping["name"]) or {
        "targets": {TARGET: {"variant": "int8", "fits": True, "reason": "", "metric": 0.9, "latency_ms": 1.0,
                             "ram_bytes": 1, "flash_bytes": 1, "misses": []}}, "seconds": 10.0})
    summary = sweeps.sweep(files / "recipe.toml", [TARGET], tmp_path / "grid.toml", tmp_path / "out")
    assert built == ["tiny-digits-p00"]
    skipped = summary["points"][1]["skipped"][TARGET]
    assert any(miss.startswith("flash") for miss in skipped), skipped
    assert summary["skipped_points"] == 1 and summary["skip_saved_s_estimate"] == 10.0


@pytest.mark.parametrize(("grid", "message"), [
    ('[grid]\n"optimize.sparsity" = 0.5\n', "grid key 'optimize.sparsity': expected a non-empty list of values"),
    ("[other]\nx = [1]\n", "expected one [grid] table of recipe keys and value lists"),
    ('[grid]\n"optimize.sparsity" = [2.0]\n', "optimize.sparsity"),
])
def test_a_bad_grid_is_one_line_and_exit_2(files, tmp_path, grid, message):
    (tmp_path / "grid.toml").write_text(grid)
    result = CliRunner().invoke(main, ["sweep", "--recipe", str(files / "recipe.toml"), "--target", TARGET,
                                       "--grid", str(tmp_path / "grid.toml"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: ") and message in result.stderr and result.stderr.count("\n") == 1


def test_sweep_html_is_one_self_contained_page_with_the_front_and_every_point(files, pool):
    html = (files / "pool" / "sweep.html").read_text()
    page = Page(html)
    assert not page.misnested and not page.open, (page.misnested, page.open)
    assert f"target-{TARGET}" in page.ids and "grid" in page.ids
    summary = json.loads((files / "pool" / "sweep.json").read_text())
    text = page.visible
    verdict = summary["per_target"][TARGET]
    assert f"Best fitting point: {verdict['best']} (accuracy {verdict['best_metric']:.4f})" in text
    assert f"Pareto front (metric, target latency, RAM): {', '.join(verdict['front'])}" in text
    for row in summary["points"]:  # the table of every point, with sweep.json's figures
        figures = row["targets"][TARGET]
        assert row["point"] in text and f"{figures['metric']:.4f}" in text, row["point"]
        assert f"{figures['latency_ms']:.4g}" in text and size_text(figures["flash_bytes"]) in text
        assert size_text(figures["ram_bytes"]) in text
    # Self-contained: the only references are the embedded figures, and they decode to real pictures.
    assert page.references and all(v.startswith("data:image/png;base64,") for _, _, v in page.references)
    assert not {"script", "link", "iframe", "object", "embed", "base"} & set(page.tags)
    assert "http:" not in html and "https:" not in html and "url(" not in html
    assert len(page.images) == 1
    png = base64.b64decode(page.images[0].removeprefix("data:image/png;base64,"), validate=True)
    assert png == (files / "pool" / "plots" / f"front_{TARGET}.png").read_bytes()
    pixels = _pixels(png)
    assert min(pixels.shape[:2]) > 100 and pixels.std() > 0


def test_sweep_html_lists_the_points_skipped_before_training_with_their_reasons(tmp_path, files, monkeypatch):
    (tmp_path / "grid.toml").write_text('[grid]\n"model.args.dense_units" = [16, 40000]\n')
    monkeypatch.setattr(sweeps, "run_point", lambda mapping, *args: {
        "targets": {TARGET: {"variant": "int8", "fits": True, "reason": "", "metric": 0.9, "latency_ms": 1.0,
                             "ram_bytes": 1, "flash_bytes": 1, "misses": []}}, "seconds": 10.0})
    summary = sweeps.sweep(files / "recipe.toml", [TARGET], tmp_path / "grid.toml", tmp_path / "out")
    text = Page((tmp_path / "out" / "sweep.html").read_text()).visible
    reasons = "; ".join(summary["points"][1]["skipped"][TARGET])
    assert "Skipped before training (1)" in text and f"tiny-digits-p01: {reasons}" in text
    assert summary["points"][1]["seconds"] > 0  # the early check's time is what a skipped point cost


def test_a_built_in_recipe_expands_under_its_own_name():
    points = sweeps.expand("digits-cnn", {"model.args.dense_units": [64, 128]}, {})
    assert [p.name for p in points] == ["digits-cnn-p00", "digits-cnn-p01"]
    assert [p.mapping["model"]["args"]["dense_units"] for p in points] == [64, 128]


def test_the_front_ignores_latency_and_ram_differences_within_measurement_noise():
    """Two points equal in metric and latency whose measured RAM differs by 1.5% (what two identical models
    measured on LiteRT) are both on the front; RAM 20% higher with nothing better is beaten."""
    def row(name, metric, latency, ram):
        return {"point": name, "fits": True, "metric": metric, "latency_ms": latency, "ram_bytes": ram}

    rows = [row("a", 0.98, 0.30, 3_887_104), row("b", 0.98, 0.30, 3_944_448), row("c", 0.98, 0.30, 4_700_000),
            row("d", 0.99, 0.90, 9_000_000), row("e", 0.97, 0.29, 3_900_000)]
    assert sweeps.pareto_front(rows, higher_is_better=True) == ["a", "b", "d"]
    # without the tolerance the noise decides: b drops out, and e (a worse metric, 3% faster) stays
    assert sweeps.pareto_front(rows, higher_is_better=True, noise=0.0) == ["a", "d", "e"]


def test_a_point_is_judged_on_every_target_from_its_one_build(files, pool):
    """run_point builds for the first target and judges the build's files on the others (the build's own
    verified bytes, opened without the child-process guard): the same file, so the same metric and size."""
    from edgekit import recipes

    point = sweeps.expand(files / "recipe.toml", {"model.args.dense_units": [16], "optimize.sparsity": [0.0]}, {})[0]
    assert point.name == "tiny-digits-p00"  # the pool's first point: its build is reused from the cache
    result = sweeps.run_point(point.mapping, [TARGET, "rpi4"], str(files / "pool" / "builds"), 0,
                              recipes.load(files / "recipe.toml").dataset, 10, 1)
    assert result["targets"][TARGET] == _figures(pool)["tiny-digits-p00"]
    report = json.loads((Path(result["build"]) / "report.json").read_text())
    board = result["targets"]["rpi4"]
    variant = next(v for v in report["variants"] if v["name"] == board["variant"])
    assert board["metric"] == variant["metric"]["value"] and board["flash_bytes"] == variant["size_bytes"]
    assert board["latency_ms"] is not None and board["ram_bytes"] > 0 and board["fits"]
