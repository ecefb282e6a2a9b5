"""Opening a model file from anywhere in a host runtime (LiteRT for .tflite, ONNX Runtime for .onnx): checked,
then run once in a supervised child process (`python -m edgekit.runtimes.host`, this module) before this
process loads it; and LiteRT's peak memory, which that child measures.

The runners themselves live with their runtimes (`litert.TFLiteRunner`, `onnx.OnnxRunner`) and follow the
Runner protocol (`edgekit.runtimes.base`, which also holds BATCH).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit._files import captured_stderr_fd
from edgekit.runtimes.child import Reporter, run_child
from edgekit.runtimes.litert import TFLiteRunner
from edgekit.runtimes.onnx import ORT_TYPES, OnnxRunner, input_shape

if TYPE_CHECKING:
    from edgekit.feeds import FeedPlan


def open_runner(path: str | Path, threads: int = 1, batch_sizes: tuple[int, ...] = (),
                trusted_sha256: str | None = None, plan: FeedPlan | None = None) -> TFLiteRunner | OnnxRunner:
    """The runner for a model file from anywhere. The file is checked first (`validate.check_model_file`),
    then loaded, allocated and run once in a child process (`smoke_run`, on `plan`'s values, by default
    `feeds.plan(path)`: every input resolved, zeros and default scalars; and at each of `batch_sizes`), and
    only then opened in this process: a file that would crash the runtime costs the child, not edgekit. What
    the child measured stays on the runner as `smoke`.

    `trusted_sha256` is for the files a build made itself: the sha256 of bytes already run in-process by the
    build that made them (every conversion is verified by running it before it is kept or cached). A file
    with exactly that content skips the child, whose guard it does not need, and `smoke` stays None."""
    import hashlib

    from edgekit.validate import check_model_file

    fmt = check_model_file(path)
    content = Path(path).read_bytes()
    trusted = trusted_sha256 is not None and hashlib.sha256(content).hexdigest() == trusted_sha256
    smoke = None
    if not trusted:
        from edgekit import feeds

        smoke = smoke_run(path, fmt, threads, batch_sizes, values=(plan or feeds.plan(path)).values)
    runner = TFLiteRunner(content, threads) if fmt == "tflite" else OnnxRunner(content, threads)
    runner.smoke = smoke
    return runner


STAGES = {"tflite": ("litert", "LiteRT"), "onnx": ("onnxruntime", "ONNX Runtime")}


def smoke_run(path: str | Path, fmt: str, threads: int = 1, batch_sizes: tuple[int, ...] = (),
              timeout_s: float = 120.0, values: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Load `path` in its runtime (LiteRT for 'tflite', ONNX Runtime for 'onnx'), allocate, and invoke it
    once, in a child process (`python -m edgekit.runtimes.host`) under a timeout: on `values` (every input by
    name, batch included, as `feeds.FeedPlan.values`; an input of another shape is resized to it), or on zeros
    at batch 1. Each of `batch_sizes` is then resized to and allocated (LiteRT) or run (ONNX Runtime) too, as
    `predict` will, for a model of one input.

    For LiteRT the child also measures its peak memory (see `litert_memory`), returned as
    {"before", "after"} bytes; for ONNX Runtime, {}. A crash (a signal) or a hang is a StageError naming
    the file, the runtime and what it was doing; a model the runtime refuses is a UsageError with the
    runtime's own reason. The child's cost is a Python start and the runtime import, about 0.15 s."""
    import tempfile

    stage, runtime = STAGES[fmt]
    with tempfile.TemporaryDirectory(prefix="edgekit-feeds-") as work:
        feeds = ""
        if values:
            feeds = str(Path(work) / "feeds.npz")
            np.savez(feeds, np.array(list(values)), *values.values())  # arr_0: the names; arr_1...: the values
        args = [fmt, str(Path(path).resolve()), str(threads), ",".join(str(b) for b in batch_sizes if b != 1), feeds]
        done = run_child("edgekit.runtimes.host", args, model=str(path), runtime=runtime, stage=stage,
                         timeout_s=timeout_s,
                         crash_hint="the file may be corrupt or made for another runtime version")
    return {k: v for k, v in done.values.items() if k in ("before", "after")}


