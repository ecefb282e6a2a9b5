"""The command line: parse, call one library function, print. Library modules (and TensorFlow with
them) are imported inside the commands that need them, so `--help`, `targets` and `models` start fast."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgekit import cli_options as options
from edgekit.cli_inspect import inspect_command
from edgekit.errors import EdgekitError
from edgekit.output import echo, echo_table, holding_results, is_terminal
from edgekit.units import size_text


class _Group(click.Group):
    """Turns every expected failure into one `Error: ...` line and its exit code. Each command runs with stdout
    held for its results (edgekit.output): whatever else writes there goes to stderr."""

    group_class = type  # `targets` is one too, so `targets show` is held as well

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if cmd.callback is not None:
            cmd.callback = holding_results(cmd.callback)
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgekitError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)


def _print_list(items: list, as_json: bool) -> None:
    """Targets or recipes: their dicts as JSON, or a table of their summaries (untitled: the command says it)."""
    if as_json:
        echo(json.dumps([item.to_dict() for item in items], indent=2))
        return
    rows = [item.summary() for item in items]
    echo_table(None, list(rows[0]) if rows else [], [list(row.values()) for row in rows])


@click.group(cls=_Group, commands=[inspect_command], context_settings={"help_option_names": ["-h", "--help"]})
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
    from edgekit import progress

    progress.setup_logging(sys.stderr, verbose, quiet)
    if not quiet and sys.stderr.isatty():
        ctx.with_resource(progress.display())


@main.command()
@options.target("Built-in target name (see `edgekit targets`) or path to a target TOML file; repeat it (or say "
                "'all') to build once and judge the model on each.")
@click.option("--recipe", "recipe_name", default="digits-cnn", show_default=True,
              help="Built-in recipe name (see `edgekit models`) or path to a recipe TOML file.")
@click.option("--data", "data_spec", default=None,
              help="Dataset spec replacing the recipe's: builtin:NAME, synthetic:SHAPE:CLASSES[:COUNT], FILE.npz, "
                   "FILE.csv[#label=COLUMN] or a class FOLDER.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("build"),
              show_default=True, help="Parent folder; the build goes to OUT/<recipe>-<target>[-<target>...]/, the "
                                      "targets in the order given.")
@options.seed()
@options.timing()
@click.option("--force", is_flag=True, help="Rebuild every stage, ignoring the results an earlier run cached.")
@options.distribute()
@options.json("Print report.json instead of the table.")
@click.pass_context
def build(ctx, chosen, recipe_name, data_spec, out, seed, runs, warmup, threads, force, distribute, as_json):
    """Train, prune, int8-QAT, convert (TFLite float32 + int8, ONNX), verify and benchmark a model.

    Each stage's result is cached in the build folder: run the same command again after an interruption or
    a change and it resumes from the first stage whose inputs changed (--force starts over). One build at a
    time per folder: a second one exits 1 naming the process that holds it. Ctrl-C exits 130.

    The model is built once and benchmarked against each target (one or several): the first target's variants,
    one table across targets (those that fit first, then by target latency), a verdict per target in
    report.html, and a bundle per target in bundle/<target>/. Exit 3, after the folder is complete and the
    tables printed, names every target whose selected variant misses a budget, and a missed accuracy guard."""
    from edgekit import recipes

    recipe = recipes.load(recipe_name)
    from edgekit.build import build as run_build
    from edgekit.build import build_folder
    from edgekit.errors import BudgetError

    try:
        result = run_build(recipe, chosen, out, seed=seed, runs=runs, warmup=warmup, threads=threads,
                           data_spec=data_spec, force=force, distribute=distribute)
    except KeyboardInterrupt:
        click.echo(f"Interrupted: {build_folder(recipe, chosen, out)} is not finished (no manifest.json); run the "
                   "same command again to resume from the last finished stage, or add --force to start over", err=True)
        ctx.exit(130)
    except BudgetError as e:  # the build finished: its results go to stdout before the error line
        if e.result is not None:
            _show_build(e.result, as_json)
        raise
    if not result.written:
        echo("Trained as a non-chief worker of the TF_CONFIG cluster; the chief writes the build folder.")
        return
    _show_build(result, as_json)


def _show_build(result, as_json: bool) -> None:
    from edgekit.report.terminal import build_text

    echo(json.dumps(result.report, indent=2) if as_json else build_text(result, is_terminal()), nl=as_json)


@main.command("bench")
@click.argument("model", type=click.Path(path_type=Path))
@options.target("Target name or TOML path; repeat it, or say 'all' for every built-in target.")
@click.option("--data", "data_spec", default=None, help="Dataset spec; its test split measures the task metric.")
@options.inputs()
@options.task()
@options.timing()
@click.option("--latency-ms", type=float, default=None, help="Latency budget, overriding the profile's.")
@click.option("--ram-kb", type=float, default=None, help="RAM budget in KiB, overriding the profile's.")
@click.option("--flash-kb", type=float, default=None, help="Flash budget in KiB, overriding the profile's.")
@options.json("Print the whole result as JSON.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table across targets and a verdict card per target as one self-contained "
                   "HTML page to this file.")
def bench_command(model, chosen, data_spec, inputs, task, runs, warmup, threads, latency_ms, ram_kb, flash_kb,
                  as_json, html_path):
    """Does MODEL (.tflite or .onnx) fit a target: structure, MACs, flash, RAM, op support, host latency and
    the target latency (the profile's cost-model estimate, or instructions counted on an emulated Cortex-M
    core), each budget with its headroom. Exit 3 when a budget is missed."""
    from edgekit.bench import bench_file, check_fits
    from edgekit.report.terminal import bench_text
    from edgekit.results import of_file, ranked_targets

    chosen = [t.with_budgets(latency_ms, ram_kb, flash_kb) for t in chosen]
    measured = bench_file(model, chosen, data_spec, task, runs, warmup, threads, inputs)
    judged = ranked_targets([of_file(r, t) for r, t in zip(measured, chosen, strict=True)])
    echo(json.dumps([r.to_dict() for r in measured], indent=2) if as_json
         else bench_text(model.name, measured, judged, is_terminal()), nl=as_json)
    if html_path is not None:
        from edgekit._files import write_atomic
        from edgekit.report.html import render_targets_html

        write_atomic(html_path, render_targets_html(judged))
        click.echo(f"HTML: {html_path}", err=True)
    check_fits(model.name, measured)


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
@options.calibration_samples()
@options.task()
@options.unsafe_load()
def convert_command(model, fmt, data_spec, out, calibration_samples, task, unsafe_load):
    """Convert MODEL (a tf_keras .keras or .h5 file, or a SavedModel folder) to FORMAT, verify the result
    against MODEL (float formats within a tolerance, quantized ones by agreement; a miss exits 1) and write it."""
    from edgekit import convert

    out, conversion = convert.convert_file(model, fmt, out, data_spec, calibration_samples, task, unsafe_load)
    echo(f"{fmt}: {out}, {size_text(len(conversion.content))}; {convert.summary(conversion)}")


@main.command("export")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", required=True, type=options.TargetType(several=False),
              help="Target name or TOML path; the bundle fits its class.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Bundle folder.")
@click.option("--name", default="g_model", show_default=True,
              help="C identifier of the model array (microcontroller bundles).")
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Class names, one a line, copied into the bundle as labels.txt. Default: labels.txt beside "
                   "MODEL, when there is one (as in a build folder).")
@click.option("--data", "data_spec", default=None,
              help="Dataset spec: its first test sample becomes the bundle's stored test input (default: random).")
@options.layout()
@options.inputs()
def export_command(model, target, out, name, labels, data_spec, layout, inputs):
    """Write the bundle a developer copies to the device for MODEL (.tflite). Microcontroller: the model as an
    aligned C array, an op resolver with exactly its ops and the tensor arena size measured by the TFLite Micro
    runtime. Single-board computer: bench_on_device.py, requirements.txt and run.sh. Phone: bench_android.sh
    for TensorFlow Lite's benchmark_model. Every bundle has model.json and a README with the commands."""
    from edgekit import data
    from edgekit.validate import check_model_file, require_model_file

    check_model_file(require_model_file(model))  # before --data reads its input shape: a bad file gets its own line
    sample = data.load_for_model(data_spec, model).x_test[0] if data_spec else None
    from edgekit.export import export

    bundle = export(model, target, out, name=name, labels=labels, sample=sample, layout=layout, inputs=inputs)
    echo(f"{out}: {bundle.summary}")


