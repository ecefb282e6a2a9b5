"""`edgekit build`: the whole chain, data -> train -> optimize -> convert -> bench -> report + export.

Each stage is a plain function from the other modules; this module chains them, names the stage that
failed, and writes the build folder (artifacts first, reports next, manifest.json last). The expensive
stages (train, baseline conversions, optimize + convert, bench) go through edgekit.cache, so a re-run after
a crash or a change starts at the first stage whose inputs changed; a lock keeps two builds out of one
folder."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgekit._files import folder_lock, write_atomic, write_json
from edgekit.cache import Entry, StageCache, array_fingerprint
from edgekit.convert import CHECK_SAMPLES as VERIFY_SAMPLES  # validation inputs each conversion is checked on
from edgekit.errors import BudgetError, EdgekitError, StageError, UsageError
from edgekit.recipes import Recipe
from edgekit.report import text as reports
from edgekit.report.manifest import forget_manifest, write_manifest
from edgekit.targets import Runtime, Target

log = logging.getLogger("edgekit")

FLOAT_KERAS = "float32.keras"  # the trained float baseline, as tf_keras saved it
BUNDLE = "bundle"  # the selected model's deployment files (edgekit export); bundle/<target>/ with several targets


@dataclass(frozen=True)
class BuildResult:
    directory: Path
    report: dict[str, Any]
    written: bool = True  # False on a multiworker cluster's non-chief worker, whose folder was temporary


@contextlib.contextmanager
def stage(name: str):
    """Log the stage; turn an unexpected exception inside it into one line naming the stage."""
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


def shippable_formats(target: Target) -> dict[str, tuple[str, ...]]:
    """format -> precisions the target's runtime can load (TFLite Micro: int8 .tflite only)."""
    precisions = tuple(p.value for p in target.precisions)
    if target.runtime == Runtime.TFLM:
        return {"tflite": tuple(p for p in precisions if p == "int8")}
    return {"tflite": precisions}


def check_capabilities(recipe: Recipe, target: Target) -> None:
    """Fail before training when nothing this build produces could run on the target."""
    shippable = shippable_formats(target)["tflite"]
    produced = recipe.optimize.precision
    if not {produced, "float32"} & set(shippable):
        raise UsageError(f"target '{target.name}' runs {', '.join(shippable) or 'nothing'} with "
                         f"{target.runtime.value}; this build produces {produced} and float32 TFLite models")


def select(variants: list[dict[str, Any]], target: Target) -> tuple[str, str, bool]:
    """The variant to ship: the target's most preferred precision that its runtime loads and that fits
    every budget; when none fits, the most preferred one, reported as not fitting."""
    candidates = [variant for fmt, precisions in shippable_formats(target).items() for precision in precisions
                  for variant in variants if variant["format"] == fmt and variant["precision"] == precision]
    if not candidates:
        raise UsageError(f"no variant of this build runs on target '{target.name}'")
    for variant in candidates:
        if variant["fit"]["fits"]:
            return variant["name"], (f"{variant['precision']} is {target.name}'s most preferred precision that "
                                     f"{target.runtime.value} runs and that fits every budget"), True
    return candidates[0]["name"], f"no variant fits {target.name}; {candidates[0]['name']} is the preferred one", False


def build_folder(recipe: Recipe, target: Target | Sequence[Target], out: Path = Path("build")) -> Path:
    """Where `build` writes: OUT/<recipe>-<target> for one target, OUT/<recipe> for several (the same folder
    whichever targets, so adding one to a finished build reuses its training)."""
    chosen = _targets(target)
    return Path(out) / (f"{recipe.name}-{chosen[0].name}" if len(chosen) == 1 else recipe.name)


def _targets(target: Target | Sequence[Target]) -> list[Target]:
    """One target or several, each name once, in the order given."""
    chosen = [target] if isinstance(target, Target) else list(target)
    if not chosen:
        raise UsageError("no target given")
    return list({t.name: t for t in reversed(chosen)}.values())[::-1]


