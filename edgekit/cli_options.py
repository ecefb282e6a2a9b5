"""The command line's shared vocabulary: the options several commands take, each defined once, and the target
parameter type. Importing it loads Click only (the task names come from edgekit.tasks, which holds no numpy at
import), so `edgekit --help` stays fast."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class TargetType(click.ParamType):
    """A built-in target name, a target TOML path, or (several=True) `all`, resolved to Targets by
    targets.resolve: an unknown name fails with edgekit's one line (exit 2) before the command runs."""

    name = "target"

    def __init__(self, several: bool = True):
        self.several = several

    def convert(self, value, param, ctx):
        from edgekit import targets

        return tuple(targets.resolve([value])) if self.several else targets.load(value)


def target(help: str) -> Decorator:
    """`--target`, repeatable, default rpi4: the command gets `chosen`, a list of Targets, each once, in the order
    first named."""
    def unique(ctx, param, value):
        from edgekit import targets

        return targets.resolve(target for group in value for target in group)

    return click.option("--target", "chosen", type=TargetType(), multiple=True, default=["rpi4"], show_default=True,
                        callback=unique, help=help)


def group(*decorators: Decorator) -> Decorator:
    """Several options as one decorator, in the order given."""
    def apply(command):
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


def timing(runs: int = 200, warmup: int = 20, threads: bool = True) -> Decorator:
    return group(
        click.option("--runs", type=click.IntRange(min=10), default=runs, show_default=True,
                     help="Timed batch-1 runs per artifact."),
        click.option("--warmup", type=click.IntRange(min=0), default=warmup, show_default=True,
                     help="Untimed runs before timing."),
        *([click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
                        help="Threads for the host runtimes.")] if threads else []))


def json(help: str = "Print JSON instead of a table.") -> Decorator:
    return click.option("--json", "as_json", is_flag=True, help=help)


def distribute(choices: tuple[str, ...] = ("mirrored", "multiworker"), help: str = (
        "Train (and prune, QAT) under a tf.distribute strategy: mirrored = this machine's GPUs, or "
        "EDGEKIT_CPU_DEVICES=N logical CPU devices; multiworker = the cluster in TF_CONFIG, only the chief writes. "
        "batch_size stays global. See docs/distributed.md.")) -> Decorator:
    return click.option("--distribute", type=click.Choice(choices), default=None, help=help)


def task() -> Decorator:
    """`--task`, one of edgekit.tasks.TASKS (the one task vocabulary)."""
    from edgekit.tasks import TASKS

    return click.option("--task", type=click.Choice(list(TASKS)), default="classification", show_default=True,
                        help="What the model's outputs mean: how --data is read and the outputs scored and compared.")


def seed() -> Decorator:
    return click.option("--seed", type=int, default=0, show_default=True,
                        help="Seed for weights, shuffling and the calibration samples.")


def optimize_settings() -> Decorator:
    """`edgekit optimize`'s [optimize] settings, each named as recipes.from_optimize_options takes it."""
    return group(
        click.option("--sparsity", default="0.5", show_default=True,
                     help="Share of weights pruned (0 = no pruning), or 2:4 for structured 2-of-4 sparsity."),
        click.option("--schedule", type=click.Choice(["polynomial", "constant"]), default="polynomial",
                     show_default=True),
        click.option("--pruning-epochs", type=click.IntRange(min=0), default=2, show_default=True),
        click.option("--prune-layers", multiple=True, help="Layer name patterns to prune (default: every conv and "
                     "dense layer but the first convolution and the last dense layer)."),
        click.option("--keep-dense", multiple=True, help="Layer name patterns never pruned."),
        click.option("--quantize", type=click.Choice(["qat", "ptq", "int16x8"]), default="qat", show_default=True,
                     help="int8 quantization-aware training, int8 post-training quantization, or int16 activations."),
        click.option("--qat-epochs", type=click.IntRange(min=0), default=2, show_default=True),
        click.option("--clusters", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Weight clusters per kernel (0 = none), then cluster-preserving QAT."),
        click.option("--cluster-epochs", type=click.IntRange(min=1), default=2, show_default=True),
        click.option("--max-drop", type=float, default=1.0, show_default=True,
                     help="Points of the metric the result may lose against the float model; more exits 3."),
        click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True),
        click.option("--learning-rate", type=float, default=0.0005, show_default=True,
                     help="For the pruning and QAT fine-tuning."),
        calibration_samples())


def calibration_samples() -> Decorator:
    return click.option("--calibration-samples", type=click.IntRange(min=1), default=200, show_default=True,
                        help="Training samples that calibrate the integer formats.")


def unsafe_load() -> Decorator:
    return click.option("--unsafe-load", is_flag=True, help="Let Lambda layers load: their stored Python code runs. "
                        "Only for models from a trusted source.")


def compare_settings() -> Decorator:
    """`edgekit compare`'s choices: which variant and target the result measured, the refit, and --force."""
    return group(
        click.option("--variant", default=None,
                     help="The build variant the result measured (int8, float32, ...). Default: the one whose file "
                          "the result names."),
        click.option("--target", "target_name", default=None,
                     help="The build's target the result ran on (a build for several targets). Default: the "
                          "first the result can belong to."),
        click.option("--calibrate", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, help="Write a copy of the target profile, refitted so its estimate for this model "
                                        "is the measurement, to this TOML file (then use it with --target). Only from "
                                        "a measurement of the target itself."),
        click.option("--force", is_flag=True,
                     help="Compare a result that cannot be the target's (another runtime, device class or "
                          "instruction set), marked as such; never with --calibrate."),
    )


class InputType(click.ParamType):
    """One `--input` (edgekit.feeds.parse_input): a malformed one fails with edgekit's one line before the command
    runs."""

    name = "input"

    def convert(self, value, param, ctx):
        from edgekit.feeds import parse_input

        return parse_input(value)


def inputs() -> Decorator:
    """`--input`, repeatable: the command gets `inputs`, a tuple of edgekit.feeds.InputSpec."""
    return click.option(
        "--input", "inputs", type=InputType(), multiple=True, metavar="SPEC",
        help="What an input of the model is fed, by name: NAME:SHAPE[:DTYPE] (its shape, batch included: "
             "state:2x1x128), NAME=FILE.npy (its values) or NAME=NUMBER (a scalar's value, or a tensor's fill). "
             "Repeat it for each input to set; the others are resolved from the model, and said.")


def layout() -> Decorator:
    """`edgekit export --layout`: the project a microcontroller bundle is laid out as."""
    return click.option("--layout", type=click.Choice(["cmake", "arduino", "esp-idf"]), default=None,
                        help="Microcontroller bundles: a CMake project for Arm GCC, an Arduino sketch folder or an "
                             "ESP-IDF project. Default: esp-idf for Espressif chips, arduino for Arduino boards, "
                             "else cmake.")
