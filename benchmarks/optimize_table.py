"""Issue 5's acceptance table: each optimization technique on `digits-cnn` (scikit-learn digits) and on the
MLPerf Tiny DS-CNN (keyword spotting architecture, on synthetic 49x10 inputs with 12 classes: Speech
Commands cannot be downloaded here): size, gzip size, test metric and host latency of the file each makes.

Each model is trained once; every row optimizes that same trained model through
`edgekit.optimize_file.optimize_model` (what `edgekit optimize` runs) and benchmarks the file with `edgekit.bench`
(LiteRT, batch 1, one thread, warm-up discarded, median of the timed runs on this host).

    python benchmarks/optimize_table.py   # writes benchmarks/optimize_table.json and docs/optimize.md (~4 min)
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from edgekit import bench, convert, data, recipes, targets, train
from edgekit._files import gzip_size, write_atomic
from edgekit.optimize_file import optimize_model
from edgekit.report.text import host

HERE = Path(__file__).resolve().parent
# recipe -> (data spec, [train] changes). DS-CNN trains on 2,400 synthetic samples in batches of 32: its batch
# norms' moving averages (momentum 0.99) need about 500 steps before inference-mode outputs stop being constant
# (measured: validation accuracy stays at chance, 0.083, for the first 8 epochs of 75 steps).
MODELS = {
    "digits-cnn": ("digits", {}),
    "kws-ds-cnn": ("synthetic:49x10x1:12:2400", {"epochs": 16, "batch_size": 32, "learning_rate": 0.002}),
}
NONE = {"sparsity": 0.0, "pruning_epochs": 0, "clusters": 0, "quantize": "qat", "qat_epochs": 2}
ROWS = {  # row -> [optimize] settings; the accuracy guard is off (max_drop 100) so every row is measured
    "PTQ int8": {**NONE, "quantize": "ptq", "qat_epochs": 0},
    "QAT int8": NONE,
    "50% + QAT": {**NONE, "sparsity": 0.5, "pruning_epochs": 2},
    "2:4 + QAT": {**NONE, "sparsity": "2:4", "pruning_epochs": 2},
    "16 clusters + QAT": {**NONE, "clusters": 16, "cluster_epochs": 2},
    "int16x8 (PTQ)": {**NONE, "quantize": "int16x8", "qat_epochs": 0},
}
RUNS, WARMUP = 300, 30


def measure(content: bytes, dataset, recipe, folder: Path, name: str) -> dict:
    path = folder / f"{recipe.name}-{name.replace(' ', '_').replace('%', 'pc').replace(':', 'x')}.tflite"
    write_atomic(path, content)
    result = bench.bench(path, targets.load("rpi4"), dataset.x_test, dataset.y_test, runs=RUNS, warmup=WARMUP,
                         task=recipe.task, metric=recipe.metric)
    return {"size_bytes": len(content), "gzip_bytes": gzip_size(content), recipe.metric: result.metric["value"],
            "host_median_ms": round(result.latency_ms.median, 4), "sparsity": round(result.sparsity, 4)}


def table(name: str, spec: str, training: dict, folder: Path) -> dict:
    recipe = recipes.load(name).with_changes(train=training)
    dataset = data.load(spec, input_shape=recipe.input_shape, task=recipe.task)
    started = time.perf_counter()
    model = train.train(recipe, dataset, seed=0).model
    rows = {"float32": {**measure(convert.tflite_float32(model, dataset.x_val[:256]).content, dataset, recipe,
                                  folder, "float32"), "seconds": round(time.perf_counter() - started, 1)}}
    for row, settings in ROWS.items():
        started = time.perf_counter()
        changed = recipe.with_changes(optimize={**settings, "max_drop": 100.0})
        conversion, report = optimize_model(model, changed, dataset)
        rows[row] = {**measure(conversion.content, dataset, recipe, folder, row),
                     "seconds": round(time.perf_counter() - started, 1), "format": conversion.name,
                     "pruned_layers": report["pruned_layers"], "kept_dense": report["kept_dense_reasons"],
                     "left_to_converter": report["left_to_converter"]}
    return {"recipe": name, "data": spec, "train_epochs": recipe.train.epochs, "metric": recipe.metric,
            "test_samples": len(dataset.x_test), "rows": rows}


def to_markdown(results: dict) -> str:
    lines = ["# Optimization techniques, measured", "",
             "Written by `benchmarks/optimize_table.py` on "
             f"{results['host']['cpu']} ({results['host']['cores']} cores). Size is the .tflite file; gzip is "
             "`gzip -9` of it (pruned zeros only shrink there); the metric is on the test split; latency is the "
             f"median of {RUNS} batch-1 runs in LiteRT on this host, one thread, after {WARMUP} warm-up runs.", ""]
    for model in results["models"]:
        metric = model["metric"]
        lines += [f"## {model['recipe']} on `{model['data']}` ({model['train_epochs']} training epochs, "
                  f"{model['test_samples']} test samples)", "",
                  f"| variant | size (B) | gzip (B) | {metric} | host median (ms) | sparsity | time (s) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for row, figures in model["rows"].items():
            lines.append(f"| {row} | {figures['size_bytes']:,} | {figures['gzip_bytes']:,} | {figures[metric]:.4f} | "
                         f"{figures['host_median_ms']:.4f} | {figures['sparsity']:.1%} | {figures['seconds']:.1f} |")
        pruned = model["rows"]["50% + QAT"]
        lines += ["", f"Pruned: {', '.join(pruned['pruned_layers'])}. Kept dense: "
                  + "; ".join(f"{layer} ({why})" for layer, why in pruned["kept_dense"].items()) + ".", ""]
    lines += ["## Reading these", "",
              "- The synthetic keyword-spotting data is separable by construction: its metric shows whether a "
              "technique broke the model, not how well DS-CNN recognises speech (Speech Commands needs a download).",
              "- Pruning and clustering leave the raw size alone (TFLite stores every zero); they show in the gzip "
              "column. The sparsity column is over every weight of the file, dense layers included.",
              "- int16x8 runs on LiteRT's reference 16-bit kernels, which XNNPACK does not accelerate: compare "
              "its host latency with the int8 rows before shipping it to a CPU.", ""]
    return "\n".join(lines)


def main() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        results = {"host": host(), "models": [table(name, spec, training, Path(folder))
                                             for name, (spec, training) in MODELS.items()]}
    (HERE / "optimize_table.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE.parent / "docs" / "optimize.md").write_text(to_markdown(results))
    return results


if __name__ == "__main__":
    for model in main()["models"]:
        print(model["recipe"], json.dumps({row: {k: v for k, v in f.items() if not isinstance(v, list | dict)}
                                           for row, f in model["rows"].items()}, indent=1))
