"""report.json, the contract later tools read (docs/report-json.md): made from a build's typed results
where the file is written. Version 2: one shape for any number of targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgekit.recipes import Recipe
    from edgekit.results import BuildResult, TargetResult

SCHEMA_VERSION = 2


def build_report(result: BuildResult, recipe: Recipe, *, seed: int, dataset: dict[str, Any], trained: dict[str, Any],
                 optimized: dict[str, Any], float_metric: float, sparsity_ops: list[dict[str, Any]],
                 quantized: str, cache: dict[str, Any], distribute: dict[str, Any] | None,
                 confusion_matrix: dict[str, Any] | None) -> dict[str, Any]:
    """report.json's content. `trained` and `optimized` are the values the train and optimize stages
    cached; `sparsity_ops` the per-op sparsity of the quantized file (`quantized` names its variant)."""
    from edgekit.report.text import host

    lead = result.lead
    training = {"float": _phase(trained["history"], trained["seconds"])}
    for phase, history in optimized["history"].items():
        training[phase] = _phase(history, optimized["seconds"][phase])
    return {
        "schema_version": SCHEMA_VERSION,
        "recipe": recipe.name,
        "target": lead.name,
        "seed": seed,
        "task": recipe.task,
        "metric": recipe.metric,
        "dataset": {k: v for k, v in dataset.items() if k != "labels"},
        "host": host(),
        "keras_test_metric": {"float": float_metric},
        "training": training,
        "optimization": _optimization(optimized, lead, quantized, float_metric, sparsity_ops, recipe),
        # the lead target's verdict, at the paths version 1 had it
        "variants": [v.to_dict() for v in lead.variants],
        "selected": lead.selection.variant,
        "selection_reason": lead.selection.reason,
        "fits": lead.selection.fits,
        "budgets": asdict(lead.target.budgets),
        "targets": [target_entry(t) for t in result.targets],
        "cross_target": cross_target(result.targets),
        "cache": cache,
        "distribute": distribute,
        "confusion_matrix": confusion_matrix,
    }


def target_entry(target: TargetResult) -> dict[str, Any]:
    """One entry of report.json's `targets`: a target's variants, selection, budgets and bundle."""
    return {"target": target.name, "device_class": target.target.device_class.value,
            "runtime": target.target.runtime.value, "selected": target.selection.variant,
            "selection_reason": target.selection.reason, "fits": target.selection.fits,
            "budgets": asdict(target.target.budgets), "bundle": target.bundle,
            "variants": [v.to_dict() for v in target.variants]}


def cross_target(targets: Sequence[TargetResult]) -> list[dict[str, Any]]:
    """report.json's `cross_target`: each target's selected variant's verdict (fits, target latency with its
    basis and band, RAM with its basis, flash, ops, missed budgets), those that fit first, then by latency."""
    from edgekit.results import ranked_targets

    rows = []
    for target in ranked_targets(targets):
        variant = target.selected
        measured = variant.measured
        checks = {c.budget: c for c in measured.fit.checks}
        estimate = measured.target_latency
        rows.append({"target": target.name, "fits": measured.fit.fits, "selected": variant.name,
                     "file": measured.file, "latency_ms_estimate": estimate.ms if estimate else None,
                     "latency_expected_error": estimate.expected_error if estimate else None,
                     "latency_basis": estimate.basis if estimate else None,
                     "latency_band": estimate.band if estimate else None,
                     "latency_low_ms": estimate.low_ms if estimate else None,
                     "latency_high_ms": estimate.high_ms if estimate else None,
                     "latency_instructions": estimate.instructions if estimate else None,
                     "ram_bytes": measured.ram.get("required_bytes"), "ram_basis": measured.ram.get("basis"),
                     "flash_bytes": _checked_flash(measured),
                     "ops_supported": checks["ops"].ok, "misses": [c.budget for c in measured.fit.misses],
                     "budgets": asdict(target.target.budgets)})
    return rows


def _checked_flash(measured) -> int:
    """The file the flash check weighed: on an NPU target, the Vela-compiled one."""
    npu = measured.npu or {}
    return npu["model_bytes"] if npu.get("compiled") and "model_bytes" in npu else measured.size_bytes


def pruned_sparsity(content: bytes, optimized: dict[str, Any]) -> tuple[list[dict[str, Any]], tuple[float, str] | None]:
    """The sparsity of every weight op of the quantized file, and the share of zeros over the pruned layers'
    ops with which layers those are (None when nothing was pruned). The first convolution and the last Dense
    layer are kept dense by default, so the share the recipe's `sparsity` sets is over the pruned ones."""
    from edgekit.optimize import artifact_sparsity

    per_op = artifact_sparsity(content, optimized["prunable"])
    pruned_ops = [row for row in per_op if row["layer"] in optimized["pruned_layers"]]
    if not pruned_ops:
        return per_op, None
    zeros = sum(row["sparsity"] * row["weights"] for row in pruned_ops)
    share = zeros / sum(row["weights"] for row in pruned_ops)
    return per_op, (share, f"pruned layers: {', '.join(optimized['pruned_layers'])}")


def _optimization(optimized: dict[str, Any], lead: TargetResult, quantized: str, float_metric: float,
                  per_op: list[dict[str, Any]], recipe: Recipe) -> dict[str, Any]:
    """What each optimization step did, and what reached the files: size raw and gzip of the float and
    quantized artifacts, and the sparsity of every weight op in the quantized one."""
    by_name = {v.name: v for v in lead.variants}
    settings = recipe.optimize
    return {
        "settings": {"sparsity": settings.sparsity, "quantize": optimized["quantize"],
                     "qat_epochs": settings.qat_epochs if optimized["quantization_aware"] else 0,
                     "clusters": settings.clusters},
        "pruned_layers": optimized["pruned_layers"],
        "kept_dense": optimized["kept_dense"],
        "kept_dense_reasons": optimized["kept_dense_reasons"],
        "left_to_converter": optimized["left_to_converter"],  # layers QAT could not wrap: calibrated by the converter
        "steps": optimized["steps"],
        "artifacts": {name: {"file": by_name[name].measured.file, "size_bytes": by_name[name].measured.size_bytes,
                             "gzip_bytes": by_name[name].measured.gzip_bytes,
                             recipe.metric: by_name[name].metric_value}
                      for name in ("float32", quantized)},
        "float_test_metric": float_metric,
        "artifact_sparsity": {"file": by_name[quantized].measured.file, "ops": per_op},
    }


def _phase(history: dict[str, list[float]], seconds: float) -> dict[str, Any]:
    def last(key: str) -> float | None:
        return history[key][-1] if history.get(key) else None

    return {"epochs": len(history.get("loss", [])), "seconds": round(seconds, 2), "loss": last("loss"),
            "val_loss": last("val_loss"), "val_accuracy": last("val_accuracy"), "history": history}
