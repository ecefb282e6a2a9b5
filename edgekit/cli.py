"""The command line: parse, call one library function, print. Library modules (and TensorFlow with
them) are imported inside the commands that need them, so `--help`, `targets` and `models` start fast."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from edgekit.errors import EdgekitError


class _Group(click.Group):
    """Turns every expected failure into one `Error: ...` line and its exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgekitError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)


def _setup_logging(verbose: bool, quiet: bool) -> None:
    from edgekit.progress import LogHandler

    handler = LogHandler(sys.stderr)  # writes above the progress bars while they are drawn
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("edgekit")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def _print_table(title: str, columns, rows) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, no_wrap=i == 0)  # names stay whole, so they can be grepped and copied
    for row in rows:
        table.add_row(*row)
    Console(width=max(130, Console().width)).print(table)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgekit")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail (converter output, tracebacks) to stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Log only warnings and errors, and draw no progress bars.")
@click.pass_context
def main(ctx, verbose: bool, quiet: bool) -> None:
    """edgekit: train, prune, quantize, convert and benchmark a small model for a device.

    Results go to stdout, progress to stderr: progress bars (epochs, calibration, benchmark runs) when
    stderr is a terminal, plain log lines otherwise. Exit codes: 0 ok, 1 a stage failed, 2 bad input,
    3 a model that runs but misses a budget or accuracy guard.
    """
    _setup_logging(verbose, quiet)
    if not quiet and sys.stderr.isatty():
        from edgekit import progress

        ctx.with_resource(progress.display())


_DISTRIBUTE = click.option(
    "--distribute", type=click.Choice(["mirrored", "multiworker"]), default=None,
    help="Train (and prune, QAT) under a tf.distribute strategy: mirrored = this machine's GPUs, or "
         "EDGEKIT_CPU_DEVICES=N logical CPU devices; multiworker = the cluster in TF_CONFIG, only the chief "
         "writes. batch_size stays global. See docs/distributed.md.")


@main.command()
@click.option("--target", "target_names", multiple=True, default=["rpi4"], show_default=True,
              help="Built-in target name (see `edgekit targets`) or path to a target TOML file; repeat it (or say "
                   "'all') to build once and judge the model on each.")
@click.option("--recipe", "recipe_name", default="digits-cnn", show_default=True,
              help="Built-in recipe name (see `edgekit models`) or path to a recipe TOML file.")
@click.option("--data", "data_spec", default=None,
              help="Dataset spec replacing the recipe's: builtin:NAME, synthetic:SHAPE:CLASSES[:COUNT], FILE.npz, "
                   "FILE.csv[#label=COLUMN] or a class FOLDER.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("build"),
              show_default=True, help="Parent folder; the build goes to OUT/<recipe>-<target>[-<target>...]/, the "
                                      "targets in the order given.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for weights and shuffling.")
@click.option("--runs", type=click.IntRange(min=10), default=200, show_default=True,
              help="Timed batch-1 runs per artifact.")
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True,
              help="Untimed runs before timing.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Threads for the host runtimes.")
@click.option("--force", is_flag=True, help="Rebuild every stage, ignoring the results an earlier run cached.")
@_DISTRIBUTE
@click.option("--json", "as_json", is_flag=True, help="Print report.json instead of the table.")
@click.pass_context
def build(ctx, target_names, recipe_name, data_spec, out, seed, runs, warmup, threads, force, distribute, as_json):
    """Train, prune, int8-QAT, convert (TFLite float32 + int8, ONNX), verify and benchmark a model.

    Each stage's result is cached in the build folder: run the same command again after an interruption or
    a change and it resumes from the first stage whose inputs changed (--force starts over). One build at a
    time per folder: a second one exits 1 naming the process that holds it. Ctrl-C exits 130.

    The model is built once and benchmarked against each target (one or several): the first target's variants,
    one table across targets (those that fit first, then by estimated latency), a verdict per target in
    report.html, and a bundle per target in bundle/<target>/. Exit 3, after the folder is complete and the
    tables printed, names every target whose selected variant misses a budget, and a missed accuracy guard."""
    from edgekit import recipes, targets

    recipe = recipes.load(recipe_name)
    chosen = [targets.load(n) for n in (targets.names() if "all" in target_names else target_names)]
    from edgekit.build import build as run_build
    from edgekit.build import build_folder
    from edgekit.errors import BudgetError

    try:
        result = run_build(recipe, chosen, out, seed=seed, runs=runs, warmup=warmup, threads=threads,
                           data_spec=data_spec, force=force, distribute=distribute)
    except KeyboardInterrupt:
        click.echo(f"Interrupted: {build_folder(recipe, chosen, out)} is not finished (no manifest.json); run the "
                   "same command again to resume from the last finished stage, or add --force to start over",
                   err=True)
        ctx.exit(130)
    except BudgetError as e:  # the build finished: its results go to stdout before the error line
        if e.result is not None:
            _show_build(e.result, as_json)
        raise
    if not result.written:
        click.echo("Trained as a non-chief worker of the TF_CONFIG cluster; the chief writes the build folder.")
        return
    _show_build(result, as_json)


