"""Benchmark one artifact on this host: size, sparsity read back from the file, accuracy on a test
set (batched), and batch-1 latency with warm-up runs discarded."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgekit._files import gzip_size
from edgekit.inspect import ModelInfo, inspect_model
from edgekit.runtime import open_runner

DEFAULT_RUNS = 200
DEFAULT_WARMUP = 20


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
    accuracy: float | None
    latency_ms: LatencyStats

    def to_dict(self) -> dict:
        return asdict(self)


def precision_of(info: ModelInfo) -> str:
    """What the file itself says: int8 when its weights are int8, float16 for fp16 weights."""
    if "int8" in info.weight_dtypes:
        return "int8"
    if "float16" in info.weight_dtypes:
        return "float16"
    return "float32"


def measure_latency(call, runs: int, warmup: int, threads: int) -> LatencyStats:
    for _ in range(warmup):
        call()
    samples = np.empty(runs, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(runs):
        started = clock()
        call()
        samples[i] = clock() - started
    return LatencyStats.from_samples(samples, warmup, threads)


def accuracy(runner, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(runner.predict(x).argmax(-1) == y))


def bench(path: Path, x_test: np.ndarray | None = None, y_test: np.ndarray | None = None,
          runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP, threads: int = 1) -> BenchResult:
    path = Path(path)
    content = path.read_bytes()
    info = inspect_model(path)
    runner = open_runner(path, threads)
    sample = x_test[0] if x_test is not None else _zeros_like_input(info)
    return BenchResult(
        file=path.name, format=info.format, precision=precision_of(info), size_bytes=len(content),
        gzip_bytes=gzip_size(content), sparsity=info.weight_sparsity, params=info.params, macs=info.macs,
        accuracy=accuracy(runner, x_test, y_test) if y_test is not None else None,
        latency_ms=measure_latency(runner.prepare(sample), runs, warmup, threads),
    )


def _zeros_like_input(info: ModelInfo) -> np.ndarray:
    return np.zeros(info.inputs[0].shape[1:], dtype=np.float32)