def build(recipe: Recipe, target: Target | Sequence[Target], out: Path = Path("build"), seed: int = 0,
          runs: int = 200, warmup: int = 20, threads: int = 1, data_spec: str | None = None,
          force: bool = False, distribute: str | None = None) -> BuildResult:
    """The whole chain. `data_spec` (a `--data` spec) replaces the recipe's dataset. Stage results cached in
    the folder by an earlier run with the same inputs are reused; `force` throws them away first.

    With several targets the model is trained, optimized and converted once and benchmarked against each;
    every target's capabilities are checked before training. The report's top-level verdict is the first
    target's, `targets` holds each one's and `cross_target` ranks them; each target gets bundle/<target>/.
    A single-target build's folder and files are as they always were.

    `distribute` (mirrored or multiworker) trains and optimizes under that tf.distribute strategy
    (edgekit.distribute); on a multiworker cluster only the chief writes OUT, the other workers build in a
    temporary folder that is removed afterwards."""
    from edgekit import distribute as distribution

    chosen = _targets(target)
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
        return BuildResult(result.directory, result.report, written=False)
    directory = build_folder(recipe, chosen, out)
    directory.mkdir(parents=True, exist_ok=True)
    with folder_lock(directory) as stale:
        if stale is not None:
            log.info("taking over the lock of a build that stopped without releasing it (%s)",
                     ", ".join(f"{k} {v}" for k, v in stale.items()) or "no record")
        forget_manifest(directory)
        # A multi-target build also trusts the entries of the single-target builds of its targets (not with
        # --force, which starts over).
        others = [build_folder(recipe, t, out) for t in chosen] if len(chosen) > 1 and not force else []
        cache = StageCache(directory, others)
        if force:
            cache.clear()
        return _build(recipe, chosen, directory, cache, spec, seed, runs, warmup, threads, distribute)


def _build(recipe: Recipe, chosen: list[Target], directory: Path, cache: StageCache, spec: str, seed: int,
           runs: int, warmup: int, threads: int, distribute: str | None = None) -> BuildResult:
    from edgekit import data, optimize, zoo
    from edgekit.distribute import describe

    with stage("data"):
        dataset = data.load(spec, input_shape=recipe.input_shape, task=recipe.task)
        log.info("%s: %s", dataset.name, dataset.sizes())
    with stage("optimize"):  # what cannot be optimized fails before any training
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
    float_model = functools.cache(lambda: _load_keras(directory / FLOAT_KERAS))  # only when a stage runs
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

    with stage("bench"):
        judged = _bench_targets(cache, conversions, verified, directory, chosen, dataset, recipe, runs, warmup,
                                threads)
    target, variants = chosen[0], judged[chosen[0].name]
    selections = {t.name: select(judged[t.name], t) for t in chosen}
    selected, reason, fits = selections[target.name]
    report = _report(recipe, target, seed, dataset, trained, baseline, optimized, quantized, variants,
                     (selected, reason, fits), cache)
    if len(chosen) > 1:
        _add_targets(report, chosen, judged, selections, quantized.name)
    if distribute:
        report["distribute"] = strategy["distribute"]
    from edgekit.report.html import model_confusion, write_html_report

    if recipe.task in ("classification", "binary"):
        chosen_variant = next(v for v in variants if v["name"] == selected)
        report["confusion_matrix"] = model_confusion(directory / chosen_variant["file"], dataset.x_test,
                                                     dataset.y_test, dataset.labels, selected,
                                                     verified[chosen_variant["file"]])
    write_json(directory / "report.json", report)
    write_atomic(directory / "report.md", reports.to_markdown(report))
    files = [c.filename for c in conversions] + [FLOAT_KERAS, "report.json", "report.md"]
    with stage("report"):
        files += write_html_report(directory, report)
    metrics = {v["name"]: v["metric"]["value"] for v in variants}
    optimize.check_drop(recipe, quantized.name, metrics["float32"], metrics[quantized.name])
    if recipe.task in ("classification", "binary"):
        write_atomic(directory / "labels.txt", "\n".join(dataset.labels) + "\n")
        files.append("labels.txt")
    files += _write_bundles(directory, chosen, judged, selections, dataset, verified)
    provenance = {"targets": [t.to_dict() for t in chosen],
                  "fits": {t.name: {"selected": selections[t.name][0], "fits": selections[t.name][2]}
                           for t in chosen}} if len(chosen) > 1 else {}
    write_manifest(directory, files, recipe=recipe.to_dict(), target=target.to_dict(), seed=seed,
                   dataset=dataset.describe(),
                   metrics={v["name"]: {recipe.metric: v["metric"]["value"], "size_bytes": v["size_bytes"]}
                            for v in variants},
                   deterministic=determinism(files), **provenance)
    if len(chosen) > 1:
        missed = [f"{t.name} ({_misses(judged[t.name], selections[t.name][0])})" for t in chosen
                  if not selections[t.name][2]]
        if missed:
            raise BudgetError(f"the build is complete in {directory}, but it does not fit {len(missed)} of "
                              f"{len(chosen)} targets: {'; '.join(missed)}", BuildResult(directory, report))
    elif not fits:
        raise BudgetError(f"the build is complete in {directory}, but {selected} does not fit {target.name}: "
                          f"{_misses(variants, selected)}", BuildResult(directory, report))
    return BuildResult(directory, report)


