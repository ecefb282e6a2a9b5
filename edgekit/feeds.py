"""What edgekit feeds a model it runs: every input the model declares, at a shape the model accepts, with
values the user can set, and the state a recurrent model carries from one call to the next.

`plan` resolves each input of the main graph (the data's input first, then the others in the model's order):
- `--input NAME=FILE.npy` gives its value (and so its shape); `--input NAME=NUMBER` the value of a scalar, or
  the fill of a tensor; `--input NAME:SHAPE[:DTYPE]` its shape, batch included (`1x512`, `1,512`, `[]`).
- Otherwise a fixed dimension stays as the file declares it (never rewritten); a symbolic dimension gets the
  size a given shape bound to the same name; a batch dimension gets 1: one named like a batch ('batch',
  'batch_size', 'N'), or the first dimension when it is unnamed (-1, '?') or named by an exporter ('unk__12').
  Any other symbolic dimension is unresolved: the plan fails with one line that lists every input with its
  shape and dtype and shows the `--input` that fixes it.
- Values: the caller's data for the first input (`bench --data`), else zeros (real zeros: the zero point of a
  quantized input); an integer input of one element (a sample rate, a length) gets 16000 when its name reads
  as a sample rate and 1 otherwise, and the plan's notes say which value was fed and how to set it.

State: an input after the first whose name pairs with an output's ('state' and 'stateN' or 'state_out', 'h'
and 'hn', 'h0' and 'hn', 'past_x' and 'present_x'), of the same dtype and a shape that can match, is the
model's recurrent state. `bench` feeds the output back into the input after each timed call, so the latency
is that of steady-state streaming inference, and says so (`Feed.state_from`); `confirm` keeps only the pairs
whose output really has the input's shape and dtype when the model runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import UsageError, about

DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
          "uint64", "bool")
_BATCH = re.compile(r"^(n|b|bs|.*batch.*)$", re.IGNORECASE)
_EXPORTER = re.compile(r"^(unk__\d+|\?|)$")  # names exporters give a dimension they know nothing about
_RATE = re.compile(r"(^sr$|sample_?rate|sampling_?rate)", re.IGNORECASE)
_TFLITE_NAME = re.compile(r"^(?:serving_default_)?(.*?)(?::\d+)?$")
_AFFIXES = {"in", "out", "input", "output", "new", "next", "prev", "past", "present", "n"}
DEFAULT_RATE, DEFAULT_INT = 16000, 1
MAX_INPUT_BYTES = 1 << 30  # an input larger than this is a damaged or misread shape, not one to allocate
FORMS = "NAME:SHAPE[:DTYPE] (like x:1x512), NAME=FILE.npy or NAME=NUMBER"


@dataclass(frozen=True)
class InputSpec:
    """One `--input`: a shape (`NAME:SHAPE[:DTYPE]`), a file of values (`NAME=FILE.npy`) or a number
    (`NAME=NUMBER`)."""

    name: str
    text: str
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    file: Path | None = None
    value: float | None = None


def parse_input(text: str) -> InputSpec:
    """An `--input` value, or a UsageError naming it and the forms it can take."""
    if "=" in text:
        name, _, right = text.partition("=")
        if not name or not right:
            raise UsageError(f"--input {text}: give {FORMS}")
        try:
            return InputSpec(name, text, value=float(right))
        except ValueError:
            path = Path(right)
        if not path.is_file():
            raise UsageError(f"--input {text}: '{right}' is neither a number nor a file")
        return InputSpec(name, text, file=path)
    parts = text.split(":")
    dtype = parts.pop().lower() if len(parts) > 2 and parts[-1].lower() in DTYPES else None
    if len(parts) < 2 or not parts[0]:
        raise UsageError(f"--input {text}: give {FORMS}")
    shape_text = parts.pop().strip().strip("[]()").replace(",", "x")
    try:
        shape = tuple(int(d) for d in shape_text.split("x")) if shape_text and shape_text != "scalar" else ()
    except ValueError:
        shape = (-1,)
    if any(d < 0 for d in shape):
        raise UsageError(f"--input {text}: the shape must be sizes separated by x or commas (1x512), or [] "
                         "for a scalar")
    return InputSpec(":".join(parts), text, shape=shape, dtype=dtype)


def parse_inputs(texts: Sequence[str]) -> tuple[InputSpec, ...]:
    return tuple(parse_input(t) for t in texts)


@dataclass(frozen=True)
class Port:
    """A model input or output as the file declares it. `dims`: a fixed size, a symbolic name, -1 for
    unknown; None when the rank is unknown. `alias`: the TFLite signature's name for it, when it has one."""

    name: str
    alias: str
    dims: tuple[int | str, ...] | None
    dtype: str
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        """The name a person knows it by: the signature's, or the graph's."""
        return self.alias or self.name

    def declared(self) -> str:
        """'state [2, batch, 128] float32'."""
        dims = "[?]" if self.dims is None else "[" + ", ".join("?" if d == -1 else str(d) for d in self.dims) + "]"
        return f"{self.label} {dims} {self.dtype}"

    def names(self) -> set[str]:
        return {self.name, self.alias, _TFLITE_NAME.match(self.name).group(1)} - {""}  # type: ignore[union-attr]


