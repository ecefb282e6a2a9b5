"""Read a .tflite or .onnx file and report what is in it: tensors, ops, parameters, MACs, weight sparsity.

TensorFlow is never imported here, so `edgekit inspect` starts fast: TFLite files are walked with the
flatbuffer schema that ai-edge-litert ships, ONNX files with the onnx package (in edgekit.onnx_info,
imported only for an ONNX file). MACs and parameters are counted on the main graph (TFLite subgraph 0,
the top-level ONNX graph): loop and branch bodies run an unknown number of times, so their MACs would be
guesses.
"""

from __future__ import annotations

import math
import mmap
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
from ai_edge_litert import schema_py_generated as schema

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


@dataclass(frozen=True)
class Tensor:
    """Any tensor of a graph. `shape` has unknown dimensions as 1 (batch 1) and is None when the file leaves
    the rank unknown; `signature` writes them as the file does: -1 (TFLite's shape_signature) or the ONNX
    dim_param ('batch'; -1 for an unnamed one). `bytes` is at `shape`. `constant`: its values are in the file
    (weights, biases, shape operands). `variable`: state that outlives an invocation (a TFLite variable tensor
    or resource handle), kept outside the activation memory."""

    index: int
    name: str
    shape: tuple[int, ...] | None
    signature: tuple[int | str, ...]
    dtype: str
    bytes: int
    constant: bool
    variable: bool = False
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()


