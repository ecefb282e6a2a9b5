"""report.html: the whole build decision on one page that works offline.

One self-contained file made from report.json: inline CSS, the figures of edgekit.report.plots as base64 PNG
`data:` URIs, no script, and a Content-Security-Policy that forbids fetching anything. `render_html` is pure
(report and figures in, a string out); `write_html_report` writes the page and the same figures as PNG files
into the build folder; `rebuild_html` is `edgekit report`: it regenerates both from the folder alone.

The output is deterministic: the same report.json gives the same bytes (no timestamps; see edgekit.report.plots)."""

from __future__ import annotations

import base64
import json
import logging
import struct
from collections.abc import Sequence
from dataclasses import asdict
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import EdgekitError, UsageError
from edgekit.report import latency as latencies
from edgekit.report import text as reports
from edgekit.report.confusion import CLASS_TASKS, recompute_confusion
from edgekit.report.contract import SCHEMA_VERSION, cross_target
from edgekit.report.plotstyle import amount_text, share_text
from edgekit.units import kib_text, size_text

if TYPE_CHECKING:
    from edgekit.results import TargetResult

log = logging.getLogger("edgekit")

HTML = "report.html"
REPORT_JSON = "report.json"
PLOTS_DIR = "plots"
BUDGETED = ("latency", "ram", "flash")  # fit checks with a numeric figure and limit, drawn as bars
BOUNDS = ("compute", "memory", "overhead")  # the cost model's terms (edgekit.estimate); other per-op labels are none
BOUND_NOTE = ("Limited by: the largest term of the op's cost-model cycles, max(MACs / rate, bytes / bandwidth) + "
              "a fixed overhead per op: compute, memory or overhead.")
# Allows inline styles and data: images, forbids every fetch: a browser enforces what the tests check.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


# --- The build folder ---------------------------------------------------------------------------------------

def load_report(directory: Path) -> dict[str, Any]:
    """report.json of a build folder, or a UsageError naming what is wrong."""
    path = Path(directory) / REPORT_JSON
    if not path.is_file():
        raise UsageError(f"{directory}: no {REPORT_JSON}, so not a build folder (`edgekit build` writes one)")
    try:
        report = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not readable JSON ({type(e).__name__}: {e})") from None
    if not isinstance(report, dict):
        raise UsageError(f"{path}: not an edgekit report (a JSON {type(report).__name__})")
    missing = [key for key in ("recipe", "target", "targets", "cross_target", "variants", "selected", "budgets")
               if key not in report]
    if missing:
        raise UsageError(f"{path}: not an edgekit report (missing {', '.join(missing)})")
    if report.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(f"{path}: report.json schema {report.get('schema_version')}, this edgekit reads "
                         f"{SCHEMA_VERSION} (docs/report-json.md); run the build again to rewrite it")
    return report


def write_html_report(directory: Path, report: dict[str, Any], notes: dict[str, str] | None = None) -> list[str]:
    """Write report.html and its figures as plots/NAME.png into the build folder; returns the files written,
    relative to it. `notes` (section -> text) explain in the page what is missing and why."""
    from edgekit._files import write_atomic
    from edgekit.report import plots

    directory = Path(directory)
    figures = plots.figures(report)
    written = []
    for name in plots.PLOTS:
        path = directory / PLOTS_DIR / f"{name}.png"
        if name in figures:
            write_atomic(path, figures[name])
            written.append(f"{PLOTS_DIR}/{name}.png")
        else:  # an earlier report's figure must not sit beside a page that no longer shows it
            path.unlink(missing_ok=True)
    write_atomic(directory / HTML, render_html(report, figures, notes))
    return [*written, HTML]


def rebuild_html(directory: Path) -> list[str]:
    """`edgekit report`: regenerate report.html and its figures from a build folder. A classification build
    whose report.json has no confusion matrix gets one computed here, when its dataset still loads as the
    same data; report.json itself is left as it is."""
    report = load_report(directory)
    notes = {}
    if report.get("task") in CLASS_TASKS and not report.get("confusion_matrix"):
        try:
            report = {**report, "confusion_matrix": recompute_confusion(directory, report)}
            notes["confusion-matrix"] = "Computed by `edgekit report` from the folder's model file and the test split."
        except EdgekitError as e:
            log.warning("no confusion matrix: %s", e)
            notes["confusion-matrix"] = f"Not available: report.json holds none and {e}."
    return write_html_report(directory, report, notes)


