"""`edgekit sweep`: a grid of recipe variations, each point an ordinary build, judged against several targets.

A grid file varies recipe keys, written as dotted paths of the recipe's TOML:

    [grid]
    "model.args.filters" = [[8, 16], [16, 32]]
    "optimize.sparsity" = [0.0, 0.5]

Every combination becomes a recipe (checked exactly as a recipe file is) and a build. Before any training,
each point's untrained model is converted to its shipping precision and benchmarked against every target:
flash, RAM and the latency estimate do not depend on the weights' values, so a point that cannot fit any
target is skipped with the reasons. The rest run in a local process pool, or as Ray tasks. A finished point
keeps its result in `points/NAME.json` under a key of its inputs, so a re-run does only what is left.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit import _toml
from edgekit._files import write_atomic, write_json
from edgekit.errors import BudgetError, EdgekitError, UsageError, require_file

if TYPE_CHECKING:
    from edgekit.results import TargetResult

log = logging.getLogger("edgekit")

RESULT_VERSION = 1


@dataclass(frozen=True)
class Point:
    name: str  # the recipe name of this point's build: <recipe>-p<index>
    changes: dict[str, Any]  # dotted recipe key -> value
    mapping: dict[str, Any]  # the whole recipe, as TOML would hold it
    key: str  # sha256 of everything the point's result depends on


def load_grid(path: str | Path) -> dict[str, list[Any]]:
    """The [grid] table of a grid file: dotted recipe key -> the values to try (a non-empty list)."""
    path = Path(path)
    require_file(path, "grid file")
    top = _toml.read(path)
    unknown = sorted(set(top) - {"grid"})
    if unknown or not isinstance(top.get("grid"), dict) or not top["grid"]:
        extra = f"; unknown: {', '.join(unknown)}" if unknown else ""
        raise UsageError(f"{path}: expected one [grid] table of recipe keys and value lists, e.g. "
                         f"\"optimize.sparsity\" = [0.0, 0.5]{extra}")
    for key, values in top["grid"].items():
        if not isinstance(values, list) or not values:
            raise UsageError(f"{path}: grid key '{key}': expected a non-empty list of values, got {values!r}")
    return top["grid"]


def expand(recipe_ref: str | Path, grid: dict[str, list[Any]], fingerprint: dict[str, Any]) -> list[Point]:
    """One Point a combination of the grid's values, in grid order; each is validated as a recipe."""
    from edgekit import recipes

    path = _toml.resolve("models", "recipe", recipe_ref, "edgekit models")
    base = _toml.read(path)
    points = []
    for index, values in enumerate(itertools.product(*grid.values())):
        changes = dict(zip(grid, values, strict=True))
        mapping = copy.deepcopy(base)
        for key, value in changes.items():
            _set(mapping, key, value, path)
        mapping["name"] = f"{base['name']}-p{index:02d}"
        # Named by file name only: a built-in recipe's full path would make the check demand the file's own name.
        recipes.from_mapping(mapping, f"{path.name} with {json.dumps(changes)}")  # fails here, before any work
        key = hashlib.sha256(json.dumps({"recipe": mapping, **fingerprint}, sort_keys=True,
                                        default=str).encode()).hexdigest()
        points.append(Point(mapping["name"], changes, mapping, key))
    return points


def _set(mapping: dict[str, Any], dotted: str, value: Any, path: Path) -> None:
    *parents, leaf = dotted.split(".")
    table = mapping
    for part in parents:
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise UsageError(f"grid key '{dotted}': '{part}' is not a table in recipe {path}")
    table[leaf] = value


