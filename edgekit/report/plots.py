"""The report's figures. Each function takes values from report.json and returns PNG bytes (or None when
there is nothing to draw); nothing here writes files.

Drawn on matplotlib's Agg canvas without pyplot, so no display, no global figure registry and no backend
switch leak into the caller. The output is byte-identical for the same input: matplotlib's defaults with
one fixed style (not the user's matplotlibrc), the bundled DejaVu font, a fixed dpi and no 'Software'
stamp in the PNG metadata."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgekit.report import latency as latencies

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

DPI = 100
MAX_OPS = 40  # a taller per-op chart stops being readable; the most expensive ops are kept
MAX_ANNOTATED_CLASSES = 30  # above this the confusion matrix cells are too small for their counts
STYLE: dict[RcKeyType, Any] = {
    "font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10, "axes.titleweight": "bold",
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "axes.axisbelow": True, "legend.fontsize": 8, "legend.frameon": False, "figure.facecolor": "white",
}
# One colour per meaning, shared by every figure.
GOOD, BAD, NEUTRAL, ACCENT, BUDGET = "#1a7f37", "#cf222e", "#8c959f", "#0969da", "#cf222e"
VARIANT_COLORS = ("#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#0a3069", "#bc4c00")
BOUND_COLORS = {"compute": "#0969da", "memory": "#bf8700", "overhead": "#8c959f"}
PHASE_COLORS = ("#f6f8fa", "#fff8c5", "#ddf4ff", "#fbefff", "#dafbe1")


def _styled(draw: Callable[..., Any]) -> Callable[..., Any]:
    """Run a drawing function under edgekit's style alone, whatever rcParams the caller has set."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context():
            matplotlib.rcdefaults()
            matplotlib.rcParams.update(STYLE)
            return draw(*args, **kwargs)

    return wrapper


def _figure(width: float, height: float, **subplots: Any):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(**subplots)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _kb(count: float) -> float:
    return count / 1024  # the unit of the budgets (edgekit.verdict)


def _engineering():
    from matplotlib.ticker import EngFormatter

    return EngFormatter(sep="")  # 1.2M rather than 1.2 with a 1e6 offset in the corner


def _thousands(minor: bool = False):
    from matplotlib.ticker import FuncFormatter

    if minor:  # label 2, 5, 20, 50, ... of a log axis, not every minor tick
        return FuncFormatter(lambda value, _: f"{value:,.0f}" if f"{value:.0e}"[0] in "25" else "")
    return FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}")


# --- Accuracy against size ----------------------------------------------------------------------------------

@_styled
def accuracy_vs_size(report: dict[str, Any]) -> bytes:
    """Each variant's metric against its size (filled: the file, hollow: after gzip), with the flash budget."""
    from edgekit.tasks import TASKS

    figure, axes = _figure(8.5, 4.2)
    metric = report["metric"]
    budget = report["budgets"].get("flash_kb")
    sizes: list[float] = []
    for i, variant in enumerate(report["variants"]):
        value = (variant.get("metric") or {}).get("value")
        if value is None:
            continue
        color = VARIANT_COLORS[i % len(VARIANT_COLORS)]
        raw, packed = _kb(variant["size_bytes"]), _kb(variant["gzip_bytes"])
        sizes += [raw, packed]
        selected = variant["name"] == report["selected"]
        marker = "*" if selected else "s" if variant["format"] == "onnx" else "o"
        # Variants often coincide (float32 TFLite and ONNX): the numbers go in the legend, not beside the
        # points, where their labels would overprint each other.
        axes.plot([packed, raw], [value, value], color=color, linewidth=1, alpha=0.6)
        size = 120 if selected else 28 if marker == "s" else 50  # a smaller square shows the dot it covers
        axes.scatter([raw], [value], s=size, color=color, marker=marker, zorder=3 + (marker == "s"), alpha=0.85,
                     label=f"{variant['name']}{' (selected)' if selected else ''}: {variant['format']} "
                           f"{variant['precision']}, {raw:,.1f} KB (gzip {packed:,.1f}), {value:.4f}")
        axes.scatter([packed], [value], s=40, facecolors="white", edgecolors=color, zorder=3)
    if budget is not None:
        axes.axvline(budget, color=BUDGET, linestyle="--", linewidth=1.2, label=f"flash budget {budget:,.0f} KB")
        sizes.append(budget)
    if sizes and max(sizes) / max(min(sizes), 1e-9) > 20:  # a budget far beyond the models: keep them apart
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(_thousands())
        axes.xaxis.set_minor_formatter(_thousands(minor=True))
    else:
        axes.set_xlim(left=0, right=max(sizes, default=1) * 1.25)
    better = "higher" if TASKS[report["task"]].higher_is_better(metric) else "lower"
    axes.set_xlabel("size (KB = 1024 bytes); filled: file, hollow: gzip -9")
    axes.set_ylabel(f"test {metric} ({better} is better)")
    axes.margins(y=0.25)
    title = f"{metric} vs size on {report['dataset']['test']} test samples"
    axes.set_title(title if budget is not None else f"{title} ({report['target']} sets no flash budget)")
    axes.legend(loc="best")
    return _png(figure)


