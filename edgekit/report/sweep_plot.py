"""sweep.html's figure (`edgekit sweep`): one target's points, metric against target latency, with the Pareto front.
Drawn as edgekit.report.plots draws the report's figures: the same style, colours and deterministic PNG."""

from __future__ import annotations

from typing import Any

from edgekit.report.plotstyle import ACCENT, BAD, NEUTRAL, _figure, _png, _styled, _thousands
from edgekit.units import size_text


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
        ram = f", {size_text(row['ram_bytes'])} RAM" if row["ram_bytes"] else ""
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
