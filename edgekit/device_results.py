"""Device results as `edgekit compare` reads them: the JSON `bench_on_device.py` writes (single-board computers),
the log of TensorFlow Lite's `benchmark_model` (phones, through `bench_android.sh`), or the serial log of the
microcontroller application (one JSON line per run with "latency_ms"); and what a result says of where it ran
(runtime, device class, instruction set), against what a target is."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

from edgekit.errors import UsageError, require_file
from edgekit.targets import DeviceClass

# benchmark_model's summary lines (tensorflow/lite/tools/benchmark/benchmark_model.cc, benchmark_tflite_model.cc).
# Lines may carry a prefix ("INFO: ", logcat's "I tflite  : "); numbers may be printed as 1.24027e+06.
_NUMBER = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_TIMINGS = re.compile(rf"Inference timings in us: Init: {_NUMBER}, First inference: {_NUMBER}, "
                      rf"Warmup \(avg\): {_NUMBER}, Inference \(avg\): {_NUMBER}")
_MEMORY = re.compile(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                     rf"init={_NUMBER} overall={_NUMBER}")
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUMBER}")
_SESSION = re.compile(rf"Initialized session in {_NUMBER}\s*ms")
_COUNT = re.compile(r"count=(\d+)(.*)")
_FIELD = re.compile(rf"(\w+)={_NUMBER}")
_GRAPH = re.compile(r"Graph: \[([^\]]*)\]")
_THREADS = re.compile(r"Num threads: \[(\d+)\]")
_EDGEKIT = re.compile(r"edgekit: (\w+)=(.*)")


def parse_benchmark_model_log(text: str) -> dict[str, Any]:
    """The figures of one `benchmark_model` run: init and inference timings (ms), the timed runs' statistics
    and the memory footprint lines (MB, as the tool prints them)."""
    timings = _TIMINGS.search(text)
    if not timings:
        raise UsageError("no 'Inference timings in us: Init: ..., Inference (avg): ...' line; is this the whole "
                         "log of a benchmark_model run that finished?")
    init_us, first_us, warmup_us, inference_us = (float(v) for v in timings.groups())
    result: dict[str, Any] = {"init_ms": init_us / 1e3, "first_ms": first_us / 1e3, "warmup_avg_ms": warmup_us / 1e3,
                              "inference_avg_ms": inference_us / 1e3}
    counts = [dict((k, float(v)) for k, v in _FIELD.findall(match.group(2))) | {"count": int(match.group(1))}
              for match in _COUNT.finditer(text)]
    timed = [c for c in counts if "avg" in c]  # the warm-up line has no avg
    if timed:
        last = timed[-1]
        result["runs"] = last["count"]
        result["stats_ms"] = {k: last[k] / 1e3 for k in ("min", "max", "avg", "std", "p5", "median", "p95")
                              if k in last}
    if session := _SESSION.search(text):
        result["session_init_ms"] = float(session.group(1))
    if memory := _MEMORY.search(text):
        result["memory_mb"] = {"init": float(memory.group(1)), "overall": float(memory.group(2))}
    if peak := _PEAK.search(text):
        result["peak_memory_mb"] = float(peak.group(1))
    if graph := _GRAPH.search(text):
        result["model"] = Path(graph.group(1)).name
    if threads := _THREADS.search(text):
        result["threads"] = int(threads.group(1))
    for key, value in _EDGEKIT.findall(text):
        result.setdefault("device", {})[key] = value.strip()
    return result


def parse_serial_log(text: str) -> list[dict[str, Any]]:
    """The JSON lines with a "latency_us" (edgekit's application) or "latency_ms" that a microcontroller
    prints; other lines (boot messages, a line cut short) are skipped."""
    records = []
    for line in text.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("latency_us"), int | float):
            record = {**record, "latency_ms": record["latency_us"] / 1000}  # what edgekit's MCU app prints
        if isinstance(record, dict) and isinstance(record.get("latency_ms"), int | float):
            records.append(record)
    return records


def read_result(path: Path) -> dict[str, Any]:
    """Any device result, in one shape: kind, model (file name, when the result says), measured latency
    (ms, with the statistic used), memory (bytes, with what it measures), threads, device, runtime."""
    path = Path(path)
    require_file(path, "result file", "give the file in it: bench_on_device.py's JSON, a benchmark_model log or a "
                 "serial log")
    text = path.read_text(errors="replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and data.get("tool") == "bench_on_device.py":
        latency = data["latency_ms"]
        return {"kind": "bench_on_device.py", "file": path.name, "model": data.get("model"),
                "sha256": data.get("model_sha256"), "latency_ms": latency["median"], "statistic": "median",
                "latency": latency, "memory_bytes": data.get("memory", {}).get("rss_rise_bytes"),
                "memory_what": "peak resident set rise", "threads": data.get("threads"),
                "device": data.get("device", {}).get("cpu"), "os": data.get("device", {}).get("os"),
                "machine": data.get("device", {}).get("machine"), "created": data.get("created"),
                "runtime": f"{data.get('runtime', {}).get('name')} {data.get('runtime', {}).get('version')}"}
    if "Inference timings in us" in text:
        log = parse_benchmark_model_log(text)
        stats = log.get("stats_ms", {})
        statistic = "median" if "median" in stats else "avg"
        memory = log.get("memory_mb", {}).get("overall")
        device = log.get("device", {})
        return {"kind": "benchmark_model", "file": path.name, "model": log.get("model"), "sha256": None,
                "latency_ms": stats.get("median", log["inference_avg_ms"]), "statistic": statistic,
                "latency": log, "memory_bytes": None if memory is None else memory * 2**20,
                "memory_what": "benchmark_model's memory footprint delta (overall)", "threads": log.get("threads"),
                "device": " ".join(v for k, v in device.items() if k in ("device", "soc")) or None,
                "os": device.get("android") and f"Android {device['android']}", "runtime": "benchmark_model",
                "machine": device.get("abi")}
    records = parse_serial_log(text)
    if records:
        latencies = [float(r["latency_ms"]) for r in records]
        arena = next((r[k] for r in records for k in ("arena_bytes", "arena_used_bytes", "arena_used") if k in r), None)
        model = next((r["model"] for r in records if isinstance(r.get("model"), str)), None)
        return {"kind": "serial log", "file": path.name, "model": model, "sha256": None,
                "latency_ms": statistics.median(latencies), "statistic": "median",
                "latency": {"runs": len(latencies), "median": statistics.median(latencies), "min": min(latencies),
                            "max": max(latencies)},
                "memory_bytes": arena, "memory_what": "tensor arena the application reports",
                "threads": 1, "device": None, "os": None, "runtime": "TFLite Micro"}
    raise UsageError(f"'{path}' is not a device result: expected the JSON of bench_on_device.py, a benchmark_model "
                     "log (with its 'Inference timings in us' line) or a serial log of JSON lines with "
                     "\"latency_ms\"")


# What a result says of where it ran, against what the target is: a measurement of another runtime, device class
# or instruction set cannot be this target's (`edgekit compare` refuses it unless --force).
_ARCH = {"x86_64": "x86-64", "amd64": "x86-64", "x86": "x86", "i686": "x86", "i386": "x86", "aarch64": "aarch64",
         "arm64": "aarch64", "arm64-v8a": "aarch64", "armv7l": "arm32", "armv8l": "arm32", "armv6l": "arm32",
         "armeabi-v7a": "arm32"}


def _target_arches(target) -> tuple[str, ...] | None:
    """The instruction sets a measurement of `target` may have run (a Cortex-A board may run a 32-bit OS);
    None where the profile's cpu.arch says too little to judge."""
    arch = target.cpu.arch.lower()
    if target.device_class.value == "mcu":
        return None
    if arch.startswith(("armv8", "armv9")):
        return ("aarch64", "arm32")
    if arch.startswith("armv7"):
        return ("arm32",)
    return ("x86-64", "x86") if arch.startswith(("x86", "amd64")) else None


def mismatches(result: dict[str, Any], target) -> list[str]:
    """Why `result` cannot be a measurement of `target`, in words; empty when nothing says so."""
    problems = []
    micro = result["kind"] == "serial log"
    runtime = "tflite-micro" if micro else "litert"
    if runtime != target.runtime.value:
        problems.append(f"the result ran {'TFLite Micro' if micro else 'LiteRT'} ({result['kind']}), "
                        f"{target.name} runs {target.runtime.value}")
    measured_class = "mcu" if micro else "phone" if (result.get("os") or "").startswith("Android") else None
    if measured_class and measured_class != target.device_class.value:
        problems.append(f"the result comes from {DeviceClass(measured_class).noun}, {target.name} is "
                        f"{target.device_class.noun}")
    arch, allowed = _ARCH.get(str(result.get("machine") or "").lower()), _target_arches(target)
    if arch and allowed and arch not in allowed:
        problems.append(f"the result was measured on {arch} ({result.get('machine')}), {target.name}'s "
                        f"{target.cpu.core} runs {' or '.join(allowed)} code")
    return problems
