"""A table of results rendered to a string, as the commands print it.

On a terminal: rich's table, fitted to the terminal's width. Every column gets at least its longest word, so
names ("Cortex-A72", "tflite-micro") stay whole and only cells of several words wrap between words; when even
the longest words do not fit, rich folds the widest cells (every character is still shown, never "…").
Anywhere else (a pipe, a file): plain text, every value whole on one line, columns aligned and separated by at
least two spaces, under a header line and the title (when there is one) unpadded. `awk -F '  +'` reads
it; `--json` is the format for programs."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

MIN_WIDTH = 4  # a column narrowed to fit the terminal keeps this many characters a line, if it can
GAP = "  "  # between plain columns; a value never holds two spaces in a row, so the gap splits columns


def render_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[str]],
                 terminal: bool = False) -> str:
    """The table with `title` above it (None: no title). `terminal`: rich's table, with colours and bold, as wide as
    edgekit.output.width(); otherwise plain aligned text."""
    cells = [[_one_line(cell) for cell in row] for row in [columns, *rows]]
    return _rich(title, cells) if terminal else _plain(title, cells)


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _plain(title: str | None, cells: list[list[str]]) -> str:
    cells = [cells[0]] + [[cell or "-" for cell in row] for row in cells[1:]]  # so an empty cell still splits
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [GAP.join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "".join(f"{line}\n" for line in ([title] if title else []) + lines)


def fitted_widths(cells: list[list[str]], room: int) -> list[int]:
    """Column widths (text only) for a header row and body rows, summing to at most `room` where it can.

    Each column at its widest body cell (a header may wrap) when they all fit. Else each column gets its longest
    word, and what is left goes to the columns needing least to be whole first, so that most rows keep to one
    line. When even the longest words do not fit, the widest columns are narrowed (their cells fold), the
    first (the names) last."""
    from rich.cells import cell_len

    columns = list(zip(*cells, strict=True))
    words = [max((cell_len(word) for cell in column for word in cell.split()), default=1) for column in columns]
    widest = [max(word, *(cell_len(cell) for cell in column[1:])) for word, column in zip(words, columns,
                                                                                          strict=True)]
    if sum(widest) <= room:
        return widest
    widths, spare = list(words), room - sum(words)
    for i in sorted(range(len(widths)), key=lambda i: widest[i] - words[i]):
        grow = max(0, min(spare, widest[i] - words[i]))
        widths[i], spare = widths[i] + grow, spare - grow
    for floor, narrowed in ((MIN_WIDTH, range(1, len(widths))), (1, range(len(widths)))):
        while sum(widths) > room and any(widths[i] > floor for i in narrowed):
            widest_one = max(narrowed, key=lambda i: widths[i])
            widths[widest_one] -= 1
    return widths


def _rich(title: str | None, cells: list[list[str]]) -> str:
    from rich.console import Console
    from rich.table import Table

    from edgekit.output import width as terminal_width

    width = terminal_width()
    # rich's default box: a border left of each column and one at the right, one space of padding each side
    widths = fitted_widths(cells, width - 3 * len(cells[0]) - 1)
    table = Table(title=title, title_justify="left")
    for header, column_width in zip(cells[0], widths, strict=True):
        table.add_column(header, width=column_width, overflow="fold")
    for row in cells[1:]:
        table.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=True).print(table)
    return buffer.getvalue()