# --- The page (pure) ----------------------------------------------------------------------------------------

def render_html(report: dict[str, Any], figures: dict[str, bytes], notes: dict[str, str] | None = None) -> str:
    """The page for `report`, with `figures` (edgekit.report.plots.figures) embedded."""
    notes = notes or {}
    title = f"edgekit build: {report['recipe']} for {', '.join(t['target'] for t in report['targets'])}"
    sections = [
        _verdict(report),
        _variants(report),
        _section("accuracy-size", f"Test {report['metric']} against size", _figure(figures, "accuracy_vs_size"),
                 _flash_note(report)),
        _latency(report, figures),
        _ops(report, figures),
        _memory(report, figures),
        _confusion(report, figures, notes.get("confusion-matrix")),
        _training(report, figures),
        _optimization(report),
        _method(report),
    ]
    return _page(title, _summary(report), sections,
                 f"Made by edgekit {escape(_version())} from report.json (schema {report.get('schema_version', '?')}) "
                 "by <code>edgekit report</code>. One file: no scripts, nothing fetched.")


def _page(title: str, lead: str, sections: Sequence[str], footer: str) -> str:
    """The HTML document around `sections`; `lead` and `footer` are HTML already escaped."""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{CSS}</style></head>",
        "<body><main>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="lead">{lead}</p>',
        *(s for s in sections if s),
        f"<footer>{footer}</footer>",
        "</main></body></html>",
        "",
    ])


def render_targets_html(targets: Sequence[TargetResult]) -> str:
    """The page of `edgekit bench MODEL --target ... --html`: one model file's verdict on each target
    (edgekit.results.of_file) as the table across targets and a verdict card per target, in the table's order."""
    views = [{"target": t.name, "budgets": asdict(t.target.budgets), "variants": [v.to_dict() for v in t.variants],
              "selected": t.selection.variant, "selection_reason": t.selection.reason} for t in targets]
    first = targets[0].selected.measured
    latency = first.latency_ms
    bases = {t.selected.measured.target_latency.basis for t in targets if t.selected.measured.target_latency}
    lead = escape(f"{first.file}: {first.format} {first.precision}, {first.size_bytes:,} bytes, "
                  f"{first.macs:,} MACs; host latency {latency.median:.4g} ms median over {latency.runs} "
                  f"batch-1 runs on this machine (the targets' latencies are "
                  f"{'emulated or estimated, as each figure says' if latencies.EMULATED in bases else 'estimates'}).")
    return _page(f"edgekit bench: {first.file} on {', '.join(t.name for t in targets)}", lead,
                 [_targets(views, cross_target(targets))],
                 f"Made by edgekit {escape(_version())} by <code>edgekit bench --html</code>. One file: no scripts, "
                 "nothing fetched.")


CSS = """
body{margin:0;background:#f4f5f7;color:#1f2328;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"DejaVu Sans",sans-serif}
main{max-width:1120px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:23px;margin:8px 0 4px}h2{font-size:17px;margin:0 0 10px}h3{font-size:15px;margin:0}
.lead{color:#57606a;margin:0 0 12px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;margin:14px 0}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{padding:4px 10px;border-bottom:1px solid #eaeef2;text-align:right;font-variant-numeric:tabular-nums}
th{background:#f6f8fa;font-weight:600}th:first-child,td:first-child{text-align:left}
td.text,th.text{text-align:left}
tr.selected td{background:#ddf4ff;font-weight:600}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-weight:700;font-size:13px;
margin-left:8px}
.fits{background:#1a7f37}.misses{background:#cf222e}.none{background:#8c959f}
.card-head{display:flex;align-items:center;gap:8px;margin-bottom:6px}
.budget{display:grid;grid-template-columns:80px 1fr 360px;gap:4px 10px;align-items:center;margin:6px 0}
.track{background:#eaeef2;border-radius:4px;height:20px;overflow:hidden;display:flex;align-items:center}
.fill{height:100%;min-width:3px;border-radius:4px;flex:none}.fill.ok{background:#2da44e}.fill.over{background:#cf222e}
.track{position:relative}.used{position:absolute;left:8px;font-size:12px;line-height:16px;padding:0 5px;
border-radius:3px;background:rgba(255,255,255,.85);white-space:nowrap;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}
@media (max-width:640px){main{padding:12px 10px 30px}section{padding:12px}
.budget{grid-template-columns:64px 1fr}.budget .summary{grid-column:1/-1}th,td{padding:4px 6px}}
.fill.free{background:#8c959f}
.summary{font-size:13px;color:#24292f}.ok-text{color:#1a7f37}.miss-text{color:#cf222e}
figure{margin:8px 0}figure img{max-width:100%;height:auto;border:1px solid #eaeef2;border-radius:4px}
figcaption,.note,footer{color:#57606a;font-size:12px}
ul{margin:6px 0;padding-left:20px}code{background:#f6f8fa;padding:1px 4px;border-radius:4px}
details summary{cursor:pointer;color:#0969da}
.cm td.diag{font-weight:700;background:#ddf4ff}.cm td.zero{color:#d0d7de}
"""