def early_check(point: Point, spec: str, target_refs: list[str]) -> dict[str, dict[str, Any]]:
    """Per target: whether the point's untrained model, converted to the precision the build ships, fits
    flash, RAM (TFLite Micro arena or LiteRT process memory, measured) and the latency estimate."""
    import tempfile

    import numpy as np

    from edgekit import bench, convert, data, recipes, targets, zoo

    recipe = recipes.from_mapping(point.mapping, point.name)
    dataset = data.load(spec, input_shape=recipe.input_shape, task=recipe.task)
    model = zoo.build_model(recipe.builder, dataset.input_shape, dataset.num_classes, recipe.builder_args)
    representative = np.random.default_rng(0).standard_normal((32, *dataset.input_shape)).astype(np.float32)
    fmt = "tflite-int16x8" if recipe.optimize.quantize == "int16x8" else "tflite-int8"
    # Not verified: an untrained model's outputs are near uniform, so agreement with Keras means nothing here;
    # only the file's size and the memory it needs are used, and neither depends on the weights' values.
    content = convert.FORMATS[fmt].make(model, representative)
    chosen = [targets.load(ref) for ref in target_refs]
    with tempfile.TemporaryDirectory(prefix="edgekit-sweep-") as folder:
        path = Path(folder) / "untrained.tflite"
        path.write_bytes(content)
        results = bench.bench_targets(path, chosen, runs=1, warmup=0)
    return {result.target: {"fits": result.fit.fits, "misses": [f"{c.budget}: {c.summary}" for c in result.fit.misses],
                            "size_bytes": result.size_bytes} for result in results}


def run_point(mapping: dict[str, Any], target_refs: list[str], out: str, seed: int, spec: str,
              runs: int, warmup: int, distribute: str | None = None) -> dict[str, Any]:
    """One point: one build judged on every target (edgekit.build with several targets), reduced to each
    target's verdict. Runs in a worker process (local pool or Ray): arguments and result are plain data."""
    from edgekit import build, recipes, targets
    from edgekit.results import BuildResult

    recipe = recipes.from_mapping(mapping, mapping["name"])
    chosen = [targets.load(ref) for ref in target_refs]
    started = time.perf_counter()
    note = None
    try:
        result = build.build(recipe, chosen, Path(out), seed=seed, runs=runs, warmup=warmup, data_spec=spec,
                             distribute=distribute)
    except BudgetError as error:  # the folder is complete; a budget or the accuracy guard failed it
        if not isinstance(error.result, BuildResult):
            raise
        result, note = error.result, str(error)
    except EdgekitError as error:
        return {"failed": str(error), "seconds": round(time.perf_counter() - started, 1)}
    return {"build": str(result.directory), "note": note, "metric": recipe.metric,
            "targets": {target.name: _verdict(target) for target in result.targets},
            "seconds": round(time.perf_counter() - started, 1)}


def _verdict(target: TargetResult) -> dict[str, Any]:
    """A point's figures on one target: its selected variant's metric, target latency (estimated or emulated,
    as latency_basis says), RAM and flash."""
    chosen = target.selected.measured
    return {"variant": target.selection.variant, "fits": target.selection.fits, "reason": target.selection.reason,
            "metric": target.selected.metric_value,
            "latency_ms": chosen.target_latency.ms if chosen.target_latency else None,
            "latency_basis": chosen.target_latency.basis if chosen.target_latency else None,
            "ram_bytes": chosen.ram.get("required_bytes"), "flash_bytes": chosen.size_bytes,
            "misses": [f"{c.budget}: {c.summary}" for c in chosen.fit.misses]}


# How far apart two latency or RAM figures must be before one point beats another on them. Both carry
# run-to-run noise (LiteRT's RAM is process memory measured on this host: two identical models measured 3.89 and
# 3.94 MB), and a front decided by that noise drops points that are as good as the ones it keeps.
NOISE = 0.05


def pareto_front(rows: list[dict[str, Any]], higher_is_better: bool, noise: float = NOISE) -> list[str]:
    """Names of the fitting rows no other fitting row beats: no worse on every objective (metric, estimated
    latency, RAM) and better on one, where latency and RAM count as better only when more than `noise`
    (relative) apart. The metric is compared exactly: it is the same test split, evaluated deterministically."""
    def objectives(row):
        metric = -row["metric"] if higher_is_better else row["metric"]
        latency = row["latency_ms"] if row["latency_ms"] is not None else float("inf")
        return (metric, 0.0), (latency, noise), (row["ram_bytes"] or 0, noise)

    def better(a: float, b: float, tolerance: float) -> bool:
        return a < b - tolerance * abs(b)

    def beats(other, row) -> bool:
        theirs, mine = objectives(other), objectives(row)
        return (not any(better(m, o, t) for (m, t), (o, _) in zip(mine, theirs, strict=True))
                and any(better(o, m, t) for (o, t), (m, _) in zip(theirs, mine, strict=True)))

    fitting = [row for row in rows if row["fits"]]
    return [row["point"] for row in fitting if not any(beats(other, row) for other in fitting if other is not row)]


