"""Every built-in recipe file (models/*.toml): it loads, its builder makes the model it promises at its input
shape with exactly `expected_params` parameters, and that model trains for one step on synthetic data of that
shape with the loss of the recipe's task. Nothing is downloaded: a dataset that needs the network, or a
recipe that names none, gets its class count from the label names edgekit gives that dataset."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekit import data, recipes, zoo
from edgekit.data.builtin import CIFAR10_LABELS, DIGITS, FASHION_LABELS
from edgekit.data.speech_commands import LABELS as SPEECH_COMMANDS_LABELS
from edgekit.data.synthetic import read_synthetic
from edgekit.optimize import check_supported

DOWNLOADED_CLASSES = {"builtin:mnist": len(DIGITS), "builtin:fashion_mnist": len(FASHION_LABELS),
                      "builtin:cifar10": len(CIFAR10_LABELS), "builtin:speech_commands": len(SPEECH_COMMANDS_LABELS)}
# Recipes without a dataset take --data FOLDER; the class count is the subfolders their description asks for.
FOLDER_CLASSES = {"vww-mobilenet-v1-025": 2, "person-detect-mobilenet-v1-025": 2}
STEP_SAMPLES = 4  # one tiny batch: enough for batch-norm statistics, small enough for two CPU cores
LOSSES = {"classification": "sparse_categorical_crossentropy", "binary": "sparse_categorical_crossentropy",
          "regression": "mse", "anomaly": "mse"}
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}  # recipe name -> tf_keras class


def reads_offline(spec: str) -> bool:
    return spec.startswith("synthetic:") or spec.removeprefix("builtin:") == "digits"


def input_shape_and_classes(recipe: recipes.Recipe) -> tuple[tuple[int, ...], int]:
    """What the build stage would hand the builder: the shape of the data fitted to the recipe's input,
    and the data's class count."""
    if reads_offline(recipe.dataset):
        dataset = data.load(recipe.dataset, recipe.input_shape)
        return dataset.input_shape, dataset.num_classes
    assert recipe.input_shape, f"{recipe.name}: its data is not at hand offline, so it must give [model] input"
    classes = DOWNLOADED_CLASSES.get(recipe.dataset) if recipe.dataset else FOLDER_CLASSES.get(recipe.name)
    assert classes, f"{recipe.name}: add its class count to DOWNLOADED_CLASSES or FOLDER_CLASSES"
    return recipe.input_shape, classes


@pytest.fixture(scope="module")
def built():
    """recipe name -> (recipe, input shape, classes, model), each model built once for the module."""
    cache = {}

    def build(name: str):
        if name not in cache:
            recipe = recipes.load(name)
            shape, classes = input_shape_and_classes(recipe)
            cache[name] = recipe, shape, classes, zoo.build_model(recipe.builder, shape, classes,
                                                                  recipe.builder_args)
        return cache[name]

    return build


@pytest.mark.parametrize("name", recipes.names())
def test_recipe_loads_and_says_where_its_data_comes_from(name):
    recipe = recipes.load(name)
    assert recipe.name == name and recipe.builder in zoo.BUILDERS and recipe.description
    assert recipe.metric in recipes.METRICS[recipe.task]
    if not recipe.dataset:
        assert "--data" in recipe.description, "a recipe without a dataset must tell the user to pass --data"


@pytest.mark.parametrize("name", recipes.names())
def test_builder_makes_the_expected_model(name, built):
    recipe, shape, classes, model = built(name)
    if recipe.input_shape:
        assert shape == recipe.input_shape
    assert model.input_shape == (None, *shape)
    expected_output = (None, *shape) if recipe.task == "anomaly" else (None, classes)
    assert model.output_shape == expected_output
    if recipe.expected_params is not None:
        assert model.count_params() == recipe.expected_params
    check_supported(model, recipe)  # what the build refuses before training (QAT after Dense + batch-norm)


@pytest.mark.slow
@pytest.mark.parametrize("name", recipes.names())
def test_recipe_trains_one_step_on_synthetic_data(name, built):
    from edgekit._tf import keras

    recipe, shape, classes, model = built(name)
    # edgekit's synthetic data of the model's shape, unsplit: one batch needs no test or validation part.
    samples = read_synthetic(f"synthetic:{'x'.join(map(str, shape))}:{classes}:{STEP_SAMPLES * classes}")
    x, y = samples.x, samples.y
    if recipe.task == "anomaly":  # an autoencoder learns to reproduce the normal samples (class 0)
        x = x[y == 0]
        y = x
    optimizer = getattr(keras.optimizers, OPTIMIZERS[recipe.train.optimizer])(recipe.train.learning_rate)
    model.compile(optimizer=optimizer, loss=LOSSES[recipe.task])
    history = model.fit(x[:STEP_SAMPLES], y[:STEP_SAMPLES], epochs=1, steps_per_epoch=1,
                        batch_size=STEP_SAMPLES, verbose=0)
    loss = history.history["loss"][0]
    assert math.isfinite(loss) and loss > 0
    assert np.isfinite(model.predict(x[:2], verbose=0)).all()
