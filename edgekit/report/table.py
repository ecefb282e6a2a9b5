"""A titled table as the terminal shows it (rich), rendered to a string: the commands print it."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence


def render_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], styled: bool = False) -> str:
    """At least 130 columns wide (wider on a wider terminal); `styled`: with the terminal's colours and bold."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, no_wrap=i == 0)  # names stay whole, so they can be grepped and copied
    for row in rows:
        table.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=max(130, Console().width), force_terminal=styled).print(table)
    return buffer.getvalue()
