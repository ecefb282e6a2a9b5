"""`edgekit bench`: one model file against one target.

Measured on this host: accuracy (batched), batch-1 latency with warm-up runs discarded, size, sparsity,
and, for a TFLite Micro target, the tensor arena and op support from the real TFLite Micro runtime; for a
LiteRT target, the peak memory of a process running the model. Estimated for the target: latency, from
the per-op cost model of the target profile. Every figure says which it is."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import emulate, feeds, verdict
from edgekit._files import gzip_size
from edgekit.estimate import LatencyEstimate, estimate_latency
from edgekit.feeds import InputSpec
from edgekit.model_info import ModelInfo, inspect_model
from edgekit.runtimes.base import BATCH
from edgekit.runtimes.host import litert_memory, open_runner
from edgekit.targets import Runtime, Target

DEFAULT_RUNS = 200
DEFAULT_WARMUP = 20
ARENA_ALIGNMENT = 16
PROGRESS_STEPS = 20  # updates of a benchmark's progress bar over its timed runs
log = logging.getLogger("edgekit")


@dataclass(frozen=True)
class LatencyStats:
    median: float  # milliseconds
    p90: float
    p99: float
    mean: float
    min: float
    runs: int
    warmup: int
    threads: int
    where: str = "host"  # measured on the machine edgekit runs on, not on the target

    @classmethod
    def from_samples(cls, samples_ns: np.ndarray, warmup: int, threads: int) -> LatencyStats:
        ms = samples_ns / 1e6
        return cls(median=float(np.median(ms)), p90=float(np.percentile(ms, 90)),
                   p99=float(np.percentile(ms, 99)), mean=float(ms.mean()), min=float(ms.min()),
                   runs=len(ms), warmup=warmup, threads=threads)


@dataclass(frozen=True)
class BenchResult:
    file: str
    format: str
    precision: str
    size_bytes: int
    gzip_bytes: int
    sparsity: float
    params: int
    macs: int
    element_ops: int  # pooling, element-wise and softmax arithmetic (edgekit.model_info.OpInfo.element_ops)
    accuracy: float | None  # on the given test data, when the metric is accuracy
    metric: dict[str, Any] | None  # {"name", "value"} of the task metric on the given test data
    latency_ms: LatencyStats  # host
    structure: dict[str, Any]  # ops with counts, tensors, inputs and outputs (edgekit.model_info)
    target: str
    target_latency: LatencyEstimate | None
    ram: dict[str, Any]
    flash: dict[str, Any]
    ops: dict[str, Any]
    fit: verdict.FitReport
    feeds: dict[str, Any] | None = None  # what each input was fed, and the state fed back (edgekit.feeds)
    npu: dict[str, Any] | None = None  # an NPU target: Vela's compilation and estimate (edgekit.npu)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("fit", "target_latency")}
        data["target_latency"] = self.target_latency.to_dict() if self.target_latency else None
        data["fit"] = self.fit.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        """The inverse of to_dict: a result a build cached, read back."""
        estimate = data["target_latency"]
        return cls(**{**data, "latency_ms": LatencyStats(**data["latency_ms"]),
                      "fit": verdict.FitReport.from_dict(data["fit"]),
                      "target_latency": LatencyEstimate.from_dict(estimate) if estimate else None})


def precision_of(info: ModelInfo) -> str:
    """What the file itself says: int8 when its weights are int8, float16 for fp16 weights."""
    if "int8" in info.weight_dtypes:
        return "int16x8" if info.inputs and info.inputs[0].dtype == "int16" else "int8"
    if "float16" in info.weight_dtypes:
        return "float16"
    return "float32"


def measure_latency(call, runs: int, warmup: int, threads: int, label: str = "bench") -> LatencyStats:
    """Time `runs` calls after `warmup` untimed ones. The progress bar advances every PROGRESS_STEP runs,
    between two timed calls, never inside one."""
    from edgekit import progress

    samples = np.empty(runs, dtype=np.int64)
    clock = time.perf_counter_ns
    with progress.task(label, warmup + runs) as bar:
        for _ in range(warmup):
            call()
        bar.advance(warmup)
        step = max(runs // PROGRESS_STEPS, 1)
        for i in range(runs):
            started = clock()
            call()
            samples[i] = clock() - started
            if (i + 1) % step == 0 or i + 1 == runs:
                bar.advance((i + 1) - (bar.completed - warmup))
    return LatencyStats.from_samples(samples, warmup, threads)


def bench(path: Path, target: Target, x_test: np.ndarray | None = None, y_test: np.ndarray | None = None,
          runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP, threads: int = 1,
          task: str = "classification", metric: str = "accuracy", trusted_sha256: str | None = None) -> BenchResult:
    return bench_targets(path, [target], x_test, y_test, runs, warmup, threads, task, metric, trusted_sha256)[0]


def bench_targets(path: Path, targets: list[Target], x_test: np.ndarray | None = None,
                  y_test: np.ndarray | None = None, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
                  threads: int = 1, task: str = "classification", metric: str = "accuracy",
                  trusted_sha256: str | None = None, inputs: Sequence[InputSpec] = ()) -> list[BenchResult]:
    """Measure once on the host, then judge the model against each target. With test data, the task's
    metric is measured too (batched). The file may come from anywhere: `open_runner` checks it and runs it
    once in a child process before this process loads it (unless its sha256 is `trusted_sha256`, a build's
    own verified file), and TFLite Micro only ever runs in a child.

    Every input the model declares is fed (`edgekit.feeds.plan`: the data's first sample for the first
    input, `inputs` as given, the rest resolved and said); a recurrent state's output is fed back into its
    input between timed calls (steady state)."""
    from edgekit.tasks import TASKS

    path = Path(path)
    count = 0 if y_test is None or x_test is None else len(x_test)
    chunks = tuple(sorted({min(count, BATCH), count % BATCH} - {0}))  # the batch sizes predict() will use
    plan = feeds.plan(path, inputs, None if x_test is None else (1, *x_test.shape[1:]))
    if x_test is not None and len(plan.feeds) > 1:
        from edgekit.errors import UsageError

        raise UsageError(f"{path}: --data feeds a model of one input; this one has {len(plan.feeds)} "
                         f"({', '.join(f.label for f in plan.feeds)}): bench it without --data")
    for note in plan.notes:
        log.info("%s: %s", path.name, note)
    runner = open_runner(path, threads, chunks, trusted_sha256, plan)
    info = inspect_model(path)
    precision = precision_of(info)
    values = dict(plan.values)
    if x_test is not None:
        values[plan.primary] = runner.quantize_input(np.asarray(x_test[:1], np.float32))
    plan = feeds.confirm(replace(plan, values=values), runner.outputs)
    for feed in plan.feeds:
        if feed.state_from:
            log.info("%s: steady state: output '%s' is fed back into input '%s' after every call", path.name,
                     feed.state_label, feed.label)
    host_latency = measure_latency(runner.feed(plan.values, plan.state), runs, warmup, threads, f"bench {path.name}")
    value = measured = None
    # every metric of the task (binary: accuracy and AUC; regression: MAE and RMSE)
    if y_test is not None and x_test is not None:
        from edgekit.recipes import METRICS

        outputs = runner.predict(x_test)
        every = {name: TASKS[task].score(name, outputs, x_test, y_test) for name in METRICS[task]}
        value = every[metric]
        measured = {"name": metric, "value": value, "task": task, "all": every}
    gzip_bytes = gzip_size(path.read_bytes())
    structure = {"op_counts": info.op_counts(), "inputs": [asdict(t) for t in info.inputs],
                 "outputs": [asdict(t) for t in info.outputs], "ops": [asdict(op) for op in info.ops]}
    flash = {"model_bytes": info.size_bytes, "basis": "measured",
             "note": "the model file; the runtime's own code is in the profile's memory reserve"}
    memory: dict[Runtime, tuple[dict, dict, Any]] = {}
    single = len(plan.feeds) == 1  # TFLite Micro and the emulated Cortex-M programs are fed one input
    raw_sample = plan.values[plan.primary][0] if single else None
    emulations = emulate.Emulations(path, info, raw_sample, plan.values, plan.state)
    litert_output = None  # this host's LiteRT output for the sample, to check an emulated Cortex-A run against
    results = []
    for target in targets:
        if target.runtime not in memory:
            memory[target.runtime] = _ram_and_ops(path, info, target.runtime, threads, runner.smoke, raw_sample)
        ram, ops, host_output = memory[target.runtime]
        ram = _with_margin(ram, target.memory.arena_margin) if target.runtime is Runtime.TFLM else ram
        target_latency = estimate_latency(info, target, precision)
        if target.runtime is Runtime.TFLM and info.format == "tflite" and ops["supported"]:
            ram, ops, target_latency = emulations.judge(target, precision, host_output, ram, ops, target_latency)
        elif target.runtime is Runtime.LITERT and info.format == "tflite" and target.cpu.emulated_as:
            if litert_output is None:
                from edgekit.runtimes.emulated_a64 import WARMUP

                # the emulated core counts the call after its warm-ups; a stateless model gives that on any call
                litert_output = _output_after(runner, plan, WARMUP + 1 if plan.state else 1)
            ram, ops, target_latency = emulations.judge_litert(target, precision, litert_output, ram,
                                                               ops, target_latency)
        flash_bytes, npu = info.size_bytes, None
        if target.npu is not None and info.format == "tflite":
            from edgekit import npu as ethos

            ram, ops, target_latency, flash_bytes, npu = ethos.judge(path, info, target, precision, ram, ops,
                                                                     target_latency)
        judged = verdict.evaluate(
            target, precision=precision, flash_bytes=flash_bytes, ram_bytes=ram.get("required_bytes"),
            ram_basis=ram.get("basis", "measured"),
            latency_ms=target_latency.ms if target_latency else None,
            latency_basis=target_latency.basis if target_latency else "estimated",
            ops_supported=ops["supported"], ops_detail=ops["detail"],
            ram_measured_bytes=ram.get("arena_min_bytes") or ram.get("arena_bytes") if ram.get("margin") else None,
            ram_margin=ram.get("margin") or 0.0,
        )
        results.append(BenchResult(
            file=path.name, format=info.format, precision=precision, size_bytes=info.size_bytes,
            gzip_bytes=gzip_bytes, sparsity=info.weight_sparsity, params=info.params, macs=info.macs,
            element_ops=info.element_ops, accuracy=value if metric == "accuracy" else None, metric=measured,
            latency_ms=host_latency,
            structure=structure, target=target.name,
            target_latency=target_latency, ram=ram, flash=flash, ops=ops, fit=judged, feeds=plan.to_dict(), npu=npu,
        ))
    return results


def _output_after(runner, plan: feeds.FeedPlan, invokes: int) -> np.ndarray:
    """Output 0 of the `invokes`-th call on the plan's inputs, its state fed back after each call before."""
    values = dict(plan.values)
    for _ in range(invokes):
        outputs = runner.outputs(values)
        values.update({into: outputs[out] for into, out in plan.state})
    return next(iter(outputs.values()))