def _show_build(result, as_json: bool) -> None:
    """The lead target's variants, the table across every target, and what to ship to each."""
    from edgekit.report.contract import cross_target
    from edgekit.report.text import CROSS_TARGET_COLUMNS, columns, cross_target_row, variant_row

    if as_json:
        click.echo(json.dumps(result.report, indent=2))
        return
    lead = result.lead
    _print_table(f"{result.recipe} for {lead.name} ({result.test_samples} test samples)",
                 columns(result.metric),
                 [variant_row(v.to_dict()) for v in lead.variants])
    _print_table(f"{result.recipe}: what each target ships ({result.metric} {_metrics(result)})", CROSS_TARGET_COLUMNS,
                 [cross_target_row(row) for row in cross_target(result.targets)])
    for target in result.targets:
        click.echo(f"Ship: {target.selection.variant} to {target.name} ({target.selection.reason})")
    click.echo(f"Build folder: {result.directory}")


def _metrics(result) -> str:
    return ", ".join(f"{v.name} {v.metric_value:.4f}" for v in result.lead.variants if v.metric_value is not None)


@main.command("bench")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "target_names", multiple=True, default=["rpi4"], show_default=True,
              help="Target name or TOML path; repeat it, or say 'all' for every built-in target.")
@click.option("--data", "data_spec", default=None, help="Dataset spec; its test split measures the task metric.")
@click.option("--task", type=click.Choice(["classification", "binary", "regression", "anomaly"]),
              default="classification", show_default=True, help="What the model's outputs mean, for --data.")
@click.option("--runs", type=click.IntRange(min=10), default=200, show_default=True, help="Timed batch-1 runs.")
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True,
              help="Untimed runs before timing.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Threads for the host runtime.")
@click.option("--latency-ms", type=float, default=None, help="Latency budget, overriding the profile's.")
@click.option("--ram-kb", type=float, default=None, help="RAM budget in KB, overriding the profile's.")
@click.option("--flash-kb", type=float, default=None, help="Flash budget in KB, overriding the profile's.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table across targets and a verdict card per target as one self-contained "
                   "HTML page to this file.")
def bench_command(model, target_names, data_spec, task, runs, warmup, threads, latency_ms, ram_kb, flash_kb,
                  as_json, html_path):
    """Does MODEL (.tflite or .onnx) fit a target: structure, MACs, flash, RAM, op support, host latency and
    the target latency estimate, each budget with its headroom. Exit 3 when a budget is missed."""
    from edgekit import targets as target_profiles
    from edgekit.errors import UsageError

    names = target_profiles.names() if "all" in target_names else list(dict.fromkeys(target_names))
    chosen = [target_profiles.load(n).with_budgets(latency_ms, ram_kb, flash_kb) for n in names]
    if not model.is_file():
        raise UsageError(f"model file '{model}' does not exist")
    from edgekit.validate import check_model_file

    check_model_file(model)  # before --data reads its input shape: a bad file gets its own line
    from edgekit.bench import bench_targets

    x = y = None
    if data_spec:
        from edgekit import data
        from edgekit.model_info import inspect_model

        dataset = data.load(data_spec, input_shape=inspect_model(model).inputs[0].shape[1:], task=task)
        x, y = dataset.x_test, dataset.y_test
    from edgekit.recipes import METRICS

    measured = bench_targets(model, chosen, x, y, runs, warmup, threads, task, METRICS[task][0])
    from edgekit.report.contract import cross_target
    from edgekit.report.text import CROSS_TARGET_COLUMNS, cross_target_row, model_lines, target_lines
    from edgekit.results import of_file, ranked_targets

    judged = ranked_targets([of_file(r, t) for r, t in zip(measured, chosen, strict=True)])
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in measured], indent=2))
    else:
        click.echo("\n".join(model_lines(measured[0])))
        for target in judged:
            click.echo("\n".join(target_lines(target.selected.measured)))
        _print_table(f"{model.name} against {', '.join(t.name for t in chosen)}", CROSS_TARGET_COLUMNS,
                     [cross_target_row(row) for row in cross_target(judged)])
    if html_path is not None:
        from edgekit._files import write_atomic
        from edgekit.report.html import render_targets_html

        write_atomic(html_path, render_targets_html(judged))
        click.echo(f"HTML: {html_path}", err=True)
    missed = [f"{r.target} ({', '.join(c.budget for c in r.fit.misses)})" for r in measured if not r.fit.fits]
    if missed:
        from edgekit.errors import BudgetError

        raise BudgetError(f"{model.name} does not fit {'; '.join(missed)}")


