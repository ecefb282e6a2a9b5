"""Your own board: a target profile of your own, and `bench` of models against it and a built-in board.

custom_target.toml describes an STM32F411CE board (Cortex-M4F at 100 MHz, 128 KB SRAM, 512 KB flash) the way
targets/README.md asks: every figure with its source, its latency constants derived from nucleo-l4r5zi's.
This script loads it like any target, then judges int8 models against it and against the built-in
nucleo-l4r5zi (the same core with 640 KB SRAM and 2 MB flash): flash and the TFLite Micro tensor arena are
measured from the files, latency is estimated from each profile's cost model, every figure next to its budget.

    python examples/custom_target.py                      # two models trained on built-in digits; about 20 s
    python examples/custom_target.py --model build/digits-cnn-rpi4/int8.tflite   # your own .tflite files

The command-line equivalent for one file:

    edgekit bench MODEL.tflite --target examples/custom_target.toml --target nucleo-l4r5zi
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from edgekit import convert, data, recipes, targets, train
from edgekit.bench import bench_targets
from edgekit.errors import UsageError, run_or_exit

PROFILE = Path(__file__).resolve().parent / "custom_target.toml"

# Two built-in recipes, trained briefly on scikit-learn's digits (offline): the default build's small CNN at
# 8x8, and the Keras MNIST convnet at 28x28 (the digits scaled up), whose 1.6 MB of int8 weights make the point.
MODELS = {"digits-cnn": 5, "mnist-cnn": 2}  # recipe -> training epochs


def trained_int8(name: str, epochs: int, folder: Path) -> tuple[Path, data.Dataset]:
    """A built-in recipe's model trained on the digits, converted to int8 and verified against Keras."""
    recipe = recipes.load(name).with_changes(dataset="builtin:digits", train={"epochs": epochs})
    digits = data.load(recipe.dataset, input_shape=recipe.input_shape)
    trained = train.train(recipe, digits, seed=0)
    int8 = convert.tflite_int8(trained.model, digits.representative(100), digits.x_val, recipe.task)
    path = folder / f"{name}.int8.tflite"
    path.write_bytes(int8.content)
    return path, digits


def judge(model: Path, boards: list[targets.Target], test: data.Dataset | None = None) -> dict[str, bool]:
    """Bench the model once on this host, then print its fit verdict for every board."""
    x, y = (test.x_test, test.y_test) if test else (None, None)
    results = bench_targets(model, boards, x, y, runs=100, warmup=10)
    first = results[0]
    accuracy = "" if first.accuracy is None else f", test accuracy {first.accuracy:.4f}"
    print(f"\n{model.name}: {first.precision}, {first.size_bytes:,} bytes, {first.params:,} params, "
          f"{first.macs:,} MACs{accuracy}")
    verdicts = {}
    for result in results:
        verdict = result.fit
        misses = ", ".join(check.budget for check in verdict.misses)
        print(f"  {result.target}: {'FITS' if verdict.fits else f'DOES NOT FIT ({misses})'}")
        for check in verdict.checks:
            mark = "ok  " if check.ok else "MISS" if check.ok is False else "-   "
            print(f"    {check.budget:<9} {mark} {check.summary}")
        verdicts[result.target] = verdict.fits
    return verdicts


def main(argv: list[str] | None = None) -> dict[str, dict[str, bool]]:
    """Returns model file name -> target name -> fits."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default=str(PROFILE), help="your profile (default: custom_target.toml)")
    parser.add_argument("--compare", default="nucleo-l4r5zi", help="a built-in target to compare with")
    parser.add_argument("--model", type=Path, action="append", default=[],
                        help=".tflite or .onnx file to judge (repeat it); default: two models trained here")
    parser.add_argument("--out", type=Path, default=None, help="folder for the trained models (default: a temp one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)

    mine, builtin = targets.load(args.target), targets.load(args.compare)
    for board in (mine, builtin):
        memory = board.memory
        print(f"{board.name}: {board.title}; {memory.ram_available_kb} KB RAM and {memory.flash_available_kb} KB "
              f"flash for the model ({board.file})")

    boards = [mine, builtin]
    if args.model:
        missing = [str(model) for model in args.model if not model.is_file()]
        if missing:
            raise UsageError(f"model file '{missing[0]}' does not exist")
        return {model.name: judge(model, boards) for model in args.model}
    folder = args.out or Path(tempfile.mkdtemp(prefix="edgekit-custom-target-"))
    folder.mkdir(parents=True, exist_ok=True)
    verdicts = {}
    for name, epochs in MODELS.items():
        model, digits = trained_int8(name, epochs, folder)
        verdicts[model.name] = judge(model, boards, digits)
    return verdicts


if __name__ == "__main__":
    run_or_exit(main)  # the one-line error and exit code `edgekit` itself would give
