"""Every command has help, the fast commands never import TensorFlow, and bad names exit 2 with one line."""

from __future__ import annotations

import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from edgekit.cli import main


def _commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


@pytest.mark.parametrize("path", [(), *_commands(main)], ids=lambda p: " ".join(p) or "edgekit")
def test_every_command_has_help(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


@pytest.mark.parametrize("args", [["--help"], ["targets"], ["models"], ["targets", "show", "rpi4"],
                                  ["report", "--help"], ["sweep", "--help"]])
def test_fast_commands_do_not_import_tensorflow(args):
    """Nor the other heavy libraries: plotting (matplotlib, PIL) and Ray load only in the commands that use them."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from edgekit.cli import main\n"
        f"result = CliRunner().invoke(main, {args!r})\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'tf_keras', 'keras', 'onnxruntime', 'tf2onnx', 'matplotlib', 'PIL', 'ray'))\n"
        "print(heavy[:5])\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_unknown_target_is_one_line_with_a_suggestion():
    result = CliRunner().invoke(main, ["build", "--target", "rpi44"])
    assert result.exit_code == 2
    assert result.stderr == "Error: unknown target 'rpi44'; did you mean 'rpi4'? `edgekit targets` lists them\n"


def test_unknown_recipe_is_one_line_with_a_suggestion():
    result = CliRunner().invoke(main, ["build", "--recipe", "digit-cnn"])
    assert result.exit_code == 2
    assert result.stderr == ("Error: unknown recipe 'digit-cnn'; did you mean 'digits-cnn'? "
                             "`edgekit models` lists them\n")


def test_missing_recipe_file_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["build", "--recipe", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: recipe file '{tmp_path / 'nope.toml'}' does not exist"


@pytest.mark.parametrize(("args", "line"), [
    (["build", "--recipe", "{folder}"], "recipe file '{folder}' is a folder, not a file; give the .toml file in it "
                                        "(`edgekit models` lists the built-in ones)"),
    (["targets", "show", "{folder}"], "target file '{folder}' is a folder, not a file; give the .toml file in it "
                                      "(`edgekit targets` lists the built-in ones)"),
])
def test_a_folder_given_as_a_toml_file_is_called_a_folder(tmp_path, args, line):
    folder = tmp_path / "boards.toml"
    folder.mkdir()
    result = CliRunner().invoke(main, [a.format(folder=folder) for a in args])
    assert result.exit_code == 2
    assert result.stderr == f"Error: {line.format(folder=folder)}\n"


def test_models_lists_the_default_recipe():
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0 and "digits-cnn" in result.stdout


def test_builtin_names_resolve_from_any_folder(tmp_path):
    """After `pip install .` the TOML data ships inside the package, so a name resolves anywhere."""
    code = "from edgekit import recipes, targets; print(recipes.load('digits-cnn').name, targets.load('rpi4').name)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert result.stdout.split() == ["digits-cnn", "rpi4"]


def test_a_nan_loss_stops_the_build_with_one_line(tmp_path, tiny_recipe):
    recipe = tmp_path / "diverges.toml"
    recipe.write_text(tiny_recipe.read_text().replace("learning_rate = 0.003", "learning_rate = 1e38"))
    result = CliRunner().invoke(main, ["build", "--recipe", str(recipe), "--out", str(tmp_path)])
    assert result.exit_code == 1, result.output
    last = result.stderr.splitlines()[-1]
    assert re.fullmatch(r"Error: train failed: loss became (nan|inf) in epoch 1 \(try a lower learning rate, "
                        r"or check the input normalisation\)", last), last
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "tiny-digits-rpi4" / "manifest.json").exists()


@pytest.mark.parametrize("args", [["build"], ["bench", "m.tflite"], ["sweep", "--grid", "g.toml"],
                                  ["export", "m.tflite", "--out", "bundle"]], ids=lambda a: a[0])
def test_every_target_option_reads_names_one_way(args, tmp_path):
    """One parameter type: the same one-line error (exit 2) before any work, wherever a target is named."""
    result = CliRunner().invoke(main, [*args, "--target", "rpi4", "--target", "rpi44"])
    assert result.exit_code == 2
    assert result.stderr == "Error: unknown target 'rpi44'; did you mean 'rpi4'? `edgekit targets` lists them\n"


def test_export_takes_one_target_not_all():
    result = CliRunner().invoke(main, ["export", "m.tflite", "--out", "bundle", "--target", "all"])
    assert result.exit_code == 2 and result.stderr.startswith("Error: unknown target 'all'; valid: alif-ensemble-e7")


def test_every_task_option_offers_the_task_registry():
    from edgekit.tasks import TASKS

    offered = {name: parameter.type.choices for name, command in main.commands.items()
               for parameter in command.params if parameter.name == "task"}
    assert set(offered) == {"bench", "convert", "optimize"}
    assert all(list(choices) == list(TASKS) for choices in offered.values()), offered