@main.command("convert")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--to", "fmt", required=True, metavar="FORMAT",
              help="tflite-float32, tflite-float16 (float16 weights), tflite-dynamic (int8 weights), tflite-int8 "
                   "(full integer), tflite-int16x8 (int16 activations, int8 weights), onnx, or onnx-int8 (QDQ).")
@click.option("--data", "data_spec", default=None, metavar="SPEC",
              help="Dataset spec: its training split calibrates tflite-int8, tflite-int16x8 and onnx-int8 (which "
                   "need it), its validation split verifies the result. Without it, the other formats are "
                   "verified on seeded random inputs.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file. Default: MODEL's stem and the format's suffix, next to MODEL "
                   "(model.int16x8.tflite).")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=200, show_default=True,
              help="Training samples that calibrate the integer formats.")
@click.option("--task", default="classification", show_default=True,
              help="classification, binary, regression or anomaly: how the data is read and how quantized outputs "
                   "are compared with MODEL's.")
@click.option("--unsafe-load", is_flag=True,
              help="Let Lambda layers load: their stored Python code runs. Only for models from a trusted source.")
def convert_command(model, fmt, data_spec, out, calibration_samples, task, unsafe_load):
    """Convert MODEL (a tf_keras .keras or .h5 file, or a SavedModel folder) to FORMAT, verify the result
    against MODEL (float formats within a tolerance, quantized ones by agreement; a miss exits 1) and write it."""
    from edgekit import convert

    spec = convert.check_request(fmt, data_spec is not None, task)
    out = out or convert.default_output(model, fmt)
    if out.suffix != spec.extension:
        from edgekit.errors import UsageError

        raise UsageError(f"--out '{out}' does not end in {spec.extension}, the suffix of {fmt} files")
    from edgekit.model_files import load_model

    keras_model = load_model(model, unsafe=unsafe_load)
    x_calibration = x_check = None
    if data_spec:
        from edgekit import data

        dataset = data.load(data_spec, input_shape=convert.input_shape(keras_model), task=task)
        x_calibration = dataset.representative(calibration_samples)
        x_check = dataset.x_val[:convert.CHECK_SAMPLES]
    conversion = convert.convert(keras_model, fmt, x_calibration, x_check, task, inputs_from="validation")
    from edgekit._files import write_atomic

    write_atomic(out, conversion.content)
    click.echo(f"{fmt}: {out}, {len(conversion.content) / 1024:,.1f} KB; {convert.summary(conversion)}")


@main.command("export")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "target_name", required=True, help="Target name or TOML path; the bundle fits its class.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Bundle folder.")
@click.option("--name", default="g_model", show_default=True,
              help="C identifier of the model array (microcontroller bundles).")
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Class names, one a line, copied into the bundle as labels.txt. Default: labels.txt beside "
                   "MODEL, when there is one (as in a build folder).")
@click.option("--data", "data_spec", default=None,
              help="Dataset spec: its first test sample becomes the bundle's stored test input (default: random).")