@dataclass(frozen=True)
class Feed:
    """What one input is fed: `source` says where the value came from ('zeros', 'data', 'value 16000 (the
    default for an integer scalar)', 'file x.npy'); `state_from` names the output fed back into it."""

    name: str  # the runtime's name for the tensor
    label: str  # the name a person knows it by (a TFLite signature's: 'state' for 'serving_default_state:0')
    shape: tuple[int, ...]
    dtype: str
    source: str
    state_from: str | None = None  # the runtime's name of the output fed back
    state_label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.label, "tensor": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "source": self.source, "state_from": self.state_label}


@dataclass(frozen=True)
class FeedPlan:
    """Every input's feed, in the model's order; the values (batch included, in each input's dtype) by name;
    and the notes to say (values edgekit chose)."""

    feeds: tuple[Feed, ...]
    values: dict[str, np.ndarray]
    notes: tuple[str, ...] = ()

    @property
    def primary(self) -> str:
        """The input data goes to: the first."""
        return self.feeds[0].name

    @property
    def state(self) -> tuple[tuple[str, str], ...]:
        """(input, output) of each state pair."""
        return tuple((f.name, f.state_from) for f in self.feeds if f.state_from)

    def with_state(self, kept: Sequence[tuple[str, str]]) -> FeedPlan:
        return replace(self, feeds=tuple(f if (f.name, f.state_from) in kept else
                                         replace(f, state_from=None, state_label=None) for f in self.feeds))

    def to_dict(self) -> dict[str, Any]:
        method = ("steady state: each state output is fed back into its input after every call, from zeros "
                  "(or the given value) before the warm-up runs") if self.state else None
        return {"inputs": [f.to_dict() for f in self.feeds], "state_method": method, "notes": list(self.notes)}


def ports(path: str | Path) -> tuple[list[Port], list[Port]]:
    """The main graph's inputs and outputs as declared (read statically, without a runtime)."""
    from edgekit.model_info import inspect_graphs

    model = inspect_graphs(path)
    graph = model.graphs[0]

    def port(index: int) -> Port:
        t = graph.tensors[index]
        dims = t.signature if t.shape is not None or t.signature else None
        return Port(t.name, model.aliases.get(index, ""), dims, t.dtype, t.scale, t.zero_point)

    # an ONNX initializer listed among the inputs (IR < 4) has its value: not an input to feed
    return [port(i) for i in graph.inputs if not graph.tensors[i].constant], [port(i) for i in graph.outputs]


def plan(path: str | Path, specs: Sequence[InputSpec] = (), data_shape: tuple[int, ...] | None = None) -> FeedPlan:
    """Resolve every input of the model at `path` (see the module's docstring). `data_shape`: the shape (batch
    1 included) of the data the caller feeds the first input. Raises UsageError for an unknown or repeated
    name, a given shape or file that contradicts a fixed dimension or the dtype, and unresolved dimensions."""
    inputs, outputs = ports(path)
    given = _match(path, specs, inputs)
    states = _paired(inputs, outputs)
    first = next((i for i in range(len(inputs)) if i not in states), 0)  # the input data goes to
    files = {i: _load(spec, inputs[i]) for i, spec in given.items() if spec.file is not None}
    shapes: dict[int, tuple[int, ...]] = {}
    for i, port in enumerate(inputs):
        spec = given.get(i)
        shape = files[i].shape if i in files else spec.shape if spec is not None else None
        if shape is None and i == first and data_shape is not None:
            shape = tuple(data_shape)
        if shape is not None:
            shapes[i] = _checked(path, port, shape, spec)
    bound: dict[str, int] = {}
    for i, shape in shapes.items():
        for d, size in zip(inputs[i].dims or (), shape, strict=False):
            if isinstance(d, str) and bound.setdefault(d, size) != size:
                raise UsageError(f"{path}: dimension '{d}' is given as {bound[d]} and as {size} "
                                 f"(input {inputs[i].declared()} is given {_text(shape)}); one size for each name")
    missing: list[Port] = []
    for i, port in enumerate(inputs):
        if i not in shapes:
            shape_or_none = _resolve(port, bound)
            if shape_or_none is None:
                missing.append(port)
            else:
                shapes[i] = shape_or_none
    if missing:
        raise UsageError(_unresolved(path, inputs, missing, bound))
    feeds, values, notes = [], {}, []
    for i, port in enumerate(inputs):
        with about(path):  # the line names the model
            value, source, note = _value(port, shapes[i], given.get(i), files.get(i),
                                         i == first and data_shape is not None)
        out = states.get(i)
        pair = out if out is not None and _fits(out, shapes[i], bound) else None
        feeds.append(Feed(port.name, port.label, shapes[i], port.dtype, source,
                          pair.name if pair else None, pair.label if pair else None))
        values[port.name] = value
        if note:
            notes.append(note)
    if first:
        feeds.insert(0, feeds.pop(first))  # the data input first
    return FeedPlan(tuple(feeds), values, tuple(notes))


