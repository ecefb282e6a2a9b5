"""Bad model files (issue 7): each kind gets its own one-line `Error:` and exit 2 from `edgekit bench`,
`export` and `compare`, before any runtime sees the file; a runtime that refuses or crashes on a file that
passed the checks is one line too, from a child process."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import main

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("edgekit_benchmarks_fuzz", ROOT / "benchmarks" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

# Valid models are made in code: the fuzz model (shared, cached, with tests/test_fuzz.py) and an ONNX graph
# written with onnx.helper, so that no ONNX exporter runs here.
RANDOM = np.random.default_rng(7).bytes(4096)


def _onnx_model() -> bytes:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _zip(members: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _keras_archive() -> bytes:
    """The members of a Keras 3 .keras file (a zip); the check reads the container, not the weights."""
    return _zip({"metadata.json": json.dumps({"keras_version": "3.0.0"}),
                 "config.json": json.dumps({"class_name": "Sequential"}), "model.weights.h5": b"\x89HDF\r\n\x1a\n"})


def _edited(tflite: bytes, edit) -> bytes:
    """The model with `edit(model)` applied to its object form and packed again."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    edit(model, schema)
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="module")
def tflite() -> bytes:
    return fuzz.tiny_int8_model()


def _run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stderr


COMMANDS = {
    "bench": lambda path, out: ["bench", path, "--target", "rpi4", "--runs", "10", "--warmup", "0"],
    "bench-mcu": lambda path, out: ["bench", path, "--target", "nucleo-l4r5zi", "--runs", "10"],
    "export": lambda path, out: ["export", path, "--target", "rpi4", "--out", out],
    "export-mcu": lambda path, out: ["export", path, "--target", "nucleo-l4r5zi", "--out", out],
}


