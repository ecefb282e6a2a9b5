"""sweep.html (`edgekit sweep`): per target the best fitting point, the Pareto front plot, the points skipped
before training and the table of every point, on one self-contained page built as report.html is."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from edgekit.report.html import PLOTS_DIR, _figure, _kb, _ms, _note, _page, _section, _table, _version

SWEEP_HTML = "sweep.html"


def write_sweep_html(directory: Path, summary: dict[str, Any]) -> list[str]:
    """Write sweep.html (self-contained, as report.html is) and its figures as plots/front_TARGET.png into the
    sweep folder; returns the files written, relative to it."""
    from edgekit._files import write_atomic
    from edgekit.report.sweep_plot import sweep_front

    directory = Path(directory)
    figures = {}
    for target in summary["targets"]:
        png = sweep_front(summary, target)
        path = directory / PLOTS_DIR / f"front_{target}.png"
        if png is None:
            path.unlink(missing_ok=True)
            continue
        figures[f"front_{target}"] = png
        write_atomic(path, png)
    write_atomic(directory / SWEEP_HTML, render_sweep_html(summary, figures))
    return [f"{PLOTS_DIR}/{name}.png" for name in figures] + [SWEEP_HTML]


def render_sweep_html(summary: dict[str, Any], figures: dict[str, bytes]) -> str:
    """The sweep's page: per target the best fitting point, the front plot, the points skipped before
    training with their reasons, and the table of every point."""
    title = f"edgekit sweep: {summary['recipe']} on {', '.join(summary['targets'])}"
    built = sum(1 for row in summary["points"] if "targets" in row)
    how = f"Ray ({summary['ray']})" if summary.get("ray") else f"{summary['workers']} local worker process(es)"
    lead = (f"Data {summary['data']}, seed {summary['seed']}: {len(summary['points'])} points, {built} built, "
            f"{summary['skipped_points']} skipped before training; {summary['seconds']:.0f} s with {how}"
            + (f", trained with --distribute {summary['distribute']}" if summary.get("distribute") else "") + ".")
    grid = _table(("recipe key", "values"), [(key, ", ".join(json.dumps(v) for v in values))
                                             for key, values in summary["grid"].items()], text_columns=2)
    saved = summary.get("skip_saved_s_estimate")
    skip_note = (f"The early skip saved about {saved:.0f} s (estimate: {summary['skip_saved_method']})."
                 if saved else "")
    sections = [_section("grid", "Grid", grid, _note(skip_note))]
    sections += [_sweep_target(summary, target, figures) for target in summary["targets"]]
    sections.append(_section("method", "How these figures were made", _note(
        "Each built point is one edgekit build judged against every target (a build for several targets). "
        "Latency is edgekit's estimate for the target (not measured on the device); RAM is the "
        "TFLite Micro arena or the LiteRT / ONNX Runtime memory measured on this host; the metric is on the test "
        "split. The Pareto front holds the fitting points that no other fitting point beats on metric, "
        "target latency and RAM at once (latency and RAM count only when more than 5% apart: they carry "
        "measurement noise). A point is skipped before training when its untrained model, "
        "converted, already misses a budget of every target.")))
    return _page(title, escape(lead), sections, f"Made by edgekit {escape(_version())} from sweep.json by "
                 "<code>edgekit sweep</code>. One file: no scripts, nothing fetched.")


def _sweep_target(summary: dict[str, Any], target: str, figures: dict[str, bytes]) -> str:
    verdict = summary["per_target"][target]
    metric = summary.get("metric", "metric")
    best = (f"Best fitting point: {verdict['best']} ({metric} {verdict['best_metric']:.4f})" if verdict["best"]
            else "No point fits")
    head = f"{best}. Pareto front (metric, target latency, RAM): {', '.join(verdict['front']) or 'empty'}."
    skipped = [(row["point"], "; ".join(row["skipped"].get(target, [])) or "fits here, but no target is "
                "left to build it for") for row in summary["points"] if "skipped" in row]
    failed = [(row["point"], row["failed"]) for row in summary["points"] if "failed" in row]
    rows = []
    for row in summary["points"]:
        changes = ", ".join(f"{key}={json.dumps(value)}" for key, value in row["changes"].items())
        figures_here = row.get("targets", {}).get(target)
        if figures_here is None:
            status = "failed" if "failed" in row else "skipped before training"
            rows.append((row["point"], changes, status, "-", "-", "-", "-", "-", "-", "-"))
            continue
        rows.append((row["point"], changes, "built", figures_here["variant"], "yes" if figures_here["fits"] else
                     "no: " + "; ".join(figures_here["misses"]), f"{figures_here['metric']:.4f}",
                     _ms(figures_here["latency_ms"]), _kb(figures_here["ram_bytes"]),
                     _kb(figures_here["flash_bytes"]), "yes" if row["point"] in verdict["front"] else ""))
    chosen = next((i for i, row in enumerate(summary["points"]) if row["point"] == verdict["best"]), None)
    return _section(
        f"target-{target}", target, f"<p>{escape(head)}</p>", _figure(figures, f"front_{target}"),
        f"<h3>Skipped before training ({len(skipped)})</h3>"
        + (f"<ul>{''.join(f'<li>{escape(p)}: {escape(why)}</li>' for p, why in skipped)}</ul>" if skipped
           else _note("None: every point's untrained model fit some target.")),
        (f"<h3>Failed ({len(failed)})</h3><ul>{''.join(f'<li>{escape(p)}: {escape(why)}</li>' for p, why in failed)}"
         "</ul>") if failed else "",
        f"<h3>Every point on {escape(target)}</h3>",
        _table(("point", "changes", "status", "variant", "fits", metric, "target latency ms", "RAM", "flash", "front"),
               rows, selected=chosen, text_columns=5))