@dataclass(frozen=True)
class Step:
    """One operator of a graph, in execution order: the indices of the tensors it reads and writes."""

    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class Graph:
    """A TFLite subgraph or an ONNX graph (the main one, or a branch or loop body) as the runtime plans it."""

    name: str
    tensors: tuple[Tensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Variable:
    """A TFLite resource variable (VAR_HANDLE's container and shared name; its shape and dtype from the value
    ASSIGN_VARIABLE first stores, when one does) or a variable tensor of the main graph (kind 'tensor')."""

    name: str
    kind: str
    shape: tuple[int, ...] | None
    dtype: str
    bytes: int
    container: str = ""


@dataclass(frozen=True)
class ModelGraphs:
    """What `inspect_graphs` reads: the summary of `inspect_model`, and every graph tensor by tensor."""

    info: ModelInfo
    graphs: tuple[Graph, ...]  # the main graph first
    variables: tuple[Variable, ...]
    # The signature's names of main-graph tensors (TFLite SignatureDefs: 'state' for 'serving_default_state:0'
    # and 'stateN' for 'StatefulPartitionedCall:1'), by tensor index; empty for ONNX, whose names are its own.
    aliases: dict[int, str] = field(default_factory=dict)


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
_Walked = TypeVar("_Walked")


class _Weight(NamedTuple):
    dtype: str
    elements: int
    zeros: int | None  # None when the values are not in the file (external data)


def inspect_model(path: str | Path) -> ModelInfo:
    """Inspect a TFLite or ONNX file, recognised by its content rather than its extension."""
    name, data = _read(path)
    if data[4:8] == _TFLITE_IDENTIFIER:
        return _tflite(name, data)
    from edgekit import onnx_info

    model = onnx_info.parse(name, data, "not a TFLite or ONNX model", "neither a TFLite flatbuffer nor")
    return _guard(name, "ONNX", lambda: onnx_info.walk(name, model, len(data), Path(path).parent))


def inspect_graphs(path: str | Path) -> ModelGraphs:
    """`inspect_model`'s summary and, from the same parse, every graph's tensors, operator order and
    variables: what `edgekit inspect` shows and plans activation memory from."""
    name, data = _read(path)
    if data[4:8] == _TFLITE_IDENTIFIER:
        model = check_tflite(data, name)
        info = _guard(name, "TFLite", lambda: _tflite_info(model, data))
        graphs, variables = _guard(name, "TFLite", lambda: _tflite_graphs(model))
        aliases = {m.tensorIndex: _text(m.name) for d in model.signatureDefs or [] if d.subgraphIndex == 0
                   for m in (*(d.inputs or []), *(d.outputs or [])) if m is not None and m.name}
        return ModelGraphs(info, graphs, variables, aliases)
    from edgekit import onnx_info

    proto = onnx_info.parse(name, data, "not a TFLite or ONNX model", "neither a TFLite flatbuffer nor")
    info, graphs = _guard(name, "ONNX", lambda: onnx_info.walk_graphs(name, proto, len(data), Path(path).parent))
    return ModelGraphs(info, graphs, ())


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
    from edgekit import onnx_info

    model = onnx_info.parse(name, data, "not an ONNX model", "not")
    base_dir = None if isinstance(source, bytes | bytearray) else Path(source).parent
    return _guard(name, "ONNX", lambda: onnx_info.walk(name, model, len(data), base_dir))


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


def _guard(name: str, fmt: str, walk: Callable[[], _Walked]) -> _Walked:
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


def _tflite_graphs(model: schema.ModelT) -> tuple[tuple[Graph, ...], tuple[Variable, ...]]:
    op_names = [_tflite_op_name(code) for code in model.operatorCodes]

    def tensor(index: int, t: schema.TensorT) -> Tensor:
        dtype, shape = _TFLITE_DTYPES.get(t.type, f"type{t.type}"), _dims(t.shape)
        signature = shape if t.shapeSignature is None else tuple(int(d) for d in t.shapeSignature)
        buffer = model.buffers[t.buffer] if 0 < t.buffer < len(model.buffers) else None
        constant = bool(t.externalBuffer) or buffer is not None and (
            buffer.offset > 1 or buffer.data is not None and len(buffer.data) > 0)
        q = t.quantization
        return Tensor(index, _text(t.name), shape, signature, dtype, tensor_bytes(shape, dtype), constant,
                      bool(t.isVariable) or dtype in ("resource", "variant"),
                      () if q is None or q.scale is None else tuple(float(v) for v in q.scale),
                      () if q is None or q.zeroPoint is None else tuple(int(v) for v in q.zeroPoint))

    graphs: list[Graph] = []
    variables: dict[tuple[str, str], Variable] = {}
    for number, graph in enumerate(model.subgraphs):
        tensors = tuple(tensor(i, t) for i, t in enumerate(graph.tensors or []))
        steps = tuple(Step(op_names[op.opcodeIndex], tuple(i for i in _ints(op.inputs) if i >= 0),
                           tuple(_ints(op.outputs))) for op in graph.operators or [])
        graphs.append(Graph(_text(graph.name) or f"subgraph {number}", tensors, tuple(_ints(graph.inputs)),
                            tuple(_ints(graph.outputs)), steps))
        handles: dict[int, tuple[str, str]] = {}
        for op, step in zip(graph.operators or [], steps, strict=True):
            if step.op == "VAR_HANDLE" and op.builtinOptions is not None:
                key = (_text(op.builtinOptions.container), _text(op.builtinOptions.sharedName))
                handles[step.outputs[0]] = key
                variables.setdefault(key, Variable(key[1], "resource", None, "", 0, key[0]))
            elif step.op == "ASSIGN_VARIABLE" and step.inputs[0] in handles:
                value, key = tensors[step.inputs[1]], handles[step.inputs[0]]
                if variables[key].shape is None:
                    variables[key] = Variable(key[1], "resource", value.shape, value.dtype, value.bytes, key[0])
    kept = [Variable(t.name, "tensor", t.shape, t.dtype, t.bytes) for t in graphs[0].tensors
            if t.variable and t.dtype not in ("resource", "variant")]
    return tuple(graphs), (*variables.values(), *kept)


def tensor_bytes(shape: tuple[int, ...] | None, dtype: str) -> int:
    """Bytes of a tensor of this shape and dtype (packed types rounded up); 0 for an unknown shape or a
    type of no fixed size (string, resource)."""
    bits = _ITEM_BITS.get(dtype)
    return 0 if shape is None or bits is None else (math.prod(shape) * bits + 7) // 8


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