@main.command("compare")
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.argument("result", type=click.Path(dir_okay=False, path_type=Path))
@options.compare_settings()
@options.inputs()
@options.json("Print the comparison as JSON.")
def compare_command(build_dir, result, variant, target_name, calibrate, force, inputs, as_json):
    """Compare a device RESULT (bench_on_device.py's JSON, a benchmark_model log or the microcontroller
    application's serial log) with the estimates in BUILD_DIR (a build folder, a bundle folder `edgekit export`
    wrote, or a saved `edgekit bench --json`): latency and memory, with the error."""
    from edgekit import compare

    comparison = compare.compare(build_dir, result, variant, target_name, calibrate, force, inputs)
    if as_json:
        echo(json.dumps(comparison, indent=2, default=str))
        return
    title, rows, lines = compare.text(comparison)
    echo_table(title, compare.COLUMNS, rows)
    echo("\n".join(lines))


@main.command("optimize")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data_spec", required=True, help="Dataset spec: trains, calibrates and measures the metric.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The optimized .tflite; a JSON report of what each step did is written beside it.")
@options.task()
@options.optimize_settings()
@options.seed()
@options.unsafe_load()
@options.distribute()
@options.json("Print the report as JSON.")
def optimize_command(model, data_spec, out, seed, unsafe_load, distribute, as_json, **settings):
    """Prune, cluster and quantize a trained MODEL (.keras, .h5, SavedModel, or a Keras 3 file), convert it,
    and report size (raw and gzip), sparsity and the task metric before and after. The same MODEL, data and
    --seed give the same file. Exit 3 when the metric drops more than --max-drop; nothing is written then."""
    from edgekit import recipes
    from edgekit.optimize_file import optimize_file
    from edgekit.report.optimize_text import optimize_lines

    report = optimize_file(model, recipes.from_optimize_options(model.stem, **settings), data_spec, out, seed,
                           distribute, unsafe_load)
    if report is None:
        echo(f"Optimized as a non-chief worker of the TF_CONFIG cluster; the chief writes {out}.")
    else:
        echo(json.dumps(report, indent=2) if as_json else "\n".join(optimize_lines(report, out)))


