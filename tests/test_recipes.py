"""Every recipe file loads; malformed recipes fail with the file and key named."""

from __future__ import annotations

import subprocess
import sys

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


OPTIONS = dict(task="classification", sparsity="0.5", schedule="polynomial", pruning_epochs=2, prune_layers=("c*",),
               keep_dense=(), quantize="qat", qat_epochs=2, clusters=0, cluster_epochs=2, max_drop=1.0, batch_size=32,
               learning_rate=0.001, calibration_samples=100)


def test_optimize_options_become_a_checked_recipe():
    recipe = recipes.from_optimize_options("cnn", **OPTIONS)
    assert (recipe.name, recipe.builder, recipe.file.name) == ("cnn", "external", "command line")
    settings = recipe.optimize
    assert settings.sparsity == 0.5 and settings.prune_layers == ("c*",) and settings.calibration_samples == 100
    assert settings.pruning_learning_rate == 0.001 and settings.qat_learning_rate == 0.0005
    assert recipes.from_optimize_options("cnn", **{**OPTIONS, "sparsity": "2:4"}).optimize.structured
    assert recipes.from_optimize_options("cnn", **{**OPTIONS, "sparsity": "0"}).optimize.pruning_epochs == 0


@pytest.mark.parametrize(("change", "message"), [
    ({"sparsity": "half"}, "--sparsity 'half': expected a number from 0 to 0.95, or 2:4"),
    ({"sparsity": "0.99"}, "command line: key 'optimize.sparsity': expected a number from 0 to 0.95, got 0.99"),
    ({"clusters": 1}, "command line: key 'optimize.clusters': expected 0 (off) or at least 2, got 1"),
])
def test_bad_optimize_options_are_one_line(change, message):
    with pytest.raises(UsageError) as error:
        recipes.from_optimize_options("cnn", **{**OPTIONS, **change})
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (GOOD + "[model.args]\nfilters = 32\n",
         "key 'model.args.filters': expected a list of integers (like [16, 32]), got 32"),
        (GOOD + "[model.args]\nfilters = [8, 1.5]\n",
         "key 'model.args.filters': expected a list of integers (like [16, 32]), got [8, 1.5]"),
        (GOOD + "[model.args]\ndense_units = 64.0\n",
         "key 'model.args.dense_units': expected an integer (like 64), got 64.0"),
        (GOOD + "[model.args]\ndropout = 'some'\n",
         "key 'model.args.dropout': expected a number (like 0.0), got 'some'"),
        (GOOD + "[model.args]\noutput = 'sigmoid'\n",
         "key 'model.args.output': expected one of 'softmax', 'linear', got 'sigmoid'"),
        (GOOD + "[model.args]\nfiltres = [8]\n", "unknown key 'model.args.filtres'; did you mean 'model.args.filters'? "
         "builder 'small-cnn' takes: dense_units, dropout, filters, output"),
        (GOOD.replace('"small-cnn"', '"small_cnn"'), "key 'model.builder': unknown builder 'small_cnn'; did you mean "
         "'small-cnn'? valid: small-cnn, mlp, ds-cnn, mobilenet-v1, resnet8, fc-autoencoder"),
        # a misspelt required key is named as the unknown key it is, not as the required key missing
        (GOOD.replace("epochs = 1", "epoch = 1"), "unknown key 'train.epoch'; did you mean 'train.epochs'? valid keys "
         "here: batch_size, epochs, learning_rate, optimizer"),
        (GOOD.replace("task =", "tsak ="), "unknown key 'tsak'; did you mean 'task'? valid keys here: dataset, "
         "description, expected_params, metric, model, name, optimize, task, train"),
        (GOOD + "[optimize]\nqat_epoch = 1\n", "unknown key 'optimize.qat_epoch'; did you mean 'optimize.qat_epochs'?"),
    ],
)
def test_builder_args_and_misspelt_keys_are_named_with_what_is_expected(tmp_path, change, message):
    path = _write(tmp_path, change)
    with pytest.raises(UsageError) as error:
        recipes.load(path)
    assert str(error.value).startswith(f"{path}: {message}"), str(error.value)


@pytest.mark.parametrize("name", zoo.BUILDERS)
def test_every_builder_argument_has_a_default_that_gives_its_type(name):
    """So that every argument a recipe gives is checked before TensorFlow is imported."""
    for key, (default, choices) in zoo.parameters(name).items():
        assert default is not None, f"{name}: argument {key} has no default to take its type from"
        assert not choices or default in choices


def test_a_bad_builder_argument_stops_the_build_before_tensorflow_is_imported(tmp_path):
    path = _write(tmp_path, GOOD + "[model.args]\nfilters = 32\n")
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from edgekit.cli import main\n"
        f"result = CliRunner().invoke(main, ['build', '--recipe', {str(path)!r}, '--out', {str(tmp_path)!r}])\n"
        "print(result.exit_code, repr(result.stderr), 'tensorflow' in sys.modules)\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    line = f"Error: {path}: key 'model.args.filters': expected a list of integers (like [16, 32]), got 32\n"
    assert output.strip() == f"2 {line!r} False"
    assert list(tmp_path.iterdir()) == [path], "nothing is created for a recipe that does not load"
