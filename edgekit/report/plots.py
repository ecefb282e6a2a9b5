"""The report's figures. Each function takes values from report.json and returns PNG bytes (or None when
there is nothing to draw); nothing here writes files. The figures whose layout the tests check are made by a
`*_figure` function (a matplotlib Figure, see edgekit.report.plotstyle.drawn) that the PNG one wraps.

Drawn in edgekit.report.plotstyle's style: deterministic, no pyplot, no display."""

from __future__ import annotations

from typing import Any

from edgekit.report import latency as latencies
from edgekit.report.plotstyle import (
    ACCENT,
    BOUND_COLORS,
    BOUND_LABELS,
    BUDGET,
    NEUTRAL,
    PHASE_COLORS,
    VARIANT_COLORS,
    _engineering,
    _figure,
    _kb,
    _png,
    _styled,
    _thousands,
    share_text,
)
from edgekit.units import count_text, kib_text, size_text

MAX_OPS = 40  # a taller per-op chart stops being readable; the most expensive ops are kept
MAX_ANNOTATED_CLASSES = 30  # above this the confusion matrix cells are too small for their counts


# --- Accuracy against size ----------------------------------------------------------------------------------

def accuracy_figure(report: dict[str, Any]):
    """Each variant's metric against its size (filled: the file, hollow: after gzip), the flash budget, the float
    model's metric with, for accuracy, its sampling noise on the test split, and a second axis in points behind
    it. Variants that would hide each other (float32 TFLite and ONNX: same metric, sizes within a pixel or two)
    are drawn a few points apart vertically, and the figure says so."""
    from matplotlib.transforms import offset_copy

    from edgekit.tasks import TASKS

    figure, axes = _figure(8.5, 4.4)
    metric, task = report["metric"], TASKS[report["task"]]
    budget = report["budgets"].get("flash_kb")
    points = [(i, v, v["metric"]["value"]) for i, v in enumerate(report["variants"])
              if (v.get("metric") or {}).get("value") is not None]
    reference = _float_reference(report)
    sizes = [s for _, v, _ in points for s in (_kb(v["size_bytes"]), _kb(v["gzip_bytes"]))] + [budget] * (
        budget is not None)
    _size_axis(axes, sizes)
    values = [value for _, _, value in points] + [reference] * (reference is not None)
    low, high = min(values, default=0), max(values, default=1)
    if reference is not None and metric == "accuracy" and report["dataset"]["test"]:
        # A test accuracy is a share of n samples: its standard error is sqrt(p(1-p)/n). The band is what another
        # draw of n samples could give the float model, so a drop inside it is within the test set's noise.
        noise = 2 * (reference * (1 - reference) / report["dataset"]["test"]) ** 0.5
        axes.axhspan(reference - noise, reference + noise, color="#eaeef2", zorder=0,
                     label=f"float ± 2 standard errors on {report['dataset']['test']} test samples "
                           f"(± {noise * 100:.2g} points)")
        low, high = min(low, reference - noise), max(high, reference + noise)
    pad = (high - low) * 0.12 or 0.01
    axes.set_ylim(low - pad, high + pad)
    if reference is not None:
        axes.axhline(reference, color=NEUTRAL, linestyle=":", linewidth=1, zorder=1,
                     label=f"float model {reference:.4f} (0 points)")
        sign = 1 if task.higher_is_better(metric) else -1  # + is better, as the left axis reads
        against = axes.secondary_yaxis("right", functions=(lambda y: sign * (y - reference) * 100,
                                                           lambda p: reference + sign * p / 100))
        against.set_ylabel("points against the float model")
    # Where two variants' markers would overlap at this scale, they are drawn apart vertically, in points.
    shifts = _dodge(axes, [(v["name"], [_kb(v["size_bytes"]), _kb(v["gzip_bytes"])], value) for _, v, value in points])
    for i, variant, value in points:
        color = VARIANT_COLORS[i % len(VARIANT_COLORS)]
        raw, packed = _kb(variant["size_bytes"]), _kb(variant["gzip_bytes"])
        where = offset_copy(axes.transData, fig=figure, y=shifts.get(variant["name"], 0), units="points")
        selected = variant["name"] == report["selected"]
        marker = "*" if selected else "s" if variant["format"] == "onnx" else "o"
        gain = None if reference is None else round(-task.drop_points(metric, reference, value), 2)
        drop = "" if gain is None else ", as the float model" if not gain else f", {gain:+.2f} points vs float"
        axes.plot([packed, raw], [value, value], color=color, linewidth=1, alpha=0.6, transform=where)
        axes.scatter([raw], [value], s=130 if selected else 55, color=color, marker=marker, zorder=4, alpha=0.9,
                     transform=where, gid=f"{variant['name']}:file",
                     label=f"{variant['name']}{' (selected)' if selected else ''}: {variant['format']} "
                           f"{variant['precision']}, {size_text(variant['size_bytes'])} "
                           f"(gzip {size_text(variant['gzip_bytes'])}), {value:.4f}{drop}")
        axes.scatter([packed], [value], s=45, facecolors="white", edgecolors=color, marker=marker, zorder=4,
                     transform=where, gid=f"{variant['name']}:gzip")
    if budget is not None:
        axes.axvline(budget, color=BUDGET, linestyle="--", linewidth=1.2, label=f"flash budget {kib_text(budget)}")
    if shifts:
        axes.annotate(f"{' and '.join(shifts)} nearly coincide: drawn a marker's height apart so that neither "
                      "hides the other", (0.99, 0.02), xycoords="axes fraction", ha="right", fontsize=7,
                      color="#57606a")
    better = "higher" if task.higher_is_better(metric) else "lower"
    axes.set_xlabel("size (KiB = 1024 bytes); filled: file, hollow: gzip -9")
    axes.set_ylabel(f"test {metric} ({better} is better)")
    samples = report["dataset"]["test"]
    title = f"{metric} vs size on {samples} test samples" + (
        f" (one sample = {100 / samples:.2g} points)" if metric == "accuracy" and samples else "")
    axes.set_title(title if budget is not None else f"{title}; {report['target']} sets no flash budget")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=1)
    return figure


