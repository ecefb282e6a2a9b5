"""Read a .tflite or .onnx file and report what is in it: tensors, ops, parameters, MACs, weight sparsity.

TensorFlow is never imported here, so `edgekit inspect` starts fast: TFLite files are walked with the
flatbuffer schema that ai-edge-litert ships, ONNX files with the onnx package. Only the main graph is
read (TFLite subgraph 0, the top-level ONNX graph): loop and branch bodies run an unknown number of
times, so their MACs would be guesses.
"""

from __future__ import annotations

import math
import mmap
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import onnx
from ai_edge_litert import schema_py_generated as schema
from onnx import numpy_helper, shape_inference
from onnx.external_data_helper import load_external_data_for_model

from edgekit.errors import EdgekitError, UsageError
from edgekit.validate import check_tflite


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output. Unknown dimensions (a dynamic batch) are reported as 1."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()


@dataclass(frozen=True)
class OpInfo:
    """One operator. `index` is its position in the file; `macs` are for one sample; `params` counts
    the constant weight and bias elements it reads (a constant two ops share counts for both, as in Keras).
    """

    index: int
    op: str
    kind: str
    macs: int = 0
    params: int = 0
    bytes: int = 0  # bytes of every tensor the op reads and writes (one sample): the memory-traffic term
    # Arithmetic that is not a multiply-accumulate: one per output element of an element-wise op or a
    # softmax, the window area per output element of a pooling op, one per input element of a reduction.
    element_ops: int = 0


@dataclass(frozen=True)
class ModelInfo:
    format: str
    size_bytes: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    ops: tuple[OpInfo, ...]
    params: int
    macs: int
    element_ops: int
    weight_sparsity: float  # exactly-zero share of the conv / depthwise conv / dense weights (not biases)
    weight_dtypes: tuple[str, ...]

    def op_counts(self) -> dict[str, int]:
        return dict(Counter(op.op for op in self.ops))

    def to_dict(self) -> dict:
        return {**asdict(self), "op_counts": self.op_counts()}


def _kinds(table: dict[str, str]) -> dict[str, str]:
    return {op: kind for kind, ops in table.items() for op in ops.split()}


_TFLITE_KINDS = _kinds({
    "conv": "CONV_2D TRANSPOSE_CONV",
    "depthwise_conv": "DEPTHWISE_CONV_2D",
    "dense": "FULLY_CONNECTED BATCH_MATMUL",
    "pool": "AVERAGE_POOL_2D MAX_POOL_2D L2_POOL_2D MEAN REDUCE_MAX",
    "softmax": "SOFTMAX LOG_SOFTMAX",
    "reshape": "RESHAPE SQUEEZE EXPAND_DIMS TRANSPOSE CONCATENATION PACK UNPACK SPLIT SPLIT_V SLICE "
               "STRIDED_SLICE PAD PADV2",
    "elementwise": "ADD SUB MUL DIV RELU RELU6 RELU_N1_TO_1 RELU_0_TO_1 LEAKY_RELU PRELU LOGISTIC TANH "
                   "HARD_SWISH GELU ELU EXP SQRT RSQRT SQUARE SQUARED_DIFFERENCE POW NEG ABS MAXIMUM "
                   "MINIMUM QUANTIZE DEQUANTIZE",
})
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
# (data, weight, bias) input positions of the TFLite ops that own weights.
_TFLITE_OPERANDS = {
    "CONV_2D": (0, 1, 2), "DEPTHWISE_CONV_2D": (0, 1, 2), "FULLY_CONNECTED": (0, 1, 2),
    "TRANSPOSE_CONV": (2, 1, 3), "BATCH_MATMUL": (0, 1, None),
}
_TFLITE_OP_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items() if name.isupper()}
_TFLITE_DTYPES = {code: name.lower() for name, code in vars(schema.TensorType).items() if name.isupper()}
_NUMPY_DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
                 "uint32", "uint64", "bool"}
_ITEM_BITS = {"float64": 64, "int64": 64, "uint64": 64, "float32": 32, "int32": 32, "uint32": 32,
              "float16": 16, "bfloat16": 16, "int16": 16, "uint16": 16, "int8": 8, "uint8": 8, "bool": 8,
              "int4": 4, "int2": 2}
_TFLITE_IDENTIFIER = b"TFL3"  # bytes 4:8 of every TFLite flatbuffer


class _Weight(NamedTuple):
    dtype: str
    elements: int
    zeros: int | None  # None when the values are not in the file (external data)