def sweep(recipe_ref: str | Path, target_refs: list[str], grid_path: str | Path, out: str | Path = "sweep",
          workers: int = 1, ray_address: str | None = None, seed: int = 0, data_spec: str | None = None,
          runs: int = 100, warmup: int = 10, distribute: str | None = None) -> dict[str, Any]:
    """Every point of the grid, skipped early or built, then judged per target; writes sweep.json and sweep.html.
    `distribute="mirrored"` trains each point under tf.distribute.MirroredStrategy (edgekit.distribute)."""
    from edgekit import recipes, targets
    from edgekit.distribute import check as check_distribute
    from edgekit.report.manifest import versions
    from edgekit.tasks import TASKS

    recipe = recipes.load(recipe_ref)
    spec = data_spec or recipe.dataset
    if not spec:
        raise UsageError(f"recipe '{recipe.name}' names no dataset; pass one with --data")
    target_names = [targets.load(ref).name for ref in target_refs]  # unknown targets fail here
    if distribute == "multiworker":
        raise UsageError("a sweep trains its points independently; --distribute multiworker applies to one build "
                         "(edgekit build), use mirrored here")
    check_distribute(distribute)
    grid = load_grid(grid_path)
    fingerprint = {"targets": target_names, "seed": seed, "data": spec, "runs": runs, "warmup": warmup,
                   "versions": versions(), "result_version": RESULT_VERSION}
    if distribute:
        fingerprint["distribute"] = distribute
    points = expand(recipe_ref, grid, fingerprint)
    out = Path(out)
    (out / "points").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    pending: list[Point] = []
    check_seconds: dict[str, float] = {}  # the early check of each point checked in this run
    for point in points:
        saved = _saved(out, point)
        if saved is not None:
            log.info("%s: done in an earlier run", point.name)
            results[point.name] = saved
            continue
        checked = time.perf_counter()
        check = early_check(point, spec, target_refs)
        check_seconds[point.name] = round(time.perf_counter() - checked, 2)
        if not any(verdict["fits"] for verdict in check.values()):
            log.info("%s: skipped before training: fits no target", point.name)
            results[point.name] = _save(out, point, {"skipped": check, "check_seconds": check_seconds[point.name]})
        else:
            pending.append(point)
    for point, result in zip(pending, _execute(pending, target_refs, out, seed, spec, runs, warmup, workers,
                                               ray_address, distribute), strict=True):
        results[point.name] = _save(out, point, result)
    summary = _summarise(points, results, target_names, TASKS[recipe.task].higher_is_better(recipe.metric))
    summary.update({"recipe": recipe.name, "metric": recipe.metric,
                    "higher_is_better": TASKS[recipe.task].higher_is_better(recipe.metric),
                    "grid": {k: list(v) for k, v in grid.items()}, "targets": target_names,
                    "data": spec, "seed": seed, "workers": workers, "ray": ray_address, "distribute": distribute,
                    "seconds": round(time.perf_counter() - started, 1),
                    "check_seconds": round(sum(check_seconds.values()), 2)})
    write_json(out / "sweep.json", summary)
    write_atomic(out / "sweep.md", to_markdown(summary))
    from edgekit.report.sweep_html import write_sweep_html

    write_sweep_html(out, summary)
    return summary


def _execute(points: list[Point], target_refs: list[str], out: Path, seed: int, spec: str, runs: int, warmup: int,
             workers: int, ray_address: str | None, distribute: str | None = None) -> list[dict[str, Any]]:
    arguments = [(point.mapping, list(target_refs), str(out / "builds"), seed, spec, runs, warmup, distribute)
                 for point in points]
    if not arguments:
        return []
    if ray_address:
        return _on_ray(arguments, ray_address, workers)
    if workers <= 1:
        return [run_point(*args) for args in arguments]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a forked child would inherit TensorFlow's threads and locks from this process.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(run_point, *zip(*arguments, strict=True)))


def _on_ray(arguments: list[tuple], address: str, workers: int) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'edgekit[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":
            ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(run_point)
        return ray.get([remote.remote(*args) for args in arguments])
    finally:
        if started_here:
            ray.shutdown()