def _misses(variants: list[dict[str, Any]], selected: str) -> str:
    chosen = next(v for v in variants if v["name"] == selected)
    return "; ".join(c["summary"] for c in chosen["fit"]["checks"] if c["ok"] is False)


def _bench_targets(cache: StageCache, conversions, verified: dict[str, str], directory: Path, chosen: list[Target],
                   dataset, recipe: Recipe, runs: int, warmup: int, threads: int) -> dict[str, list[dict[str, Any]]]:
    """target name -> its variants: each artifact measured once on the host for the targets whose result is
    not cached, and judged against each. Cached per artifact and target, so adding a target to a finished
    build benchmarks only for the new one."""
    from edgekit import bench

    judged: dict[str, list[dict[str, Any]]] = {t.name: [] for t in chosen}
    for conversion in conversions:
        artifact = verified[conversion.filename]
        keys = {t.name: _bench_key(cache, artifact, t, dataset, recipe, runs, warmup, threads) for t in chosen}
        names = {t.name: _bench_stage(conversion, t, chosen) for t in chosen}
        missing = [t for t in chosen if cache.load(names[t.name], keys[t.name]) is None]
        fresh: dict[str, Entry] = {}
        if missing:  # measured once for all of them
            results = bench.bench_targets(directory / conversion.filename, missing, dataset.x_test, dataset.y_test,
                                          runs=runs, warmup=warmup, threads=threads, task=recipe.task,
                                          metric=recipe.metric,
                                          trusted_sha256=artifact)
            fresh = {r.target: Entry(r.to_dict()) for r in results}
        for target in chosen:
            result = cache.run(names[target.name], keys[target.name], functools.partial(fresh.get, target.name)).values
            log.info("%s%s: %s %.4f, median %.3f ms", conversion.name,
                     f" on {target.name}" if len(chosen) > 1 else "", recipe.metric, result["metric"]["value"],
                     result["latency_ms"]["median"])
            judged[target.name].append({"name": conversion.name, **result, "verification": conversion.check})
    return judged


def _bench_stage(conversion, target: Target, chosen: list[Target]) -> str:
    return f"bench-{conversion.name}" if len(chosen) == 1 else f"bench-{target.name}-{conversion.name}"


def _bench_key(cache: StageCache, artifact: str, target: Target, dataset, recipe: Recipe, runs: int, warmup: int,
               threads: int) -> str:
    """What one variant's bench result (of the file whose sha256 is `artifact`) depends on. The host is part of
    it, since its timings are."""
    profile = {k: v for k, v in target.to_dict().items() if k != "file"}  # what it says, not where it lives
    return cache.key("bench", artifact=artifact, target=profile,
                     runs=runs, warmup=warmup, threads=threads, task=recipe.task, metric=recipe.metric,
                     test_data=array_fingerprint(dataset.x_test, dataset.y_test), host=reports.host())


def _add_targets(report: dict[str, Any], chosen: list[Target], judged: dict[str, list[dict[str, Any]]],
                 selections: dict[str, tuple[str, str, bool]], quantized: str) -> None:
    """report.json's `targets` (each target's variants, selection and budgets) and `cross_target` (one row a
    target, ranked by fit then estimated latency)."""
    first = next(v for v in report["variants"] if v["name"] == quantized)
    for target in chosen[1:]:  # the quantized variant's sparsity over the pruned layers, as the first target's
        variant = next(v for v in judged[target.name] if v["name"] == quantized)
        variant.update({k: first[k] for k in ("sparsity", "sparsity_all_weights", "sparsity_basis") if k in first})
    report["targets"] = [
        {"target": t.name, "device_class": t.device_class.value, "runtime": t.runtime.value,
         "selected": selections[t.name][0], "selection_reason": selections[t.name][1],
         "fits": selections[t.name][2],
         "budgets": asdict(t.budgets), "bundle": f"{BUNDLE}/{t.name}", "variants": judged[t.name]}
        for t in chosen]
    report["cross_target"] = reports.cross_target(report["targets"])


