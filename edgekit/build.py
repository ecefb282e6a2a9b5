"""`edgekit build`: the whole chain, data -> train -> optimize -> convert -> bench -> report + export.

Each stage is a plain function from the other modules; this module only chains them, names the stage
that failed, and writes the build folder (artifacts first, reports next, manifest.json last)."""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit import report as reports
from edgekit._files import write_atomic, write_json
from edgekit.errors import BudgetError, EdgekitError, StageError, UsageError
from edgekit.export import forget_manifest, write_manifest
from edgekit.recipes import Recipe
from edgekit.targets import Runtime, Target

log = logging.getLogger("edgekit")

VERIFY_SAMPLES = 256  # validation inputs each conversion is checked on
FLOAT_KERAS = "float32.keras"  # the trained float baseline, as tf_keras saved it
BUNDLE = "bundle"  # the selected model's deployment files (edgekit export)


@dataclass(frozen=True)
class BuildResult:
    directory: Path
    report: dict[str, Any]


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


def build(recipe: Recipe, target: Target, out: Path = Path("build"), seed: int = 0,
          runs: int = 200, warmup: int = 20, threads: int = 1, data_spec: str | None = None) -> BuildResult:
    """The whole chain. `data_spec` (a `--data` spec) replaces the recipe's dataset."""
    from edgekit import bench, convert, data, optimize, train, zoo
    from edgekit.tasks import TASKS

    check_capabilities(recipe, target)
    spec = data_spec or recipe.dataset
    if not spec:
        raise UsageError(f"recipe '{recipe.name}' names no dataset; pass one with --data (a folder, .npz, .csv, "
                         "builtin:NAME or synthetic:SHAPE:CLASSES)")
    task = TASKS[recipe.task]
    directory = Path(out) / f"{recipe.name}-{target.name}"
    directory.mkdir(parents=True, exist_ok=True)
    forget_manifest(directory)

    with stage("data"):
        dataset = data.load(spec, input_shape=recipe.input_shape, task=recipe.task)
        log.info("%s: %s", dataset.name, dataset.sizes())
    with stage("optimize"):  # what cannot be optimized fails before any training
        optimize.check_supported(zoo.build_model(recipe.builder, dataset.input_shape, dataset.num_classes,
                                                 recipe.builder_args), recipe)
    with stage("train"):
        trained = train.train(recipe, dataset, seed)
    check_inputs = dataset.x_val[:VERIFY_SAMPLES]
    with stage("baseline"):  # before pruning touches the model's layers
        float_metric = task.score(recipe.metric, trained.model.predict(dataset.x_test, verbose=0),
                                  dataset.x_test, dataset.y_test)
        log.info("float Keras test %s %.4f", recipe.metric, float_metric)
        conversions = [convert.tflite_float32(trained.model, check_inputs),
                       convert.onnx_float32(trained.model, check_inputs)]
        _save_keras(trained.model, directory / FLOAT_KERAS)
    with stage("optimize"):
        optimized = optimize.optimize(trained.model, recipe, dataset)
    with stage("convert"):
        representative = dataset.representative(recipe.optimize.calibration_samples, seed)
        if recipe.optimize.quantize == "int16x8":
            quantized = convert.convert(optimized.model, "tflite-int16x8", representative, check_inputs, recipe.task)
        else:
            quantized = convert.tflite_int8(optimized.model, representative, check_inputs, recipe.task)
        conversions.insert(1, quantized)
    for conversion in conversions:
        write_atomic(directory / conversion.filename, conversion.content)

    variants = []
    with stage("bench"):
        for conversion in conversions:
            result = bench.bench(directory / conversion.filename, target, dataset.x_test, dataset.y_test,
                                 runs=runs, warmup=warmup, threads=threads, task=recipe.task, metric=recipe.metric)
            log.info("%s: %s %.4f, median %.3f ms", conversion.name, recipe.metric, result.metric["value"],
                     result.latency_ms.median)
            variants.append({"name": conversion.name, **result.to_dict(), "verification": conversion.check})

    optimization = _optimization_section(optimized, conversions, variants, float_metric, recipe)
    selected, reason, fits = select(variants, target)
    training = {"float": _phase(trained.history, trained.seconds)}
    for phase, history in optimized.history.items():
        training[phase] = _phase(history, optimized.seconds[phase])
    report = {
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
        "optimization": optimization,
        "variants": variants,
        "selected": selected,
        "selection_reason": reason,
        "fits": fits,
        "budgets": {"latency_ms": target.budgets.latency_ms, "ram_kb": target.budgets.ram_kb,
                    "flash_kb": target.budgets.flash_kb},
    }
    write_json(directory / "report.json", report)
    write_atomic(directory / "report.md", reports.to_markdown(report))
    metrics = {v["name"]: v["metric"]["value"] for v in variants}
    optimize.check_drop(recipe, quantized.name, metrics["float32"], metrics[quantized.name])
    files = [c.filename for c in conversions] + [FLOAT_KERAS, "report.json", "report.md"]
    if recipe.task in ("classification", "binary"):
        write_atomic(directory / "labels.txt", "\n".join(dataset.labels) + "\n")
        files.append("labels.txt")
    chosen_file = directory / next(v["file"] for v in variants if v["name"] == selected)
    if chosen_file.suffix == ".tflite":
        with stage("export"):
            files += _write_bundle(chosen_file, target, directory, dataset)
    write_manifest(directory, files, recipe=recipe.to_dict(), target=target.to_dict(), seed=seed,
                   dataset=dataset.describe(),
                   metrics={v["name"]: {recipe.metric: v["metric"]["value"], "size_bytes": v["size_bytes"]}
                            for v in variants})
    if not fits:
        chosen = next(v for v in variants if v["name"] == selected)
        misses = "; ".join(c["summary"] for c in chosen["fit"]["checks"] if c["ok"] is False)
        raise BudgetError(f"the build is complete in {directory}, but {selected} does not fit {target.name}: {misses}")
    return BuildResult(directory, report)


