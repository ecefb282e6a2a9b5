"""The typed results every stage after bench returns, from one variant on one target to the whole build.

A build judges its variants on N targets (a single target is N = 1: there is no other shape). Each target
gets its own verdict and selection; the first target given leads (the table's title, the top level of
report.json). These values are frozen: report.json, the Markdown and the manifest are made from them where
the files are written (edgekit.report.contract), never by editing them."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.bench import BenchResult
from edgekit.errors import UsageError
from edgekit.targets import Target
from edgekit.verdict import shippable_formats


@dataclass(frozen=True)
class Variant:
    """One variant of the build (float32, int8, onnx...) as bench measured and judged it on one target.
    `sparsity` is the figure the report shows: for a pruned variant, the share of zeros over the pruned
    layers (the figure the recipe's sparsity sets), else over every weight op (`measured.sparsity`)."""

    name: str
    measured: BenchResult
    verification: dict[str, Any]  # the conversion's check against the model it came from
    sparsity: float
    sparsity_basis: str

    @classmethod
    def of(cls, name: str, measured: BenchResult, verification: dict[str, Any],
           pruned: tuple[float, str] | None = None) -> Variant:
        """`pruned`: (share of zeros over the pruned layers, which layers), for the pruned variant."""
        sparsity, basis = pruned or (measured.sparsity, "every weight op")
        return cls(name, measured, verification, sparsity, basis)

    @property
    def fits(self) -> bool:
        return self.measured.fit.fits

    @property
    def metric_value(self) -> float | None:
        return None if self.measured.metric is None else self.measured.metric["value"]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.measured.to_dict(), "sparsity": self.sparsity,
                "sparsity_all_weights": self.measured.sparsity, "sparsity_basis": self.sparsity_basis,
                "verification": self.verification}


@dataclass(frozen=True)
class Selection:
    """The variant to ship to one target, why, and whether it fits every budget."""

    variant: str
    reason: str
    fits: bool


@dataclass(frozen=True)
class TargetResult:
    """One target's verdict: every variant judged on it, the one selected, and where its bundle goes."""

    target: Target
    variants: tuple[Variant, ...]
    selection: Selection
    bundle: str | None  # folder relative to the build folder; None when nothing is exported

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def selected(self) -> Variant:
        return next(v for v in self.variants if v.name == self.selection.variant)

    def misses(self) -> str:
        """The budgets the selected variant misses, each check's summary."""
        return "; ".join(check.summary for check in self.selected.measured.fit.misses)


def select(variants: Sequence[Variant], target: Target) -> Selection:
    """The variant to ship: the target's most preferred precision that its runtime loads and that fits
    every budget; when none fits, the most preferred one, reported as not fitting."""
    candidates = [v for fmt, precisions in shippable_formats(target).items() for precision in precisions
                  for v in variants if v.measured.format == fmt and v.measured.precision == precision]
    if not candidates:
        raise UsageError(f"no variant of this build runs on target '{target.name}'")
    for variant in candidates:
        if variant.fits:
            return Selection(variant.name, f"{variant.measured.precision} is {target.name}'s most preferred "
                             f"precision that {target.runtime.value} runs and that fits every budget", True)
    return Selection(candidates[0].name, f"no variant fits {target.name}; {candidates[0].name} is the preferred "
                     "one", False)


def judge(target: Target, variants: Sequence[Variant], bundle: str | None) -> TargetResult:
    return TargetResult(target, tuple(variants), select(variants, target), bundle)


def of_file(result: BenchResult, target: Target) -> TargetResult:
    """`edgekit bench`'s result for one model file on one target, as a target's verdict: the file is the one
    variant, and the one selected."""
    variant = Variant.of(result.file, result, {})
    return TargetResult(target, (variant,), Selection(result.file, "the model benchmarked", result.fit.fits), None)


def rank_key(result: BenchResult) -> tuple[bool, float, str]:
    """Those that fit first, then by estimated target latency (none last), then by target name."""
    estimate = result.target_latency
    return (not result.fit.fits, estimate.ms if estimate else math.inf, result.target)


def ranked_targets(targets: Sequence[TargetResult]) -> list[TargetResult]:
    """Targets in the order the table across them shows: by their selected variant's rank_key."""
    return sorted(targets, key=lambda t: rank_key(t.selected.measured))


@dataclass(frozen=True)
class BuildResult:
    """What `edgekit build` made: the folder and every target's verdict (the first given leads)."""

    directory: Path
    recipe: str
    metric: str
    test_samples: int
    targets: tuple[TargetResult, ...]
    written: bool = True  # False on a multiworker cluster's non-chief worker, whose folder was temporary

    @property
    def lead(self) -> TargetResult:
        return self.targets[0]

    @property
    def missed(self) -> list[TargetResult]:
        """The targets whose selected variant misses a budget, in the order given."""
        return [t for t in self.targets if not t.selection.fits]

    @property
    def report(self) -> dict[str, Any]:
        """report.json as the build wrote it (read back from the folder: the file is the contract)."""
        return json.loads((self.directory / "report.json").read_text())
