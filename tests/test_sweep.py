"""`edgekit sweep` (issue 10): a 4-point grid on the tiny digits recipe, built by a local process pool and by
a local Ray instance; the early skip; resuming; the grid file's errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import TINY_RECIPE

from edgekit import sweep as sweeps
from edgekit.cli import main

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
    for row in rows:
        beaten = any(o["metric"] >= row["metric"] and o["latency_ms"] <= row["latency_ms"]
                     and o["ram_bytes"] <= row["ram_bytes"] and (o["metric"], o["latency_ms"], o["ram_bytes"])
                     != (row["metric"], row["latency_ms"], row["ram_bytes"]) for o in rows if o["fits"])
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


def test_a_built_in_recipe_expands():
    """A point's recipe is validated under its own name, not as the built-in file it came from (which must
    carry the file's name): `edgekit sweep --recipe digits-cnn` exited 2 before any work."""
    from edgekit.sweep import expand

    points = expand("digits-cnn", {"optimize.sparsity": [0.0, 0.75]}, {})
    assert [p.name for p in points] == ["digits-cnn-p00", "digits-cnn-p01"]
    assert [p.mapping["optimize"]["sparsity"] for p in points] == [0.0, 0.75]