def _saved(out: Path, point: Point) -> dict[str, Any] | None:
    path = out / "points" / f"{point.name}.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return saved["result"] if saved.get("key") == point.key else None


def _save(out: Path, point: Point, result: dict[str, Any]) -> dict[str, Any]:
    write_json(out / "points" / f"{point.name}.json", {"key": point.key, "changes": point.changes, "result": result})
    return result


def _summarise(points: list[Point], results: dict[str, dict[str, Any]], target_names: list[str],
               higher_is_better: bool) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for point in points:
        result = results[point.name]
        row: dict[str, Any] = {"point": point.name, "changes": point.changes, "seconds": result.get("seconds")}
        if "skipped" in result:
            row["skipped"] = {t: v["misses"] for t, v in result["skipped"].items()}
            row["seconds"] = result.get("check_seconds")  # the early check: all the time a skipped point cost
        elif "failed" in result:
            row["failed"] = result["failed"]
        else:
            row["targets"] = result["targets"]
        rows.append(row)
    per_target = {}
    for name in target_names:
        candidates = [{"point": row["point"], **row["targets"][name]} for row in rows if "targets" in row]
        front = pareto_front(candidates, higher_is_better)
        fitting = [c for c in candidates if c["fits"]]
        best = (max if higher_is_better else min)(fitting, key=lambda c: c["metric"]) if fitting else None
        per_target[name] = {"front": front, "best": best["point"] if best else None,
                            "best_metric": best["metric"] if best else None}
    built = [row["seconds"] for row in rows if "targets" in row and row["seconds"]]
    skipped = sum(1 for row in rows if "skipped" in row)
    return {"points": rows, "per_target": per_target, "skipped_points": skipped,
            "skip_saved_s_estimate": round(skipped * sum(built) / len(built), 1) if built else None,
            "skip_saved_method": "skipped points x the mean time of the points built in this sweep"}


def to_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# edgekit sweep: {summary['recipe']} on {', '.join(summary['targets'])}", "",
             f"Data `{summary['data']}`, seed {summary['seed']}, {len(summary['points'])} points, "
             f"{summary['skipped_points']} skipped before training, {summary['seconds']:.0f} s.", ""]
    for target, verdict in summary["per_target"].items():
        lines.append(f"- **{target}**: best fitting point {verdict['best'] or 'none'}"
                     + (f" ({verdict['best_metric']:.4f})" if verdict["best"] else "")
                     + f"; Pareto front (metric, target latency, RAM): {', '.join(verdict['front']) or 'empty'}")
    lines += ["", "| point | changes | target | variant | fits | metric | target latency ms | RAM B | flash B |",
              "|---|---|---|---|---|---:|---:|---:|---:|"]
    for row in summary["points"]:
        changes = ", ".join(f"{k}={json.dumps(v)}" for k, v in row["changes"].items())
        if "targets" not in row:
            why = row.get("failed") or "; ".join(f"{t}: {', '.join(m)}" for t, m in row["skipped"].items())
            lines.append(f"| {row['point']} | {changes} | | {'failed' if 'failed' in row else 'skipped'}: {why} | "
                         "| | | | |")
            continue
        for target, v in row["targets"].items():
            latency = f"{v['latency_ms']:.3f} {v.get('latency_basis') or ''}".strip() \
                if v["latency_ms"] is not None else "-"
            lines.append(f"| {row['point']} | {changes} | {target} | {v['variant']} | {'yes' if v['fits'] else 'no'} | "
                         f"{v['metric']:.4f} | {latency} | {v['ram_bytes'] or '-'} | {v['flash_bytes']:,} |")
    return "\n".join(lines) + "\n"


def summary_lines(summary: dict[str, Any], out: Path) -> list[str]:
    """What `edgekit sweep` prints: per target the best point that fits and the front, then the counts."""
    lines = []
    for target, verdict in summary["per_target"].items():
        best = f"{verdict['best']} ({verdict['best_metric']:.4f})" if verdict["best"] else "no point fits"
        lines.append(f"{target}: best {best}; front: {', '.join(verdict['front']) or 'empty'}")
    return [*lines, f"{len(summary['points'])} points, {summary['skipped_points']} skipped before training; "
                    f"{Path(out) / 'sweep.md'}"]