def _ram_and_ops(path: Path, info: ModelInfo, runtime: Runtime, threads: int,
                 smoke: dict | None, raw_sample: np.ndarray | None) -> tuple[dict, dict, Any]:
    """RAM and op support on the runtime, and (TFLite Micro) its output for `raw_sample`."""
    if info.format != "tflite":
        return ({"basis": "not measured", "note": "RAM is measured for .tflite files"},
                {"supported": False, "missing": [], "checked_with": None,
                 "detail": f"{runtime.value} loads .tflite files, not {info.format}"}, None)
    if runtime is Runtime.TFLM:
        from edgekit.runtimes import tflm as micro

        result = micro.measure(path, sample=raw_sample)
        ops = {"supported": result.supported, "missing": list(result.missing_ops), "checked_with": "tflite-micro",
               "detail": "runs in the TFLite Micro runtime" if result.supported else
               (f"TFLite Micro lacks {', '.join(result.missing_ops)}" if result.missing_ops else result.error)}
        if result.arena_bytes is None:
            return {"basis": "not measured", "note": result.error}, ops, None
        return ({"arena_bytes": result.arena_bytes, "persistent_bytes": result.arena_persistent_bytes,
                 "nonpersistent_bytes": result.arena_nonpersistent_bytes, "arena_min_bytes": result.arena_min_bytes,
                 "allocations": result.allocations, "basis": "measured",
                 "method": "the smallest arena the TFLite Micro runtime loads and runs the model in on this host "
                           "(bisected; the arena it records in print_allocations leaves out kernels' temporary "
                           "buffers), plus the profile's margin, rounded up to 16 bytes"}, ops, result.output)
    memory = litert_memory(path, threads, figures=smoke)  # the smoke run measured it, with the same threads
    return ({**memory, "required_bytes": memory["rss_rise_bytes"]},
            {"supported": True, "missing": [], "checked_with": "litert", "detail": "runs in LiteRT on this host"}, None)


