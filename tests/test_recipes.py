"""Every recipe file loads; malformed recipes fail with the file and key named."""

from __future__ import annotations

import pytest

from edgekit import recipes, zoo
from edgekit.errors import UsageError


@pytest.mark.parametrize("name", recipes.names())
def test_every_builtin_recipe_loads_and_names_a_known_builder(name):
    recipe = recipes.load(name)
    assert recipe.name == name
    assert recipe.builder in zoo.BUILDERS
    assert 0 <= recipe.optimize.sparsity < 1


def _write(tmp_path, text):
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


GOOD = """
name = "r"
dataset = "digits"
task = "classification"
metric = "accuracy"
[model]
builder = "small-cnn"
[train]
epochs = 1
"""


def test_a_minimal_recipe_gets_documented_defaults(tmp_path):
    recipe = recipes.load(_write(tmp_path, GOOD))
    assert recipe.optimize.sparsity == 0.5 and recipe.optimize.qat_epochs == 2
    assert recipe.train.batch_size == 32


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("bogus = 1\n" + GOOD, "unknown key 'bogus'"),
        (GOOD.replace("epochs = 1", "epochs = 'ten'"), "key 'train.epochs': expected an integer >= 1, got 'ten'"),
        (GOOD.replace("epochs = 1", "epochs = 0"), "key 'train.epochs': expected an integer >= 1, got 0"),
        (GOOD + "[optimize]\nsparsity = 1.5\n", "key 'optimize.sparsity': expected a number from 0 to 0.95, got 1.5"),
        (GOOD.replace('metric = "accuracy"', 'metric = "auc"'), "key 'metric': expected one of 'accuracy', got 'auc'"),
        (GOOD.replace('builder = "small-cnn"', 'builder = "small-cnn"\ninput = [8, 0]'),
         "key 'model.input': expected a list of positive integers, got [8, 0]"),
        (GOOD.replace('task = "classification"\n', ""), "key 'task': expected one of 'classification', 'binary', "
         "'regression', 'anomaly', missing"),
        (GOOD + "[train.extra]\n", "unknown key 'train.extra'"),
        ("name = ", "not valid TOML"),
    ],
)
def test_malformed_recipes_name_the_file_and_key(tmp_path, change, message):
    path = _write(tmp_path, change)
    with pytest.raises(UsageError) as error:
        recipes.load(path)
    assert str(error.value).startswith(str(path))
    assert message in str(error.value)