def export_command(model, target_name, out, name, labels, data_spec):
    """Write the bundle a developer copies to the device for MODEL (.tflite). Microcontroller: the model as an
    aligned C array, an op resolver with exactly its ops and the tensor arena size measured by the TFLite Micro
    runtime. Single-board computer: bench_on_device.py, requirements.txt and run.sh. Phone: bench_android.sh
    for TensorFlow Lite's benchmark_model. Every bundle has model.json and a README with the commands."""
    from edgekit import targets as target_profiles
    from edgekit.errors import UsageError

    target = target_profiles.load(target_name)
    if not model.is_file():
        raise UsageError(f"model file '{model}' does not exist")
    from edgekit.validate import check_model_file

    check_model_file(model)  # before --data reads its input shape: a bad file gets its own line
    sample = None
    if data_spec:
        from edgekit import data
        from edgekit.model_info import inspect_model

        sample = data.load(data_spec, input_shape=inspect_model(model).inputs[0].shape[1:]).x_test[0]
    from edgekit.export import export

    if labels is None and (model.parent / "labels.txt").is_file():
        labels = model.parent / "labels.txt"
    bundle = export(model, target, out, name=name, labels=labels, sample=sample)
    click.echo(f"{out}: {bundle.summary}")


@main.command("compare")
@click.argument("build_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("result", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--variant", default=None,
              help="The build variant the result measured (int8, float32, ...). Default: the one whose file the "
                   "result names.")
