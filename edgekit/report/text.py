"""Reports are pure: functions that turn report.json (edgekit.report.contract) into Markdown and rows for the
terminal tables, and a bench result into the lines `edgekit bench` prints. Nothing here prints or writes."""

from __future__ import annotations

import os
import platform
from typing import TYPE_CHECKING, Any

from edgekit.report import latency as latencies
from edgekit.units import count_text, kib_text, size_text

if TYPE_CHECKING:
    from edgekit.bench import BenchResult

COLUMNS = ("variant", "format", "precision", "size", "gzip", "sparsity", "metric", "host ms median / p90",
           "target ms", "fits")


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


def columns(metric: str) -> tuple[str, ...]:
    """The variant table's header, with the recipe's metric named."""
    return tuple(metric if c == "metric" else c for c in COLUMNS)


def variant_row(variant: dict[str, Any]) -> tuple[str, ...]:
    latency = variant["latency_ms"]
    metric = variant.get("metric")
    return (
        variant["name"], variant["format"], variant["precision"], size_text(variant["size_bytes"]),
        size_text(variant["gzip_bytes"]), f"{variant['sparsity']:.1%}",
        "n/a" if metric is None else f"{metric['value']:.4f}",
        f"{latency['median']:.3f} / {latency['p90']:.3f}",
        _estimate(variant.get("target_latency")),
        "-" if "fit" not in variant else "yes" if variant["fit"]["fits"] else "no",
    )


def _estimate(estimate: dict[str, Any] | None) -> str:
    """`121 x/÷1.7 (emulated)` or `41.2 ±30% (estimated)` (the column says ms)."""
    return "-" if not estimate else latencies.figure(estimate, unit="")


def to_markdown(report: dict[str, Any]) -> str:
    data, host_info = report["dataset"], report["host"]
    ram = latencies.ram_figure(_selected(report)["ram"], latencies.core_of(_selected(report)))
    lines = [
        f"# edgekit build: {report['recipe']} for {', '.join(t['target'] for t in report['targets'])}",
        "",
        f"Dataset `{data['name']}`: {data['train']} train / {data['val']} validation / {data['test']} test "
        f"samples (every {report['metric']} below is on the same {data['test']} test samples). "
        f"Task {report['task']}. Seed {report['seed']}.",
        "",
        "| " + " | ".join(columns(report["metric"])) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(variant_row(v)) + " |" for v in report["variants"]),
        "",
        f"**Ship `{report['selected']}`** to {report['target']}: {report['selection_reason']}.",
        "",
        f"## Fit of `{report['selected']}` on {report['target']}",
        *(f"- {c['budget']}: {c['summary']}" for c in _selected(report)["fit"]["checks"]),
        "",
        "## How these were measured",
        f"- Host: {host_info['cpu']}, {host_info['cores']} cores, {host_info['system']}, "
        f"Python {host_info['python']}. Latencies are host figures, not {report['target']} figures.",
        "- Latency: batch 1, LiteRT interpreter for .tflite (XNNPACK), ONNX Runtime for .onnx; warm-up runs "
        "discarded, then median / p90 / p99 over the timed runs (see report.json).",
        "- Sparsity: share of exactly-zero weights in the conv and dense kernels, read back from each file.",
        "- gzip: the file after gzip -9; pruning shows here, not in the raw flatbuffer size.",
        *(f"- {line}" for line in latencies.method_lines(_estimates(report))),
        "- The method of each target latency, and the published measurements it was fitted to, are in report.json "
        "and the target file.",
        *([f"- RAM on {report['target']}: {ram}"] if ram else []),
        "",
        "## Training",
        *(f"- {phase}: {info['epochs']} epochs, final val loss {info['val_loss']:.4f}"
          + (f", val accuracy {info['val_accuracy']:.4f}" if info.get("val_accuracy") is not None else "")
          + f", {info['seconds']:.1f} s" for phase, info in report["training"].items()),
    ]
    lines += ["", "## Across targets",
              f"The table above and the fit below are {report['target']}'s; every target's selected variant, "
              "those that fit first, then by target latency:", "",
              "| " + " | ".join(CROSS_TARGET_COLUMNS) + " |", "|" + "---|" * len(CROSS_TARGET_COLUMNS),
              *("| " + " | ".join(cross_target_row(row)) + " |" for row in report["cross_target"])]
    if report.get("optimization"):
        lines += ["", "## Optimization", *(f"- {line}" for line in optimization_lines(report["optimization"]))]
    for check in report.get("checks", []):
        lines.append(f"- check: {check}")
    return "\n".join(lines) + "\n"


def optimization_lines(section: dict[str, Any]) -> list[str]:
    """What each optimization step did and which layers it left alone, one line each (the `optimization`
    section of report.json, or `edgekit optimize`'s report)."""
    lines = []
    for step in section.get("steps", []):
        metric = step["metric"]
        lines.append(f"{step['step']}: {metric['split']} {metric['name']} {metric['before']:.4f} -> "
                     f"{metric['after']:.4f} in {step['seconds']:.1f} s")
    if section.get("pruned_layers"):
        lines.append(f"pruned: {', '.join(section['pruned_layers'])}")
    for layer, reason in section.get("kept_dense_reasons", {}).items():
        lines.append(f"kept dense: {layer} ({reason})")
    if section.get("left_to_converter"):
        layers = ", ".join(f"{entry['layer']} ({entry['type']})" for entry in section["left_to_converter"])
        lines.append(f"not quantization-aware (tfmot cannot wrap them; the converter calibrates them): {layers}")
    return lines