DODGE_POINTS = 9.0  # a marker is about 8 points across


def _float_reference(report: dict[str, Any]) -> float | None:
    """The metric the drops are measured from: the float model's on the test split, as the accuracy guard has it."""
    optimization = report.get("optimization") or {}
    if optimization.get("float_test_metric") is not None:
        return optimization["float_test_metric"]
    return (report.get("keras_test_metric") or {}).get("float")


def _size_axis(axes, sizes: list[float]) -> None:
    """A linear size axis from 0, or a log one when a budget sits far beyond the models."""
    if sizes and max(sizes) / max(min(sizes), 1e-9) > 20:
        axes.set_xscale("log")
        axes.set_xlim(min(sizes) / 1.6, max(sizes) * 1.6)
        axes.xaxis.set_major_formatter(_thousands())
        axes.xaxis.set_minor_formatter(_thousands(minor=True))
    else:
        axes.set_xlim(left=0, right=max(sizes, default=1) * 1.25)


def _dodge(axes, points: list[tuple[str, list[float], float]]) -> dict[str, float]:
    """Vertical shifts (points) for the variants whose markers would overlap another's at the axes' limits (set
    before this). `points`: (name, x values, y) of each variant, in drawing order."""
    box = axes.get_position().transformed(axes.figure.transFigure)  # before layout: near enough to judge overlap
    scale = axes.figure.dpi / 72
    place = axes.transScale + axes.transLimits
    spots = {name: [place.transform((x, y)) * (box.width / scale, box.height / scale) for x in xs]
             for name, xs, y in points}
    groups: list[list[str]] = []
    for name, _, _ in points:
        near = next((g for g in groups if any(abs(a - b).max() < DODGE_POINTS for other in g
                                              for a in spots[name] for b in spots[other])), None)
        if near is None:
            groups.append([name])
        else:
            near.append(name)
    return {name: ((len(group) - 1) / 2 - k) * DODGE_POINTS
            for group in groups if len(group) > 1 for k, name in enumerate(group)}


