"""`edgekit inspect`, registered on the group in edgekit.cli. Importing it loads Click only."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgekit import cli_options as options
from edgekit.output import echo, is_terminal


@click.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--arena", is_flag=True, help="Also load the model in the TFLite Micro host runtime (.tflite only; a "
                                            "child process, a second or more) and show the arena it used.")
@options.json("Print the report as JSON (docs/cli.md lists its fields).")
def inspect_command(model, arena, as_json):
    """What MODEL (.tflite or .onnx) holds, read from the file without running it: inputs and outputs (shapes
    with their symbolic dimensions, dtypes, quantization), each op with its MACs and parameters, tensor sizes,
    weight sparsity, subgraphs, resource variables, and the peak activation memory, estimated from tensor
    lifetimes in the file's op order. Bad input exits 2."""
    from edgekit.inspection import inspect_file, text

    report = inspect_file(model, arena)
    echo(json.dumps(report, indent=2) if as_json else text(report, is_terminal()), nl=as_json)
