"""Reports are pure: functions that turn build results into a dict (report.json, the contract later
tools read), Markdown, and rows for the terminal table. Nothing here prints or writes."""

from __future__ import annotations

import os
import platform
from typing import Any

SCHEMA_VERSION = 1

COLUMNS = ("variant", "format", "precision", "size", "gzip", "sparsity", "accuracy", "host ms median / p90")


def host() -> dict[str, Any]:
    """The machine the host figures were measured on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "machine": platform.machine(), "cores": os.cpu_count(),
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def variant_row(variant: dict[str, Any]) -> tuple[str, ...]:
    latency = variant["latency_ms"]
    accuracy = variant.get("accuracy")
    return (
        variant["name"], variant["format"], variant["precision"], _size(variant["size_bytes"]),
        _size(variant["gzip_bytes"]), f"{variant['sparsity']:.1%}",
        "n/a" if accuracy is None else f"{accuracy:.4f}",
        f"{latency['median']:.3f} / {latency['p90']:.3f}",
    )


def to_markdown(report: dict[str, Any]) -> str:
    data, host_info = report["dataset"], report["host"]
    lines = [
        f"# edgekit build: {report['recipe']} for {report['target']}",
        "",
        f"Dataset `{data['name']}`: {data['train']} train / {data['val']} validation / {data['test']} test "
        f"samples (every accuracy below is on the same {data['test']} test samples). Seed {report['seed']}.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(variant_row(v)) + " |" for v in report["variants"]),
        "",
        f"**Ship `{report['selected']}`** to {report['target']}: {report['selection_reason']}.",
        "",
        "## How these were measured",
        f"- Host: {host_info['cpu']}, {host_info['cores']} cores, {host_info['system']}, "
        f"Python {host_info['python']}. Latencies are host figures, not {report['target']} figures.",
        "- Latency: batch 1, LiteRT interpreter for .tflite (XNNPACK), ONNX Runtime for .onnx; warm-up runs "
        "discarded, then median / p90 / p99 over the timed runs (see report.json).",
        "- Sparsity: share of exactly-zero weights in the conv and dense kernels, read back from each file.",
        "- gzip: the file after gzip -9; pruning shows here, not in the raw flatbuffer size.",
        "",
        "## Training",
        *(f"- {phase}: {info['epochs']} epochs, final val accuracy {info['val_accuracy']:.4f}, "
          f"{info['seconds']:.1f} s" for phase, info in report["training"].items()),
    ]
    for check in report.get("checks", []):
        lines.append(f"- check: {check}")
    return "\n".join(lines) + "\n"


def _size(count: int) -> str:
    return f"{count / 1024:.1f} KiB" if count >= 1024 else f"{count} B"