def litert_memory(path: Path, threads: int = 1, timeout_s: float = 120, figures: dict | None = None) -> dict:
    """Peak memory of a fresh process that loads, allocates and invokes the model with LiteRT, measured
    as the rise of its peak resident set (model buffer, tensor arena, XNNPACK packed weights and
    workspace) over the same process before loading. A child process, so that nothing this process
    already holds is counted, and a crash in the runtime cannot take edgekit down. `figures` are those
    a smoke run (`open_runner(...).smoke`) already measured with the same threads."""
    figures = figures or smoke_run(path, "tflite", threads, timeout_s=timeout_s)
    return {"rss_rise_bytes": max(0, figures["after"] - figures["before"]), "process_peak_bytes": figures["after"],
            "basis": "measured", "where": "host",
            "method": "rise of the peak resident set of a child process that loads, allocates and invokes the "
                      "model with LiteRT (the model, its tensor arena, XNNPACK's packed weights and the "
                      "runtime code pages first touched)"}


# ---- the child process: everything below runs under `python -m edgekit.runtimes.host` ---------------------

def _peak_bytes() -> int:
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across fork and exec.
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child_main(fmt: str, path: str, threads: int, batch_sizes: list[int], feeds: str) -> None:
    report, runtime = Reporter(), STAGES[fmt][1]

    def step(what: str, call):
        report.begin(what)
        try:
            return call()
        except Exception as exc:  # the runtime read the model and refused it: report, do not crash
            lines = str(exc).strip().splitlines() or [""]
            report.emit(usage_error=f"{runtime} cannot run it while {what}: {lines[0][:2000] or type(exc).__name__}",
                        detail=str(exc).strip())
            sys.exit(1)

    values: dict[str, np.ndarray] = {}
    if feeds:
        with np.load(feeds, allow_pickle=False) as stored:
            values = {str(name): stored[f"arr_{k + 1}"] for k, name in enumerate(stored["arr_0"])}
    what = "running the model on its inputs" if values else "running the model on zeros (batch 1)"
    report.begin("importing the runtime")
    if fmt == "onnx":
        from edgekit.runtimes.onnx import session as onnx_session

        session = step("loading the model", lambda: onnx_session(path, threads))
        first: dict[str, np.ndarray] = values or step("making zero inputs", lambda: {
            i.name: np.zeros(input_shape(i.shape, 1), ORT_TYPES.get(i.type, np.float32)) for i in session.get_inputs()})
        step(what, lambda: session.run(None, first))
        for batch in batch_sizes if len(first) == 1 else ():
            feed = step(f"making zero inputs (batch {batch})", lambda batch=batch: {
                name: np.zeros((batch, *v.shape[1:]), v.dtype) for name, v in first.items()})
            step(f"running the model on zeros (batch {batch})", lambda feed=feed: session.run(None, feed))
        report.emit(end=True)
        return
    from ai_edge_litert.interpreter import Interpreter

    try:  # start the high-water mark from here (Linux 4.0+), so the imports above do not set it
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    before = _peak_bytes()
    with captured_stderr_fd():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
        interpreter = step("loading the model", lambda: Interpreter(model_path=path, num_threads=threads))
    inputs = interpreter.get_input_details()
    if values:
        def resize() -> None:
            for detail in inputs:
                if detail["name"] in values and tuple(detail["shape"]) != values[detail["name"]].shape:
                    interpreter.resize_tensor_input(detail["index"], list(values[detail["name"]].shape))

        step("resizing the inputs", resize)
    step("allocating tensors", interpreter.allocate_tensors)

    def fill() -> None:
        for detail in interpreter.get_input_details():
            value = values.get(detail["name"])
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]) if value is None
                                   else value)

    step("setting the inputs", fill)
    step(what, interpreter.invoke)
    report.emit(before=before, after=_peak_bytes())
    for batch in batch_sizes:
        def resize_to(batch=batch) -> None:
            for detail in inputs:
                interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
            interpreter.allocate_tensors()

        step(f"resizing to batch {batch} and allocating", resize_to)
    report.emit(end=True)


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2], int(sys.argv[3]), [int(b) for b in sys.argv[4].split(",") if b],
                sys.argv[5] if len(sys.argv) > 5 else "")