def _with_margin(ram: dict[str, Any], margin: float) -> dict[str, Any]:
    base = ram.get("arena_min_bytes") or ram.get("arena_bytes")
    if base is None:
        return ram
    required = math.ceil(base * (1 + margin) / ARENA_ALIGNMENT) * ARENA_ALIGNMENT
    return {**ram, "margin": margin, "required_bytes": required}


def bench_file(path: Path, targets: list[Target], data_spec: str | None = None, task: str = "classification",
               runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP, threads: int = 1,
               inputs: Sequence[InputSpec] = ()) -> list[BenchResult]:
    """`edgekit bench`: a model file from anywhere, checked before anything loads it, with the task's first
    metric measured on the test split of `data_spec` (shaped for the model's input) when one is given."""
    from edgekit.recipes import METRICS
    from edgekit.validate import check_model_file, require_model_file

    path = require_model_file(path)  # a folder is named as one
    check_model_file(path)  # before --data reads its input shape: a bad file gets its own line
    x = y = None
    if data_spec:
        from edgekit import data

        dataset = data.load_for_model(data_spec, path, task)
        x, y = dataset.x_test, dataset.y_test
    return bench_targets(path, targets, x, y, runs, warmup, threads, task, METRICS[task][0], inputs=inputs)


def check_fits(model: str, measured: list[BenchResult]) -> None:
    """Exit 3 for `edgekit bench`: one line naming every target the model misses, with the budgets it misses."""
    missed = [f"{r.target} ({', '.join(c.budget for c in r.fit.misses)})" for r in measured if not r.fit.fits]
    if missed:
        from edgekit.errors import BudgetError

        raise BudgetError(f"{model} does not fit {'; '.join(missed)}")
