"""Check a model file before any native runtime reads it: is it what its name says, and is it whole?

`check_model_file(path)` is the one gate for files that come from outside a build: `edgekit bench`,
`export` and `compare`, and `runtimes.host.open_runner`, call it first. Each kind of bad file gets its own
`UsageError` line, naming the file, what is wrong and what to do: an empty file, a name without the
.tflite or .onnx suffix, an ONNX, Keras, HDF5 or text file where a model of the other kind was expected,
unrecognised (random) bytes, a truncated file, a corrupt one.

TFLite: the flatbuffers verifier (`tflite::VerifyModelBuffer`) has no Python binding in ai-edge-litert,
tflite-micro or tensorflow.lite; LiteRT's Interpreter runs it when it loads a model, which edgekit does
first in a child process (`runtimes.host.smoke_run`). So the check here is structural, with the schema
ai-edge-litert ships (`schema_py_generated`): the 'TFL3' identifier at bytes 4:8, a root table and
the tables and vectors it reaches inside the file (the Python reader fails on a number or vector read
past the end, though not on a string cut short: LiteRT's verifier in the child catches that), schema
version 3, at least one subgraph with an input and an output, every operator code, tensor,
buffer and subgraph index in range, buffers stored after the flatbuffer inside the file, non-negative
shapes and constant data of exactly the size its shape and type need. What it cannot see (a kernel
that crashes on legal-looking values) is what the child-process smoke run is for.

ONNX: `onnx.checker.check_model`, after the bytes parse as a ModelProto with a graph.
TensorFlow is never imported here.
"""

from __future__ import annotations

import math
import mmap
import re
from pathlib import Path

from edgekit.errors import UsageError, require_file

SUFFIXES = {".tflite": "tflite", ".onnx": "onnx"}
_A_LABEL = {"tflite": "a TFLite", "onnx": "an ONNX"}
_KERAS = {"keras": "a Keras .keras archive", "hdf5": "a Keras .h5 (HDF5) file"}
_TFLITE_IDENTIFIER = b"TFL3"  # bytes 4:8 of every TFLite flatbuffer
_TFLITE_SCHEMA_VERSION = 3
_ZIP = b"PK\x03\x04"  # a .keras file is a zip archive
_HDF5 = b"\x89HDF\r\n\x1a\n"  # a Keras .h5 file
# Bytes per element of the fixed-size TFLite tensor types; packed (int4, int2) and variable-size (string,
# resource, variant) types are left out of the constant-size check.
_ITEM_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1, "INT16": 2,
               "COMPLEX64": 8, "INT8": 1, "FLOAT64": 8, "COMPLEX128": 16, "UINT64": 8, "UINT32": 4, "UINT16": 2,
               "BFLOAT16": 2, "FLOAT8_E4M3FN": 1, "FLOAT8_E5M2": 1}
_READ_PAST = re.compile(r"unpack_from requires a buffer of at least \d+ bytes for unpacking \d+ bytes at offset (\d+)")
_CONVERT_HINT = "convert it first: `edgekit convert {name} --to tflite-int8 --data SPEC` (or --to onnx)"
# A folder given where a model file goes: most often a build folder or a bundle
_IN_A_FOLDER = ("give the .tflite or .onnx file in it (a build folder holds float32.tflite, int8.tflite and "
                "model.onnx)")


class _Corrupt(Exception):
    """A structural fault found while walking a TFLite model."""


class _Past(_Corrupt):
    """Data the model places after the flatbuffer lies (partly) past the end of the file."""


def check_model_file(path: str | Path) -> str:
    """'tflite' or 'onnx' for a whole, well-formed model file whose suffix matches its content; otherwise
    a one-line UsageError naming the file, what is wrong and what to do."""
    path = Path(path)
    if path.is_dir():
        require_model_file(path)  # its line for a folder; a missing file is one that cannot be read, below
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{name}: cannot read the file ({exc.strerror or exc})") from None
    if not data:
        raise UsageError(f"{name}: not a TFLite or ONNX model (empty file)")
    content = sniff(data)
    suffix = path.suffix.lower()
    named = SUFFIXES.get(suffix)
    if content in _KERAS:
        raise UsageError(f"{name}: {_KERAS[content]}, not a TFLite or ONNX model; {_CONVERT_HINT.format(name=name)}")
    if content == "zip":
        raise UsageError(f"{name}: a zip archive, not a TFLite or ONNX model; unpack it and give the .tflite or "
                         ".onnx file inside")
    if named is None:
        shown = f"'{suffix}'" if suffix else "no suffix"
        if content is not None and content in SUFFIXES.values():
            raise UsageError(f"{name}: {_A_LABEL[content]} model named with {shown}; edgekit reads .tflite and "
                             f".onnx files: rename it to {path.with_suffix('.' + content).name}")
        raise UsageError(f"{name}: not a model file ({shown}; edgekit reads .tflite and .onnx files)")
    if content == "text":
        raise UsageError(f"{name}: a text file, not {_A_LABEL[named]} model (it begins {_first_line(data)!r}); "
                         f"give the {suffix} file itself")
    if content is None:
        raise UsageError(f"{name}: not a TFLite or ONNX model (unrecognised content: no '"
                         f"{_TFLITE_IDENTIFIER.decode()}' at bytes 4:8 and not an ONNX protobuf); check that it "
                         "is the model file and was copied in binary mode")
    if content != named:
        raise UsageError(f"{name}: {_A_LABEL[content]} model named {suffix}, not {_A_LABEL[named]} one; rename "
                         f"it to {path.with_suffix('.' + content).name}")
    if content == "tflite":
        check_tflite(data, name)
    else:
        check_onnx(data, name, path)
    return content


