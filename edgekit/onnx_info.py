"""The ONNX half of `edgekit.model_info`: the top-level graph's ops, parameters, MACs and weight sparsity.

`edgekit.model_info` imports it only for an ONNX file: importing the onnx package takes most of a second,
which `edgekit inspect` on a .tflite file should not pay.
"""

from __future__ import annotations

import math
import mmap
from collections import defaultdict
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference
from onnx.external_data_helper import load_external_data_for_model

from edgekit.errors import UsageError
from edgekit.model_info import (
    Graph,
    ModelInfo,
    OpInfo,
    Step,
    Tensor,
    TensorInfo,
    _count_zeros,
    _dims,
    _kinds,
    _summary,
    _Weight,
    tensor_bytes,
)

_ONNX_KINDS = _kinds({
    "conv": "Conv ConvTranspose",  # a Conv with one input channel per group is reported as depthwise_conv
    "dense": "Gemm MatMul",
    "pool": "MaxPool AveragePool GlobalAveragePool GlobalMaxPool LpPool ReduceMean ReduceMax",
    "softmax": "Softmax LogSoftmax",
    "reshape": "Reshape Flatten Squeeze Unsqueeze Transpose Concat Split Slice Pad Identity",
    "elementwise": "Add Sub Mul Div Relu Clip LeakyRelu PRelu Sigmoid Tanh HardSigmoid HardSwish Gelu Elu "
                   "Exp Sqrt Reciprocal Pow Neg Abs Max Min Erf BatchNormalization QuantizeLinear "
                   "DequantizeLinear",
})


def parse(name: str, data: bytes | mmap.mmap, problem: str, neither: str) -> onnx.ModelProto:
    if not len(data):
        raise UsageError(f"{name}: {problem} (empty file)")
    try:  # protobuf raises DecodeError on random and on truncated bytes alike
        model = onnx.load_from_string(bytes(data))
    except Exception as exc:
        raise UsageError(f"{name}: {problem} ({neither} a complete ONNX protobuf)") from exc
    if not model.ir_version or not model.HasField("graph"):  # an empty message parses from many byte strings
        raise UsageError(f"{name}: {problem} ({neither} an ONNX protobuf with a graph)")
    return model


def walk(name: str, model: onnx.ModelProto, size: int, base_dir: Path | None) -> ModelInfo:
    return _info(_prepared(name, model, base_dir), size)


def walk_graphs(name: str, model: onnx.ModelProto, size: int, base_dir: Path | None
                ) -> tuple[ModelInfo, tuple[Graph, ...]]:
    """`walk`'s summary, and the main graph then every branch and loop body, tensor by tensor."""
    model = _prepared(name, model, base_dir)
    graphs: list[Graph] = []
    _graphs(model.graph, "main", graphs)
    return _info(model, size), (graphs[-1], *graphs[:-1])


def _prepared(name: str, model: onnx.ModelProto, base_dir: Path | None) -> onnx.ModelProto:
    # Shapes first, while weights kept in external files are still references: a proto over 2 GB
    # cannot be passed to shape inference.
    model = shape_inference.infer_shapes(model)
    if base_dir is not None:
        try:
            load_external_data_for_model(model, str(base_dir))
        except OSError as exc:
            raise UsageError(f"{name}: cannot read its external weight data ({exc})") from exc
    return model


def _info(model: onnx.ModelProto, size: int) -> ModelInfo:
    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    constants.update({n.output[0]: a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute
                      if a.name == "value"})
    producer = {out: node for node in graph.node for out in node.output}
    consumers = defaultdict(list)
    for node in graph.node:
        for input_name in node.input:
            consumers[input_name].append(node)
    shapes: dict[str, tuple[int, ...] | None] = {t: tuple(constants[t].dims) for t in constants}
    shapes.update({v.name: _shape(v) for v in (*graph.input, *graph.value_info, *graph.output)})

    def stored(operand: str) -> tuple[str, int] | None:
        """(name of the constant behind an operand, its zero point), through DequantizeLinear (QDQ)."""
        if operand in constants:
            return operand, 0
        node = producer.get(operand)
        if node is None or node.op_type not in ("DequantizeLinear", "Identity", "Cast"):
            return None
        found = stored(node.input[0])
        zero_point = node.input[2] if node.op_type == "DequantizeLinear" and len(node.input) > 2 else ""
        if found and zero_point in constants:
            zero_points = np.unique(numpy_helper.to_array(constants[zero_point]))
            return found[0], int(zero_points[0]) if zero_points.size == 1 else 0
        return found

    def following_bias(node: onnx.NodeProto) -> str | None:
        """tf2onnx writes Dense as MatMul then Add: the Add's constant vector is the MatMul's bias."""
        users = consumers[node.output[0]]
        if len(users) != 1 or users[0].op_type != "Add":
            return None
        other = [i for i in users[0].input if i != node.output[0]]
        found = stored(other[0]) if len(other) == 1 else None
        return other[0] if found and len(constants[found[0]].dims) == 1 else None

    ops, weights = [], {}
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant":  # data, not computation: some exporters keep weights this way
            continue
        kind, macs, params = _ONNX_KINDS.get(node.op_type, "other"), 0, 0
        if kind in ("conv", "dense") and len(node.input) > 1:
            macs = _macs(node, shapes)
            w = shapes.get(node.input[1])
            if node.op_type == "Conv" and _attribute(node, "group", 1) > 1 and w and w[1:2] == (1,):
                kind = "depthwise_conv"
            bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
            if bias is None and kind == "dense" and (node.op_type == "MatMul" or len(node.input) == 2):
                bias = following_bias(node)
            for operand in (node.input[1], bias):
                found = stored(operand) if operand else None
                if found is not None:
                    tensor = constants[found[0]]
                    params += math.prod(tensor.dims)
                    if operand == node.input[1]:
                        weights[found[0]] = _weight(tensor, found[1])
        ops.append(OpInfo(index, node.op_type, kind, macs, params, 0, _element_ops(node, kind, shapes)))

    initializers = {t.name for t in graph.initializer}  # older exporters list them among the inputs too
    inputs = [_tensor(v) for v in graph.input if v.name not in initializers]
    outputs = [_tensor(v) for v in graph.output]
    return _summary("onnx", size, inputs, outputs, ops, weights)


