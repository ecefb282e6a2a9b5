"""The style every report figure is drawn in (edgekit.report.plots, edgekit.report.sweep_plot): one fixed set of
rcParams, one colour per meaning, and the helpers that make a figure and its PNG.

Drawn on matplotlib's Agg canvas without pyplot, so no display, no global figure registry and no backend
switch leak into the caller. The output is byte-identical for the same input: matplotlib's defaults with
one fixed style (not the user's matplotlibrc), the bundled DejaVu font, a fixed dpi and no 'Software'
stamp in the PNG metadata."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

DPI = 100
STYLE: dict[RcKeyType, Any] = {
    "font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10, "axes.titleweight": "bold",
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "axes.axisbelow": True, "legend.fontsize": 8, "legend.frameon": False, "figure.facecolor": "white",
}
# One colour per meaning, shared by every figure.
GOOD, BAD, NEUTRAL, ACCENT, BUDGET = "#1a7f37", "#cf222e", "#8c959f", "#0969da", "#cf222e"
VARIANT_COLORS = ("#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#0a3069", "#bc4c00")
BOUND_COLORS = {"compute": "#0969da", "memory": "#bf8700", "overhead": "#8c959f"}
BOUND_LABELS = {"compute": "compute: MACs / rate", "memory": "memory: bytes / bandwidth",
                "overhead": "overhead: fixed cost per op"}
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



@_styled
def drawn(draw: Callable[..., Any], *args: Any) -> Any:
    """The matplotlib Figure `draw(*args)` returns, laid out and drawn under the style, so that its artists sit
    where the PNG shows them (the tests look at them)."""
    figure = draw(*args)
    figure.canvas.draw()
    return figure


def share_text(share: float) -> str:
    """A share of a budget that never reads 0% or 100% unless it is: 0.12%, 4.2%, 42%, 99.6%, 130%. The figures and
    the page write shares alike."""
    percent = share * 100
    if 0 < percent < 0.01:
        return "under 0.01%"
    if percent < 10:
        return f"{percent:.2g}%"
    if 99.5 <= percent < 100:
        return f"{int(percent * 10) / 10:.1f}%"  # 99.96% is not full: written 99.9%
    return f"{percent:.0f}%"


def amount_text(value: float, unit: str) -> str:
    """A figure in its budget's unit; KB (KiB, as budgets give it) written as sizes are (edgekit.units), so that it
    reads at a glance: 3.7 MiB, 3 GiB."""
    if unit == "KB":
        from edgekit.units import kib_text

        return kib_text(value)
    return f"{value:.3g} {unit}"