def _estimates(report: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    """(target, target latency) of every variant on every target of a report."""
    return [(t["target"], v.get("target_latency")) for t in report["targets"] for v in t["variants"]]


def _selected(report: dict[str, Any]) -> dict[str, Any]:
    return next(v for v in report["variants"] if v["name"] == report["selected"])


def model_lines(result: BenchResult) -> list[str]:
    """What `edgekit bench` prints about the model itself: the same on every target."""
    latency, metric = result.latency_ms, result.metric
    lines = [
        f"{result.file}: {result.format} {result.precision}, {size_text(result.size_bytes)} "
        f"(gzip {size_text(result.gzip_bytes)}), {result.params:,} params, {result.macs:,} MACs "
        f"+ {result.element_ops:,} element ops, weight sparsity {result.sparsity:.1%}",
        f"ops: {', '.join(f'{op} x{n}' for op, n in result.structure['op_counts'].items())}",
        f"host latency: {latency.median:.3f} ms median, {latency.p90:.3f} p90, {latency.p99:.3f} p99 "
        f"({latency.runs} runs after {latency.warmup} warm-up, {count_text(latency.threads, 'thread')}, host)",
    ]
    if metric is not None:
        lines.append(f"{metric['name']}: {metric['value']:.4f} on the given test data (host)")
    fed = (result.feeds or {}).get("inputs", [])
    if len(fed) > 1 or any(f["source"] not in ("zeros", "data") for f in fed):
        lines.append("inputs: " + "; ".join(_fed(f) for f in fed))
    if (result.feeds or {}).get("state_method"):
        lines.append(f"host latency is {result.feeds['state_method']}")  # type: ignore[index]
    return lines


def _fed(feed: dict[str, Any]) -> str:
    """'state [2x1x128] float32, zeros, then stateN fed back'."""
    shape = "x".join(str(d) for d in feed["shape"]) or "scalar"
    back = f", then {feed['state_from']} fed back" if feed.get("state_from") else ""
    return f"{feed['name']} [{shape}] {feed['dtype']}, {feed['source']}{back}"


def target_lines(result: BenchResult) -> list[str]:
    """What `edgekit bench` prints for the model on one target: the target latency (emulated or estimated, its
    band, and for an emulated one the instructions counted and what counted them), the RAM when an emulated
    core measured it, and each budget."""
    estimate, verdict = result.target_latency, result.fit
    lines = []
    if estimate:
        described = estimate.to_dict()
        lines.append(f"target latency on {result.target}: {latencies.range_text(described)}, {estimate.runtime}")
        counted = latencies.counted(described)
        if counted:
            lines.append(f"  {counted}")
        ram = latencies.ram_figure(result.ram, (described.get("emulation") or {}).get("core"))
        if ram:
            lines.append(f"RAM on {result.target}: {ram}")
        heap = latencies.heap_figure(result.ram)
        if heap:
            lines.append(f"LiteRT heap on {result.target}: {heap}")
    lines.append(f"{result.target}: {'FITS' if verdict.fits else 'DOES NOT FIT'}")
    lines += [f"  {check.budget:<9} {'ok  ' if check.ok else 'MISS' if check.ok is False else '-   '} "
              f"{check.summary}" for check in verdict.checks]
    return lines


CROSS_TARGET_COLUMNS = ("target", "fits", "ship", "latency (target)", "RAM", "flash", "ops", "misses")


def cross_target_row(row: dict[str, Any]) -> tuple[str, ...]:
    """One `cross_target` entry as a row under CROSS_TARGET_COLUMNS, each figure beside its budget."""
    estimate, budgets = row["latency_ms_estimate"], row.get("budgets", {})
    latency = {"ms": estimate, "basis": row.get("latency_basis"), "band": row.get("latency_band"),
               "expected_error": row["latency_expected_error"]}
    emulated_ram = " (emulated)" if row.get("ram_basis") == latencies.EMULATED else ""
    return (row["target"], "yes" if row["fits"] else "NO", row["selected"],
            latencies.figure(latency, budget=_of_ms(budgets.get("latency_ms"))) if estimate is not None else "-",
            size_text(row["ram_bytes"]) + _of_kb(budgets.get("ram_kb")) + emulated_ram if row["ram_bytes"] is not None
            else "-",
            size_text(row["flash_bytes"]) + _of_kb(budgets.get("flash_kb")),
            "ok" if row["ops_supported"] else "NO", ", ".join(row["misses"]) or "-")


def _of_ms(limit: float | None) -> str:
    return f" of {limit:g} ms" if limit is not None else ""


def _of_kb(limit: float | None) -> str:
    """' of <budget>' for a budget in KB (KiB, as target profiles give it), written as sizes are."""
    return "" if limit is None else f" of {kib_text(limit)}"