def inspect_model(path: str | Path) -> ModelInfo:
    """Inspect a TFLite or ONNX file, recognised by its content rather than its extension."""
    name, data = _read(path)
    if data[4:8] == _TFLITE_IDENTIFIER:
        return _tflite(name, data)
    model = _parse_onnx(name, data, "not a TFLite or ONNX model", "neither a TFLite flatbuffer nor")
    return _guard(name, "ONNX", lambda: _onnx_info(name, model, len(data), Path(path).parent))


def inspect_tflite(source: str | Path | bytes) -> ModelInfo:
    name, data = _read(source)
    if not len(data):
        raise UsageError(f"{name}: not a TFLite model (empty file)")
    if data[4:8] != _TFLITE_IDENTIFIER:
        raise UsageError(f"{name}: not a TFLite model (no '{_TFLITE_IDENTIFIER.decode()}' at bytes 4:8)")
    return _tflite(name, data)


def _tflite(name: str, data: bytes | mmap.mmap) -> ModelInfo:
    model = check_tflite(data, name)  # the structural check every entry point shares; returns the parsed model
    return _guard(name, "TFLite", lambda: _tflite_info(model, data))


def tflite_graph_ops(source: str | Path | bytes) -> tuple[list[str], int]:
    """The op of every operator in every subgraph of a .tflite file (initialisation and loop bodies too):
    what a TFLite Micro op resolver must register; and the number of resource variables the model makes
    (distinct container and shared name of its VAR_HANDLE ops: an initialiser and the main graph each
    hold a handle to the same variable)."""
    name, data = _read(source)
    model = check_tflite(data, name)
    op_names = [_tflite_op_name(code) for code in model.operatorCodes]
    operators = [op for graph in model.subgraphs for op in graph.operators or []]
    variables = {(_text(op.builtinOptions.container), _text(op.builtinOptions.sharedName)) for op in operators
                 if op_names[op.opcodeIndex] == "VAR_HANDLE" and op.builtinOptions is not None}
    return [op_names[op.opcodeIndex] for op in operators], len(variables)


def inspect_onnx(source: str | Path | bytes) -> ModelInfo:
    name, data = _read(source)
    model = _parse_onnx(name, data, "not an ONNX model", "not")
    base_dir = None if isinstance(source, bytes | bytearray) else Path(source).parent
    return _guard(name, "ONNX", lambda: _onnx_info(name, model, len(data), base_dir))