# --- Host latency ---------------------------------------------------------------------------------------

@_styled
def host_latency(report: dict[str, Any]) -> bytes:
    """Each variant's batch-1 host latency as a box-like summary of the figures report.json keeps: a line
    from min to p99, a box from median to p90, a tick at the median and a dot at the mean."""
    variants = report["variants"]
    figure, axes = _figure(8.5, 1.2 + 0.55 * len(variants))
    for row, variant in enumerate(variants):
        stats = variant["latency_ms"]
        color = VARIANT_COLORS[row % len(VARIANT_COLORS)]
        axes.plot([stats["min"], stats["p99"]], [row, row], color=color, linewidth=1.2)
        axes.barh(row, stats["p90"] - stats["median"], left=stats["median"], height=0.4, color=color, alpha=0.35,
                  edgecolor=color)
        axes.plot([stats["median"]] * 2, [row - 0.25, row + 0.25], color=color, linewidth=2.5)
        axes.plot([stats["mean"]], [row], marker="o", color="white", markeredgecolor=color, markersize=5)
        axes.annotate(f"median {stats['median']:.3g}  p90 {stats['p90']:.3g}  p99 {stats['p99']:.3g} ms",
                      (max(stats["p99"], stats["mean"]), row), textcoords="offset points", xytext=(6, -3),
                      fontsize=8)  # one slow outlier can put the mean beyond p99
    axes.set_yticks(range(len(variants)), [v["name"] for v in variants])
    axes.invert_yaxis()
    axes.set_xlim(left=0, right=max(max(v["latency_ms"]["p99"], v["latency_ms"]["mean"]) for v in variants) * 1.6)
    axes.margins(y=0.3)
    first = variants[0]["latency_ms"]
    axes.set_xlabel(f"host latency (ms), batch 1, {first['runs']} runs after {first['warmup']} warm-up, "
                    f"{first['threads']} thread(s): line min to p99, box median to p90, dot mean")
    axes.set_title(f"host latency per variant (this machine, not {report['target']})")
    return _png(figure)


# --- Per-op breakdown -----------------------------------------------------------------------------------

def op_rows(variant: dict[str, Any]) -> list[dict[str, Any]]:
    """The variant's ops in graph order: MACs from the file, and where the target has a latency, its per-op time
    (ms, bound) as bench stored it, with the instructions each op executed when it was emulated (else None)."""
    estimates = {op["index"]: op for op in (variant.get("target_latency") or {}).get("per_op", [])}
    rows = []
    for op in variant.get("structure", {}).get("ops", []):
        estimate = estimates.get(op["index"], {})
        rows.append({"index": op["index"], "op": op["op"], "kind": op["kind"], "macs": op["macs"],
                     "ms": estimate.get("ms"), "bound": estimate.get("bound"),
                     "instructions": estimate.get("instructions")})
    return rows


