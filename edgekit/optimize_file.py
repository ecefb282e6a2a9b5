"""`edgekit optimize`: a trained model from outside a build, optimized and converted by the path `edgekit build`
uses (optimize.optimize_and_convert), with the task metric and the file size before and after."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.convert import Conversion
from edgekit.data import Dataset
from edgekit.optimize import artifact_sparsity, check_drop, optimize_and_convert
from edgekit.recipes import Recipe
from edgekit.tasks import TASKS


def optimize_file(model_path: Path, recipe: Recipe, data_spec: str, out: Path, seed: int = 0,
                  distribute: str | None = None, unsafe_load: bool = False) -> dict[str, Any] | None:
    """Load the Keras model file, `optimize_model` it on `data_spec` (shaped for its input), and write the result
    to `out` and the report beside it (.json). Returns the report; None on a non-chief worker of a multiworker
    cluster, which writes nothing. A drop beyond `max_drop` raises BudgetError and writes nothing."""
    from edgekit import data
    from edgekit._files import write_atomic, write_json
    from edgekit.convert import input_shape
    from edgekit.distribute import check, is_chief
    from edgekit.model_files import load_model

    check(distribute)
    model = load_model(model_path, unsafe=unsafe_load)
    dataset = data.load_for_model(data_spec, input_shape(model), recipe.task)
    conversion, report = optimize_model(model, recipe, dataset, seed, distribute)
    if not is_chief(distribute):
        return None
    write_atomic(out, conversion.content)
    write_json(out.with_suffix(".json"), report)
    return report


def optimize_model(model, recipe: Recipe, data: Dataset, seed: int = 0,
                   distribute: str | None = None) -> tuple[Conversion, dict[str, Any]]:
    """`edgekit optimize`: `optimize_and_convert`, and the task metric on the test split and the file size
    (raw and gzip) of the float model and of the result. Returns (conversion, report). A drop beyond
    `max_drop` raises BudgetError (exit 3) with the figures and the settings to try next."""
    from edgekit import convert
    from edgekit._files import gzip_size
    from edgekit.runtimes.litert import TFLiteRunner

    task = TASKS[recipe.task]
    done = optimize_and_convert(model, recipe, data, seed, distribute)
    quantized = done.conversion
    baseline = convert.tflite_float32(model, data.x_val[:convert.CHECK_SAMPLES])
    float_metric = task.score(recipe.metric, model.predict(data.x_test, verbose=0), data.x_test, data.y_test)
    quantized_metric = task.score(recipe.metric, TFLiteRunner(quantized.content).predict(data.x_test),
                                  data.x_test, data.y_test)
    report = {
        "metric": recipe.metric, "task": recipe.task, "test_samples": len(data.x_test), "seed": seed,
        "before": {"format": "tflite-float32", "size_bytes": len(baseline.content),
                   "gzip_bytes": gzip_size(baseline.content), recipe.metric: float_metric},
        "after": {"format": quantized.name, "size_bytes": len(quantized.content),
                  "gzip_bytes": gzip_size(quantized.content), recipe.metric: quantized_metric,
                  "verification": quantized.check},
        "drop_points": task.drop_points(recipe.metric, float_metric, quantized_metric),
        "max_drop": recipe.optimize.max_drop,
        "settings": {"sparsity": recipe.optimize.sparsity, "quantize": done.quantize,
                     "clusters": recipe.optimize.clusters},
        **{key: getattr(done, key) for key in ("pruned_layers", "kept_dense", "kept_dense_reasons",
                                               "left_to_converter", "steps")},
        "artifact_sparsity": artifact_sparsity(quantized.content, done.prunable)}
    check_drop(recipe, quantized.name, float_metric, quantized_metric)
    return quantized, report