def require_model_file(path: str | Path) -> Path:
    """`path` when it is a file; a one-line UsageError when it does not exist or is a folder."""
    return require_file(path, "model file", _IN_A_FOLDER)


def sniff(data: bytes) -> str | None:
    """What the bytes are: 'tflite', 'onnx', 'keras' (a zip with a config.json), 'zip', 'hdf5', 'text', or None
    (unrecognised)."""
    if data[4:8] == _TFLITE_IDENTIFIER:
        return "tflite"
    if data.startswith(_ZIP):
        return "keras" if b"config.json" in data else "zip"  # the member names are stored in plain text
    if data.startswith(_HDF5):
        return "hdf5"
    if _looks_like_text(data):
        return "text"
    # A ModelProto starts with its ir_version (field 1, varint: tag 0x08); a truncated or damaged one
    # still starts so, and check_onnx says what is wrong with it.
    if data[:1] == b"\x08" or _parses_as_onnx(data):
        return "onnx"
    return None


def check_tflite(data: bytes | mmap.mmap, name: str):
    """Structural check of a TFLite flatbuffer (see the module docstring); UsageError if it fails. Returns
    the model in the schema's object form (`ModelT`), so that a reader need not parse it again."""
    if len(data) < 8 or data[4:8] != _TFLITE_IDENTIFIER:
        raise UsageError(f"{name}: not a TFLite model (no '{_TFLITE_IDENTIFIER.decode()}' at bytes 4:8)")
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = _unpack(schema, data)
    except _Corrupt as fault:
        if _unpacks(schema, bytes(data) + bytes(max(len(data), 1 << 16))):
            # Whole once zeros follow it: it ends too early. (A flipped offset that points a little past the
            # end reads the same; the message says what was seen, not how it happened.)
            raise UsageError(f"{name}: truncated TFLite model ({len(data):,} bytes; its tables reach past the end "
                             "of the file); the copy is incomplete: copy or download it again, or convert it "
                             "again") from None
        raise UsageError(f"{name}: corrupt TFLite model ({fault}); the file is damaged: convert or copy it "
                         "again") from None
    try:
        _check_structure(schema, model, len(data))
    except _Past as fault:
        raise UsageError(f"{name}: truncated TFLite model ({len(data):,} bytes; {fault}); the copy is incomplete: "
                         "copy or download it again, or convert it again") from None
    except _Corrupt as fault:
        raise UsageError(f"{name}: corrupt TFLite model ({fault}); the file is damaged: convert or copy it "
                         "again") from None
    return model


def check_onnx(data: bytes, name: str, path: Path | None = None) -> None:
    """Parse the bytes as an ONNX ModelProto with a graph, then run `onnx.checker.check_model` (on `path`,
    the file the bytes came from, when its weights are kept in files beside it)."""
    import onnx

    try:
        model = onnx.load_from_string(data)
    except Exception:  # protobuf raises DecodeError on truncated and on damaged bytes alike
        raise UsageError(f"{name}: truncated or corrupt ONNX model (not a complete ONNX protobuf); export or "
                         "copy it again") from None
    if not model.ir_version or not model.HasField("graph"):
        raise UsageError(f"{name}: truncated or corrupt ONNX model (no IR version or no graph); export or copy "
                         "it again")
    constants = {t.name for t in model.graph.initializer}
    if not [i for i in model.graph.input if i.name not in constants] or not model.graph.output:
        raise UsageError(f"{name}: an ONNX model without a graph input or output; edgekit runs models that take "
                         "an input and give an output")
    try:
        if path is not None and _has_external_data(model):
            onnx.checker.check_model(str(path))  # from the file, so the checker finds the weight files
        else:
            onnx.checker.check_model(model)
    except Exception as exc:  # ValidationError, and the checker's own errors on odd protos
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UsageError(f"{name}: invalid ONNX model ({first}); export it again") from None


def _unpack(schema, data: bytes | mmap.mmap):
    try:
        return schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as exc:  # wherever the damage sends the reader; say where, in the file's terms
        text = (str(exc).splitlines() or [""])[0]
        if match := _READ_PAST.search(text):
            reason = f"an offset points at byte {int(match[1]):,}, outside the file's {len(data):,} bytes"
        elif "smaller than requested size" in text:
            reason = "a vector runs past the end of the file"
        elif text.startswith("bad number -"):
            reason = "an offset points before the start of the file"
        else:
            kind = type(exc)
            reason = f"{kind.__module__ + '.' if kind.__module__ != 'builtins' else ''}{kind.__name__}: {text[:120]}"
        raise _Corrupt(f"unreadable flatbuffer: {reason}") from None