def _write_bundles(directory: Path, chosen: list[Target], judged: dict[str, list[dict[str, Any]]],
                   selections: dict[str, tuple[str, str, bool]], dataset, verified: dict[str, str]) -> list[str]:
    """The bundle of each target whose selected variant is a .tflite file: bundle/ for one target,
    bundle/<target>/ for each of several."""
    import shutil

    shutil.rmtree(directory / BUNDLE, ignore_errors=True)  # a target dropped since the last build leaves no bundle
    single = len(chosen) == 1
    files = []
    for target in chosen:
        selected = selections[target.name][0]
        variant = next(v for v in judged[target.name] if v["name"] == selected)
        model = directory / variant["file"]
        if model.suffix == ".tflite":
            with stage("export" if single else f"export {target.name}"):
                files += _write_bundle(model, target, directory, dataset, verified[variant["file"]], variant["ram"],
                                       BUNDLE if single else f"{BUNDLE}/{target.name}")
    return files


def _report(recipe: Recipe, target: Target, seed: int, dataset, trained: Entry, baseline: Entry, optimized: Entry,
            quantized, variants: list[dict[str, Any]], selection: tuple[str, str, bool],
            cache: StageCache) -> dict[str, Any]:
    """report.json's content."""
    float_metric = baseline.values["float_metric"]
    training = {"float": _phase(trained.values["history"], trained.values["seconds"])}
    for phase, history in optimized.values["history"].items():
        training[phase] = _phase(history, optimized.values["seconds"][phase])
    return {
        "schema_version": reports.SCHEMA_VERSION,
        "recipe": recipe.name,
        "target": target.name,
        "seed": seed,
        "task": recipe.task,
        "metric": recipe.metric,
        "dataset": {k: v for k, v in dataset.describe().items() if k != "labels"},
        "host": reports.host(),
        "keras_test_metric": {"float": float_metric},
        "training": training,
        "optimization": _optimization_section(optimized.values, quantized, variants, float_metric, recipe),
        "variants": variants,
        "selected": selection[0],
        "selection_reason": selection[1],
        "fits": selection[2],
        "budgets": {"latency_ms": target.budgets.latency_ms, "ram_kb": target.budgets.ram_kb,
                    "flash_kb": target.budgets.flash_kb},
        "cache": cache.record(),
    }


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


def keras_bytes(model) -> bytes:
    """The model as a .keras file (weights and architecture: an uncompiled copy leaves the optimizer state
    behind) whose bytes depend only on the model. tf_keras stamps the save time into metadata.json and into
    one zip entry, which alone would make two identical trainings give different files."""
    import tempfile

    from edgekit.optimize import clone

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / FLOAT_KERAS
        clone(model).save(path)
        return _without_timestamps(path.read_bytes())


def _without_timestamps(archive: bytes) -> bytes:
    import io
    import json
    import zipfile

    result = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source, zipfile.ZipFile(result, "w") as copy:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "metadata.json":  # tf_keras writes it and never reads it back
                metadata = json.loads(content)
                metadata.pop("date_saved", None)
                content = json.dumps(metadata).encode()
            copy.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), content,
                          compress_type=info.compress_type)
    return result.getvalue()


def _load_keras(path: Path):
    from edgekit._tf import keras

    return keras.models.load_model(path, compile=False)  # safe mode: the file came from this build


# --- What a rebuild reproduces ---------------------------------------------------------------------------

# Files whose bytes differ between two builds of the same inputs by their nature, and why. Everything
# else was measured byte-identical across two fresh CPU builds (benchmarks/resume.json).
VARIES_BY_NATURE = {
    "report.json": "host timings (latency percentiles, training and optimization seconds), the RAM the process "
                   "measured, and which stages came from the cache",
    "report.md": "the host timings of report.json",
    "report.html": "the host timings and measured RAM of report.json, and the figures drawn from them",
    "plots/host_latency.png": "host timings",
    "plots/memory.png": "the RAM the process measured",
}