@_styled
def op_breakdown(variant: dict[str, Any], target: str) -> bytes | None:
    """MACs and the target time of each op of one variant, side by side: estimated time by what bounds it, or
    for an emulated target the instructions each op executed on the emulated core."""
    rows = op_rows(variant)
    if not rows:
        return None
    estimate = variant.get("target_latency") or {}
    kernels = (estimate.get("emulation") or {}).get("kernels") or []
    timed = any(row["ms"] is not None for row in rows) or bool(kernels)
    title_extra = ""
    if len(rows) > MAX_OPS:
        rows = sorted(rows, key=lambda r: (r["ms"] or 0, r["macs"]), reverse=True)[:MAX_OPS]
        rows.sort(key=lambda r: r["index"])
        title_extra = f" (the {MAX_OPS} most expensive of {len(op_rows(variant))} ops)"
    height = 1.3 + 0.24 * max(len(rows), len(kernels))
    figure, panels = _figure(11 if kernels else 8.5, height, ncols=2 if timed else 1, sharey=not kernels,
                             squeeze=False, **({"width_ratios": [1, 1.6]} if kernels else {}))
    labels = [f"#{row['index']} {row['op']}" for row in rows]
    positions = range(len(rows))
    mac_axes = panels[0][0]
    mac_axes.barh(positions, [row["macs"] for row in rows], color=ACCENT)
    mac_axes.set_yticks(positions, labels, fontsize=8)
    mac_axes.invert_yaxis()
    mac_axes.set_xlabel("MACs (from the file)")
    mac_axes.xaxis.set_major_formatter(_engineering())
    mac_axes.set_title(f"{variant['name']}: {variant['macs']:,} MACs{title_extra}")
    if kernels:  # LiteRT on an emulated Cortex-A core: XNNPACK fuses the ops, so the count is per kernel
        kernel_axes = panels[0][1]
        places = range(len(kernels))
        kernel_axes.barh(places, [k["instructions"] for k in kernels],
                         color=[ACCENT if k["threaded"] else NEUTRAL for k in kernels])
        kernel_axes.set_yticks(places, [_short(k["kernel"]) for k in kernels], fontsize=7)
        kernel_axes.invert_yaxis()
        kernel_axes.set_xlabel("instructions, one thread (blue: shared out over threads)")
        kernel_axes.xaxis.set_major_formatter(_engineering())
        kernel_axes.set_title(f"{estimate['instructions']:,} instructions counted on an emulated "
                              f"{estimate['emulation'].get('core', 'core')}\n{target}: {latencies.figure(estimate)}",
                              fontsize=8)
    elif timed and any(row["instructions"] is not None for row in rows):
        time_axes = panels[0][1]
        time_axes.barh(positions, [row["instructions"] or 0 for row in rows], color=ACCENT)
        time_axes.set_xlabel("instructions per op, counted (x CPI / clock = ms)")
        time_axes.xaxis.set_major_formatter(_engineering())
        core = (estimate.get("emulation") or {}).get("core", "core")
        time_axes.set_title(f"{estimate['instructions']:,} instructions counted on an emulated {core}\n"
                            f"{target}: {latencies.figure(estimate)}", fontsize=9)
    elif timed:
        time_axes = panels[0][1]
        time_axes.barh(positions, [row["ms"] or 0 for row in rows],
                       color=[BOUND_COLORS.get(row["bound"], NEUTRAL) for row in rows])
        time_axes.set_xlabel(f"{latencies.basis(estimate)} ms per op")
        time_axes.set_title(f"{latencies.figure(estimate)} on {target}")
        from matplotlib.patches import Patch

        time_axes.legend(handles=[Patch(color=c, label=f"{b}-bound") for b, c in BOUND_COLORS.items()],
                         loc="lower right")
    return _png(figure)