def _case(tmp_path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


# (file name, content from the valid TFLite bytes, expected message after "Error: <path>: ")
CASES = {
    "empty": ("model.tflite", lambda t: b"", "not a TFLite or ONNX model (empty file)"),
    "truncated": ("model.tflite", lambda t: t[:len(t) - 300],
                  "truncated TFLite model ({size} bytes; its tables reach past the end of the file); the copy is "
                  "incomplete: copy or download it again, or convert it again"),
    "random": ("model.tflite", lambda t: RANDOM,
               "not a TFLite or ONNX model (unrecognised content: no 'TFL3' at bytes 4:8 and not an ONNX "
               "protobuf); check that it is the model file and was copied in binary mode"),
    "onnx named .tflite": ("model.tflite", lambda t: _onnx_model(),
                           "an ONNX model named .tflite, not a TFLite one; rename it to model.onnx"),
    "tflite named .onnx": ("model.onnx", lambda t: t,
                           "a TFLite model named .onnx, not an ONNX one; rename it to model.tflite"),
    "keras named .tflite": ("model.tflite", lambda t: _keras_archive(),
                            "a Keras .keras archive, not a TFLite or ONNX model; convert it first: `edgekit "
                            "convert {path} --to tflite-int8 --data SPEC` (or --to onnx)"),
    "h5 named .tflite": ("model.tflite", lambda t: b"\x89HDF\r\n\x1a\n" + bytes(100),
                         "a Keras .h5 (HDF5) file, not a TFLite or ONNX model; convert it first: `edgekit convert "
                         "{path} --to tflite-int8 --data SPEC` (or --to onnx)"),
    "zip named .tflite": ("model.tflite", lambda t: _zip({"model.bin": t}),
                          "a zip archive, not a TFLite or ONNX model; unpack it and give the .tflite or .onnx file "
                          "inside"),
    "text named .tflite": ("model.tflite", lambda t: b"input,label\n0.1,3\n0.7,1\n",
                           "a text file, not a TFLite model (it begins 'input,label'); give the .tflite file itself"),
    "wrong extension": ("model.bin", lambda t: t,
                        "a TFLite model named with '.bin'; edgekit reads .tflite and .onnx files: rename it to "
                        "model.tflite"),
    "no extension": ("model", lambda t: t,
                     "a TFLite model named with no suffix; edgekit reads .tflite and .onnx files: rename it to "
                     "model.tflite"),
    "not a model extension": ("notes.txt", lambda t: b"hello\n",
                              "not a model file ('.txt'; edgekit reads .tflite and .onnx files)"),
    "truncated onnx": ("model.onnx", lambda t: _onnx_model()[:40],
                       "truncated or corrupt ONNX model (not a complete ONNX protobuf); export or copy it again"),
    "corrupt index": ("model.tflite", lambda t: _edited(t, lambda m, s: setattr(m.subgraphs[0].tensors[3], "buffer",
                                                                                 999)),
                      "corrupt TFLite model (subgraph 0: tensor 3: buffer 999 out of range (0..{last_buffer})); "
                      "the file is damaged: convert or copy it again"),
    "corrupt root offset": ("model.tflite", lambda t: b"\xff\xff\xff\x00" + t[4:],
                            "corrupt TFLite model (unreadable flatbuffer: an offset points at byte 16,777,215, "
                            "outside the file's {size} bytes); the file is damaged: convert or copy it again"),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", CASES)
def test_each_bad_file_has_its_own_line_and_exit_2(tflite, tmp_path, case, command):
    from ai_edge_litert import schema_py_generated as schema

    name, make, expected = CASES[case]
    path = _case(tmp_path, name, make(tflite))
    code, stderr = _run(*COMMANDS[command](path, tmp_path / "out"))
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and stderr.startswith(f"Error: {path}: "), stderr
    if expected:
        last_buffer = len(schema.ModelT.InitFromPackedBuf(tflite, 0).buffers) - 1
        message = expected.format(size=f"{path.stat().st_size:,}", path=path, last_buffer=last_buffer)
        assert stderr == f"Error: {path}: {message}\n"
    assert not (tmp_path / "out").exists()  # nothing written for a file that was refused


@pytest.mark.parametrize("command", [*COMMANDS, "inspect"])
def test_a_folder_given_as_the_model_is_called_a_folder(tmp_path, command):
    folder = tmp_path / "int8.tflite"  # even one named like a model file
    folder.mkdir()
    code, stderr = _run(*COMMANDS[command](folder, tmp_path / "out") if command in COMMANDS else ("inspect", folder))
    assert code == 2
    assert stderr == (f"Error: model file '{folder}' is a folder, not a file; give the .tflite or .onnx file in it (a "
                      "build folder holds float32.tflite, int8.tflite and model.onnx)\n")
    assert not (tmp_path / "out").exists()


def test_each_kind_gets_a_different_message(tflite, tmp_path):
    messages = set()
    for number, (name, make, _) in enumerate(CASES.values()):
        folder = tmp_path / str(number)
        folder.mkdir()
        path = _case(folder, name, make(tflite))
        messages.add(_run("bench", path, "--runs", "10")[1].replace(str(path), "FILE"))
    assert len(messages) == len(CASES), messages


def test_compare_refuses_a_damaged_model_in_the_build_folder(tflite, tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    variants = [{"name": "int8", "file": "int8.tflite", "precision": "int8"}]
    (build / "report.json").write_text(json.dumps({
        "target": "rpi4", "selected": "int8", "variants": variants,
        "targets": [{"target": "rpi4", "selected": "int8", "variants": variants}]}))
    (build / "int8.tflite").write_bytes(tflite[:len(tflite) - 300])
    log = tmp_path / "serial.log"
    log.write_text('{"run": 0, "latency_ms": 1.5}\n')
    code, stderr = _run("compare", build, log)
    assert code == 2
    assert stderr == (f"Error: {build / 'int8.tflite'}: truncated TFLite model ({len(tflite) - 300:,} bytes; its "
                      "tables reach past the end of the file); the copy is incomplete: copy or download it again, "
                      "or convert it again\n")


def test_convert_refuses_a_converted_or_empty_model(tflite, tmp_path):
    converted = _case(tmp_path, "model.tflite", tflite)
    code, stderr = _run("convert", converted, "--to", "tflite-float32")
    assert code == 2
    assert stderr == (f"Error: {converted} is a converted model; a model to convert is a .keras or .h5 file, or a "
                      "SavedModel folder\n")
    empty = _case(tmp_path, "model.keras", b"")
    code, stderr = _run("convert", empty, "--to", "tflite-float32")
    assert code == 2 and stderr.count("\n") == 1 and stderr.startswith(f"Error: {empty}: not a Keras model file")


def test_a_model_the_runtime_refuses_is_one_line(tflite, tmp_path):
    """Structurally sound, but its op is a custom one LiteRT has no kernel for: LiteRT says so in the child."""

    def custom(model, schema):
        code = model.operatorCodes[0]
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode = "EdgekitNoSuchOp"

    path = _case(tmp_path, "custom.tflite", _edited(tflite, custom))
    for target in ("rpi4", "nucleo-l4r5zi"):
        code, stderr = _run("bench", path, "--target", target, "--runs", "10")
        assert code == 2
        assert stderr == (f"Error: {path}: LiteRT cannot run it while allocating tensors: Encountered unresolved "
                          "custom op: EdgekitNoSuchOp.\n")


def test_a_runtime_crash_in_the_child_is_one_line_exit_1(tflite, tmp_path, monkeypatch):
    """What edgekit does when LiteRT dies of a signal: a stand-in for the child that reports its phase and
    then crashes, as a corrupt model can make the real runtime do."""
    child = tmp_path / "crashing-python"
    child.write_text('#!/bin/sh\necho \'{"begin": "loading the model"}\'\n'
                     'echo \'{"begin": "running the model on zeros (batch 1)"}\'\nkill -SEGV $$\n')
    child.chmod(0o755)
    path = _case(tmp_path, "model.tflite", tflite)
    monkeypatch.setattr(sys, "executable", str(child))
    code, stderr = _run("bench", path, "--target", "rpi4", "--runs", "10")
    assert code == 1
    assert stderr == (f"Error: litert failed: {path}: LiteRT crashed (SIGSEGV) in a child process while running the "
                      "model on zeros (batch 1); the file may be corrupt or made for another runtime version\n")


def test_only_the_builds_own_verified_bytes_skip_the_child_run(tflite, tmp_path, monkeypatch):
    """open_runner's trusted_sha256 (issue 9): a build's own verified file skips the child-process smoke run; any
    other content, a file from outside or one changed since it was verified, still goes through the child. The
    child here is the crashing stand-in: a skipped child cannot crash, a run one does."""
    import hashlib

    from edgekit.errors import StageError
    from edgekit.runtimes.host import open_runner

    child = tmp_path / "crashing-python"
    child.write_text("#!/bin/sh\nkill -SEGV $$\n")
    child.chmod(0o755)
    path = _case(tmp_path, "model.tflite", tflite)
    monkeypatch.setattr(sys, "executable", str(child))
    runner = open_runner(path, trusted_sha256=hashlib.sha256(tflite).hexdigest())
    assert runner.smoke is None and runner.predict(np.zeros((2, *runner.input_shape), np.float32)).shape[0] == 2
    for trusted in (None, hashlib.sha256(tflite + b"\0").hexdigest()):
        with pytest.raises(StageError, match=r"LiteRT crashed \(SIGSEGV\) in a child process"):
            open_runner(path, trusted_sha256=trusted)