def confirm(plan_: FeedPlan, run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> FeedPlan:
    """The plan with only the state pairs whose output, on one real run (`run(values)` -> outputs by name),
    has the input's shape and dtype."""
    if not plan_.state:
        return plan_
    import logging

    outputs = run(plan_.values)
    kept = []
    for feed in plan_.feeds:
        if feed.state_from is None:
            continue
        out, value = outputs.get(feed.state_from), plan_.values[feed.name]
        if out is not None and out.shape == value.shape and out.dtype == value.dtype:
            kept.append((feed.name, feed.state_from))
        else:
            shape = "missing" if out is None else f"{_text(out.shape)} {out.dtype}"
            logging.getLogger("edgekit").warning(
                "output '%s' (%s) cannot be fed back into input '%s' (%s %s): each call starts from the fed "
                "value, not steady state", feed.state_label, shape, feed.label, _text(value.shape), value.dtype)
    return plan_.with_state(kept)


# ---- resolution ------------------------------------------------------------------------------------------

def _match(path: str | Path, specs: Sequence[InputSpec], inputs: list[Port]) -> dict[int, InputSpec]:
    given: dict[int, InputSpec] = {}
    for spec in specs:
        found = [i for i, port in enumerate(inputs) if spec.name in port.names()]
        if not found:
            names = ", ".join(p.label for p in inputs)
            raise UsageError(f"--input {spec.text}: {path} has no input '{spec.name}'; its inputs: {names}")
        if found[0] in given:
            raise UsageError(f"--input {spec.text}: input '{spec.name}' is already given by --input "
                             f"{given[found[0]].text}")
        given[found[0]] = spec
    return given


def _load(spec: InputSpec, port: Port) -> np.ndarray:
    assert spec.file is not None
    try:
        value = np.load(spec.file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--input {spec.text}: cannot read {spec.file} as a .npy array ({exc})") from None
    if not isinstance(value, np.ndarray):
        raise UsageError(f"--input {spec.text}: {spec.file} holds several arrays (.npz); give one .npy per input")
    if port.dims is not None and value.ndim == len(port.dims) - 1:
        value = value[np.newaxis]  # a sample without its batch axis
    return value


def _checked(path: str | Path, port: Port, shape: tuple[int, ...], spec: InputSpec | None) -> tuple[int, ...]:
    flag = f"--input {spec.text}" if spec is not None else f"{path}: the data"
    if spec is not None and spec.dtype is not None and spec.dtype != port.dtype:
        raise UsageError(f"{flag}: input '{port.name}' is {port.dtype} in the model, not {spec.dtype}")
    if port.dims is None:
        return tuple(shape)
    if len(shape) != len(port.dims):
        raise UsageError(f"{flag}: input {port.declared()} has {len(port.dims)} dimensions, the shape given has "
                         f"{len(shape)} ({_text(shape)})")
    for axis, (d, size) in enumerate(zip(port.dims, shape, strict=True)):
        if isinstance(d, int) and d > 0 and d != size:
            raise UsageError(f"{flag}: input {port.declared()} has {d} at axis {axis}, fixed by the model; "
                             f"the shape given has {size} ({_text(shape)})")
    return tuple(shape)


def _resolve(port: Port, bound: dict[str, int]) -> tuple[int, ...] | None:
    if port.dims is None:
        return None
    shape = []
    for axis, d in enumerate(port.dims):
        if isinstance(d, int) and d > 0:
            shape.append(d)
        elif isinstance(d, str) and d in bound:
            shape.append(bound[d])
        elif isinstance(d, str) and _BATCH.match(d) or axis == 0 and (not isinstance(d, str) or _EXPORTER.match(d)):
            shape.append(1)
        else:
            return None
    return tuple(shape)


def _unresolved(path: str | Path, inputs: list[Port], missing: list[Port], bound: dict[str, int]) -> str:
    def example(port: Port) -> str:
        resolved = [str(d) if isinstance(d, int) and d > 0 else str(bound[d]) if isinstance(d, str) and d in bound
                    else "1" if axis == 0 else "N" for axis, d in enumerate(port.dims or (-1,))]
        return f"--input {port.label}:{'x'.join(resolved)}"

    listed = "; ".join(p.declared() for p in inputs)
    return (f"{path}: cannot tell the size of every dimension of {', '.join(p.label for p in missing)} "
            f"(inputs: {listed}); give them with {' '.join(example(p) for p in missing)}, N being your size")


def _value(port: Port, shape: tuple[int, ...], spec: InputSpec | None, file: np.ndarray | None,
           data: bool) -> tuple[np.ndarray, str, str]:
    """(value, source, note) of one input."""
    try:
        dtype = np.dtype(port.dtype)
    except TypeError:
        raise UsageError(f"input {port.declared()}: edgekit cannot feed a {port.dtype} input") from None
    size = math.prod(shape) * dtype.itemsize
    if size > MAX_INPUT_BYTES:
        raise UsageError(f"input {port.declared()} at {_text(shape)} would take {size / 2**30:,.1f} GiB; give it a "
                         f"shape to run with --input {port.label}:SHAPE")
    if file is not None:
        assert spec is not None and spec.file is not None
        if not np.can_cast(file.dtype, dtype, "same_kind"):
            raise UsageError(f"--input {spec.text}: {spec.file} holds {file.dtype}; input '{port.name}' is {dtype}")
        return file.astype(dtype), f"file {spec.file.name}", ""
    if spec is not None and spec.value is not None:
        value = spec.value
        if np.issubdtype(dtype, np.integer) and value != int(value):
            raise UsageError(f"--input {spec.text}: input '{port.name}' is {dtype}, which holds whole numbers")
        what = "value" if math.prod(shape) == 1 else "filled with"
        return np.full(shape, value, dtype), f"{what} {value:g}", ""
    if data:
        return _zeros(port, shape, dtype), "data", ""
    if np.issubdtype(dtype, np.integer) and math.prod(shape) == 1 and not port.scale:
        value_int = DEFAULT_RATE if _RATE.search(port.label) else DEFAULT_INT
        why = "a sample rate's usual value" if value_int == DEFAULT_RATE else "the default for an integer scalar"
        note = (f"input '{port.label}' ({dtype}, one element) is fed {value_int}, {why}; "
                f"--input {port.label}=VALUE sets it")
        return np.full(shape, value_int, dtype), f"value {value_int} ({why})", note
    return _zeros(port, shape, dtype), "zeros", ""


def _zeros(port: Port, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Real zeros: a quantized input's zero point."""
    from edgekit.runtimes.base import quantize

    if np.issubdtype(dtype, np.integer) and port.scale:
        return quantize(np.zeros(shape, np.float32), dtype, port.scale, port.zero_point)
    return np.zeros(shape, dtype)


def _paired(inputs: list[Port], outputs: list[Port]) -> dict[int, Port]:
    """The output that carries each state input's next value, by input position: paired by name and dtype. Never
    every input: one is left for the data."""
    pairs: dict[int, Port] = {}
    for i, port in enumerate(inputs):
        out = next((o for o in outputs if o not in pairs.values() and o.dtype == port.dtype and _same_state(port, o)),
                   None)
        if out is not None:
            pairs[i] = out
    return pairs if len(pairs) < len(inputs) else {}


def _fits(out: Port, shape: tuple[int, ...], bound: dict[str, int]) -> bool:
    """Whether the output's declared shape can be `shape` (a symbolic size bound elsewhere must match it)."""
    return out.dims is None or len(out.dims) == len(shape) and not any(
        isinstance(d, int) and d > 0 and d != s or isinstance(d, str) and bound.get(d, s) != s
        for d, s in zip(out.dims, shape, strict=True))


def _stems(name: str, ending: str) -> set[str]:
    """The names a state is known by, without the words and endings that say in or out."""
    name = _TFLITE_NAME.match(name).group(1).lower()  # type: ignore[union-attr]
    words = [w for w in re.split(r"[^a-z0-9]+", name) if w]
    core = "_".join(w for w in words if w not in _AFFIXES) if len(words) > 1 else "".join(words)
    stems = {core}
    if len(core) > 1 and core.endswith(ending):
        stems.add(core[:-1])
    return stems - {""}


def _same_state(port: Port, out: Port) -> bool:
    ins = _stems(port.label, "0") | _stems(port.name, "0")
    outs = _stems(out.label, "n") | _stems(out.label, "1")
    return bool(ins & outs) and port.label != out.label


def _text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) or "[]"
