"""The classic Keras MNIST walk-through through edgekit's Python API, then pruned, quantized and benchmarked.

The walk-through, in plain Keras:

    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    x_train, x_test = x_train / 255.0, x_test / 255.0
    model = keras.Sequential([keras.layers.Flatten(input_shape=(28, 28)),
                              keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=2)  # batch size 32, Keras's default
    model.evaluate(x_test, y_test)

and the same with edgekit: the `mnist-mlp` recipe (models/mnist-mlp.toml) holds the model and the training
settings, `data.load` loads and normalises, `train.train` compiles and fits, Keras's own `evaluate` scores
the result. Then `build` runs the whole chain for a Raspberry Pi 4 (train, prune to 50% sparsity, int8
quantization-aware training, convert, verify, bench), and `bench_targets` asks whether the int8 file also
fits a microcontroller. `mnist_walkthrough.sh` does the same with the command line.

    python examples/mnist_walkthrough.py                     # builtin:mnist; about a minute on two cores
    python examples/mnist_walkthrough.py --data mnist.npz    # an MNIST-format file (x_train, y_train, x_test, y_test)
    python examples/mnist_walkthrough.py --quick --data ...  # one pruning epoch, fewer timing runs

builtin:mnist is downloaded once into Keras's cache (~/.keras/datasets/mnist.npz, 11 MB). Without network
access and without that file, the example stops with edgekit's one-line error, which says where to put it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edgekit import data, recipes, targets, train
from edgekit.bench import bench_targets
from edgekit.build import build
from edgekit.errors import run_or_exit


def walkthrough(recipe: recipes.Recipe, spec: str) -> float:
    """The tutorial's six lines, one edgekit call each. Returns the Keras test accuracy."""
    # load_data() and `/ 255.0`: edgekit reads 8-bit pixels as x / 255 and records that in the dataset, so the
    # deployed model can be fed the same way. It also holds a validation split out of the training images,
    # which the tutorial does not; the test images are Keras's own 10,000.
    mnist = data.load(spec, input_shape=recipe.input_shape)
    sizes = mnist.sizes()
    print(f"data: {mnist.name}, {sizes['train']} train / {sizes['val']} validation / {sizes['test']} test images "
          f"of {'x'.join(map(str, mnist.input_shape))}, pixels scaled by {mnist.preprocessing['scale']:.6f} (1/255)")

    # Sequential([Flatten, Dense(128, relu), Dense(10, softmax)]), compile(adam, sparse categorical
    # cross-entropy) and fit(epochs=2, batch_size=32): the recipe's builder `mlp` and its [train] table.
    settings = recipe.train
    print(f"model: {recipe.builder} {recipe.builder_args}, {settings.optimizer} at {settings.learning_rate:g}, "
          f"{settings.epochs} epochs of batch {settings.batch_size}")
    trained = train.train(recipe, mnist, seed=0)
    print(f"model: {trained.model.count_params():,} parameters, trained in {trained.seconds:.1f} s")

    # evaluate(x_test, y_test): the trained model is a plain tf_keras model, compiled by train.train.
    loss, accuracy = trained.model.evaluate(mnist.x_test, mnist.y_test, verbose=0)
    print(f"evaluate: test loss {loss:.4f}, test accuracy {accuracy:.4f}")
    return accuracy


def deploy(recipe: recipes.Recipe, spec: str, out: Path, runs: int) -> dict:
    """The whole chain for a Raspberry Pi 4, then the int8 file against a microcontroller as well."""
    rpi4 = targets.load("rpi4")
    result = build(recipe, rpi4, out, seed=0, runs=runs, data_spec=spec)
    report = result.report
    print(f"\nbuild for {rpi4.name} ({report['dataset']['test']} test images):")
    for variant in report["variants"]:
        print(f"  {variant['name']:<8} {variant['size_bytes']:>9,} bytes, gzip {variant['gzip_bytes']:>9,}, "
              f"sparsity {variant['sparsity']:5.1%}, accuracy {variant['accuracy']:.4f}, "
              f"host median {variant['latency_ms']['median']:.3f} ms")
    print(f"ship {report['selected']}: {report['selection_reason']}")
    print(f"build folder: {result.directory}")

    # The same test images go into the bench, so its accuracy is the build's.
    mnist = data.load(spec, input_shape=recipe.input_shape)
    chosen = [rpi4, targets.load("nucleo-l4r5zi")]
    int8 = result.directory / "int8.tflite"
    print(f"\nbench {int8.name}:")
    for bench in bench_targets(int8, chosen, mnist.x_test, mnist.y_test, runs=runs):
        print(f"  {bench.target}: {'FITS' if bench.fit.fits else 'DOES NOT FIT'} (accuracy {bench.accuracy:.4f})")
        for check in bench.fit.checks:
            print(f"    {check.budget:<9} {check.summary}")
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None,
                        help="the recipe's builtin:mnist, or an MNIST-format .npz or .csv file")
    parser.add_argument("--out", type=Path, default=Path("build"), help="parent of the build folder")
    parser.add_argument("--quick", action="store_true", help="one pruning epoch and fewer timing runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    recipe = recipes.load("mnist-mlp")
    if args.quick:
        # A smoke test on a few hundred test images, where each image moves the accuracy by 0.3 points: the
        # recipe's 1-point guard on the int8 model is loosened to 5.
        recipe = recipe.with_changes(optimize={"pruning_epochs": 1, "max_drop": 5.0})
    spec = args.data or recipe.dataset
    walkthrough(recipe, spec)
    return deploy(recipe, spec, args.out, runs=20 if args.quick else 200)


if __name__ == "__main__":
    run_or_exit(main)  # the one-line error and exit code `edgekit` itself would give
