"""`edgekit inspect`: what a .tflite or .onnx file holds, read from the file without running it.

Inputs and outputs (shapes as declared, symbolic dimensions included, dtypes, quantization), every op with
its MACs and parameters, every tensor with its size, subgraphs, resource variables, and the activation
memory of the execution plan. That last figure is *estimated from tensor lifetimes*: each non-constant
tensor lives from the op that writes it (a graph input: from the first op) to the last op that reads it
(a graph output: to the end), and the estimate is the largest sum of live tensor bytes at any op. It is
the least any planner that keeps every tensor whole can do; TFLite Micro's greedy planner adds alignment,
fragmentation and kernel scratch buffers, and `arena=True` asks the runtime itself (edgekit.runtimes.tflm,
in a child process) for what it used. TensorFlow is never imported; the onnx package only for ONNX files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.model_info import Graph, ModelGraphs, Tensor, inspect_graphs
from edgekit.units import size_text
from edgekit.validate import check_model_file

METHOD = ("estimated from tensor lifetimes: the largest sum of live non-constant tensor bytes at any op, in the "
          "file's op order (a planner adds alignment, fragmentation and scratch buffers)")


def inspect_file(path: str | Path, arena: bool = False) -> dict[str, Any]:
    """The report `edgekit inspect --json` prints (fields: JSON_FIELDS). `arena`: also load the model in the
    TFLite Micro host runtime and add the arena it recorded (.tflite only). Bad input is a one-line
    UsageError."""
    path = Path(path)
    fmt = check_model_file(path)
    if arena and fmt != "tflite":
        from edgekit.errors import UsageError

        raise UsageError(f"{path}: --arena loads the model in TFLite Micro, which runs .tflite files only; this is "
                         "an ONNX model")
    model = inspect_graphs(path)
    report = _report(path, model)
    if arena:
        report["arena"] = _arena(path)
    return report


def activation_plan(graph: Graph) -> list[int]:
    """Bytes of the non-constant, non-variable tensors live at each op of `graph` (see the module docstring)."""
    first: dict[int, int] = {t: 0 for t in graph.inputs}
    last: dict[int, int] = {t: 0 for t in graph.inputs}
    for number, step in enumerate(graph.steps):
        for t in (*step.inputs, *step.outputs):
            first.setdefault(t, number)
            last[t] = number
    end = max(len(graph.steps) - 1, 0)
    for t in graph.outputs:
        if t in first:
            last[t] = end
    change = [0] * (end + 2)
    for t, start in first.items():
        tensor = graph.tensors[t]
        if not (tensor.constant or tensor.variable):
            change[start] += tensor.bytes
            change[last[t] + 1] -= tensor.bytes
    live, running = [], 0
    for delta in change[: len(graph.steps)]:
        running += delta
        live.append(running)
    return live


def _report(path: Path, model: ModelGraphs) -> dict[str, Any]:
    info, main = model.info, model.graphs[0]
    live = activation_plan(main)
    peak = max(range(len(live)), key=live.__getitem__, default=None)
    ops = []
    for op in info.ops:
        step = main.steps[op.index]
        ops.append({"index": op.index, "op": op.op, "kind": op.kind, "macs": op.macs, "params": op.params,
                    "element_ops": op.element_ops, "inputs": list(step.inputs), "outputs": list(step.outputs),
                    "output_shape": _shape(main.tensors[step.outputs[0]].shape) if step.outputs else None,
                    "live_bytes": live[op.index]})
    activations = [t for t in main.tensors if not (t.constant or t.variable)]
    return {
        "file": str(path), "format": info.format, "size_bytes": info.size_bytes,
        "inputs": [_io(main.tensors[t]) for t in main.inputs], "outputs": [_io(main.tensors[t]) for t in main.outputs],
        "macs": info.macs, "params": info.params, "element_ops": info.element_ops,
        "weight_sparsity": info.weight_sparsity, "weight_dtypes": list(info.weight_dtypes),
        "op_counts": info.op_counts(), "ops": ops,
        "tensors": [_tensor(t) for t in main.tensors],
        "constant_bytes": sum(t.bytes for t in main.tensors if t.constant),
        "activations": {"peak_bytes": live[peak] if peak is not None else 0, "peak_op": peak,
                        "total_bytes": sum(t.bytes for t in activations),
                        "unknown_shapes": sum(t.shape is None for t in activations), "method": METHOD},
        "subgraphs": [{"index": number, "name": graph.name, "ops": len(graph.steps), "tensors": len(graph.tensors),
                       "inputs": [graph.tensors[t].name for t in graph.inputs],
                       "outputs": [graph.tensors[t].name for t in graph.outputs],
                       "activation_peak_bytes": max(activation_plan(graph), default=0)}
                      for number, graph in enumerate(model.graphs)],
        "resource_variables": [{"name": v.name, "kind": v.kind, "container": v.container, "shape": _shape(v.shape),
                                "dtype": v.dtype, "bytes": v.bytes} for v in model.variables],
        "arena": None,
    }


def _shape(shape: tuple[int, ...] | None) -> list[int] | None:
    return None if shape is None else list(shape)


def _tensor(tensor: Tensor) -> dict[str, Any]:
    return {"index": tensor.index, "name": tensor.name, "shape": _shape(tensor.shape),
            "signature": list(tensor.signature), "dtype": tensor.dtype, "bytes": tensor.bytes,
            "constant": tensor.constant, "variable": tensor.variable}


def _io(tensor: Tensor) -> dict[str, Any]:
    return {"name": tensor.name, "shape": _shape(tensor.shape), "signature": list(tensor.signature),
            "dtype": tensor.dtype, "bytes": tensor.bytes, "scale": list(tensor.scale),
            "zero_point": list(tensor.zero_point)}


def _arena(path: Path) -> dict[str, Any]:
    from edgekit.runtimes import tflm

    result = tflm.measure(path)
    return {"supported": result.supported, "error": result.error, "total_bytes": result.arena_bytes,
            "nonpersistent_bytes": result.arena_nonpersistent_bytes,
            "persistent_bytes": result.arena_persistent_bytes, "min_bytes": result.arena_min_bytes,
            "where": result.host_invoke_where}


def text(report: dict[str, Any], terminal: bool = False) -> str:
    """The human view: a line of totals, the inputs and outputs, the ops, then memory, subgraphs, variables."""
    from edgekit.report.table import render_table

    name = Path(report["file"]).name
    weights = ", ".join(report["weight_dtypes"]) or "none"
    head = (f"{name}: {'TFLite' if report['format'] == 'tflite' else 'ONNX'}, {_size(report['size_bytes'])}, "
            f"{report['macs']:,} MACs, {report['params']:,} parameters, weights {weights} "
            f"({report['weight_sparsity']:.1%} zero)\n")
    io_rows = [[t["name"], direction, _dims(t["signature"] or t["shape"]), t["dtype"], _quantization(t)]
               for direction in ("input", "output") for t in report[f"{direction}s"]]
    io = render_table(f"{name}: inputs and outputs", ["tensor", "", "shape", "dtype", "quantization"], io_rows,
                      terminal)
    op_rows = [[str(op["index"]), op["op"], op["kind"], _dims(op["output_shape"]), f"{op['macs']:,}",
                f"{op['params']:,}", _size(op["live_bytes"])] for op in report["ops"]]
    ops = render_table(f"{name}: ops in execution order", ["#", "op", "kind", "output", "MACs", "params", "live"],
                       op_rows, terminal)
    activation, lines = report["activations"], []
    lines.append("op counts: " + ", ".join(f"{op} x{n}" for op, n in report["op_counts"].items()))
    at = "" if activation["peak_op"] is None else f" at op {activation['peak_op']}"
    lines.append(f"activation memory: peak {_size(activation['peak_bytes'])}{at}, {METHOD}")
    constants = sum(t["constant"] for t in report["tensors"])
    lines.append(f"tensors: {len(report['tensors'])} ({constants} constant, {_size(report['constant_bytes'])}; "
                 f"{len(report['tensors']) - constants} others, {_size(activation['total_bytes'])})"
                 + (f"; {activation['unknown_shapes']} of unknown shape, not counted" if activation["unknown_shapes"]
                    else ""))
    largest = sorted((t for t in report["tensors"] if not t["constant"]), key=lambda t: -t["bytes"])[:3]
    lines.append("largest activations: " + ", ".join(f"{t['name']} {_size(t['bytes'])}" for t in largest))
    lines.append("subgraphs: " + "; ".join(f"{g['name']} ({g['ops']} ops, {g['tensors']} tensors)"
                                           for g in report["subgraphs"]))
    variables = report["resource_variables"]
    lines.append("resource variables: " + ("; ".join(_variable(v) for v in variables) or "none"))
    lines.append(_arena_line(report["arena"]))
    return head + io + ops + "\n".join(lines) + "\n"


def _variable(variable: dict[str, Any]) -> str:
    if variable["shape"] is None:  # a handle no ASSIGN_VARIABLE stores a value through
        return variable["name"]
    return f"{variable['name']} ({_dims(variable['shape'])} {variable['dtype']}, {_size(variable['bytes'])})"


def _arena_line(arena: dict[str, Any] | None) -> str:
    if arena is None:
        return "TFLite Micro arena: not measured (--arena loads the model in the TFLite Micro host runtime)"
    if not arena["supported"]:
        return f"TFLite Micro arena: the runtime does not run it ({arena['error']})"
    return (f"TFLite Micro arena (measured, {arena['where']}): {_size(arena['total_bytes'])} used = "
            f"{_size(arena['nonpersistent_bytes'])} planned tensors and scratch + {_size(arena['persistent_bytes'])} "
            f"persistent; runs in {_size(arena['min_bytes'])} at least")


def _dims(shape: list | None) -> str:
    return "?" if shape is None else "x".join(map(str, shape)) or "scalar"


def _quantization(tensor: dict[str, Any]) -> str:
    if not tensor["scale"]:
        return ""
    if len(tensor["scale"]) > 1:
        return f"per-channel, {len(tensor['scale'])} scales"
    return f"scale {tensor['scale'][0]:.6g}, zero point {tensor['zero_point'][0] if tensor['zero_point'] else 0}"


def _size(count: int | None) -> str:
    return "?" if count is None else size_text(count)


JSON_FIELDS = [
    ("file", "string", "the MODEL argument"),
    ("format", "string", "tflite or onnx, from the content"),
    ("size_bytes", "integer", "file size"),
    ("inputs[], outputs[]", "list", "the main graph's inputs and outputs, in the file's order"),
    ("inputs[].name", "string", ""),
    ("inputs[].shape", "list or null", "unknown dimensions as 1 (batch 1); null: rank unknown"),
    ("inputs[].signature", "list", "the shape as declared: -1 (TFLite shape_signature) or the ONNX dim_param name "
                                   "for a symbolic dimension"),
    ("inputs[].dtype", "string", "float32, int8, ..."),
    ("inputs[].bytes", "integer", "at `shape`"),
    ("inputs[].scale, inputs[].zero_point", "list", "quantization (empty: not quantized; several: per channel)"),
    ("macs, params, element_ops", "integer", "totals over the main graph, for one sample"),
    ("weight_sparsity", "number", "exactly-zero share of the conv and dense weights"),
    ("weight_dtypes", "list", "dtypes the conv and dense weights are stored in"),
    ("op_counts", "object", "op -> count"),
    ("ops[]", "list", "the main graph's ops in execution order (ONNX Constant nodes left out)"),
    ("ops[].index", "integer", "position in the file"),
    ("ops[].op, ops[].kind", "string", "op name; conv, depthwise_conv, dense, pool, softmax, reshape, elementwise "
                                       "or other"),
    ("ops[].macs, ops[].params, ops[].element_ops", "integer", "multiply-accumulates, constant weight and bias "
                                                              "elements read, other arithmetic"),
    ("ops[].inputs, ops[].outputs", "list", "indices into `tensors`"),
    ("ops[].output_shape", "list or null", "shape of its first output"),
    ("ops[].live_bytes", "integer", "bytes of the activations live while it runs"),
    ("tensors[]", "list", "every tensor of the main graph: index, name, shape, signature, dtype, bytes, constant "
                          "(values in the file), variable (state kept between invocations)"),
    ("constant_bytes", "integer", "bytes of the main graph's constant tensors"),
    ("activations.peak_bytes", "integer", "the estimated peak activation memory (the largest `ops[].live_bytes`)"),
    ("activations.peak_op", "integer or null", "the op where it peaks"),
    ("activations.total_bytes", "integer", "all non-constant, non-variable tensors, with no reuse"),
    ("activations.unknown_shapes", "integer", "such tensors of unknown shape, left out of the figures"),
    ("activations.method", "string", "how the peak is estimated"),
    ("subgraphs[]", "list", "every graph, the main one first: index, name, ops, tensors (counts), inputs, outputs "
                            "(names) and activation_peak_bytes"),
    ("resource_variables[]", "list", "TFLite resource variables (kind resource) and variable tensors (kind tensor): "
                                     "name, kind, container, shape, dtype, bytes"),
    ("arena", "object or null", "null without --arena; else TFLite Micro's record on this host: supported, error, "
                                "total_bytes, nonpersistent_bytes, persistent_bytes, min_bytes, where"),
]
