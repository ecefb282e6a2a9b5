"""Issue 9's speed-up pass: before and after, measured interleaved on the same machine.

    python benchmarks/speedups.py --base REV          # writes benchmarks/speedups.json
    python benchmarks/speedups.py --base REV --quick  # one round of the digits-cnn build only: checks the script

1. Whole builds, before and after: the revision REV (checked out in a temporary `git worktree`) and this
   tree, each build in its own process with PYTHONPATH on that tree, alternating which goes first in each
   round. Reported per stage (the wall time between the '[stage]' lines edgekit.build logs) with the median
   of the rounds, and whether every file the manifest lists as reproducible has the same sha256 before and
   after, and every variant the same metric.
2. The pieces, in one process of this tree, alternating old and new way: a TFLite conversion from
   tf_keras's full SavedModel export vs from the serving signature alone (VWW's MobileNetV1 0.25, float32
   and QAT int8, with the bytes compared); the microcontroller bundle of the VWW int8 file with its arena
   bisected again vs reused from bench; opening a model with and without the child-process smoke run.

The machine is shared, so the figures are 'loaded' unless the JSON's load averages say otherwise; what
counts is the ratio between figures taken in the same round.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stage_clock import StageClock  # benchmarks/, this script's folder

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = 600
# name -> (recipe, target, data spec, [train] changes, [optimize] changes): benchmarks/run.py's settings
BUILDS = {
    "digits-cnn": ("digits-cnn", "rpi4", "digits", {}, {}),
    "vww": ("vww-mobilenet-v1-025", "stm32h743", f"synthetic:96x96x3:2:{SYNTHETIC}", {"epochs": 3},
            {"pruning_epochs": 1, "qat_epochs": 1, "max_drop": 100.0}),
}


def child_build(case: str, out: Path) -> dict:
    """One build in this process, with whichever edgekit PYTHONPATH gives; its timings, metrics and files."""
    from edgekit import build, recipes, targets
    from edgekit.errors import BudgetError

    recipe_name, target_name, spec, train_changes, optimize_changes = BUILDS[case]
    recipe = recipes.load(recipe_name).with_changes(train=dict(train_changes), optimize=dict(optimize_changes))
    clock = StageClock()
    logger = logging.getLogger("edgekit")
    logger.addHandler(clock)
    logger.setLevel(logging.INFO)
    started = time.perf_counter()
    try:
        build.build(recipe, targets.load(target_name), out, data_spec=spec, runs=100, warmup=10)
    except BudgetError:
        pass  # the folder is complete
    ended = time.perf_counter()
    directory = out / f"{recipe.name}-{target_name}"
    manifest = json.loads((directory / "manifest.json").read_text())
    report = json.loads((directory / "report.json").read_text())
    return {"wall_s": round(ended - started, 2), "stages_s": clock.seconds(ended),
            "metrics": {v["name"]: v["metric"]["value"] for v in report["variants"]},
            # inside the optimize stage: each training phase's fit, and each step with its validation metric
            "phases_s": {name: phase["seconds"] for name, phase in report["training"].items()},
            "optimize_steps_s": {step["step"]: step["seconds"] for step in report["optimization"]["steps"]},
            "files": {name: entry["sha256"] for name, entry in manifest["files"].items()},
            "reproducible": manifest["deterministic"]["identical"]}


def run_side(tree: Path, case: str, folder: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", case, "--out", str(folder)],
                          env=env, capture_output=True, text=True, cwd=folder.parent)
    if done.returncode != 0:
        raise RuntimeError(f"{case} build with {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def whole_builds(base_tree: Path, cases: list[str], rounds: int, folder: Path) -> dict:
    results: dict[str, dict] = {}
    for case in cases:
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for round_ in range(rounds):
            order = [("before", base_tree), ("after", ROOT)]
            for side, tree in order if round_ % 2 == 0 else order[::-1]:
                runs[side].append(run_side(tree, case, folder / f"{case}-{side}-{round_}"))
                print(f"{case} round {round_ + 1} {side}: {runs[side][-1]['wall_s']} s", file=sys.stderr)
        results[case] = summarize(runs)
    return results


def summarize(runs: dict[str, list[dict]]) -> dict:
    def median_stages(side: str) -> dict[str, float]:
        names = dict.fromkeys(n for r in runs[side] for n in r["stages_s"])
        return {n: round(statistics.median(r["stages_s"].get(n, 0.0) for r in runs[side]), 2) for n in names}

    before, after = runs["before"][0], runs["after"][0]
    reproducible = sorted(set(before["reproducible"]) & set(after["reproducible"]))
    return {
        "wall_s": {side: [r["wall_s"] for r in runs[side]] for side in runs},
        "wall_median_s": {side: round(statistics.median(r["wall_s"] for r in runs[side]), 2) for side in runs},
        "stages_median_s": {side: median_stages(side) for side in runs},
        "stages_s": {side: [r["stages_s"] for r in runs[side]] for side in runs},
        "phases_s": {side: [r["phases_s"] for r in runs[side]] for side in runs},
        "optimize_steps_s": {side: [r["optimize_steps_s"] for r in runs[side]] for side in runs},
        "metrics": {"before": before["metrics"], "after": after["metrics"],
                    "same": all(r["metrics"] == before["metrics"] for side in runs for r in runs[side])},
        "files": {"compared": reproducible,
                  "differ": sorted(n for n in reproducible
                                   if any(r["files"].get(n) != before["files"][n] for s in runs for r in runs[s])),
                  # a file that differs: its sha256 in each run, to tell a change from a file that was never
                  # reproducible (one whose runs differ on the same side)
                  "differing_runs": {n: {s: [r["files"].get(n, "")[:16] for r in runs[s]] for s in runs}
                                     for n in reproducible
                                     if any(r["files"].get(n) != before["files"][n] for s in runs for r in runs[s])},
                  "only_before": sorted(set(before["files"]) - set(after["files"])),
                  "only_after": sorted(set(after["files"]) - set(before["files"]))},
    }


def alternate(rounds: int, ways: dict) -> dict:
    """Each callable of `ways` run `rounds` times, alternating which goes first; seconds of each run."""
    times: dict[str, list[float]] = {name: [] for name in ways}
    names = list(ways)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            ways[name]()
            times[name].append(round(time.perf_counter() - started, 3))
    return {name: {"s": values, "median_s": round(statistics.median(values), 3)} for name, values in times.items()}


def pieces(rounds: int, folder: Path) -> dict:
    import hashlib

    import numpy as np

    from edgekit import convert, optimize, targets, zoo
    from edgekit._files import sha256
    from edgekit._tf import keras, tf, tfmot
    from edgekit.export.mcu import export_mcu
    from edgekit.runtimes.host import open_runner

    keras.utils.set_random_seed(0)
    model = zoo.build_model("mobilenet-v1", (96, 96, 3), 2, {"alpha": 0.25})
    scheme = tfmot().quantization.keras.default_8bit.Default8BitQuantizeScheme()
    qat, _ = optimize._quantize_apply(model, scheme)
    qat(np.zeros((1, 96, 96, 3), np.float32))
    calibration = np.random.default_rng(0).uniform(0, 1, (200, 96, 96, 3)).astype(np.float32)

    def int8(converter):
        return convert._integer_settings(converter, calibration, "TFLITE_BUILTINS_INT8", "int8")

    made: dict[str, set[str]] = {}

    def conversion(name: str, source, configure, serving: bool):
        def run():
            if serving:
                content = convert.serving_tflite(source, name, configure)
            else:
                content = convert._run_converter(configure(tf.lite.TFLiteConverter.from_keras_model(source)), name)
            made.setdefault(name, set()).add(hashlib.sha256(content).hexdigest())
            return content
        return run

    result: dict = {"conversion": {}}
    for name, source, configure in (("float32", model, lambda c: c), ("qat-int8", qat, int8)):
        result["conversion"][name] = alternate(rounds, {
            "full tf_keras export (before)": conversion(name, source, configure, serving=False),
            "serving signature only (after)": conversion(name, source, configure, serving=True)})
        result["conversion"][name]["same_bytes"] = len(made[name]) == 1

    path = folder / "vww-int8.tflite"
    path.write_bytes(conversion("qat-int8", qat, int8, serving=True)())
    target = targets.load("stm32h743")
    first = export_mcu(path, target, folder / "bundle-first")
    known = {"sha256": sha256(path), "arena_bytes": None, "arena_min_bytes": first["arena_measured_bytes"]}
    bundles: dict[str, dict] = {}

    def export(reuse: bool):
        def run():
            out = folder / ("bundle-reused" if reuse else "bundle-measured")
            export_mcu(path, target, out, measured_arena=known if reuse else None)
            bundles[out.name] = {f.name: f.read_bytes() for f in out.iterdir()}
        return run

    result["export_mcu"] = alternate(rounds, {"arena bisected again (before)": export(False),
                                              "arena reused from bench (after)": export(True)})
    result["export_mcu"]["same_files"] = bundles["bundle-reused"] == bundles["bundle-measured"]
    trusted = sha256(path)
    result["open_runner"] = alternate(rounds, {
        "child-process smoke run (before)": lambda: open_runner(path),
        "trusted build output, no child (after)": lambda: open_runner(path, trusted_sha256=trusted)})

    # optimize's first validation score: on a fresh clone (tracing its predict function) or on the float model
    # whose predict function the baseline stage traced; the predict alone is timed (optimize still clones)
    x_val = np.random.default_rng(1).uniform(0, 1, (60, 96, 96, 3)).astype(np.float32)
    model.predict(np.random.default_rng(2).uniform(0, 1, (120, 96, 96, 3)).astype(np.float32), verbose=0)
    ways = {"clone's predict (before)": True, "float model's predict (after)": False}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    outputs = []
    for round_ in range(rounds):
        for name in list(ways) if round_ % 2 == 0 else list(ways)[::-1]:
            source = optimize.clone(model) if ways[name] else model
            started = time.perf_counter()
            outputs.append(source.predict(x_val, verbose=0))
            seconds[name].append(round(time.perf_counter() - started, 3))
    result["first_validation_score"] = {
        **{name: {"s": values, "median_s": round(statistics.median(values), 3)} for name, values in seconds.items()},
        "same_outputs": all(np.array_equal(outputs[0], other) for other in outputs[1:])}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the git revision to compare against (the 'before')")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-builds", action="store_true")
    parser.add_argument("--pieces-only", action="store_true", help="rerun the pieces, keep the builds' rows")
    parser.add_argument("--cases", help=f"comma-separated builds of {', '.join(BUILDS)}; their rows replace "
                                        "those of the existing speedups.json, and the pieces are kept")
    parser.add_argument("--render", action="store_true", help="only write docs/speedups.md from speedups.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_build(args.child, args.out)))
        return
    if args.render:
        results = json.loads((ROOT / "benchmarks" / "speedups.json").read_text())
        (ROOT / "docs" / "speedups.md").write_text(render(results))
        return
    if args.pieces_only:
        args.skip_builds = True
    if not args.base and not args.skip_builds:
        parser.error("--base REV is required (or --skip-builds)")
    logging.getLogger("edgekit").setLevel(logging.WARNING)
    rounds = 1 if args.quick else args.rounds
    results: dict = {"base": None, "head": _git("rev-parse", "HEAD"), "rounds": rounds,
                     "host": {"cpus": os.cpu_count(), "load_average_start": list(os.getloadavg())},
                     "conditions": "loaded: a 2-core machine shared with other engineers' test runs; before and "
                                   "after alternate within each round, so compare them round by round"}
    with tempfile.TemporaryDirectory(prefix="edgekit-speedups-") as temp:
        folder = Path(temp)
        if not args.skip_builds:
            results["base"] = _git("rev-parse", args.base)
            base_tree = folder / "base"
            _git("worktree", "add", "--detach", str(base_tree), results["base"])
            try:
                cases = ["digits-cnn"] if args.quick else args.cases.split(",") if args.cases else list(BUILDS)
                results["builds"] = whole_builds(base_tree, cases, rounds, folder)
            finally:
                _git("worktree", "remove", "--force", str(base_tree))
        if not args.cases:
            results["pieces"] = pieces(1 if args.quick else max(rounds, 3), folder)
    results["host"]["load_average_end"] = list(os.getloadavg())
    if args.pieces_only:
        earlier = json.loads((ROOT / "benchmarks" / "speedups.json").read_text())
        rerun = {"cases": ["pieces"], "head": results["head"], "host": results["host"]}
        results = {**earlier, "pieces": results["pieces"], "reruns": [*earlier.get("reruns", []), rerun]}
    if args.cases:  # a partial rerun: the other rows and the pieces stay as they were measured
        earlier = json.loads((ROOT / "benchmarks" / "speedups.json").read_text())
        rerun = {"cases": args.cases.split(","), "head": results["head"], "host": results["host"]}
        results = {**earlier, "builds": {**earlier["builds"], **results["builds"]},
                   "reruns": [*earlier.get("reruns", []), rerun]}
    out = ROOT / "benchmarks" / "speedups.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    (ROOT / "docs" / "speedups.md").write_text(render(results))
    print(f"wrote {out} and docs/speedups.md")


def render(results: dict) -> str:
    """docs/speedups.md from speedups.json: every figure is the JSON's."""
    load = results["host"]
    lines = ["# Issue 9: speed-ups, before and after", "",
             f"Written by `benchmarks/speedups.py` from `benchmarks/speedups.json`: before is revision "
             f"`{(results['base'] or '-')[:10]}`, after is `{results['head'][:10]}` (plus the working tree). "
             f"{results['conditions']} (load average {load['load_average_start'][0]:.1f} at the start, "
             f"{load['load_average_end'][0]:.1f} at the end, {load['cpus']} CPUs).", ""]
    for rerun in results.get("reruns", []):
        lines += [f"Rerun later at `{rerun['head'][:10]}`: {', '.join(rerun['cases'])} (load average "
                  f"{rerun['host']['load_average_start'][0]:.1f} at the start, "
                  f"{rerun['host']['load_average_end'][0]:.1f} at the end).", ""]
    for case, row in results.get("builds", {}).items():
        before, after = row["stages_median_s"]["before"], row["stages_median_s"]["after"]
        stages = list(dict.fromkeys([*before, *after]))
        lines += [f"## {case}: build stages (median of {results['rounds']} rounds, s)", "",
                  "| | " + " | ".join(stages) + " | wall |", "|---|" + "---:|" * (len(stages) + 1)]
        for side, figures in (("before", before), ("after", after)):
            lines.append(f"| {side} | " + " | ".join(f"{figures.get(s, 0):.1f}" for s in stages)
                         + f" | {row['wall_median_s'][side]:.1f} |")
        files = row["files"]
        differing = []
        for name, hashes in files.get("differing_runs", {}).items():
            unstable = [side for side, values in hashes.items() if len(set(values)) > 1]
            differing.append(f"`{name}` differs (sha256 per run: before {', '.join(hashes['before'])}; after "
                             f"{', '.join(hashes['after'])})" + (f", and so do the runs of the same side "
                                                                  f"({', '.join(unstable)}): it was not reproducible "
                                                                  "to begin with" if unstable else ""))
        lines += ["", f"Walls per round: before {row['wall_s']['before']}, after {row['wall_s']['after']}. "
                  f"Metrics {'identical' if row['metrics']['same'] else 'DIFFER'} ({row['metrics']['after']}). "
                  f"Of the {len(files['compared'])} files the manifest lists as reproducible, "
                  + ("; ".join(differing) + "; every other file has the same sha256 before and after."
                     if differing else "every one has the same sha256 before and after."), ""]
    lines += ["## What changed", "",
              "- **Conversion** (VWW's convert stage, and the float32 TFLite conversion of every baseline): the "
              "TFLite converter read the model from tf_keras's SavedModel export, which traces every layer's "
              "call functions for Keras to load the model back; the converter only reads the serving signature. "
              "It now converts a SavedModel holding that signature (traced by tf_keras's own "
              "`default_save_signature`) and the variables (`edgekit._tf.serving_export`); the files are byte "
              "for byte the same (tests/test_convert.py checks float32, int8 and QAT int8).",
              "- **export_mcu** reuses the arena bench measured for the same file (by sha256) and runs TFLite "
              "Micro once for the test output, instead of bisecting the smallest arena again.",
              "- **open_runner** skips the child-process smoke run for a build's own files (`trusted_sha256`: "
              "bytes the build ran in-process when it verified them); user files keep the guard.",
              "- **optimize** scores its first validation metric on the float model (whose predict function the "
              "baseline traced) rather than on its clone, whose outputs are identical.",
              "- Looked at and left: calibration (in an exploratory run, not in speedups.json, a fully QAT VWW model "
              "gave the same file from 1 or 200 samples in about the same time: it is not the cost); the rest of the "
              "optimize stage is tf_keras/tfmot graph "
              "construction (each phase's train, test and predict functions, tfmot's quantize_apply clones), "
              "which fewer clones or eager execution would cut only by changing the random streams or the "
              "arithmetic; `edgekit bench` and `export` of a .tflite import no TensorFlow.", ""]
    pieces_ = results["pieces"]
    export = pieces_["export_mcu"]
    lines += ["## The pieces (one process, old and new way alternating; median s)", "",
              "| piece | before | after | same result |", "|---|---:|---:|---|"]
    for label, figures, same in (
            *((f"VWW MobileNetV1 0.25 {name} TFLite conversion", row, row["same_bytes"])
              for name, row in pieces_["conversion"].items()),
            ("VWW int8 microcontroller bundle (export_mcu)", export, export["same_files"]),
            ("open_runner on the VWW int8 file", pieces_["open_runner"], None),
            *((("optimize's first validation score (VWW, 60 samples)", pieces_["first_validation_score"],
                pieces_["first_validation_score"]["same_outputs"]),) if "first_validation_score" in pieces_ else ())):
        medians = [v["median_s"] for v in figures.values() if isinstance(v, dict)]
        lines.append(f"| {label} | {medians[0]:.3f} | {medians[1]:.3f} | "
                     f"{'-' if same is None else ('same' if same else 'DIFFERENT')} |")
    return "\n".join(lines) + "\n"


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


if __name__ == "__main__":
    main()
