"""Does a model fit a target? Each budget as a check with its figure, its limit and the headroom, and
whether the figure was measured or estimated. Pure: values in, a FitReport out. Also what a target's
runtime can load at all, checked before a build trains anything."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from edgekit.errors import UsageError
from edgekit.targets import Runtime, Target
from edgekit.units import kib_text

if TYPE_CHECKING:
    from edgekit.recipes import Recipe


@dataclass(frozen=True)
class Check:
    budget: str  # latency | ram | flash | ops | precision
    ok: bool | None  # None: no budget to check against, or no figure to check
    value: float | str | None
    limit: float | str | None
    unit: str
    basis: str  # measured | estimated | profile
    summary: str  # "41.2 ms of 50 ms, 18% headroom"

    @property
    def headroom(self) -> float | None:
        if isinstance(self.value, int | float) and isinstance(self.limit, int | float) and self.limit:
            return (self.limit - self.value) / self.limit
        return None


@dataclass(frozen=True)
class FitReport:
    target: str
    checks: tuple[Check, ...]

    @property
    def fits(self) -> bool:
        return all(check.ok is not False for check in self.checks)

    @property
    def misses(self) -> list[Check]:
        return [check for check in self.checks if check.ok is False]

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "fits": self.fits,
                "checks": [{**asdict(c), "headroom": c.headroom} for c in self.checks]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitReport:
        """The inverse of to_dict (`fits` and each `headroom` are computed, not read)."""
        return cls(data["target"], tuple(Check(**{k: v for k, v in check.items() if k != "headroom"})
                                         for check in data["checks"]))


def shippable_formats(target: Target) -> dict[str, tuple[str, ...]]:
    """format -> precisions the target's runtime can load (TFLite Micro: int8 .tflite only)."""
    precisions = tuple(p.value for p in target.precisions)
    if target.runtime == Runtime.TFLM:
        return {"tflite": tuple(p for p in precisions if p == "int8")}
    return {"tflite": precisions}


def check_capabilities(recipe: Recipe, target: Target) -> None:
    """Fail before training when nothing this build produces could run on the target."""
    shippable = shippable_formats(target)["tflite"]
    produced = recipe.optimize.precision
    if not {produced, "float32"} & set(shippable):
        raise UsageError(f"target '{target.name}' runs {', '.join(shippable) or 'nothing'} with "
                         f"{target.runtime.value}; this build produces {produced} and float32 TFLite models")


def quantity(budget: str, value: float | None, limit: float | None, unit: str, basis: str,
             measured: float | None = None, margin: float = 0.0) -> Check:
    """A figure against its budget. `unit` "KB" (KiB, as profiles give budgets) is written KiB, MiB or GiB by
    magnitude. `measured` and `margin`: a figure that is a measurement plus the profile's margin (a TFLite Micro
    arena), written as both ("9.1 KiB measured + 20% margin = 10.9 KiB")."""
    if value is None:
        return Check(budget, None, None, limit, unit, basis, "not measured")
    text = kib_text if unit == "KB" else lambda figure: f"{_number(figure)} {unit}"
    shown = text(value)
    if measured is not None and margin:
        shown = f"{text(measured)} {basis} + {margin:.0%} margin = {shown}"
    if limit is None:
        return Check(budget, None, value, None, unit, basis,
                     f"{shown}, no budget" if measured is not None and margin else f"{shown} ({basis}), no budget")
    share = (limit - value) / limit if limit else 0.0
    room = f"{share:.0%} headroom" if share >= 0 else f"{-share:.0%} over"
    if measured is not None and margin:
        return Check(budget, value <= limit, value, limit, unit, basis, f"{shown} of {text(limit)}, {room}")
    return Check(budget, value <= limit, value, limit, unit, basis, f"{shown} of {text(limit)}, {room} ({basis})")


def evaluate(target: Target, *, precision: str, flash_bytes: int | None, ram_bytes: int | None,
             ram_basis: str, latency_ms: float | None, latency_basis: str, ops_supported: bool | None,
             ops_detail: str, ram_measured_bytes: int | None = None, ram_margin: float = 0.0) -> FitReport:
    """`ram_bytes` is what the check compares; `ram_measured_bytes` and `ram_margin`, when the profile adds a margin
    to a measured arena, are shown beside it."""
    budgets = target.budgets
    runnable = [p.value for p in target.precisions]
    checks = (
        quantity("latency", latency_ms, budgets.latency_ms, "ms", latency_basis),
        quantity("ram", _kb(ram_bytes), budgets.ram_kb, "KB", ram_basis, _kb(ram_measured_bytes), ram_margin),
        quantity("flash", _kb(flash_bytes), budgets.flash_kb, "KB", "measured"),
        Check("ops", ops_supported, ops_detail, target.runtime.value, "", "measured",
              f"{ops_detail} ({target.runtime.value})"),
        Check("precision", precision in runnable, precision, ", ".join(runnable), "", "profile",
              f"{precision} {'is' if precision in runnable else 'is not'} among {target.name}'s precisions "
              f"({', '.join(runnable)})"),
    )
    return FitReport(target.name, checks)


def _kb(count: int | None) -> float | None:
    return None if count is None else count / 1024


def _number(value: float) -> str:
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