def _short(kernel: str, width: int = 48) -> str:
    """An XNNPACK microkernel's name without the words every one has (`xnn_`, `_minmax`, `_fp32`, `_ukernel`),
    cut to `width` characters."""
    name = kernel.removeprefix("xnn_")
    for word in ("_minmax", "_fp32", "_ukernel"):
        name = name.replace(word, "")
    return name if len(name) <= width else name[:width - 1] + "…"


# --- RAM and flash --------------------------------------------------------------------------------------

def ram_parts(ram: dict[str, Any]) -> list[tuple[str, int]]:
    """The RAM figure split into what it is made of, in bytes, summing to `required_bytes`: TFLite Micro's
    persistent and non-persistent (activation) arena, the kernels' scratch the bisected arena adds, and the
    profile's margin; for LiteRT, the one resident-set rise the process measured; on an emulated core, the
    32-bit arena it used, rounded up to 16 bytes (the split above is the host's, 64-bit: not shown)."""
    required = ram.get("required_bytes")
    if required is None:
        return []
    if ram.get("basis") == latencies.EMULATED:
        return [(EMULATED_ARENA, required)]
    if "persistent_bytes" not in ram:
        return [("resident set rise", required)]
    parts = [("persistent", ram["persistent_bytes"] or 0), ("non-persistent (activations)",
                                                            ram["nonpersistent_bytes"] or 0)]
    arena = ram.get("arena_min_bytes") or ram.get("arena_bytes") or 0
    parts.append(("kernel scratch", max(arena - sum(n for _, n in parts), 0)))
    parts.append(("margin", max(required - max(arena, sum(n for _, n in parts)), 0)))
    return [(name, count) for name, count in parts if count]


EMULATED_ARENA = "tensor arena (emulated core, 32-bit)"
RAM_COLORS = {"persistent": "#0969da", "non-persistent (activations)": "#54aeff", "kernel scratch": "#9a6700",
              "margin": "#d0d7de", "resident set rise": "#0969da", EMULATED_ARENA: "#0969da"}


@_styled
def memory(report: dict[str, Any], variant: dict[str, Any]) -> bytes:
    """RAM (its parts) and flash of one variant, each against its budget on its own axis."""
    budgets = report["budgets"]
    figure, (ram_axes, flash_axes) = _figure(8.5, 3.0, nrows=2)
    parts = ram_parts(variant["ram"])
    left = 0.0
    for name, count in parts:
        ram_axes.barh(0, _kb(count), left=left, height=0.5, color=RAM_COLORS[name], label=f"{name} {_kb(count):,.1f}")
        left += _kb(count)
    ram_note = f"{left:,.1f} KB ({variant['ram'].get('basis', 'measured')})" if parts else \
        f"not measured: {variant['ram'].get('note', '')}"
    if parts and variant["ram"].get("arena_host_bytes"):  # emulated: the host's 64-bit arena beside it
        ram_note = f"{ram_note[:-1]} 32-bit arena; {_kb(variant['ram']['arena_host_bytes']):,.1f} KB on this host)"
    _budget_axes(ram_axes, "RAM", left, budgets.get("ram_kb"), ram_note)
    if parts:
        figure.legend(loc="outside lower center", ncols=len(parts))
    flash = _kb(variant["flash"]["model_bytes"])
    flash_axes.barh(0, flash, height=0.5, color="#8250df")
    _budget_axes(flash_axes, "flash", flash, budgets.get("flash_kb"), f"{flash:,.1f} KB model file")
    figure.suptitle(f"{variant['name']}: RAM and flash against {report['target']}'s budgets", fontweight="bold",
                    fontsize=10)
    return _png(figure)


