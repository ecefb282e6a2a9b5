"""What `edgekit build` and `edgekit bench` print on stdout, as strings (the CLI prints them): the lead target's
variants, the table across targets ranked by fit and target latency, and what to ship to each."""

from __future__ import annotations

from collections.abc import Sequence

from edgekit.bench import BenchResult
from edgekit.report.contract import cross_target
from edgekit.report.table import render_table
from edgekit.report.text import CROSS_TARGET_COLUMNS, columns, cross_target_row, model_lines, target_lines, variant_row
from edgekit.results import BuildResult, TargetResult


def _across(title: str, targets: Sequence[TargetResult], terminal: bool) -> str:
    return render_table(title, CROSS_TARGET_COLUMNS, [cross_target_row(row) for row in cross_target(targets)],
                        terminal)


def build_text(result: BuildResult, terminal: bool = False) -> str:
    lead = result.lead
    metrics = ", ".join(f"{v.name} {v.metric_value:.4f}" for v in lead.variants if v.metric_value is not None)
    lines = [render_table(f"{result.recipe} for {lead.name} ({result.test_samples} test samples)",
                          columns(result.metric), [variant_row(v.to_dict()) for v in lead.variants], terminal),
             _across(f"{result.recipe}: what each target ships ({result.metric} {metrics})", result.targets, terminal)]
    lines += [f"Ship: {t.selection.variant} to {t.name} ({t.selection.reason})\n" for t in result.targets]
    return "".join(lines) + f"Build folder: {result.directory}\n"


def bench_text(model: str, measured: Sequence[BenchResult], judged: Sequence[TargetResult],
               terminal: bool = False) -> str:
    """One model file on its targets: what it is, each target's checks, then the table across them."""
    lines = model_lines(measured[0])
    for target in judged:
        lines += target_lines(target.selected.measured)
    return "\n".join(lines) + "\n" + _across(f"{model} against {', '.join(t.name for t in judged)}", judged, terminal)
