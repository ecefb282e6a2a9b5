"""The `edgekit build` pipeline from Python, one stage at a time, then the whole chain.

    python examples/python_api.py            # about 30 s on two CPU cores
    python examples/python_api.py --quick    # a few epochs, for a smoke test
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from edgekit import convert, data, optimize, recipes, targets, train
from edgekit.bench import bench
from edgekit.build import build
from edgekit.errors import run_or_exit


def stage_by_stage(recipe: recipes.Recipe, target: targets.Target, out: Path) -> None:
    """Each stage is a function from values to values: any of them can run alone."""
    digits = data.load(recipe.dataset)
    trained = train.train(recipe, digits, seed=0)
    baseline = convert.tflite_float32(trained.model, digits.x_val)  # verified against Keras
    optimized = optimize.optimize(trained.model, recipe, digits)  # pruning + QAT on a clone
    int8 = convert.tflite_int8(optimized.model, digits.representative(200), digits.x_val)
    for conversion in (baseline, int8):
        path = out / conversion.filename
        path.write_bytes(conversion.content)
        result = bench(path, target, digits.x_test, digits.y_test, runs=50)
        print(f"{conversion.name}: {result.size_bytes} bytes, sparsity {result.sparsity:.0%}, "
              f"accuracy {result.accuracy:.4f}, host median {result.latency_ms.median:.3f} ms, "
              f"fits {target.name}: {result.fit.fits}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="train for a few epochs only")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    recipe = recipes.load("digits-cnn")
    if args.quick:
        recipe = recipe.with_changes(train={"epochs": 3}, optimize={"pruning_epochs": 1, "qat_epochs": 1,
                                                                   "max_drop": 10.0})
    out = args.out or Path(tempfile.mkdtemp(prefix="edgekit-example-"))
    rpi4 = targets.load("rpi4")
    stage_by_stage(recipe, rpi4, out)
    result = build(recipe, rpi4, out, runs=50)  # the chain, as `edgekit build` runs it
    print(f"selected {result.report['selected']}; build folder {result.directory}")
    return result.report


if __name__ == "__main__":
    run_or_exit(main)  # the one-line error and exit code `edgekit` itself would give