def _budget_axes(axes, name: str, value: float, budget: float | None, note: str) -> None:
    axes.set_yticks([0], [name])
    axes.set_ylim(-0.6, 0.6)
    end = max(value, budget or 0) or 1
    axes.set_xlim(0, end * 1.12)
    if budget is not None:
        axes.axvline(budget, color=BUDGET, linestyle="--", linewidth=1.2)
        share = value / budget if budget else 0
        note = f"{note} of {budget:,.0f} KB budget ({share:.1%})"
        axes.annotate("budget", (budget, 0.45), textcoords="offset points", xytext=(3, 0), color=BUDGET, fontsize=8)
    else:
        note += ", no budget"
    axes.annotate(note, (value, 0), textcoords="offset points", xytext=(6, -3), fontsize=8)
    axes.set_xlabel("KB (1024 bytes)")
    axes.xaxis.set_major_formatter(_thousands())


# --- Confusion matrix -----------------------------------------------------------------------------------

@_styled
def confusion_matrix(section: dict[str, Any]) -> bytes:
    """The confusion matrix (rows: true class, columns: predicted), coloured by the share of each true class."""
    import numpy as np

    matrix = np.asarray(section["matrix"], dtype=np.int64)
    classes = section["classes"]
    side = min(max(3.2, 0.32 * len(classes) + 1.8), 9)
    figure, axes = _figure(side + 1.2, side)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.grid(False)
    ticks = range(len(classes))
    axes.set_xticks(ticks, classes, rotation=90 if max(map(len, classes), default=0) > 3 else 0)
    axes.set_yticks(ticks, classes)
    if len(classes) <= MAX_ANNOTATED_CLASSES:
        for (row, column), count in np.ndenumerate(matrix):
            if count:
                axes.text(column, row, str(count), ha="center", va="center", fontsize=8,
                          color="white" if shares[row, column] > 0.5 else "black")
    correct = int(np.trace(matrix))
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"{section.get('variant', '')} on {matrix.sum()} test samples: {correct} correct "
                   f"({correct / max(matrix.sum(), 1):.2%})".strip())
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class")
    return _png(figure)


# --- Training curves ------------------------------------------------------------------------------------

def curve_names(training: dict[str, Any]) -> list[str]:
    """The quantities the histories hold (loss first), each with or without its val_ twin."""
    names: list[str] = []
    for phase in training.values():
        for key in phase.get("history", {}):
            name = key.removeprefix("val_")
            if name not in names:
                names.append(name)
    return sorted(names, key=lambda n: (n != "loss", n))


@_styled
def training_curves(training: dict[str, Any]) -> bytes | None:
    """Training and validation curves of every phase (float, prune, qat, ...) end to end, phases shaded."""
    names = curve_names(training)
    if not names:
        return None
    figure, panels = _figure(8.5, 3.2, ncols=len(names), squeeze=False)
    for axes, name in zip(panels[0], names, strict=True):
        start, spans = 0, []
        for i, (phase, info) in enumerate(training.items()):
            history = info.get("history", {})
            epochs = max((len(v) for v in history.values()), default=0)
            if not epochs:
                continue
            axes.axvspan(start + 0.5, start + epochs + 0.5, color=PHASE_COLORS[i % len(PHASE_COLORS)], zorder=0)
            spans.append((start + (epochs + 1) / 2, phase))
            x = range(start + 1, start + epochs + 1)
            for key, style, label in ((name, "-", "train"), (f"val_{name}", "--", "validation")):
                if history.get(key):
                    axes.plot(list(x)[:len(history[key])], history[key], style, color=ACCENT if style == "-" else
                              "#bf3989", marker=".", markersize=4, label=label if i == 0 else None)
            start += epochs
        phases = axes.secondary_xaxis("top")  # phase names above the plot, where no curve can hide them
        phases.set_xticks([x for x, _ in spans], [phase for _, phase in spans], fontsize=8, color="#57606a")
        phases.tick_params(length=0)
        axes.set_xlabel("epoch (all phases, in order)")
        axes.set_title(name)
        axes.legend(loc="best")
    return _png(figure)