@_styled
def accuracy_vs_size(report: dict[str, Any]) -> bytes:
    return _png(accuracy_figure(report))


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
                    f"{count_text(first['threads'], 'thread')}: line min to p99, box median to p90, dot mean")
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
        bounds = [row["bound"] if row["bound"] in BOUND_COLORS else None for row in rows]
        time_axes.barh(positions, [row["ms"] or 0 for row in rows],
                       color=[BOUND_COLORS.get(bound or "", NEUTRAL) for bound in bounds])
        time_axes.set_xlabel(f"{latencies.basis(estimate)} ms per op")
        time_axes.set_title(f"{latencies.figure(estimate)} on {target}")
        from matplotlib.patches import Patch

        shown = [b for b in BOUND_COLORS if b in bounds]  # a roofline's: an op's time scaled from MACs has none
        if shown:
            time_axes.legend(handles=[Patch(color=BOUND_COLORS[b], label=BOUND_LABELS[b]) for b in shown],
                             loc="lower right", title="most of the op's cost-model cycles", title_fontsize=8)
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


def memory_figure(report: dict[str, Any], variant: dict[str, Any]):
    """RAM (its parts, named with their sizes in the legend above it) and flash of one variant, each against its
    budget on its own axis in KiB. A budget far beyond the figure (a Raspberry Pi's gigabytes against a few
    megabytes) is written at the axis' end instead of drawn, so that the bar keeps a readable length."""
    budgets = report["budgets"]
    figure, (ram_axes, flash_axes) = _figure(8.5, 3.4, nrows=2)
    parts = ram_parts(variant["ram"])
    left = 0.0
    for name, count in parts:
        ram_axes.barh(0, _kb(count), left=left, height=0.5, color=RAM_COLORS[name],
                      label=f"{name}: {size_text(count)}")
        left += _kb(count)
    ram_note = f"{kib_text(left)} ({variant['ram'].get('basis', 'measured')})" if parts else \
        f"not measured: {variant['ram'].get('note', '')}"
    if parts and variant["ram"].get("arena_host_bytes"):  # emulated: the host's 64-bit arena beside it
        ram_note = f"{ram_note[:-1]} 32-bit arena; {size_text(variant['ram']['arena_host_bytes'])} on this host)"
    _budget_axes(ram_axes, "RAM", left, budgets.get("ram_kb"), ram_note)
    if parts:
        ram_axes.legend(loc="lower left", bbox_to_anchor=(0, 1), ncols=len(parts), title="RAM (KiB = 1024 bytes)",
                        title_fontsize=8, alignment="left")
    flash = _kb(variant["flash"]["model_bytes"])
    flash_axes.barh(0, flash, height=0.5, color="#8250df")
    _budget_axes(flash_axes, "flash", flash, budgets.get("flash_kb"),
                 f"{size_text(variant['flash']['model_bytes'])} model file")
    figure.suptitle(f"{variant['name']}: RAM and flash against {report['target']}'s budgets", fontweight="bold",
                    fontsize=10)
    return figure


@_styled
def memory(report: dict[str, Any], variant: dict[str, Any]) -> bytes:
    return _png(memory_figure(report, variant))


FAR_BUDGET = 20  # a budget this many times the figure is written, not drawn: the bar would be a sliver


def _budget_axes(axes, name: str, value: float, budget: float | None, note: str) -> None:
    axes.set_yticks([0], [name])
    axes.set_ylim(-0.6, 0.6)
    far = budget is not None and value > 0 and budget > FAR_BUDGET * value
    end = value if far or budget is None else max(value, budget)
    axes.set_xlim(0, (end or 1) * (1.5 if far else 1.12))
    if budget is None:
        note += ", no budget"
    else:
        note = f"{note} of {kib_text(budget)} budget ({share_text(value / budget if budget else 0)} used)"
        if far:  # the budget is off this axis: say where it is
            axes.annotate(f"budget {kib_text(budget)}, {budget / value:,.0f}x this: off the scale →", (1, 0.82),
                          xycoords="axes fraction", ha="right", color=BUDGET, fontsize=8)
        else:
            axes.axvline(budget, color=BUDGET, linestyle="--", linewidth=1.2)
            axes.annotate("budget", (budget, 0.45), textcoords="offset points", xytext=(3, 0), color=BUDGET,
                          fontsize=8)
    axes.annotate(note, (value, 0), textcoords="offset points", xytext=(6, -3), fontsize=8)
    axes.set_xlabel("KiB (1024 bytes)")
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