@click.option("--calibrate", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a copy of the target profile, refitted so its estimate for this model is the "
                   "measurement, to this TOML file (then use it with --target).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare_command(build_dir, result, variant, calibrate, as_json):
    """Compare a device RESULT (bench_on_device.py's JSON, a benchmark_model log or the microcontroller
    application's serial log) with the estimates in BUILD_DIR: latency and memory, with the error."""
    from edgekit.compare import compare

    comparison = compare(build_dir, result, variant)
    measured = comparison["result"]
    if calibrate is not None:
        from edgekit._files import write_atomic
        from edgekit.compare import build_target, load_build, refit
        from edgekit.model_info import inspect_model

        target = build_target(*load_build(build_dir))
        text = refit(target, inspect_model(comparison["model_path"]), measured["latency_ms"],
                     precision=comparison["precision"], model_name=comparison["file"], result_file=result.name,
                     threads=measured.get("threads"), runtime=f"{measured['runtime']} ({measured['kind']})")
        write_atomic(calibrate, text)
        comparison["calibrated_profile"] = str(calibrate)
    if as_json:
        click.echo(json.dumps(comparison, indent=2, default=str))
        return
    where = ", ".join(str(v) for v in (measured.get("device"), measured.get("os"), measured.get("runtime")) if v)
    _print_table(f"{comparison['file']} ({comparison['variant']}) on {comparison['target']}: estimate vs "
                 f"{measured['kind']} ({where or 'device not named'})",
                 ("figure", "estimate", "measured", "error (estimate / measured - 1)", "within expected error"),
                 [(r["figure"], r["estimate"], r["measured"], r["error"],
                   r["within"] if r["expected"] == "-" else f"{r['within']} ({r['expected']})")
                  for r in comparison["rows"]])
    click.echo(f"Matched to variant {comparison['variant']} by {comparison['matched_by']}.")
    if calibrate is not None:
        click.echo(f"Refitted profile: {calibrate} (use it with --target {calibrate})")


@main.command("optimize")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data_spec", required=True, help="Dataset spec: trains, calibrates and measures the metric.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The optimized .tflite; a JSON report of what each step did is written beside it.")
@click.option("--task", type=click.Choice(["classification", "binary", "regression", "anomaly"]),
              default="classification", show_default=True, help="What the model's outputs mean.")
@click.option("--sparsity", default="0.5", show_default=True,
              help="Share of weights pruned (0 = no pruning), or 2:4 for structured 2-of-4 sparsity.")
@click.option("--schedule", type=click.Choice(["polynomial", "constant"]), default="polynomial", show_default=True)
@click.option("--pruning-epochs", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--prune-layers", multiple=True, help="Layer name patterns to prune (default: every conv and "
              "dense layer but the first convolution and the last dense layer).")
@click.option("--keep-dense", multiple=True, help="Layer name patterns never pruned.")
@click.option("--quantize", type=click.Choice(["qat", "ptq", "int16x8"]), default="qat", show_default=True,
              help="int8 quantization-aware training, int8 post-training quantization, or int16 activations.")
@click.option("--qat-epochs", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--clusters", type=click.IntRange(min=0), default=0, show_default=True,
              help="Weight clusters per kernel (0 = none), then cluster-preserving QAT.")
@click.option("--cluster-epochs", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--max-drop", type=float, default=1.0, show_default=True,
              help="Points of the metric the result may lose against the float model; more exits 3.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--learning-rate", type=float, default=0.0005, show_default=True,
              help="For the pruning and QAT fine-tuning.")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--unsafe-load", is_flag=True, help="Let Lambda layers load (their Python code runs).")
@_DISTRIBUTE
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def optimize_command(model, data_spec, out, task, sparsity, schedule, pruning_epochs, prune_layers, keep_dense,
                     quantize, qat_epochs, clusters, cluster_epochs, max_drop, batch_size, learning_rate,
                     calibration_samples, unsafe_load, distribute, as_json):
    """Prune, cluster and quantize a trained MODEL (.keras, .h5, SavedModel, or a Keras 3 file), convert it,
    and report size (raw and gzip), sparsity and the task metric before and after. Exit 3 when the metric
    drops more than --max-drop; nothing is written then."""
    from edgekit import data, recipes
    from edgekit._files import write_atomic, write_json
    from edgekit.distribute import check, is_chief
    from edgekit.errors import UsageError

    check(distribute)
    try:
        pruning = sparsity if sparsity == "2:4" else float(sparsity)
    except ValueError:
        raise UsageError(f"--sparsity '{sparsity}': expected a number from 0 to 0.95, or 2:4") from None
    recipe = recipes.from_mapping({
        "name": model.stem, "task": task,
        "model": {"builder": "external"},
        "train": {"epochs": 1, "batch_size": batch_size, "learning_rate": learning_rate},
        "optimize": {"sparsity": pruning, "schedule": schedule, "pruning_epochs": pruning_epochs if pruning else 0,
                     "prune_layers": list(prune_layers), "keep_dense": list(keep_dense), "quantize": quantize,
                     "qat_epochs": qat_epochs, "clusters": clusters, "cluster_epochs": cluster_epochs,
                     "max_drop": max_drop, "calibration_samples": calibration_samples,
                     "pruning_learning_rate": learning_rate, "qat_learning_rate": learning_rate / 2},
    }, "command line")
    from edgekit.model_files import load_model
    from edgekit.optimize import optimize_model
    from edgekit.report.text import optimization_lines

    keras_model = load_model(model, unsafe=unsafe_load)
    dataset = data.load(data_spec, input_shape=tuple(keras_model.input_shape[1:]), task=task)
    conversion, report = optimize_model(keras_model, recipe, dataset, distribute)
    if not is_chief(distribute):
        click.echo(f"Optimized as a non-chief worker of the TF_CONFIG cluster; the chief writes {out}.")
        return
    write_atomic(out, conversion.content)
    write_json(out.with_suffix(".json"), report)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    metric, before, after = report["metric"], report["before"], report["after"]
    click.echo(f"{out}: {after['format']}, {after['size_bytes']:,} bytes (gzip {after['gzip_bytes']:,}); float32 "
               f"{before['size_bytes']:,} (gzip {before['gzip_bytes']:,})")
    click.echo(f"{metric}: {before[metric]:.4f} -> {after[metric]:.4f} ({report['drop_points']:+.2f} points, "
               f"allowed {report['max_drop']:g}) on {report['test_samples']} test samples")
    for row in report["artifact_sparsity"]:
        click.echo(f"  {row['layer']}: {row['sparsity']:.1%} zeros of {row['weights']:,} weights")
    for line in optimization_lines(report):
        click.echo(line)


@main.command("sweep")
@click.option("--recipe", "recipe_name", default="digits-cnn", show_default=True,
              help="Built-in recipe name or path to a recipe TOML file: the point every grid value changes.")
@click.option("--target", "target_names", multiple=True, default=["rpi4"], show_default=True,
              help="Target name or TOML path; repeat it. Each point is built for the first and judged on all.")
@click.option("--grid", "grid_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file with a [grid] table: dotted recipe key = [values], e.g. "
                   "\"optimize.sparsity\" = [0.0, 0.5].")
@click.option("--data", "data_spec", default=None, help="Dataset spec replacing the recipe's.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("sweep"), show_default=True,
              help="Sweep folder: sweep.json, sweep.md, sweep.html + plots/, points/ (one a point), builds/.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Points built at once, each in its own process.")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run the points as Ray tasks on this cluster ('local' starts one here; needs edgekit[ray]).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--runs", type=click.IntRange(min=10), default=100, show_default=True, help="Timed runs per artifact.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--distribute", type=click.Choice(["mirrored"]), default=None,
              help="Train each point with tf.distribute.MirroredStrategy (see edgekit build --help).")
@click.option("--json", "as_json", is_flag=True, help="Print sweep.json.")
def sweep_command(recipe_name, target_names, grid_file, data_spec, out, workers, ray_address, seed, runs, warmup,
                  distribute, as_json):
    """Build every combination of the grid's recipe values and find, per target, the best point that fits and
    the Pareto front of metric, estimated latency and RAM. A point whose untrained model already misses every
    target's flash, RAM or latency budget is skipped before training. Re-running continues where it stopped."""
    from edgekit.sweep import sweep

    summary = sweep(recipe_name, list(target_names), grid_file, out, workers=workers, ray_address=ray_address,
                    seed=seed, data_spec=data_spec, runs=runs, warmup=warmup, distribute=distribute)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for target, verdict in summary["per_target"].items():
        best = f"{verdict['best']} ({verdict['best_metric']:.4f})" if verdict["best"] else "no point fits"
        click.echo(f"{target}: best {best}; front: {', '.join(verdict['front']) or 'empty'}")
    click.echo(f"{len(summary['points'])} points, {summary['skipped_points']} skipped before training; "
               f"{out / 'sweep.md'}")


@main.command("verify")
@click.argument("build_dir", type=click.Path(path_type=Path))
def verify_command(build_dir):
    """Re-hash every file of a build folder against its manifest.json and say what differs (exit 1 if any)."""
    from edgekit.errors import EdgekitError
    from edgekit.report.manifest import verify

    problems = verify(build_dir)
    for line in problems:
        click.echo(line)
    if problems:
        raise EdgekitError(f"{build_dir}: {len(problems)} file(s) differ from manifest.json")
    click.echo(f"{build_dir}: every file matches manifest.json")


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def targets(ctx, as_json):
    """List the device targets (built-in profiles)."""
    if ctx.invoked_subcommand:
        return
    from edgekit import targets as target_profiles

    loaded = target_profiles.load_all()
    if as_json:
        click.echo(json.dumps([t.to_dict() for t in loaded], indent=2))
        return
    rows = [t.summary() for t in loaded]
    columns = list(rows[0]) if rows else []
    _print_table("edgekit targets", columns, [[str(row[c]) for c in columns] for row in rows])


@targets.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def targets_show(name, as_json):
    """Print one target profile (a built-in NAME or a path to a TOML file)."""
    from edgekit import targets as target_profiles

    target = target_profiles.load(name)
    if as_json:
        click.echo(json.dumps(target.to_dict(), indent=2))
        return
    click.echo(target.file.read_text())


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(as_json):
    """List the model recipes."""
    from edgekit import recipes

    loaded = recipes.load_all()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in loaded], indent=2))
        return
    _print_table("edgekit models", ("recipe", "builder", "dataset", "metric", "sparsity", "qat epochs",
                                    "description"),
                 [(r.name, r.builder, r.dataset, r.metric,
                   r.optimize.sparsity if isinstance(r.optimize.sparsity, str) else f"{r.optimize.sparsity:.0%}",
                   str(r.optimize.qat_epochs), r.description) for r in loaded])


@main.command("report")
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["html", "md", "json"]), default="html", show_default=True,
              help="html: write report.html and plots/*.png into BUILD_DIR and print the page's path; md: print "
                   "report.md's Markdown; json: print report.json.")
def report_command(build_dir, fmt):
    """Regenerate the report of a build folder from its report.json. The HTML page is one self-contained file
    (figures embedded, nothing fetched); a classification build without a stored confusion matrix gets one
    computed from the folder's model and the test split, when the dataset still loads as the same data."""
    from edgekit.report.html import HTML, REPORT_JSON, load_report, rebuild_html

    if fmt == "json":
        load_report(build_dir)  # the same one-line error as the other formats for a folder that is not a build
        click.echo((build_dir / REPORT_JSON).read_text(), nl=False)
    elif fmt == "md":
        from edgekit.report.text import to_markdown

        click.echo(to_markdown(load_report(build_dir)), nl=False)
    else:
        rebuild_html(build_dir)
        click.echo(build_dir / HTML)


if __name__ == "__main__":
    main()