# --- All of them ------------------------------------------------------------------------------------------

PLOTS = ("accuracy_vs_size", "host_latency", "op_breakdown", "memory", "confusion_matrix", "training_curves")


def figures(report: dict[str, Any]) -> dict[str, bytes]:
    """Every figure the report has data for, by name (PLOTS, in that order)."""
    selected = next(v for v in report["variants"] if v["name"] == report["selected"])
    drawn = {
        "accuracy_vs_size": accuracy_vs_size(report),
        "host_latency": host_latency(report),
        "op_breakdown": op_breakdown(selected, report["target"]),
        "memory": memory(report, selected),
        "confusion_matrix": confusion_matrix(report["confusion_matrix"]) if report.get("confusion_matrix") else None,
        "training_curves": training_curves(report.get("training", {})),
    }
    return {name: png for name, png in drawn.items() if png is not None}


# --- Sweep (edgekit sweep's sweep.html) ---------------------------------------------------------------------

@_styled
def sweep_front(summary: dict[str, Any], target: str) -> bytes | None:
    """One target of a sweep: each built point's metric against its target latency there, marker area by
    the RAM it needs, the Pareto front joined and labelled, points that miss a budget as red crosses. None
    when no built point has a latency estimate for the target."""
    rows = [{"point": row["point"], **row["targets"][target]} for row in summary["points"]
            if target in row.get("targets", {}) and row["targets"][target].get("latency_ms") is not None]
    if not rows:
        return None
    front = summary["per_target"][target]["front"]
    figure, axes = _figure(8.5, 4.4)
    largest = max((row["ram_bytes"] or 0) for row in rows) or 1

    def area(row):  # 30 to 400 points^2, by the square root so that area grows with RAM
        return 30 + 370 * ((row["ram_bytes"] or 0) / largest) ** 0.5

    groups = (("on the Pareto front", [r for r in rows if r["point"] in front], ACCENT, "o"),
              ("fits, not on the front", [r for r in rows if r["fits"] and r["point"] not in front], NEUTRAL, "o"),
              ("misses a budget", [r for r in rows if not r["fits"]], BAD, "X"))
    for label, group, color, marker in groups:
        if group:
            axes.scatter([r["latency_ms"] for r in group], [r["metric"] for r in group], s=[area(r) for r in group],
                         color=color, marker=marker, alpha=0.75, edgecolors="white", linewidths=0.8, zorder=3,
                         label=f"{label} ({len(group)})")
    on_front = sorted((r for r in rows if r["point"] in front), key=lambda r: r["latency_ms"])
    if len(on_front) > 1:
        axes.plot([r["latency_ms"] for r in on_front], [r["metric"] for r in on_front], color=ACCENT,
                  linewidth=1, alpha=0.6, zorder=2)
    for row in rows:
        ram = f", {_kb(row['ram_bytes']):,.1f} KB RAM" if row["ram_bytes"] else ""
        axes.annotate(f"{row['point'].rsplit('-', 1)[-1]}{ram}", (row["latency_ms"], row["metric"]),
                      textcoords="offset points", xytext=(7, 5), fontsize=7,
                      color=ACCENT if row["point"] in front else "#57606a")
    latencies = [r["latency_ms"] for r in rows]
    if max(latencies) / max(min(latencies), 1e-9) > 20:
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(_thousands())
        axes.xaxis.set_minor_formatter(_thousands(minor=True))
    better = "higher" if summary.get("higher_is_better", True) else "lower"
    axes.set_xlabel(f"target latency on {target} (ms)")
    axes.set_ylabel(f"test {summary.get('metric', 'metric')} ({better} is better)")
    axes.margins(x=0.15, y=0.2)
    axes.set_title(f"{target}: {summary.get('metric', 'metric')} vs target latency (marker area: RAM)")
    axes.legend(loc="best", markerscale=0.6)
    return _png(figure)