def _section(anchor: str, heading: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(heading)}</h2>\n' + "\n".join(p for p in parts if p) + "</section>"


def _figure(figures: dict[str, bytes], name: str) -> str:
    png = figures.get(name)
    if png is None:
        return ""
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk: the page reserves the space up front
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
            f'alt="{escape(name.replace("_", " "))}"><figcaption>{PLOTS_DIR}/{name}.png</figcaption></figure>')


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], selected: int | None = None,
           text_columns: int = 1, css: str = "") -> str:
    def cell(tag: str, column: int, value: Any) -> str:
        kind = ' class="text"' if column < text_columns else ""
        return f"<{tag}{kind}>{escape(str(value))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join(f"<tr{' class=selected' if i == selected else ''}>"
                   + "".join(cell("td", j, v) for j, v in enumerate(row)) + "</tr>" for i, row in enumerate(rows))
    return (f'<div class="scroll"><table{f" class={css}" if css else ""}><thead><tr>{head}</tr></thead>'
            f'<tbody>{body}</tbody></table></div>')


def _note(text: str | None) -> str:
    return f'<p class="note">{escape(text)}</p>' if text else ""


def _selected(report: dict[str, Any]) -> dict[str, Any]:
    return next(v for v in report["variants"] if v["name"] == report["selected"])


def _kb(count: float | None) -> str:
    return "-" if count is None else size_text(count)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _plain(value: float) -> str:
    """A budget as written in the profile: 3,145,728 rather than 3.14573e+06."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3g}"


def _version() -> str:
    from edgekit import __version__

    return __version__


def _summary(report: dict[str, Any]) -> str:
    data = report["dataset"]
    return escape(f"Dataset {data['name']}: {data['train']} train / {data['val']} validation / {data['test']} test "
                  f"samples; task {report['task']}, metric {report['metric']} on the test split; seed "
                  f"{report['seed']}.")


# --- Sections -----------------------------------------------------------------------------------------------

def _verdict(report: dict[str, Any]) -> str:
    """The table across the targets the build was judged against, then one card per target: does the
    selected variant fit, each budget as a bar with its headroom, and every variant's verdict on it."""
    return _targets([{**report, **target} for target in report["targets"]], report["cross_target"])


