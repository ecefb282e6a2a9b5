"""docs/cli.md is the live `--help` of every command (issue 8)."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit import _clidoc
from edgekit.cli import main

DOC = Path(__file__).resolve().parents[1] / _clidoc.DOC  # this checkout's, wherever edgekit is installed from


def test_docs_cli_md_is_the_live_help():
    written = DOC.read_text() if DOC.is_file() else ""
    stale = [path for path, section in _clidoc.sections().items() if section not in written]
    where = ", ".join(stale) or "outside the command sections"
    assert written == _clidoc.render(), (f"docs/cli.md differs from the live help ({where}); regenerate it with "
                                         f"`{_clidoc.REGENERATE}` in the repository's root")


def test_every_command_and_option_is_in_the_reference(monkeypatch):
    sections = _clidoc.sections()
    expected = ["edgekit"]
    for name in sorted(main.commands):
        expected.append(f"edgekit {name}")
        command = main.commands[name]
        if isinstance(command, click.Group):
            expected += [f"edgekit {name} {child}" for child in sorted(command.commands)]
    assert list(sections) == expected
    for context, command in _clidoc.commands():
        for parameter in command.params:
            for option in parameter.opts if isinstance(parameter, click.Option) else ():
                assert option in sections[context.command_path], (context.command_path, option)
    # The width is fixed: the terminal the generator runs in does not change the file.
    monkeypatch.setenv("COLUMNS", "50")
    assert _clidoc.sections() == sections


def test_a_changed_help_text_makes_the_reference_stale(monkeypatch):
    before = _clidoc.render()
    monkeypatch.setattr(main.commands["verify"], "help", "Re-hash every file (changed wording).")
    after = _clidoc.render()
    assert after != before and "Re-hash every file (changed wording)." in after