def _unpacks(schema, data: bytes) -> bool:
    try:
        _unpack(schema, data)
    except _Corrupt:
        return False
    return True


def _check_structure(schema, model, size: int) -> None:
    if model.version != _TFLITE_SCHEMA_VERSION:
        raise _Corrupt(f"schema version {model.version}, expected {_TFLITE_SCHEMA_VERSION}")
    subgraphs, buffers = model.subgraphs or [], model.buffers or []
    codes = model.operatorCodes or []
    if not subgraphs:
        raise _Corrupt("no subgraph")
    type_names = {code: type_name for type_name, code in vars(schema.TensorType).items() if type_name.isupper()}

    def in_range(what: str, index, count: int, optional: bool = False) -> None:
        if not (-1 if optional else 0) <= int(index) < count:
            raise _Corrupt(f"{what} {int(index)} out of range (0..{count - 1})")

    for b, buffer in enumerate(buffers):
        if buffer.offset > 1 and buffer.offset + buffer.size > size:  # 0 and 1 mean "no data after the flatbuffer"
            raise _Past(f"buffer {b} ends at byte {buffer.offset + buffer.size:,}, past the end of the file")
    for g, graph in enumerate(subgraphs):
        tensors = graph.tensors or []
        where = f"subgraph {g}"
        for t in (*_ints(graph.inputs), *_ints(graph.outputs)):
            in_range(f"{where}: input/output tensor", t, len(tensors))
        for t, tensor in enumerate(tensors):
            in_range(f"{where}: tensor {t}: buffer", tensor.buffer, len(buffers))
            shape = _ints(tensor.shape)
            if any(d < 0 for d in shape):
                raise _Corrupt(f"{where}: tensor {t} has a negative dimension {shape}")
            _check_constant_size(f"{where}: tensor {t}", tensor, shape, buffers[tensor.buffer], type_names)
        for o, op in enumerate(graph.operators or []):
            in_range(f"{where}: operator {o}: operator code", op.opcodeIndex, len(codes))
            for t in (*_ints(op.inputs), *_ints(op.outputs), *_ints(op.intermediates)):
                in_range(f"{where}: operator {o}: tensor", t, len(tensors), optional=True)
            for options in (op.builtinOptions, op.builtinOptions2):
                for field, value in (vars(options) if options is not None else {}).items():
                    if "ubgraph" in field:  # IF, WHILE, CALL_ONCE, composite and StableHLO bodies
                        for index in _ints(value) if not isinstance(value, int) else [value]:
                            in_range(f"{where}: operator {o}: {field}", index, len(subgraphs))
            if op.largeCustomOptionsOffset > 1 and op.largeCustomOptionsOffset + op.largeCustomOptionsSize > size:
                raise _Past(f"{where}: operator {o}: custom options end past the end of the file")
    first = subgraphs[0]
    if not _ints(first.inputs) or not _ints(first.outputs):
        raise _Corrupt("the main subgraph has no input or no output tensor")
    for signature in model.signatureDefs or []:
        in_range("signature subgraph", signature.subgraphIndex, len(subgraphs))
        count = len(subgraphs[signature.subgraphIndex].tensors or [])
        for entry in (*(signature.inputs or []), *(signature.outputs or [])):
            in_range("signature tensor", entry.tensorIndex, count)
    for entry in model.metadata or []:
        in_range("metadata buffer", entry.buffer, len(buffers))
    for index in _ints(model.metadataBuffer):
        in_range("metadata buffer", index, len(buffers))


def _check_constant_size(where: str, tensor, shape: list[int], buffer, type_names: dict[int, str]) -> None:
    """A constant's data must be exactly what its shape and type need: a kernel trusts the shape and reads
    that many bytes from the buffer."""
    held = buffer.size if buffer.offset > 1 else (0 if buffer.data is None else len(buffer.data))
    item = _ITEM_BYTES.get(type_names.get(tensor.type, ""))
    if not held or item is None or tensor.sparsity is not None:
        return
    needed = math.prod(shape) * item
    if held != needed:
        raise _Corrupt(f"{where} holds {held:,} bytes of constant data; its shape {shape} of "
                       f"{type_names[tensor.type].lower()} needs {needed:,}")


def _ints(values) -> list[int]:
    return [] if values is None else [int(v) for v in values]


def _looks_like_text(data: bytes) -> bool:
    head = data[:4096]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a multi-byte character cut at the 4096-byte mark
            return False
        text = head[:exc.start].decode("utf-8")
    return bool(text) and all(c.isprintable() or c in "\t\r\n\f" for c in text)


def _first_line(data: bytes) -> str:
    line = data[:200].decode("utf-8", "replace").strip().splitlines()
    return (line[0] if line else "")[:40]


def _parses_as_onnx(data: bytes) -> bool:
    import onnx

    try:
        model = onnx.load_from_string(data)
    except Exception:
        return False
    return bool(model.ir_version) and model.HasField("graph")


def _has_external_data(model) -> bool:
    from onnx.external_data_helper import uses_external_data

    return any(uses_external_data(t) for t in model.graph.initializer)