def _graphs(graph: onnx.GraphProto, name: str, found: list[Graph]) -> None:
    """Append every body inside `graph` (an If's branches, a Loop's or Scan's body), then `graph` itself. A body
    reads names of the graph around it: those appear among its tensors with the shape known there, if any."""
    initializers = {t.name: t for t in graph.initializer}
    declared = {v.name: v for v in (*graph.input, *graph.value_info, *graph.output)}
    index: dict[str, int] = {}
    tensors: list[Tensor] = []

    def add(tensor: str, constant: bool = False) -> int:
        if tensor not in index:
            shape: tuple[int, ...] | None
            if tensor in initializers:
                stored = initializers[tensor]
                shape, signature, dtype = tuple(stored.dims), tuple(stored.dims), _dtype(stored.data_type)
                constant = True
            elif tensor in declared:
                shape, signature = _shape(declared[tensor]), _signature(declared[tensor])
                dtype = _dtype(declared[tensor].type.tensor_type.elem_type)
            else:
                shape, signature, dtype = None, (), "unknown"
            index[tensor] = len(tensors)
            tensors.append(Tensor(len(tensors), tensor, shape, signature, dtype, tensor_bytes(shape, dtype), constant))
        return index[tensor]

    inputs = tuple(add(v.name) for v in graph.input if v.name not in initializers)
    for stored in graph.initializer:
        add(stored.name)
    steps = []
    for number, node in enumerate(graph.node):
        reads = tuple(add(i) for i in node.input if i)
        writes = tuple(add(o, constant=node.op_type == "Constant") for o in node.output if o)
        steps.append(Step(node.op_type, reads, writes))
        for attribute in node.attribute:
            for body in (attribute.g,) if attribute.HasField("g") else attribute.graphs:
                _graphs(body, f"{node.name or f'{node.op_type}_{number}'}.{attribute.name}", found)
    outputs = tuple(add(v.name) for v in graph.output)
    found.append(Graph(graph.name or name, tuple(tensors), inputs, outputs, tuple(steps)))


def _macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...] | None]) -> int:
    out, data, weight = (shapes.get(node.output[0]), shapes.get(node.input[0]), shapes.get(node.input[1]))
    if not out or not data or not weight:  # rank unknown even after shape inference
        return 0
    if node.op_type == "Conv":  # weights (out_c, in_c/groups, k_h, k_w)
        return math.prod(out) * math.prod(weight[1:])
    if node.op_type == "ConvTranspose":  # weights (in_c, out_c/groups, k_h, k_w), spread from each input
        return math.prod(data) * math.prod(weight[1:])
    transposed = node.op_type == "Gemm" and _attribute(node, "transA", 0)
    return math.prod(out) * (data[0] if transposed else data[-1])


def _element_ops(node: onnx.NodeProto, kind: str, shapes: dict[str, tuple[int, ...] | None]) -> int:
    out = shapes.get(node.output[0]) if node.output else None
    data = shapes.get(node.input[0]) if node.input else None
    if node.op_type in ("MaxPool", "AveragePool", "LpPool") and out:
        return math.prod(out) * math.prod(_attribute(node, "kernel_shape", [1]))
    if node.op_type in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax") and data:
        return math.prod(data)
    if kind in ("elementwise", "softmax") and out:
        return math.prod(out)
    return 0


_Value = TypeVar("_Value")


def _attribute(node: onnx.NodeProto, name: str, default: _Value) -> _Value:
    """A node attribute's value (an int, or a list of ints for kernel_shape), or `default` when unset."""
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _shape(value: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return _dims(d.dim_value if d.HasField("dim_value") else 1 for d in tensor_type.shape.dim)


def _signature(value: onnx.ValueInfoProto) -> tuple[int | str, ...]:
    """The shape as declared: a fixed size, the dim_param name of a symbolic one, -1 for an unnamed one."""
    dims = value.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else d.dim_param or -1 for d in dims)


def _dtype(code: int) -> str:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(code).name
    except (KeyError, ValueError, TypeError):
        return onnx.TensorProto.DataType.Name(code).lower()


def _tensor(value: onnx.ValueInfoProto) -> TensorInfo:
    return TensorInfo(value.name, _shape(value) or (), _dtype(value.type.tensor_type.elem_type))


def _weight(tensor: onnx.TensorProto, zero: int) -> _Weight:
    elements = math.prod(tensor.dims)
    if tensor.data_location == onnx.TensorProto.EXTERNAL:  # read from bytes, so the data file is unknown
        return _Weight(_dtype(tensor.data_type), elements, None)
    values = numpy_helper.to_array(tensor)
    return _Weight(values.dtype.name, elements, _count_zeros(values, elements, zero))