def _write_bundle(model: Path, target: Target, directory: Path, dataset) -> list[str]:
    """The selected model's deployment bundle in `directory/bundle` (what `edgekit export` writes), with a
    test-set sample as its stored test input; returns the files, relative."""
    import shutil

    bundle = directory / BUNDLE
    shutil.rmtree(bundle, ignore_errors=True)  # a bundle of an earlier build must not mix with this one
    if target.device_class.value == "mcu":
        from edgekit.export import export_mcu

        export_mcu(model, target, bundle, sample=dataset.x_test[0])
    else:
        from edgekit.bundles import export_bundle

        labels = directory / "labels.txt"
        export_bundle(model, target, bundle, labels if labels.is_file() else None, sample=dataset.x_test[0])
    return sorted(f"{BUNDLE}/{f.name}" for f in bundle.iterdir() if f.is_file() and not f.name.startswith("."))


def _save_keras(model, path: Path) -> None:
    """Save weights and architecture only: an uncompiled copy leaves the optimizer state behind."""
    from edgekit.optimize import clone

    temporary = path.with_name(f".partial-{path.name}")
    clone(model).save(temporary)
    temporary.replace(path)


def _optimization_section(optimized, conversions, variants: list[dict[str, Any]], float_metric: float,
                          recipe: Recipe) -> dict[str, Any]:
    """What each optimization step did, and what reached the files: size raw and gzip of the float and
    quantized artifacts, and the sparsity of every weight op in the quantized one.

    The quantized variant's `sparsity` becomes the share of zeros across the pruned layers' ops (the figure
    the recipe's `sparsity` sets), because the first convolution and the last Dense layer are kept dense by
    default; the share across every weight op stays in `sparsity_all_weights`."""
    from edgekit.optimize import PRUNABLE, artifact_sparsity

    by_name = {v["name"]: v for v in variants}
    quantized = conversions[1]
    prunable = [getattr(layer, "layer", layer).name for layer in optimized.model.layers  # through QAT wrappers
                if type(getattr(layer, "layer", layer)).__name__ in PRUNABLE]
    per_op = artifact_sparsity(quantized.content, prunable)
    pruned_ops = [row for row in per_op if row["layer"] in optimized.pruned_layers]
    variant = by_name[quantized.name]
    if pruned_ops:
        zeros = sum(row["sparsity"] * row["weights"] for row in pruned_ops)
        variant["sparsity_all_weights"] = variant["sparsity"]
        variant["sparsity"] = zeros / sum(row["weights"] for row in pruned_ops)
        variant["sparsity_basis"] = f"pruned layers: {', '.join(optimized.pruned_layers)}"
    settings = recipe.optimize
    return {
        "settings": {"sparsity": settings.sparsity, "quantize": optimized.quantize,
                     "qat_epochs": settings.qat_epochs if optimized.quantization_aware else 0,
                     "clusters": settings.clusters},
        "pruned_layers": optimized.pruned_layers,
        "kept_dense": optimized.kept_dense,
        "kept_dense_reasons": optimized.kept_dense_reasons,
        "left_to_converter": optimized.left_to_converter,  # layers QAT could not wrap: calibrated by the converter
        "steps": optimized.steps,
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
