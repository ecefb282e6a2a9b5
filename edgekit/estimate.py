"""Target latency estimates from a per-op cost model.

    cycles(op) = max(MACs / macs_per_cycle[precision][kind], bytes / bytes_per_cycle) + op_overhead_cycles
    latency    = sum(cycles) / clock

MACs and bytes come from the model file (`edgekit.model_info`); the constants come from the target's
`[latency]` table, fitted to published measurements that the same table cites (`[[latency.calibration]]`).
The result is always labelled an estimate, with its method and the error the calibration supports.

A `[latency.<precision>]` table may name the `cpu.features` its rates assume (`requires`, e.g. the SIMD
extension the optimized kernels use) and give `[latency.<precision>.fallback]` rates for a core without
them; the estimate picks by the target's `cpu.features`. A profile that requires a feature its core lacks
and gives no fallback is rejected when it is loaded.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from edgekit import _toml
from edgekit.errors import UsageError

if TYPE_CHECKING:
    from edgekit.model_info import ModelInfo
    from edgekit.targets import Target

MAC_KINDS = ("conv", "depthwise_conv", "dense")
PRECISIONS = ("int8", "float32")


@dataclass(frozen=True)
class CalibrationPoint:
    """A published measurement the constants were fitted to, with the model to rebuild it from the zoo."""

    model: str  # zoo builder
    input_shape: tuple[int, ...]
    classes: int | None
    args: dict[str, Any]
    macs: int  # as published
    published_ms: float
    runtime: str  # the runtime and kernels the measurement used
    speedup_since: float  # how much faster the modelled runtime is: estimate = published_ms / speedup_since
    source: str
    precision: str = "int8"
    clock_mhz: float | None = None  # the clock the point was measured at, when not the profile's
    proxy: bool = False  # the model only shares the op mix: compare time per MAC, scaled to `macs`


@dataclass(frozen=True)
class LatencyModel:
    runtime: str  # the runtime and kernel generation the constants model
    threads: int
    macs_per_cycle: dict[str, dict[str, float]]  # precision -> op kind -> MACs per cycle
    bytes_per_cycle: float
    op_overhead_cycles: float
    expected_error: float  # relative; from the calibration residuals, or a stated judgement
    method: str  # how the constants were obtained, in one or two sentences
    calibration: tuple[CalibrationPoint, ...] = ()
    # precision -> the cpu.features its macs_per_cycle rates assume, and the rates for a core lacking one
    requires: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fallback: dict[str, dict[str, float]] = field(default_factory=dict)

    def rates(self, precision: str, features: Iterable[str]) -> tuple[dict[str, float], tuple[str, ...]] | None:
        """The MACs per cycle by op kind for `precision` on a core with `features`, and the required
        features the core lacks (none: the table's own rates; some: its fallback rates). None when the
        profile has no rates for `precision`."""
        table = self.macs_per_cycle.get(precision)
        if table is None:
            return None
        have = set(features)
        missing = tuple(f for f in self.requires.get(precision, ()) if f not in have)
        if not missing:
            return table, ()
        if precision not in self.fallback:
            raise UsageError(_lacks(precision, missing))
        return self.fallback[precision], missing


@dataclass(frozen=True)
class OpEstimate:
    index: int
    op: str
    kind: str
    macs: int
    bytes: int
    ms: float
    # What limits the op in the cost model: compute | memory | overhead, the largest term of its cycles. Not a
    # bound where there is no roofline: counted (instructions counted on an emulated core x CPI), scaled
    # (instructions scaled from the op's MACs or bytes at rates counted on an emulated core x CPI)
    bound: str
    instructions: int | None = None  # executed by this op on the emulated core (exact), when emulated


@dataclass(frozen=True)
class LatencyEstimate:
    ms: float
    low_ms: float
    high_ms: float
    precision: str
    threads: int
    runtime: str
    expected_error: float
    method: str
    per_op: tuple[OpEstimate, ...] = field(repr=False)
    basis: str = "estimated"  # estimated: a cost model; emulated: instructions counted on an emulated core x CPI
    # Emulated figures: the executed instructions of one inference (exact, repeatable), the multiplicative
    # error band (the truth within ms / error_factor .. ms x error_factor), and what produced the count.
    instructions: int | None = None
    error_factor: float | None = None
    emulation: dict[str, Any] | None = None

    @property
    def band(self) -> str:
        """The stated error as text: `x/÷1.3` (multiplicative) or `±30%`."""
        return band_text(self.error_factor, self.expected_error)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "band": self.band}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyEstimate:
        data = {k: v for k, v in data.items() if k != "band"}
        return cls(**{**data, "per_op": tuple(OpEstimate(**op) for op in data["per_op"])})


def band_text(error_factor: float | None, expected_error: float) -> str:
    """An error as text: `x/÷1.3` when multiplicative (`error_factor`), else `±30%`."""
    return f"x/÷{error_factor:.2g}" if error_factor else f"±{expected_error:.0%}"


def estimate_latency(info: ModelInfo, target: Target, precision: str,
                     clock_mhz: float | None = None) -> LatencyEstimate | None:
    """The target latency of one inference, or None when the profile has no constants for `precision`."""
    model = target.latency
    if model is None:
        return None
    table_name = "float32" if precision == "float16" else precision
    chosen = model.rates(table_name, target.cpu.features)
    if chosen is None:
        return None
    table, missing = chosen
    hz = (clock_mhz or target.cpu.clock_mhz) * 1e6
    per_op = []
    for op in info.ops:
        compute = op.macs / table[op.kind] if op.macs and op.kind in table else 0.0
        memory = op.bytes / model.bytes_per_cycle
        cycles = max(compute, memory) + model.op_overhead_cycles
        # What limits the op is the largest term of its cycles: the fixed per-op overhead, added to the roofline,
        # outweighs both for a small op (a reshape or a pooling is not memory-bound when dispatch is most of it).
        bound = max((compute, "compute"), (memory, "memory"), (model.op_overhead_cycles, "overhead"))[1]
        per_op.append(OpEstimate(op.index, op.op, op.kind, op.macs, op.bytes, cycles / hz * 1e3, bound))
    ms = sum(op.ms for op in per_op)
    return LatencyEstimate(
        ms=ms, low_ms=ms * (1 - model.expected_error), high_ms=ms * (1 + model.expected_error),
        precision=precision, threads=model.threads, runtime=model.runtime, expected_error=model.expected_error,
        method=f"per-op cost model (MACs and bytes per op from the file, constants of {target.name}): "
               f"{model.method}" + (f" Rates of [latency.{table_name}.fallback]: cpu.features lacks "
                                    f"{', '.join(missing)}." if missing else ""),
        per_op=tuple(per_op),
    )


def parse_latency(table: _toml.Table, features: Collection[str] = (),
                  known: Collection[str] | None = None) -> LatencyModel:
    """The `[latency]` table of a target profile whose core has `features`; `known` is the list a
    `requires` word must come from (every word when None)."""
    table.only(*PRECISIONS, "runtime", "threads", "bytes_per_cycle", "op_overhead_cycles", "expected_error", "method",
               "calibration")
    rates, requires, fallback = {}, {}, {}
    for precision in PRECISIONS:
        sub = table.table(precision, required=False).only(*MAC_KINDS, "requires", "fallback")
        if sub.data:
            rates[precision] = {kind: sub.number(kind, minimum=1e-6) for kind in MAC_KINDS}
            needs = _requires(sub, known)
            spare = sub.table("fallback", required=False).only(*MAC_KINDS)
            if spare.data:
                if not needs:
                    raise UsageError(f"{spare.file}: key '{spare.where}': a fallback is used when cpu.features "
                                     f"lacks a feature of '{sub.where}.requires', which is missing or empty")
                fallback[precision] = {kind: spare.number(kind, minimum=1e-6) for kind in MAC_KINDS}
            spare.done()
            if needs:
                requires[precision] = needs
            missing = [f for f in needs if f not in features]
            if missing and precision not in fallback:
                raise UsageError(f"{sub.file}: key '{sub.where}.requires': {_lacks(precision, missing)}")
        sub.done()
    if not rates:
        raise _toml.UsageError(f"{table.file}: key '{table.where}': expected a table '[latency.int8]' or "
                               "'[latency.float32]' with MACs per cycle for " + ", ".join(MAC_KINDS) + ", missing")
    model = LatencyModel(
        runtime=table.get("runtime", str),
        threads=table.integer("threads", 1, minimum=1),
        macs_per_cycle=rates,
        bytes_per_cycle=table.number("bytes_per_cycle", minimum=1e-6),
        op_overhead_cycles=table.number("op_overhead_cycles", minimum=0),
        expected_error=table.number("expected_error", minimum=0.01, maximum=5),
        method=table.get("method", str),
        calibration=tuple(_calibration(table, i, point) for i, point in
                          enumerate(table.get("calibration", list, []))),
        requires=requires,
        fallback=fallback,
    )
    table.done()
    return model


def _requires(sub: _toml.Table, known: Collection[str] | None) -> tuple[str, ...]:
    needs = sub.strings("requires", ())
    for feature in needs:
        if known is not None and feature not in known:
            raise UsageError(f"{sub.file}: key '{sub.where}.requires': unknown feature '{feature}'; "
                             f"valid: {', '.join(known)}")
    return needs


def _lacks(precision: str, missing: Iterable[str]) -> str:
    return (f"cpu.features lacks {', '.join(repr(f) for f in missing)}, which the {precision} rates assume, "
            f"and there is no [latency.{precision}.fallback] table with rates for a core without it")


def _calibration(table: _toml.Table, index: int, data: Any) -> CalibrationPoint:
    if not isinstance(data, dict):
        raise _toml.UsageError(f"{table.file}: key '{table.where}.calibration': expected a list of tables, "
                               f"got {data!r}")
    from edgekit import zoo

    point = _toml.Table(data, table.file, f"{table.where}.calibration[{index}]").only(
        "model", "input", "classes", "args", "macs", "published_ms", "runtime", "speedup_since", "source",
        "precision", "clock_mhz", "proxy")
    model = point.get("model", str)  # a zoo builder, or a name for a measured file (compare --calibrate)
    args = point.table("args", required=False)
    shape = point.get("input", list, expected="a list of positive integers")
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise _toml.UsageError(f"{table.file}: key '{point.where}.input': expected a list of positive "
                               f"integers, got {shape!r}")
    result = CalibrationPoint(
        model=model, input_shape=tuple(shape), classes=point.integer("classes", None, minimum=1),
        args=zoo.check_args(args, model) if model in zoo.BUILDERS else dict(args.data),
        macs=point.integer("macs", minimum=1),
        published_ms=point.number("published_ms", minimum=1e-6), runtime=point.get("runtime", str),
        speedup_since=point.number("speedup_since", 1.0, minimum=0.01), source=point.get("source", str),
        precision=point.choice("precision", PRECISIONS, "int8"), clock_mhz=point.number("clock_mhz", None, minimum=1),
        proxy=point.get("proxy", bool, False),
    )
    point.done()
    return result