def _targets(views: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> str:
    """The table across targets (`cross_target` rows) and a card for each view (a report as one target sees it:
    target, variants, selected, selection_reason, budgets)."""
    table = _table(reports.CROSS_TARGET_COLUMNS, [reports.cross_target_row(row) for row in rows], text_columns=3)
    return "\n".join([
        _section("targets", f"Across targets ({len(rows)})", table,
                 _note("Each target's selected variant; those that fit every budget first, then by target latency. "
                       + latencies.figures_note((r.get("latency_basis") for r in rows), (r.get("ram_basis")
                                                                                       for r in rows)))),
        _section("verdict", "Verdict per target", *(_card(view, _selected(view)) for view in views)),
    ])


def _card(report: dict[str, Any], variant: dict[str, Any]) -> str:
    fit = variant["fit"]
    badge = '<span class="badge fits">FITS</span>' if fit["fits"] else '<span class="badge misses">DOES NOT FIT</span>'
    bars = [_budget_bar(check) for check in fit["checks"] if check["budget"] in BUDGETED]
    others = [f'<li class="{"ok-text" if c["ok"] else "miss-text" if c["ok"] is False else ""}">'
              f'{escape(c["budget"])}: {escape(c["summary"])}</li>'
              for c in fit["checks"] if c["budget"] not in BUDGETED]
    rows = [(v["name"], "yes" if v["fit"]["fits"] else "no",
             ", ".join(c["budget"] for c in v["fit"]["checks"] if c["ok"] is False) or "-",
             *(_check_figure(v, budget) for budget in BUDGETED)) for v in report["variants"]]
    chosen = [v["name"] for v in report["variants"]].index(variant["name"])
    return "\n".join([
        f'<div class="card" id="target-{escape(fit["target"])}"><div class="card-head">'
        f'<h3>{escape(fit["target"])}</h3>{badge}</div>',
        f"<p>Ship <code>{escape(variant['name'])}</code> ({escape(variant['file'])}): "
        f"{escape(report['selection_reason'])}.</p>",
        *bars,
        f"<ul>{''.join(others)}</ul>",
        _table(("variant", "fits", "misses", "latency", "RAM", "flash"), rows, selected=chosen, text_columns=3),
        _note(_budget_line(report)),
        "</div>",
    ])


def _budget_bar(check: dict[str, Any]) -> str:
    """A budget as a bar to scale, with the share used written on it: 0.12% of a Raspberry Pi's RAM is a sliver
    on any linear scale, so the words carry it ("0.12% used: 3.7 MiB of 3 GiB")."""
    value, limit = check["value"], check["limit"]
    if isinstance(value, int | float) and isinstance(limit, int | float) and limit > 0:
        share = value / limit
        css = "ok" if check["ok"] else "over"
        width = f"{min(share, 1) * 100:.3g}%"
        used = (f'<span class="used">{share_text(share)} used: {escape(amount_text(value, check["unit"]))} of '
                f'{escape(amount_text(limit, check["unit"]))}</span>')
    else:  # no budget, or no figure: an empty track, and the summary says which
        css, width, used = "free", "0%", '<span class="used">no budget</span>' if limit is None else ""
    return (f'<div class="budget" data-budget="{escape(check["budget"])}"><b>{escape(check["budget"])}</b>'
            f'<div class="track"><div class="fill {css}" style="width:{width}"></div>{used}</div>'
            f'<span class="summary">{escape(check["summary"])}</span></div>')


def _check_figure(variant: dict[str, Any], budget: str) -> str:
    check = next(c for c in variant["fit"]["checks"] if c["budget"] == budget)
    if not isinstance(check["value"], int | float):
        return "-"
    value = check["value"]
    figure = kib_text(value) if check["unit"] == "KB" else \
        f"{value:,.1f} {check['unit']}" if value >= 10 else f"{value:.3g} {check['unit']}"
    limit = check["limit"]
    return figure if not isinstance(limit, int | float) or not limit else f"{figure} ({share_text(value / limit)} used)"


def _budget_line(report: dict[str, Any]) -> str:
    budgets = report["budgets"]
    parts = [f"{name} {'none' if budgets.get(key) is None else written(budgets[key])}"
             for name, key, written in (("latency", "latency_ms", lambda ms: f"{_plain(ms)} ms"),
                                        ("RAM", "ram_kb", kib_text), ("flash", "flash_kb", kib_text))]
    variant = _selected(report)
    return (f"Budgets of {report['target']}: {', '.join(parts)} (KiB = 1024 bytes). " + latencies.figures_note(
        [(variant.get("target_latency") or {}).get("basis", "estimated")], [variant["ram"].get("basis")]))


def _variants(report: dict[str, Any]) -> str:
    names = [v["name"] for v in report["variants"]]
    table = _table(reports.columns(report["metric"]), [reports.variant_row(v) for v in report["variants"]],
                   selected=names.index(report["selected"]), text_columns=3)
    return _section("variants", f"Variants (target figures for {report['target']})", table,
                    _note("Sizes are the files as written and after gzip -9; sparsity is the share of zero weights; "
                          "host latency is batch 1 on this machine; the target latency is emulated or estimated, "
                          "as each figure says, with its band (see How these were measured)."))


def _flash_note(report: dict[str, Any]) -> str:
    budget = report["budgets"].get("flash_kb")
    flash = (f"The dashed line is {report['target']}'s flash budget, {kib_text(budget)}." if budget is not None else
             f"{report['target']} sets no flash budget.")
    return _note(f"{flash} Filled markers: the file; hollow: after gzip -9. The star is the selected variant.")


def _latency(report: dict[str, Any], figures: dict[str, bytes]) -> str:
    rows = [(v["name"], _ms(s["min"]), _ms(s["median"]), _ms(s["mean"]), _ms(s["p90"]), _ms(s["p99"]), s["runs"],
             s["warmup"], s["threads"]) for v in report["variants"] for s in [v["latency_ms"]]]
    table = _table(("variant", "min ms", "median ms", "mean ms", "p90 ms", "p99 ms", "runs", "warm-up", "threads"),
                   rows)
    return _section("host-latency", "Host latency per variant", _figure(figures, "host_latency"), table,
                    _note(f"Measured on this host ({report['host']['cpu']}), batch 1, warm-up runs discarded; these "
                          f"are not {report['target']} figures."))


def _ops(report: dict[str, Any], figures: dict[str, bytes]) -> str:
    from edgekit.report.plots import op_rows

    variant = _selected(report)
    rows = op_rows(variant)
    total = sum(r["ms"] or 0 for r in rows)
    estimate = variant.get("target_latency")
    basis = latencies.basis(estimate or {})
    counted = any(r["instructions"] is not None for r in rows)  # emulated: the instructions each op executed
    # A bound only where the figure is the cost model's roofline; a count (or a count scaled from MACs) has none.
    bound = any(r["bound"] in BOUNDS for r in rows)
    table = _table(("#", "op", "kind", "MACs", *["instructions"] * counted, f"{basis} ms", "share of time",
                    *["limited by"] * bound),
                   [(r["index"], r["op"], r["kind"], f"{r['macs']:,}", *[f"{r['instructions'] or 0:,}"] * counted,
                     _ms(r["ms"]), "-" if r["ms"] is None or not total else f"{r['ms'] / total:.1%}",
                     *[r["bound"] if r["bound"] in BOUNDS else "-"] * bound) for r in rows], text_columns=3)
    method = f"{report['target']}'s profile has no latency constants for {variant['precision']}: MACs only."
    if estimate:
        method = (f"{basis.capitalize()} for {report['target']}: {estimate['ms']:.4g} ms ({latencies.band(estimate)}, "
                  f"{estimate['low_ms']:.4g} to {estimate['high_ms']:.4g} ms)"
                  + (f" on {latencies.emulated_on(estimate)}" if basis == latencies.EMULATED else "")
                  + f": {estimate['method'].rstrip('.')}.")
    kernels = ((estimate or {}).get("emulation") or {}).get("kernels") or []
    counted_total = sum(k["instructions"] for k in kernels)
    kernel_table = "" if not kernels else (
        f"<details><summary>{len(kernels)} kernels: instructions counted on one thread</summary>"
        + _table(("kernel or library", "instructions", "share", "threads"),
                 [(k["kernel"], f"{k['instructions']:,}", f"{k['instructions'] / max(counted_total, 1):.1%}",
                   "shared out" if k["threaded"] else "one") for k in kernels], text_columns=1) + "</details>")
    return _section("per-op", f"Per-op breakdown of {variant['name']}", _figure(figures, "op_breakdown"),
                    f"<details><summary>{len(rows)} ops: MACs, {'instructions counted and ' * counted}"
                    f"{basis} time</summary>{table}</details>", kernel_table, _note(method), _note(BOUND_NOTE * bound))


def _memory(report: dict[str, Any], figures: dict[str, bytes]) -> str:
    from edgekit.report.plots import ram_parts

    variant = _selected(report)
    ram, budgets = variant["ram"], report["budgets"]
    rows = [(f"RAM: {name}", _kb(count)) for name, count in ram_parts(ram)]
    rows += [("RAM required", _kb(ram.get("required_bytes"))),
             ("RAM budget", "none" if budgets.get("ram_kb") is None else kib_text(budgets["ram_kb"]))]
    if "arena_host_bytes" in ram:  # emulated: the host's 64-bit arena beside the 32-bit one the core used
        rows.append((f"tensor arena on this host (64-bit; {latencies.core_of(variant) or 'the core'}'s replaces it)",
                     _kb(ram["arena_host_bytes"])))
    elif "arena_bytes" in ram:
        rows.insert(0, ("tensor arena (TFLite Micro)", _kb(ram["arena_bytes"])))
    heap = ram.get("heap") or {}
    if heap:  # LiteRT on an emulated Cortex-A core: the interpreter's own heap, apart from the resident set
        where = f"on an emulated {ram.get('heap_core')}"
        rows += [(f"LiteRT heap {where}: interpreter (model mapped, not copied)", _kb(heap.get("interpreter_bytes"))),
                 (f"LiteRT heap {where}: tensor arena and XNNPACK's packed weights", _kb(heap.get("allocate_bytes"))),
                 (f"LiteRT heap {where}: total after warm-up", _kb(heap.get("total_bytes"))),
                 ("model file, mapped", _kb(heap.get("model_mapped_bytes")))]
    rows += [("flash: model file", _kb(variant["flash"]["model_bytes"])),
             ("flash budget", "none" if budgets.get("flash_kb") is None else kib_text(budgets["flash_kb"]))]
    method = ram.get("method") or ram.get("note") or ""
    return _section("memory", f"RAM and flash of {variant['name']}", _figure(figures, "memory"),
                    _table(("figure", "value"), rows), _note(f"RAM ({ram.get('basis', '?')}): {method}"),
                    _note(ram.get("heap_method")),
                    _note(variant["flash"].get("note")))


def _confusion(report: dict[str, Any], figures: dict[str, bytes], note: str | None) -> str:
    section = report.get("confusion_matrix")
    if not section:
        reason = note or ("Not a classification task." if report.get("task") not in CLASS_TASKS else
                          "Not available: report.json holds no confusion_matrix; `edgekit report` computes it.")
        return _section("confusion-matrix", "Confusion matrix", _note(reason))
    classes, matrix = section["classes"], section["matrix"]
    header = ("true \\ predicted", *classes)
    body = "".join(
        f"<tr><th class=text>{escape(name)}</th>"
        + "".join(f'<td class="{"diag" if i == j else "zero" if not count else ""}">{count}</td>'
                  for j, count in enumerate(row)) + "</tr>"
        for i, (name, row) in enumerate(zip(classes, matrix, strict=True)))
    table = ("<table class=cm><thead><tr>" + "".join(f"<th>{escape(str(h))}</th>" for h in header)
             + f"</tr></thead><tbody>{body}</tbody></table>")
    total = sum(map(sum, matrix))
    correct = sum(matrix[i][i] for i in range(len(classes)))
    summary = (f"{section.get('variant', report['selected'])} on the {total} {section.get('split', 'test')} samples: "
               f"{correct} correct ({correct / max(total, 1):.2%}). Rows: true class; columns: predicted class.")
    return _section("confusion-matrix", "Confusion matrix", _figure(figures, "confusion_matrix"),
                    f"<details><summary>counts</summary>{table}</details>", _note(summary), _note(note))


def _training(report: dict[str, Any], figures: dict[str, bytes]) -> str:
    training = report.get("training") or {}
    rows = [(phase, info["epochs"], _metric(info.get("loss")), _metric(info.get("val_loss")),
             _metric(info.get("val_accuracy")), f"{info['seconds']:.1f}") for phase, info in training.items()]
    return _section("training", "Training", _figure(figures, "training_curves"),
                    _table(("phase", "epochs", "final loss", "final val loss", "final val accuracy", "seconds"), rows),
                    _note("Phases in order: float training, then pruning and quantization-aware fine-tuning."))


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _optimization(report: dict[str, Any]) -> str:
    section = report.get("optimization")
    if not section:
        return ""
    lines = reports.optimization_lines(section)
    return _section("optimization", "Optimization", "<ul>" + "".join(f"<li>{escape(x)}</li>" for x in lines) + "</ul>")


def _method(report: dict[str, Any]) -> str:
    host = report["host"]
    lines = [
        f"Host: {host['cpu']}, {host['cores']} cores, {host['system']}, Python {host['python']}.",
        "Latency: batch 1, LiteRT (XNNPACK) for .tflite, ONNX Runtime for .onnx; warm-up runs discarded, then "
        "min / median / mean / p90 / p99 over the timed runs.",
        "Sparsity: share of exactly-zero weights in the conv and dense kernels, read back from each file.",
        *latencies.method_lines((t["target"], v.get("target_latency")) for t in report["targets"]
                                for v in t["variants"]),
        f"Every {report['metric']} is on the same {report['dataset']['test']} test samples.",
    ]
    return _section("method", "How these were measured", "<ul>" + "".join(f"<li>{escape(x)}</li>" for x in lines)
                    + "</ul>")
