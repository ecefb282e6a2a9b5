"""Issue 9: how long edgekit takes and how honest its latency figures are, on this machine.

    python benchmarks/run.py            # writes benchmarks/results.json and docs/benchmarks.md (~6 minutes)
    python benchmarks/run.py --quick    # one round of everything, fewer runs: checks the script works

1. build time per stage (digits-cnn; the MLPerf Tiny recipes on synthetic data of a fixed size, with the
   epochs cut so each build takes seconds; digits-cnn's architecture at 1x, 2x and 4x the data);
2. CLI start-up of the commands that must not import TensorFlow, and `edgekit inspect` start to finish on a
   ~300 KB model (.tflite and .onnx);
3. harness overhead: edgekit's latency figure vs a bare `invoke()` loop on the same interpreter;
4. runtimes side by side on each artifact of two recipes;
5. distance from the limit: achieved MAC/s vs a dense matrix multiply in the same runtime and precision;
6. accuracy evaluation speed on 10,000 samples;
7. fuzzing with damaged .tflite, .onnx and .keras files: not run here (minutes), but rendered from
   benchmarks/fuzz.json, which benchmarks/fuzz.py writes (it also rewrites this section of the page in place).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fuzz import markdown_section as fuzzing_section  # benchmarks/, this script's folder
from stage_clock import StageClock

from edgekit import bench, build, convert, data, recipes, targets
from edgekit.errors import BudgetError
from edgekit.model_info import inspect_model
from edgekit.report.text import host
from edgekit.runtimes import tflm as micro
from edgekit.runtimes.litert import TFLiteRunner
from edgekit.runtimes.onnx import OnnxRunner

HERE = Path(__file__).resolve().parent
SYNTHETIC = 600  # samples of every synthetic build (train + validation + test)
# recipe -> (target, data spec, [train]/[optimize] changes that keep a benchmark build to seconds)
SHORT = {"epochs": 3}
SHORT_OPTIMIZE = {"pruning_epochs": 1, "qat_epochs": 1, "max_drop": 100.0}
BUILDS = {
    "digits-cnn": ("rpi4", "digits", {}, {}),
    "kws-ds-cnn": ("nucleo-l4r5zi", f"synthetic:49x10x1:12:{SYNTHETIC}", SHORT, SHORT_OPTIMIZE),
    "vww-mobilenet-v1-025": ("stm32h743", f"synthetic:96x96x3:2:{SYNTHETIC}", SHORT, SHORT_OPTIMIZE),
    "ic-resnet8": ("nucleo-l4r5zi", f"synthetic:32x32x3:10:{SYNTHETIC}", SHORT, SHORT_OPTIMIZE),
    # post-training quantization, as its recipe says: QAT converts its Dense + batch norm layers wrongly
    "ad-autoencoder": ("nucleo-l4r5zi", f"synthetic:640:2:{SYNTHETIC}", SHORT, {**SHORT_OPTIMIZE, "qat_epochs": 0}),
}
SCALES = (1, 2, 4)  # digits-cnn's architecture on synthetic 8x8 data of 1,800 x this many samples
CLI_COMMANDS = (["--help"], ["targets"], ["models"])


def timed_build(recipe, target_name: str, spec: str, out: Path) -> dict:
    clock = StageClock()
    logger = logging.getLogger("edgekit")
    logger.addHandler(clock)
    logger.setLevel(logging.INFO)
    started = time.perf_counter()
    outcome = "built"
    try:
        result = build.build(recipe, targets.load(target_name), out, data_spec=spec, runs=100, warmup=10)
        report = result.report
    except BudgetError as error:  # the folder is complete; the selected variant misses a budget
        outcome, report = f"built; {error}", json.loads((out / f"{recipe.name}-{target_name}" / "report.json")
                                                        .read_text())
    finally:
        logger.removeHandler(clock)
    ended = time.perf_counter()
    metrics = {v["name"]: round(v["metric"]["value"], 4) for v in report["variants"]}
    return {"recipe": recipe.name, "target": target_name, "data": spec, "epochs": recipe.train.epochs,
            "wall_s": round(ended - started, 2), "stages_s": clock.seconds(ended), "metric": recipe.metric,
            "metrics": metrics, "outcome": outcome}


def build_times(folder: Path, quick: bool) -> dict:
    rows = []
    for name, (target_name, spec, train_changes, optimize_changes) in BUILDS.items():
        if quick and name != "digits-cnn":
            continue
        recipe = recipes.load(name).with_changes(train=dict(train_changes), optimize=dict(optimize_changes))
        rows.append(timed_build(recipe, target_name, spec, folder / "builds"))
    scaling = []
    for scale in SCALES[:1] if quick else SCALES:
        recipe = recipes.load("digits-cnn").with_changes(name=f"digits-cnn-x{scale}")
        row = timed_build(recipe, "rpi4", f"synthetic:8x8x1:10:{1800 * scale}", folder / "scaling")
        scaling.append({"scale": scale, "samples": 1800 * scale, **row})
    return {"builds": rows, "scaling": scaling}


def inspect_models(folder: Path) -> list[list[str]]:
    """`edgekit inspect` arguments for a float model of about 300 KB (75k parameters), as .tflite and .onnx."""
    from edgekit._tf import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 4)), keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(36, activation="softmax")])
    check = convert.random_inputs((8, 8, 4), count=4)
    commands = []
    for suffix, conversion in ((".tflite", convert.tflite_float32), (".onnx", convert.onnx_float32)):
        path = folder / f"inspect-300k{suffix}"
        path.write_bytes(conversion(model, check).content)
        commands.append(["inspect", str(path)])
    return commands


def cli_startup(rounds: int, folder: Path) -> dict:
    figures = {}
    for args in [*CLI_COMMANDS, *inspect_models(folder)]:
        walls = []
        for _ in range(rounds):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, check=True)
            walls.append(time.perf_counter() - started)
        shown = "edgekit " + " ".join(Path(a).name if a.startswith("/") else a for a in args)
        size = {"size_kb": round(Path(args[1]).stat().st_size / 1024, 1)} if args[0] == "inspect" else {}
        figures[shown] = {"median_s": round(statistics.median(walls), 3), "min_s": round(min(walls), 3),
                          "rounds": rounds, **size}
    probe = ("import sys; from click.testing import CliRunner; from edgekit.cli import main; "
             "[CliRunner().invoke(main, a) for a in (['--help'], ['targets'], ['models'])]; "
             "print(sorted(m for m in ('tensorflow', 'tf_keras', 'matplotlib', 'onnxruntime') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    return {"commands": figures, "heavy_modules_imported": loaded, "goal_s": 0.5, "inspect_goal_s": 1.5}


def harness_overhead(artifacts: dict[str, Path], sample: np.ndarray, runs: int, rounds: int) -> dict:
    """edgekit's median (bench.measure_latency: one timer per call) against the mean of a bare loop that
    times `runs` invokes at once, alternating so both see the same machine state."""
    rows = {}
    for name, path in artifacts.items():
        if path.suffix != ".tflite":
            continue
        runner = TFLiteRunner(path)
        call = runner.prepare(sample)
        ratios, harness, bare = [], [], []
        for _ in range(rounds):
            measured = bench.measure_latency(call, runs, runs // 10, 1).median
            for _ in range(runs // 10):
                call()
            started = time.perf_counter_ns()
            for _ in range(runs):
                call()
            loop = (time.perf_counter_ns() - started) / runs / 1e6
            harness.append(measured)
            bare.append(loop)
            ratios.append(measured / loop)
        rows[name] = {"edgekit_median_ms": round(statistics.median(harness), 5),
                      "bare_loop_mean_ms": round(statistics.median(bare), 5),
                      "ratio": round(statistics.median(ratios), 4), "rounds": rounds, "runs": runs}
    return {"artifacts": rows, "goal": "ratio within 1.03"}


def _stats(call, runs: int) -> dict:
    latency = bench.measure_latency(call, runs, max(1, runs // 10), 1)
    return {"median_ms": round(latency.median, 4), "p90_ms": round(latency.p90, 4)}


def runtimes(artifacts: dict[str, Path], sample: np.ndarray, runs: int) -> dict:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    rows = {}
    for name, path in artifacts.items():
        row = {}
        if path.suffix == ".onnx":
            row["onnxruntime"] = _stats(OnnxRunner(path).prepare(sample), runs)
        else:
            for threads in (1, 2):
                row[f"litert xnnpack {threads}t"] = _stats(TFLiteRunner(path, threads).prepare(sample), runs)
            plain = Interpreter(model_content=path.read_bytes(), num_threads=1,
                                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            plain.allocate_tensors()
            detail = plain.get_input_details()[0]
            runner = TFLiteRunner(path)
            plain.set_tensor(detail["index"], runner.quantize_input(sample[np.newaxis]))
            row["litert builtin (no xnnpack) 1t"] = _stats(plain.invoke, runs)
            result = micro.measure(path, sample, runs=min(runs, 100), warmup=5, find_min_arena=False)
            row["tflite-micro (host)"] = ({"median_ms": round(result.host_invoke_ms, 4),
                                           "p90_ms": round(result.host_invoke_p90_ms, 4)}
                                          if result.supported else {"error": result.error})
        rows[name] = row
    return rows


def peak_macs(runs: int) -> dict:
    """The host's achievable MAC/s per precision: one 1024x1024 dense layer on a batch of 64 inputs, in LiteRT
    with XNNPACK on one thread, converted by edgekit (float32 and int8)."""
    from edgekit._tf import keras

    inputs = keras.Input((1024,))
    model = keras.Model(inputs, keras.layers.Dense(1024, use_bias=False)(inputs))
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((64, 1024)).astype(np.float32)
    contents = {"float32": convert.tflite_float32(model, calibration[:8]).content,
                "int8": convert.int8_converter(model, calibration).convert()}
    macs = 64 * 1024 * 1024
    peaks = {}
    for precision, content in contents.items():
        invoke = TFLiteRunner(content).prepare_batch(calibration)
        median = bench.measure_latency(invoke, runs, runs // 10, 1).median
        peaks[precision] = {"macs_per_s": round(macs / (median / 1e3)), "median_ms": round(median, 4)}
    return peaks


def distance_from_limit(artifacts: dict[str, Path], side_by_side: dict, peaks: dict) -> dict:
    rows = {}
    for name, path in artifacts.items():
        if path.suffix != ".tflite":
            continue
        info = inspect_model(path)
        precision = bench.precision_of(info)
        if precision not in peaks:
            continue
        median = side_by_side[name]["litert xnnpack 1t"]["median_ms"]
        achieved = info.macs / (median / 1e3)
        rows[name] = {"macs": info.macs, "median_ms": median, "macs_per_s": round(achieved),
                      "peak_macs_per_s": peaks[precision]["macs_per_s"],
                      "share_of_peak": round(achieved / peaks[precision]["macs_per_s"], 4)}
    return rows


def evaluation_speed(artifacts: dict[str, Path], x: np.ndarray, count: int) -> dict:
    inputs = np.resize(x, (count, *x.shape[1:])).astype(np.float32)
    rows = {}
    for name, path in artifacts.items():
        runner = OnnxRunner(path) if path.suffix == ".onnx" else TFLiteRunner(path)
        runner.predict(inputs[:256])  # the first call sizes the tensors
        started = time.perf_counter()
        runner.predict(inputs)
        rows[name] = {"samples": count, "seconds": round(time.perf_counter() - started, 3)}
    return rows


def artifacts_of(report_dir: Path) -> dict[str, Path]:
    report = json.loads((report_dir / "report.json").read_text())
    return {v["name"]: report_dir / v["file"] for v in report["variants"]}


def main(quick: bool = False) -> dict:
    runs, rounds = (50, 1) if quick else (500, 5)
    results: dict = {"host": host(), "quick": quick}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        results["build_time"] = build_times(folder, quick)
        results["cli_startup"] = cli_startup(rounds, folder)
        digits = data.load("digits")
        sets = {"digits-cnn": (folder / "builds" / "digits-cnn-rpi4", digits.x_test)}
        if not quick:
            kws = data.load(BUILDS["kws-ds-cnn"][1], input_shape=(49, 10, 1))
            sets["kws-ds-cnn"] = (folder / "builds" / "kws-ds-cnn-nucleo-l4r5zi", kws.x_test)
        results["harness_overhead"], results["runtimes"], results["distance_from_limit"] = {}, {}, {}
        results["evaluation_speed"] = {}
        results["peak"] = peak_macs(runs)
        for name, (directory, x_test) in sets.items():
            artifacts = artifacts_of(directory)
            results["harness_overhead"][name] = harness_overhead(artifacts, x_test[0], runs, rounds)
            results["runtimes"][name] = runtimes(artifacts, x_test[0], runs)
            results["distance_from_limit"][name] = distance_from_limit(artifacts, results["runtimes"][name],
                                                                       results["peak"])
            results["evaluation_speed"][name] = evaluation_speed(artifacts, x_test, 10_000)
        results["seconds"] = round(time.perf_counter() - started, 1)
    if not quick:
        (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (HERE.parent / "docs" / "benchmarks.md").write_text(to_markdown(results))
    return results


def _size(figures: dict) -> str:
    return f" ({figures['size_kb']:,.0f} KB)" if "size_kb" in figures else ""


def to_markdown(results: dict) -> str:
    machine = results["host"]
    lines = ["# edgekit on this machine", "",
             f"Written by `benchmarks/run.py` in {results['seconds']:.0f} s on {machine['cpu']}, {machine['cores']} "
             f"cores, {machine['system']}, Python {machine['python']}. Every figure is measured in that run.", "",
             "## 1. Build time per stage (s)", ""]
    builds = results["build_time"]["builds"]
    stages = list(dict.fromkeys(stage for row in builds for stage in row["stages_s"]))
    lines += ["| recipe | target | data | epochs | " + " | ".join(stages) + " | wall | metrics |",
              "|---|---|---|---:|" + "---:|" * (len(stages) + 1) + "---|"]
    for row in builds:
        cells = [f"{row['stages_s'].get(stage, 0):.1f}" for stage in stages]
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in row["metrics"].items())
        lines.append(f"| {row['recipe']} | {row['target']} | `{row['data']}` | {row['epochs']} | "
                     + " | ".join(cells) + f" | {row['wall_s']:.1f} | {metrics} |")
    lines += ["", "A stage's time runs from its '[stage]' log line to the next one. The MLPerf Tiny rows train "
              f"3 epochs on {SYNTHETIC} synthetic samples to time the stages, not to learn: their metrics are near "
              "chance and are no quality figures.", "",
              "Scaling: digits-cnn's architecture on synthetic 8x8 data.", "",
              "| data | samples | train s | wall s |", "|---|---:|---:|---:|"]
    for row in results["build_time"]["scaling"]:
        lines.append(f"| {row['scale']}x | {row['samples']:,} | {row['stages_s'].get('train', 0):.1f} | "
                     f"{row['wall_s']:.1f} |")
    startup = results["cli_startup"]
    lines += ["", f"## 2. CLI start-up (goal under {startup['goal_s']} s; `inspect`, start to finish on a model of "
              f"about 300 KB, under {startup.get('inspect_goal_s', 1.5)} s)", "", "| command | median s | min s |",
              "|---|---:|---:|",
              *(f"| `{cmd}`{_size(f)} | {f['median_s']:.3f} | {f['min_s']:.3f} |"
                for cmd, f in startup["commands"].items()),
              "", f"Heavy modules imported by the three commands: {startup['heavy_modules_imported']}.", "",
              "## 3. Harness overhead (goal: ratio within 1.03)", "",
              "| model | artifact | edgekit median ms | bare loop ms | ratio |", "|---|---|---:|---:|---:|"]
    for model, block in results["harness_overhead"].items():
        for name, row in block["artifacts"].items():
            lines.append(f"| {model} | {name} | {row['edgekit_median_ms']:.4f} | {row['bare_loop_mean_ms']:.4f} | "
                         f"{row['ratio']:.3f} |")
    lines += ["", "## 4. Runtimes side by side (batch 1, median / p90 ms)", "",
              "| model | artifact | runtime | median | p90 |", "|---|---|---|---:|---:|"]
    for model, block in results["runtimes"].items():
        for name, row in block.items():
            for runtime, figures in row.items():
                if "error" in figures:
                    lines.append(f"| {model} | {name} | {runtime} | {figures['error']} | |")
                else:
                    lines.append(f"| {model} | {name} | {runtime} | {figures['median_ms']:.4f} | "
                                 f"{figures['p90_ms']:.4f} |")
    peak = results["peak"]
    lines += ["", "## 5. Distance from the limit", "",
              "Peak: one 1024x1024 dense layer on 64 inputs in LiteRT/XNNPACK, one thread: "
              + ", ".join(f"{p} {f['macs_per_s'] / 1e9:.1f} GMAC/s" for p, f in peak.items()) + ".", "",
              "| model | artifact | MACs | median ms | GMAC/s | share of peak |", "|---|---|---:|---:|---:|---:|"]
    for model, block in results["distance_from_limit"].items():
        for name, row in block.items():
            lines.append(f"| {model} | {name} | {row['macs']:,} | {row['median_ms']:.4f} | "
                         f"{row['macs_per_s'] / 1e9:.2f} | {row['share_of_peak']:.1%} |")
    lines += ["", "## 6. Accuracy evaluation speed (goal: 10,000 samples under 2 s for digits-cnn int8)", "",
              "| model | artifact | samples | seconds |", "|---|---|---:|---:|"]
    for model, block in results["evaluation_speed"].items():
        for name, row in block.items():
            lines.append(f"| {model} | {name} | {row['samples']:,} | {row['seconds']:.3f} |")
    page = "\n".join(lines) + "\n"
    fuzzed = HERE / "fuzz.json"  # written by benchmarks/fuzz.py (minutes), kept on this page as it last ran
    if fuzzed.is_file() and "onnx" in (counts := json.loads(fuzzed.read_text())):
        page += "\n" + fuzzing_section(counts, 7)
    return page


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, few runs, digits-cnn only; writes nothing")
    figures = main(parser.parse_args().quick)
    print(json.dumps({k: figures[k] for k in ("cli_startup", "peak", "seconds")}, indent=2))
