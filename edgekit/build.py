"""`edgekit build`: the whole chain, data -> train -> optimize -> convert -> bench -> report + export.

Each stage is a plain function from the other modules; this module chains them, names the stage that
failed, and writes the build folder (artifacts first, reports next, manifest.json last). The expensive
stages (train, baseline conversions, optimize + convert, bench) go through edgekit.cache, so a re-run after
a crash or a change starts at the first stage whose inputs changed; a lock keeps two builds out of one
folder.

One folder rule, for any number of targets: OUT/<recipe>-<target>[-<target>...], the targets in the order
given, each bundle in bundle/<target>/. A build also reuses what the other folders of its recipe under OUT
cached (entries are keyed by what they were computed from, so only results with the same inputs count):
adding a target to a finished build, or building one of its targets alone, trains nothing again."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from edgekit import npu
from edgekit._files import LOCK, folder_lock, write_atomic, write_json
from edgekit.cache import CACHE, ENTRY, Entry, StageCache, array_fingerprint
from edgekit.convert import CHECK_SAMPLES as VERIFY_SAMPLES  # validation inputs each conversion is checked on
from edgekit.errors import BudgetError, EdgekitError, StageError, UsageError
from edgekit.model_files import keras_bytes, load_own_keras
from edgekit.recipes import Recipe
from edgekit.results import BuildResult, Variant, judge
from edgekit.targets import Target
from edgekit.verdict import check_capabilities

log = logging.getLogger("edgekit")

FLOAT_KERAS = "float32.keras"  # the trained float baseline, as tf_keras saved it
BUNDLE = "bundle"  # the deployment files of each target's selected model (edgekit export): bundle/<target>/
UNFINISHED = "UNFINISHED"  # in a build folder until its manifest is written: what stopped the build, how to resume


@contextlib.contextmanager
def stage(name: str, logged: bool = True):
    """Log the stage (`logged`: a check ahead of its stage is not logged, so that the log keeps the stages' order);
    turn an unexpected exception inside it into one line naming the stage."""
    if logged:
        log.info("[%s]", name)
    started = time.perf_counter()
    try:
        yield
    except EdgekitError:
        raise
    except Exception as e:
        log.debug("%s", traceback.format_exc())
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise StageError(name, f"{type(e).__name__}: {first}" if first else type(e).__name__) from e
    log.debug("[%s] done in %.1f s", name, time.perf_counter() - started)


def build_folder(recipe: Recipe, target: Target | Sequence[Target], out: Path = Path("build")) -> Path:
    """Where `build` writes: OUT/<recipe>-<target>[-<target>...], the targets as `unique_targets` gives them."""
    return Path(out) / "-".join([recipe.name, *(t.name for t in unique_targets(target))])


def unique_targets(target: Target | Sequence[Target]) -> list[Target]:
    """One target or several, each name once at its first occurrence: the first given leads the build."""
    from edgekit.targets import resolve

    chosen = resolve([target] if isinstance(target, Target) else target)
    if not chosen:
        raise UsageError("no target given")
    return chosen


def build(recipe: Recipe, target: Target | Sequence[Target], out: Path = Path("build"), seed: int = 0,
          runs: int = 200, warmup: int = 20, threads: int = 1, data_spec: str | None = None,
          force: bool = False, distribute: str | None = None) -> BuildResult:
    """The whole chain. `data_spec` (a `--data` spec) replaces the recipe's dataset. Stage results cached in
    the folder (or in another folder of the recipe under `out`) by an earlier run with the same inputs are
    reused; `force` throws this folder's away first and looks nowhere else.

    The model is trained, optimized and converted once and benchmarked against each target; every target's
    capabilities are checked before training. Each target gets its verdict, its selected variant and its
    bundle (bundle/<target>/); the first target given leads report.json's top level.

    `distribute` (mirrored or multiworker) trains and optimizes under that tf.distribute strategy
    (edgekit.distribute); on a multiworker cluster only the chief writes OUT, the other workers build in a
    temporary folder that is removed afterwards.

    Raises BudgetError (exit 3) after writing the complete folder when a target's selected variant misses a
    budget or the quantized model misses the recipe's accuracy guard (max_drop); the error carries the
    BuildResult."""
    from edgekit import distribute as distribution

    chosen = unique_targets(target)
    for each in chosen:
        check_capabilities(recipe, each)
    distribution.check(distribute)
    spec = data_spec or recipe.dataset
    if not spec:
        raise UsageError(f"recipe '{recipe.name}' names no dataset; pass one with --data (a folder, .npz, .csv, "
                         "builtin:NAME or synthetic:SHAPE:CLASSES)")
    if not distribution.is_chief(distribute):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="edgekit-worker-") as scratch:
            directory = build_folder(recipe, chosen, Path(scratch))
            directory.mkdir(parents=True)
            result = _build(recipe, chosen, directory, StageCache(directory), spec, seed, runs, warmup, threads,
                            distribute)
        return replace(result, written=False)
    directory = build_folder(recipe, chosen, out)
    directory.mkdir(parents=True, exist_ok=True)
    with folder_lock(directory) as stale:
        if stale is not None:
            log.info("taking over the lock of a build that stopped without releasing it (%s)",
                     ", ".join(f"{k} {v}" for k, v in stale.items()) or "no record")
        from edgekit.report.manifest import MANIFEST, forget_manifest

        forget_manifest(directory)
        siblings = [] if force else sorted({*Path(out).glob(f"{recipe.name}-*"), Path(out) / recipe.name})
        cache = StageCache(directory, [folder for folder in siblings if folder.is_dir()])
        if force:
            cache.clear()
        mark_unfinished(directory)  # until the manifest is written: a build killed outright leaves it too
        try:
            return _build(recipe, chosen, directory, cache, spec, seed, runs, warmup, threads, distribute)
        except BaseException as error:
            if not (directory / MANIFEST).exists():  # a missed budget comes after a complete folder
                _after_failure(directory, error)
            raise


def mark_unfinished(directory: Path, why: str = "") -> Path:
    """Write UNFINISHED into a build folder: what stopped the build (`why`; none yet: it is running, or was
    killed), the stages its cache keeps and how to resume. The build removes it just before the manifest."""
    import os
    import socket

    now = time.strftime("%Y-%m-%d %H:%M:%S %z")
    cached = sorted(entry.parent.name for entry in (directory / CACHE).glob(f"*/{ENTRY}"))
    lines = [f"edgekit build stopped ({now}): {why}" if why else
             f"edgekit build started {now} (PID {os.getpid()} on {socket.gethostname()}) and has not finished; "
             "if it is no longer running, it was stopped before the end.",
             "This folder is not a finished build: it has no manifest.json, and its files may be out of date or "
             "missing.",
             f"Finished stages kept in {CACHE}/ for the next run: {', '.join(cached)}." if cached else
             "No stage finished, so nothing is kept for the next run.",
             "Run the same `edgekit build` command again to resume from the first stage that did not finish "
             "(after fixing what stopped it), or add --force to start over."]
    return write_atomic(directory / UNFINISHED, "\n".join(lines) + "\n")


def _after_failure(directory: Path, error: BaseException) -> None:
    """A failed build leaves nothing, when nothing it did is worth keeping (it stopped before any stage finished
    in a folder of its own), or the folder with UNFINISHED saying what stopped it; never a bare lock. An
    interrupted one always keeps its folder, which the interruption message names."""
    import shutil

    ours = {LOCK, UNFINISHED}
    if isinstance(error, Exception) and not any(p.is_file() and p.name not in ours for p in directory.rglob("*")):
        shutil.rmtree(directory, ignore_errors=True)
        return
    why = "interrupted" if isinstance(error, KeyboardInterrupt) else \
        str(error) if isinstance(error, EdgekitError) else f"{type(error).__name__}: {error}"
    mark_unfinished(directory, why)
    log.info("%s is not finished; %s there says what stopped it and how to resume", directory, UNFINISHED)


def _build(recipe: Recipe, chosen: list[Target], directory: Path, cache: StageCache, spec: str, seed: int,
           runs: int, warmup: int, threads: int, distribute: str | None = None) -> BuildResult:
    from edgekit import data, optimize, zoo
    from edgekit.distribute import describe
    from edgekit.report.contract import pruned_sparsity

    with stage("data"):
        dataset = data.load(spec, input_shape=recipe.input_shape, task=recipe.task)
        sizes = dataset.sizes()
        log.info("%s: %s train / %s validation / %s test samples", dataset.name, f"{sizes['train']:,}",
                 f"{sizes['val']:,}", f"{sizes['test']:,}")
    with stage("optimize", logged=False):  # what cannot be optimized fails before any training
        optimize.check_supported(zoo.build_model(recipe.builder, dataset.input_shape, dataset.num_classes,
                                                 recipe.builder_args), recipe)
    data_hash = dataset.fingerprint()
    # The strategy changes the numbers, so it is part of the keys (only when there is one: keys of ordinary
    # builds stay as they were). Every worker of a multiworker cluster must train, or the others wait for it
    # forever, so there the two training stages never come from a cache that may hold on one worker only.
    strategy = {"distribute": describe(distribute)} if distribute else {}
    reuse = distribute != "multiworker"
    trained = cache.run("train", cache.key("train", recipe=_training_fields(recipe), data=data_hash, seed=seed,
                                           **strategy),
                        lambda: _train(recipe, dataset, seed, distribute), reuse=reuse)
    # Every later stage starts from the model as saved, whether it was trained now or in an earlier run, so
    # a resumed build computes exactly what an uninterrupted one does.
    write_atomic(directory / FLOAT_KERAS, trained.files[FLOAT_KERAS])
    float_model = functools.cache(lambda: load_own_keras(directory / FLOAT_KERAS))  # only when a stage runs
    float_hash = hashlib.sha256(trained.files[FLOAT_KERAS]).hexdigest()
    check_inputs = dataset.x_val[:VERIFY_SAMPLES]
    baseline = cache.run("baseline", cache.key("baseline", model=float_hash, data=data_hash, task=recipe.task,
                                               metric=recipe.metric, samples=VERIFY_SAMPLES),
                         lambda: _baseline(float_model(), recipe, dataset, check_inputs))
    optimized = cache.run("optimize", cache.key("optimize", model=float_hash, recipe=_optimization_fields(recipe),
                                                data=data_hash, seed=seed, samples=VERIFY_SAMPLES, **strategy),
                          lambda: _optimize(float_model(), recipe, dataset, seed, check_inputs, distribute),
                          reuse=reuse)
    conversions = [_conversion(c, baseline.files) for c in baseline.values["conversions"]]
    quantized = _conversion(optimized.values["quantized"], optimized.files)
    conversions.insert(1, quantized)
    for conversion in conversions:
        write_atomic(directory / conversion.filename, conversion.content)
    # every conversion was run in-process by the build that made it (its verification), and the cache hands
    # back exactly those bytes: opening them needs no child-process guard
    verified = {c.filename: hashlib.sha256(c.content).hexdigest() for c in conversions}
    sparsity_ops, pruned = pruned_sparsity(quantized.content, optimized.values)

    with stage("bench"):
        judged = _bench_targets(cache, conversions, verified, directory, chosen, dataset, recipe, runs, warmup,
                                threads, {quantized.name: pruned})
    result = BuildResult(directory, recipe.name, recipe.metric, len(dataset.x_test),
                         tuple(judge(t, judged[t.name], f"{BUNDLE}/{t.name}") for t in chosen))
    files = [c.filename for c in conversions] + [FLOAT_KERAS]
    files += _write_reports(result, recipe, seed, dataset, trained, baseline, optimized, quantized.name,
                            sparsity_ops, cache, strategy.get("distribute"), verified)
    metrics = {v.name: v.metric_value for v in result.lead.variants}
    reference, measured = metrics["float32"], metrics[quantized.name]
    guard = None
    try:
        if reference is None or measured is None:  # bench always runs the test split in a build
            raise StageError("bench", "no test metric was measured")
        optimize.check_drop(recipe, quantized.name, reference, measured)
    except BudgetError as e:  # reported after the folder is complete, as a missed budget is
        guard = str(e)
    if recipe.task in ("classification", "binary"):
        write_atomic(directory / "labels.txt", "\n".join(dataset.labels) + "\n")
        files.append("labels.txt")
    files += _write_bundles(result, dataset.x_test[0], verified)
    files += npu.write_artifacts(directory, result)  # the Vela-compiled models of NPU targets
    from edgekit.report.manifest import write_build_manifest

    # UNFINISHED goes just before the manifest appears (after the hashing): no finished folder says otherwise,
    # and a build killed in between leaves neither for the shortest time possible
    write_build_manifest(directory, files, result, recipe, seed, dataset.describe(),
                         just_before=lambda: (directory / UNFINISHED).unlink(missing_ok=True))
    problems = [guard] if guard else []
    problems += [f"{t.selection.variant} does not fit {t.name}: {t.misses()}" for t in result.missed]
    if problems:
        raise BudgetError(f"the build is complete in {directory}, but {'; '.join(problems)}", result)
    return result


def _write_reports(result: BuildResult, recipe: Recipe, seed: int, dataset, trained: Entry, baseline: Entry,
                   optimized: Entry, quantized: str, sparsity_ops: list[dict[str, Any]], cache: StageCache,
                   distribute: dict[str, Any] | None, verified: dict[str, str]) -> list[str]:
    """report.json, report.md, report.html and its plots; returns the files written."""
    from edgekit.report.confusion import model_confusion
    from edgekit.report.contract import build_report
    from edgekit.report.html import write_html_report
    from edgekit.report.text import to_markdown

    directory, lead = result.directory, result.lead.selected
    confusion = None
    if recipe.task in ("classification", "binary"):
        confusion = model_confusion(directory / lead.measured.file, dataset.x_test, dataset.y_test, dataset.labels,
                                    lead.name, verified[lead.measured.file])
    report = build_report(result, recipe, seed=seed, dataset=dataset.describe(), trained=trained.values,
                          optimized=optimized.values, float_metric=baseline.values["float_metric"],
                          sparsity_ops=sparsity_ops, quantized=quantized, cache=cache.record(),
                          distribute=distribute, confusion_matrix=confusion)
    write_json(directory / "report.json", report)
    write_atomic(directory / "report.md", to_markdown(report))
    with stage("report"):
        return ["report.json", "report.md", *write_html_report(directory, report)]


def _write_bundles(result: BuildResult, sample, verified: dict[str, str]) -> list[str]:
    """The bundle of each target whose selected variant is a .tflite file, in its bundle folder; returns the
    files written, relative to the build folder."""
    import shutil

    from edgekit.export import export

    directory = result.directory
    shutil.rmtree(directory / BUNDLE, ignore_errors=True)  # a target dropped since the last build leaves no bundle
    files = []
    for target in result.targets:
        variant = target.selected
        model = directory / variant.measured.file
        if model.suffix == ".tflite" and target.bundle:
            with stage(f"export {target.name}"):
                bundle = export(model, target.target, directory / target.bundle, sample=sample,
                                verified_sha256=verified[variant.measured.file], measured_ram=variant.measured.ram)
            files += [f"{target.bundle}/{name}" for name in bundle.files]
    return files


def _bench_targets(cache: StageCache, conversions, verified: dict[str, str], directory: Path, chosen: list[Target],
                   dataset, recipe: Recipe, runs: int, warmup: int, threads: int,
                   pruned: dict[str, tuple[float, str] | None]) -> dict[str, list[Variant]]:
    """target name -> its variants: each artifact measured once on the host for the targets whose result is
    not cached, and judged against each. Cached per artifact and target (stage bench-<target>-<variant>), so
    adding a target to a finished build benchmarks only for the new one. `pruned`: variant -> its sparsity
    over the pruned layers (Variant.of)."""
    from edgekit import bench

    judged: dict[str, list[Variant]] = {t.name: [] for t in chosen}
    for conversion in conversions:
        artifact = verified[conversion.filename]
        keys = {t.name: _bench_key(cache, artifact, t, dataset, recipe, runs, warmup, threads) for t in chosen}
        names = {t.name: f"bench-{t.name}-{conversion.name}" for t in chosen}
        missing = [t for t in chosen if cache.load(names[t.name], keys[t.name]) is None]
        fresh: dict[str, Entry] = {}
        if missing:  # measured once for all of them
            results = bench.bench_targets(directory / conversion.filename, missing, dataset.x_test, dataset.y_test,
                                          runs=runs, warmup=warmup, threads=threads, task=recipe.task,
                                          metric=recipe.metric, trusted_sha256=artifact)
            fresh = {r.target: Entry(r.to_dict()) for r in results}
        for target in chosen:
            entry = cache.run(names[target.name], keys[target.name], functools.partial(fresh.__getitem__, target.name))
            measured = bench.BenchResult.from_dict(entry.values)
            log.info("%s on %s: %s %.4f, median %.3f ms", conversion.name, target.name, recipe.metric,
                     measured.metric["value"] if measured.metric else float("nan"), measured.latency_ms.median)
            judged[target.name].append(Variant.of(conversion.name, measured, conversion.check,
                                                  pruned.get(conversion.name)))
    return judged


def _bench_key(cache: StageCache, artifact: str, target: Target, dataset, recipe: Recipe, runs: int, warmup: int,
               threads: int) -> str:
    """What one variant's bench result (of the file whose sha256 is `artifact`) depends on. The host is part of
    it, since its timings are."""
    from edgekit.report.text import host

    profile = {k: v for k, v in target.to_dict().items() if k != "file"}  # what it says, not where it lives
    return cache.key("bench", artifact=artifact, target=profile,
                     runs=runs, warmup=warmup, threads=threads, task=recipe.task, metric=recipe.metric,
                     test_data=array_fingerprint(dataset.x_test, dataset.y_test), host=host())


# --- The cached stages: each returns an Entry (JSON-friendly values + file bytes) -------------------------

def _training_fields(recipe: Recipe) -> dict[str, Any]:
    """What training depends on: not the [optimize] section, so changing it re-runs from optimize."""
    return {"builder": recipe.builder, "builder_args": recipe.builder_args, "input_shape": recipe.input_shape,
            "task": recipe.task, "train": asdict(recipe.train)}


def _optimization_fields(recipe: Recipe) -> dict[str, Any]:
    """What optimize + convert depend on. max_drop only judges the result afterwards: raising it to accept a
    build must not re-run quantization-aware training."""
    fields = {k: v for k, v in recipe.to_dict().items() if k not in ("name", "description", "file", "dataset")}
    fields["optimize"] = {k: v for k, v in fields["optimize"].items() if k != "max_drop"}
    return fields


def _train(recipe: Recipe, dataset, seed: int, distribute: str | None = None) -> Entry:
    from edgekit import train

    with stage("train"):
        trained = train.train(recipe, dataset, seed, distribute)
        content = keras_bytes(trained.model)
    return Entry({"history": trained.history, "seconds": trained.seconds}, {FLOAT_KERAS: content})


def _baseline(model, recipe: Recipe, dataset, check_inputs) -> Entry:
    """The float test metric and the float conversions, made before pruning touches the model's layers."""
    from edgekit import convert
    from edgekit.tasks import TASKS

    with stage("baseline"):
        float_metric = TASKS[recipe.task].score(recipe.metric, model.predict(dataset.x_test, verbose=0),
                                                dataset.x_test, dataset.y_test)
        log.info("float Keras test %s %.4f", recipe.metric, float_metric)
        conversions = [convert.tflite_float32(model, check_inputs), convert.onnx_float32(model, check_inputs)]
    return Entry({"float_metric": float_metric, "conversions": [_conversion_record(c) for c in conversions]},
                 {c.filename: c.content for c in conversions})


def _optimize(model, recipe: Recipe, dataset, seed: int, check_inputs, distribute: str | None = None) -> Entry:
    """Optimize and convert, cached together: a tfmot QAT model does not survive a save and load intact, so
    the cache keeps its quantized file and what the report says about the optimization instead."""
    from edgekit.optimize import optimize_and_convert

    done = optimize_and_convert(model, recipe, dataset, seed, distribute, check_inputs=check_inputs, stage=stage)
    return Entry({"quantized": _conversion_record(done.conversion), **done.record()},
                 {done.conversion.filename: done.conversion.content})


def _conversion_record(conversion) -> dict[str, Any]:
    return {"name": conversion.name, "format": conversion.format, "precision": conversion.precision,
            "filename": conversion.filename, "check": conversion.check}


def _conversion(record: dict[str, Any], files: dict[str, bytes]):
    from edgekit.convert import Conversion

    return Conversion(record["name"], record["format"], record["precision"], files[record["filename"]],
                      record["check"])