def _read(source: str | Path | bytes) -> tuple[str, bytes | mmap.mmap]:
    if isinstance(source, bytes | bytearray):
        return "<bytes>", bytes(source)
    name = str(source)
    try:
        with open(source, "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                return name, b""
            # Mapped, not read: a model over 2 GB keeps its weights after the flatbuffer, and only the
            # pages of the weights we measure are ever loaded.
            return name, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise UsageError(f"{name}: cannot read the file ({exc.strerror or exc})") from exc


def _guard(name: str, fmt: str, walk: Callable[[], ModelInfo]) -> ModelInfo:
    """Walking a damaged file fails anywhere in the parser; report it as bad input, not a traceback."""
    try:
        return walk()
    except EdgekitError:
        raise
    except Exception as exc:
        kind = type(exc)
        error = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
        reason = f"{error}: {(str(exc).splitlines() or [''])[0][:200]}"
        raise UsageError(f"{name}: truncated or corrupt {fmt} model ({reason})") from exc


def _dims(shape) -> tuple[int, ...]:
    return tuple(int(d) if d > 0 else 1 for d in (() if shape is None else shape))


def _count_zeros(values: np.ndarray, elements: int, zero: int) -> int:
    """Zeros among `elements` values; a sparse tensor stores fewer, and the ones it omits are zero."""
    values = values.ravel()[:elements]
    return int(np.count_nonzero(values == zero)) + elements - values.size


def _summary(fmt: str, size: int, inputs, outputs, ops: list[OpInfo], weights: dict) -> ModelInfo:
    measured = [w for w in weights.values() if w.zeros is not None]
    total = sum(w.elements for w in measured)
    return ModelInfo(
        format=fmt, size_bytes=size, inputs=tuple(inputs), outputs=tuple(outputs), ops=tuple(ops),
        params=sum(op.params for op in ops), macs=sum(op.macs for op in ops),
        element_ops=sum(op.element_ops for op in ops),
        weight_sparsity=sum(w.zeros for w in measured) / total if total else 0.0,
        weight_dtypes=tuple(sorted({w.dtype for w in weights.values()})),
    )


def _tflite_info(model: schema.ModelT, data: bytes | mmap.mmap) -> ModelInfo:
    graph = model.subgraphs[0]
    tensors = graph.tensors
    op_names = [_tflite_op_name(code) for code in model.operatorCodes]
    producer = {out: op for op in graph.operators for out in _ints(op.outputs)}

    def shape(index: int) -> tuple[int, ...]:
        return _dims(tensors[index].shape)

    def raw(index: int) -> np.ndarray | None:
        buffer = model.buffers[tensors[index].buffer]
        if buffer.offset > 1:  # data after the flatbuffer (models over 2 GB); 0 and 1 mean unset
            return np.frombuffer(data, np.uint8, count=buffer.size, offset=buffer.offset)
        return buffer.data if buffer.data is not None and len(buffer.data) else None

    def stored(index: int) -> int | None:
        """The constant tensor an operand reads: itself, or the input of a DEQUANTIZE (float16 weights)
        or DENSIFY (sparse weights) that feeds it. None for activations and absent optional operands."""
        if index < 0:
            return None
        if raw(index) is not None or tensors[index].externalBuffer:
            return index
        op = producer.get(index)
        if op is not None and op_names[op.opcodeIndex] in ("DEQUANTIZE", "DENSIFY"):
            return stored(int(op.inputs[0]))
        return None

    def weight(index: int) -> _Weight:
        tensor, values = tensors[index], raw(index)
        dtype = _TFLITE_DTYPES.get(tensor.type, f"type{tensor.type}")
        elements = math.prod(shape(index))
        zero_points = [] if tensor.quantization is None else tensor.quantization.zeroPoint
        zero = int(zero_points[0]) if zero_points is not None and len(set(zero_points)) == 1 else 0
        if values is None:
            return _Weight(dtype, elements, None)
        if dtype == "int4":  # two values a byte, low nibble first
            values, zero = np.stack([values & 0x0F, values >> 4], axis=-1), zero & 0x0F
        elif dtype in _NUMPY_DTYPES:
            values = values.view(dtype)
        else:  # bfloat16, int2, ...: numpy has no such type, so the zeros go unmeasured
            return _Weight(dtype, elements, None)
        return _Weight(dtype, elements, _count_zeros(values, elements, zero))

    ops, weights = [], {}
    for index, op in enumerate(graph.operators):
        name, inputs = op_names[op.opcodeIndex], _ints(op.inputs)
        macs = params = 0
        if name in _TFLITE_OPERANDS:
            data_at, weight_at, bias_at = _TFLITE_OPERANDS[name]
            out, w = math.prod(shape(_ints(op.outputs)[0])), shape(inputs[weight_at])
            if name == "TRANSPOSE_CONV":  # every input element is spread over k_h*k_w*out_c outputs
                macs = math.prod(shape(inputs[data_at])) * math.prod(w) // w[-1]
            elif name == "DEPTHWISE_CONV_2D":  # weights (1, k_h, k_w, out_c)
                macs = out * math.prod(w) // w[-1]
            elif name == "BATCH_MATMUL":
                macs = out * shape(inputs[data_at])[-2 if op.builtinOptions.adjX else -1]
            else:  # CONV_2D (out_c, k_h, k_w, in_c/groups) and FULLY_CONNECTED (units, in_units)
                macs = out * math.prod(w) // w[0]
            for at in (weight_at, bias_at):
                constant = stored(inputs[at]) if at is not None and at < len(inputs) else None
                if constant is not None:
                    params += math.prod(shape(constant))
                    if at == weight_at:
                        weights[constant] = weight(constant)
        traffic = sum(math.prod(shape(t)) * _ITEM_BITS.get(_TFLITE_DTYPES.get(tensors[t].type, ""), 32) // 8
                      for t in (*inputs, *_ints(op.outputs)) if t >= 0)
        kind = _TFLITE_KINDS.get(name, "other")
        elements = _element_ops(name, kind, op, [shape(i) for i in inputs if i >= 0],
                                [shape(o) for o in _ints(op.outputs)])
        ops.append(OpInfo(index, name, kind, macs, params, traffic, elements))

    def tensor_info(index: int) -> TensorInfo:
        tensor, quantization = tensors[index], tensors[index].quantization
        scale = () if quantization is None or quantization.scale is None else quantization.scale
        zero_point = () if quantization is None or quantization.zeroPoint is None else quantization.zeroPoint
        return TensorInfo(
            _text(tensor.name), shape(index), _TFLITE_DTYPES.get(tensor.type, f"type{tensor.type}"),
            tuple(float(s) for s in scale), tuple(int(z) for z in zero_point),
        )

    model_inputs = [tensor_info(i) for i in _ints(graph.inputs)]
    model_outputs = [tensor_info(i) for i in _ints(graph.outputs)]
    return _summary("tflite", len(data), model_inputs, model_outputs, ops, weights)


def _element_ops(name: str, kind: str, op, inputs: list[tuple[int, ...]], outputs: list[tuple[int, ...]]) -> int:
    out = math.prod(outputs[0]) if outputs else 0
    if name in ("MAX_POOL_2D", "AVERAGE_POOL_2D", "L2_POOL_2D"):
        return out * op.builtinOptions.filterHeight * op.builtinOptions.filterWidth
    if name in ("MEAN", "REDUCE_MAX", "SUM"):
        return math.prod(inputs[0]) if inputs else 0
    if kind in ("elementwise", "softmax"):
        return out
    return 0


def _tflite_op_name(code: schema.OperatorCodeT) -> str:
    # Codes above 127 live only in `builtinCode`; old files set only `deprecatedBuiltinCode`.
    number = max(code.builtinCode, code.deprecatedBuiltinCode)
    if number == schema.BuiltinOperator.CUSTOM and code.customCode:
        return _text(code.customCode)
    return _TFLITE_OP_NAMES.get(number, f"BUILTIN_{number}")


def _ints(values) -> list[int]:
    """An optional flatbuffer vector of tensor indices (numpy int32, or None when empty)."""
    return [] if values is None else [int(v) for v in values]


def _text(value: bytes | str | None) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value or ""


def _parse_onnx(name: str, data: bytes | mmap.mmap, problem: str, neither: str) -> onnx.ModelProto:
    if not len(data):
        raise UsageError(f"{name}: {problem} (empty file)")
    try:  # protobuf raises DecodeError on random and on truncated bytes alike
        model = onnx.load_from_string(bytes(data))
    except Exception as exc:
        raise UsageError(f"{name}: {problem} ({neither} a complete ONNX protobuf)") from exc
    if not model.ir_version or not model.HasField("graph"):  # an empty message parses from many byte strings
        raise UsageError(f"{name}: {problem} ({neither} an ONNX protobuf with a graph)")
    return model


def _onnx_info(name: str, model: onnx.ModelProto, size: int, base_dir: Path | None) -> ModelInfo:
    # Shapes first, while weights kept in external files are still references: a proto over 2 GB
    # cannot be passed to shape inference.
    model = shape_inference.infer_shapes(model)
    if base_dir is not None:
        try:
            load_external_data_for_model(model, str(base_dir))
        except OSError as exc:
            raise UsageError(f"{name}: cannot read its external weight data ({exc})") from exc
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
    shapes.update({v.name: _onnx_shape(v) for v in (*graph.input, *graph.value_info, *graph.output)})

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
            macs = _onnx_macs(node, shapes)
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
                        weights[found[0]] = _onnx_weight(tensor, found[1])
        ops.append(OpInfo(index, node.op_type, kind, macs, params, 0, _onnx_element_ops(node, kind, shapes)))

    initializers = {t.name for t in graph.initializer}  # older exporters list them among the inputs too
    inputs = [_onnx_tensor(v) for v in graph.input if v.name not in initializers]
    outputs = [_onnx_tensor(v) for v in graph.output]
    return _summary("onnx", size, inputs, outputs, ops, weights)


def _onnx_macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...] | None]) -> int:
    out, data, weight = (shapes.get(node.output[0]), shapes.get(node.input[0]), shapes.get(node.input[1]))
    if not out or not data or not weight:  # rank unknown even after shape inference
        return 0
    if node.op_type == "Conv":  # weights (out_c, in_c/groups, k_h, k_w)
        return math.prod(out) * math.prod(weight[1:])
    if node.op_type == "ConvTranspose":  # weights (in_c, out_c/groups, k_h, k_w), spread from each input
        return math.prod(data) * math.prod(weight[1:])
    transposed = node.op_type == "Gemm" and _attribute(node, "transA", 0)
    return math.prod(out) * (data[0] if transposed else data[-1])


def _onnx_element_ops(node: onnx.NodeProto, kind: str, shapes: dict[str, tuple[int, ...] | None]) -> int:
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


def _onnx_shape(value: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return _dims(d.dim_value if d.HasField("dim_value") else 1 for d in tensor_type.shape.dim)


def _onnx_dtype(code: int) -> str:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(code).name
    except (KeyError, ValueError, TypeError):
        return onnx.TensorProto.DataType.Name(code).lower()


def _onnx_tensor(value: onnx.ValueInfoProto) -> TensorInfo:
    return TensorInfo(value.name, _onnx_shape(value) or (), _onnx_dtype(value.type.tensor_type.elem_type))


def _onnx_weight(tensor: onnx.TensorProto, zero: int) -> _Weight:
    elements = math.prod(tensor.dims)
    if tensor.data_location == onnx.TensorProto.EXTERNAL:  # read from bytes, so the data file is unknown
        return _Weight(_onnx_dtype(tensor.data_type), elements, None)
    values = numpy_helper.to_array(tensor)
    return _Weight(values.dtype.name, elements, _count_zeros(values, elements, zero))