def determinism(files: list[str]) -> dict[str, Any]:
    """The manifest's `deterministic` section: which files a rebuild with the same recipe, data, seed,
    target, options and library versions reproduces byte for byte, and which differ and why."""
    differ = {name: reason for name, reason in VARIES_BY_NATURE.items() if name in files}
    if _trained_on_gpu():
        reason = ("trained on a GPU, whose kernels TensorFlow does not run deterministically unless "
                  "tf.config.experimental.enable_op_determinism() is on")
        differ.update({name: reason for name in files if name not in differ and name != "labels.txt"})
    return {"identical": sorted(name for name in files if name not in differ), "differ": differ,
            "basis": "same recipe, data, seed, target, build options and library versions; TensorFlow trains "
                     "deterministically on CPU, and float32.keras is saved without tf_keras's save time"}


def _trained_on_gpu() -> bool:
    from edgekit._tf import tf

    return bool(tf.config.list_physical_devices("GPU"))


def _write_bundle(model: Path, target: Target, directory: Path, dataset, verified: str, ram: dict[str, Any],
                  folder: str = BUNDLE) -> list[str]:
    """The selected model's deployment bundle in `directory/folder` (what `edgekit export` writes), with a
    test-set sample as its stored test input; returns the files, relative. `verified` is the sha256 of the
    model's verified bytes, `ram` what bench measured for it (a microcontroller's arena is not measured again)."""
    bundle = directory / folder  # emptied by _write_bundles: a bundle of an earlier build must not mix with this one
    if target.device_class.value == "mcu":
        from edgekit.export.mcu import export_mcu

        export_mcu(model, target, bundle, sample=dataset.x_test[0],
                   measured_arena={**ram, "sha256": verified} if ram.get("arena_bytes") is not None else None)
    else:
        from edgekit.export.boards import export_bundle

        labels = directory / "labels.txt"
        export_bundle(model, target, bundle, labels if labels.is_file() else None, sample=dataset.x_test[0],
                      trusted_sha256=verified)
    return sorted(f"{folder}/{f.name}" for f in bundle.iterdir() if f.is_file() and not f.name.startswith("."))


def _optimization_section(optimized: dict[str, Any], quantized, variants: list[dict[str, Any]],
                          float_metric: float, recipe: Recipe) -> dict[str, Any]:
    """What each optimization step did, and what reached the files: size raw and gzip of the float and
    quantized artifacts, and the sparsity of every weight op in the quantized one.

    The quantized variant's `sparsity` becomes the share of zeros across the pruned layers' ops (the figure
    the recipe's `sparsity` sets), because the first convolution and the last Dense layer are kept dense by
    default; the share across every weight op stays in `sparsity_all_weights`."""
    from edgekit.optimize import artifact_sparsity

    by_name = {v["name"]: v for v in variants}
    per_op = artifact_sparsity(quantized.content, optimized["prunable"])
    pruned_ops = [row for row in per_op if row["layer"] in optimized["pruned_layers"]]
    variant = by_name[quantized.name]
    if pruned_ops:
        zeros = sum(row["sparsity"] * row["weights"] for row in pruned_ops)
        variant["sparsity_all_weights"] = variant["sparsity"]
        variant["sparsity"] = zeros / sum(row["weights"] for row in pruned_ops)
        variant["sparsity_basis"] = f"pruned layers: {', '.join(optimized['pruned_layers'])}"
    settings = recipe.optimize
    return {
        "settings": {"sparsity": settings.sparsity, "quantize": optimized["quantize"],
                     "qat_epochs": settings.qat_epochs if optimized["quantization_aware"] else 0,
                     "clusters": settings.clusters},
        "pruned_layers": optimized["pruned_layers"],
        "kept_dense": optimized["kept_dense"],
        "kept_dense_reasons": optimized["kept_dense_reasons"],
        "left_to_converter": optimized["left_to_converter"],  # layers QAT could not wrap: calibrated by the converter
        "steps": optimized["steps"],
        "artifacts": {name: {"file": by_name[name]["file"], "size_bytes": by_name[name]["size_bytes"],
                             "gzip_bytes": by_name[name]["gzip_bytes"],
                             recipe.metric: by_name[name]["metric"]["value"]}
                      for name in ("float32", quantized.name)},
        "float_test_metric": float_metric,
        "artifact_sparsity": {"file": quantized.filename, "ops": per_op},
    }


def _phase(history: dict[str, list[float]], seconds: float) -> dict[str, Any]:
    def last(key: str) -> float | None:
        return history[key][-1] if history.get(key) else None

    return {"epochs": len(history.get("loss", [])), "seconds": round(seconds, 2), "loss": last("loss"),
            "val_loss": last("val_loss"), "val_accuracy": last("val_accuracy"), "history": history}
