"""Deployment bundles: microcontrollers (mcu: C array, op resolver, arena, application), boards and phones
(boards), and the standalone scripts that run on a device (device/). `export` picks the writer by the
target's device class; `edgekit build` and `edgekit export` both call it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.feeds import InputSpec
from edgekit.targets import Target


@dataclass(frozen=True)
class Bundle:
    folder: Path
    files: tuple[str, ...]  # the files written, relative to `folder`, sorted
    summary: str  # one line saying what the bundle holds


def export(model: Path, target: Target, out: Path, *, name: str = "g_model", labels: Path | None = None,
           sample: np.ndarray | None = None, verified_sha256: str | None = None,
           measured_ram: dict[str, Any] | None = None, layout: str | None = None,
           inputs: Sequence[InputSpec] = ()) -> Bundle:
    """Write the bundle a developer copies to `target` for `model` (.tflite) into `out`: a firmware project for
    a microcontroller (`name` is the C array's identifier; `layout` one of edgekit.export.layouts.LAYOUTS,
    default: the target's), a LiteRT bundle for a board or a phone; each with `labels` copied in (default:
    labels.txt beside `model`, when there is one, as in a build folder).
    `sample` becomes the stored test input (default: a seeded random one).

    `verified_sha256` is the sha256 of a file this process already ran safely (a build's own verified
    artifact) and `measured_ram` what bench measured for it: a microcontroller's arena is then not bisected
    again, and the file is not run once more in a child process first.

    `inputs` (as `edgekit bench --input` takes them) set a board's or phone's bundle inputs; a microcontroller
    bundle's program feeds one input, from `sample`."""
    model, out = Path(model), Path(out)
    if labels is None and (model.parent / "labels.txt").is_file():
        labels = model.parent / "labels.txt"
    if target.device_class.value == "mcu":
        from edgekit.export.mcu import export_mcu

        _one_input(model, inputs)
        arena = measured_ram or {}
        measured = ({**arena, "sha256": verified_sha256}
                    if verified_sha256 and arena.get("arena_bytes") is not None else None)
        written = export_mcu(model, target, out, name, sample=sample, measured_arena=measured, layout=layout,
                             labels=labels)
        vela = written.get("npu", {}).get("compiler")  # the model Vela compiled, for the target's Ethos-U
        summary = (f"{written['layout']} project: model_data ({name}[], {written['bytes']:,} bytes"
                   + (f", compiled by {vela}), ethosu_npu.c (the Ethos-U driver's start-up)" if vela else ")")
                   + f", model_ops.h "
                   f"({len(written['ops'])} ops), model_arena.h ({written['arena_bytes']:,} bytes), model.json"
                   + (", labels.txt" if labels is not None else "") + ", README.md")
    else:
        from edgekit.errors import UsageError
        from edgekit.export.boards import export_bundle

        if layout is not None:
            raise UsageError(f"--layout is for microcontroller bundles; {target.name} is a "
                             f"{target.device_class.value}")
        written = export_bundle(model, target, out, labels, sample=sample, trusted_sha256=verified_sha256,
                                inputs=inputs)
        summary = ", ".join(written["files"])
    files = tuple(sorted(f.relative_to(out).as_posix() for f in out.rglob("*")
                         if f.is_file() and not f.name.startswith(".")))
    return Bundle(out, files, summary)


def _one_input(model: Path, inputs: Sequence[InputSpec]) -> None:
    """A microcontroller bundle's program (and TFLite Micro's fixed shapes) take one input, from --data."""
    from edgekit.errors import UsageError
    from edgekit.model_info import inspect_model
    from edgekit.validate import check_model_file

    if inputs:
        raise UsageError("--input sets the inputs of a board's or phone's bundle; a microcontroller bundle's test "
                         "input comes from --data (or is random)")
    if check_model_file(model) == "tflite" and len(found := inspect_model(model).inputs) > 1:
        raise UsageError(f"{model.name}: a microcontroller bundle's program feeds one input; this model has "
                         f"{len(found)} ({', '.join(t.name for t in found)})")
