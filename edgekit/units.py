"""How edgekit writes sizes and counts for people. One convention everywhere (terminal, Markdown, the HTML page,
the plots): sizes in 1024-based units, B, KiB, MiB and GiB, the unit picked by magnitude ("3.9 MiB of 3 GiB",
"32.7 KiB of 576 KiB"). Where a JSON key, a profile field or an option says `kb` (`ram_kb`, `--flash-kb`), that
kb is a KiB (1024 bytes) too; `_bytes` keys are bytes. docs/report-json.md states it for users."""

from __future__ import annotations

UNITS = (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def size_text(count: float) -> str:
    """A size in bytes in the largest unit it reaches: '812 B', '14.5 KiB', '3.9 MiB', '3 GiB' (one decimal,
    none when the figure is whole in its unit)."""
    for unit, size in UNITS:
        if count >= size:
            return f"{_one_decimal(count / size)} {unit}"
    return f"{count:,.0f} B"


def kib_text(kib: float) -> str:
    """A size given in KiB (a profile's or a budget's `_kb` figure) the way size_text writes it."""
    return size_text(kib * 1024)


def count_text(count: int, noun: str, plural: str | None = None) -> str:
    """'1 thread', '4 threads', '1,000 runs'."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def _one_decimal(value: float) -> str:
    text = f"{value:,.1f}"
    return text[:-2] if text.endswith(".0") else text