@main.command("sweep")
@click.option("--recipe", "recipe_name", default="digits-cnn", show_default=True,
              help="Built-in recipe name or path to a recipe TOML file: the point every grid value changes.")
@options.target("Target name or TOML path; repeat it, or say 'all'. Each point is built once and judged on all.")
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
@options.seed()
@options.timing(runs=100, warmup=10, threads=False)
@options.distribute(("mirrored",), "Train each point with tf.distribute.MirroredStrategy (see edgekit build --help).")
@options.json("Print sweep.json.")
def sweep_command(recipe_name, chosen, grid_file, data_spec, out, workers, ray_address, seed, runs, warmup,
                  distribute, as_json):
    """Build every combination of the grid's recipe values and find, per target, the best point that fits and
    the Pareto front of metric, target latency and RAM. A point whose untrained model already misses every
    target's flash, RAM or latency budget is skipped before training. Re-running continues where it stopped."""
    from edgekit.sweep import summary_lines, sweep

    summary = sweep(recipe_name, [str(t.file) for t in chosen], grid_file, out, workers=workers,
                    ray_address=ray_address, seed=seed, data_spec=data_spec, runs=runs, warmup=warmup,
                    distribute=distribute)
    echo(json.dumps(summary, indent=2) if as_json else "\n".join(summary_lines(summary, out)))


@main.command("verify")
@click.argument("build_dir", type=click.Path(path_type=Path))
def verify_command(build_dir):
    """Re-hash every file of a build folder against its manifest.json and say what differs (exit 1 if any)."""
    from edgekit.report.manifest import verify

    problems = verify(build_dir)
    echo("\n".join(problems) or f"{build_dir}: every file matches manifest.json")
    if problems:
        raise EdgekitError(f"{build_dir}: {len(problems)} file(s) differ from manifest.json")


@main.group(invoke_without_command=True)
@options.json()
@click.pass_context
def targets(ctx, as_json):
    """List the device targets (built-in profiles)."""
    from edgekit import targets as target_profiles

    if not ctx.invoked_subcommand:
        _print_list(target_profiles.load_all(), as_json)


@targets.command("show")
@click.argument("name")
@options.json("Print JSON.")
def targets_show(name, as_json):
    """Print one target profile (a built-in NAME or a path to a TOML file)."""
    from edgekit import targets as target_profiles

    target = target_profiles.load(name)
    echo(json.dumps(target.to_dict(), indent=2) if as_json else target.file.read_text())


@main.command()
@options.json()
def models(as_json):
    """List the model recipes."""
    from edgekit import recipes

    _print_list(recipes.load_all(), as_json)


@main.command("report")
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["html", "md", "json"]), default="html", show_default=True,
              help="html: write report.html and plots/*.png into BUILD_DIR and print the page's path; md: print "
                   "report.md's Markdown; json: print report.json.")
def report_command(build_dir, fmt):
    """Regenerate the report of a build folder from its report.json. The HTML page is one self-contained file
    (figures embedded, nothing fetched); a classification build without a stored confusion matrix gets one
    computed from the folder's model and the test split, when the dataset still loads as the same data."""
    from edgekit.report import regenerate

    echo(regenerate(build_dir, fmt), nl=False)
