"""report.json is a documented, versioned contract (docs/report-json.md): a real build's report, field by
field, against the documented tables. A field added, removed, moved or retyped without the page changing
fails here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).parent.parent / "docs" / "report-json.md"
TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null", list: "list",
         dict: "object"}


def documented() -> dict[str, tuple[set[str], str]]:
    """path -> (the types the page allows, when it is present), from every table row of the page."""
    fields = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| `([^`]+)` \| ([^|]+) \| ([^|]+) \|", line)
        if match:
            path, types, present = match.groups()
            allowed = {t.strip() for t in re.split(r",| or ", types) if t.strip()}
            fields[path] = (allowed | ({"integer"} if "number" in allowed else set()), present.strip())
    return fields


def walk(value: Any, path: str, maps: set[str], found: dict[str, Any]) -> None:
    """Every leaf of `value` by its documented path: `[]` for list elements, `*` for the keys of a map."""
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            name = "*" if path in maps else key
            walk(inner, f"{path}.{name}" if path else name, maps, found)
    elif isinstance(value, list) and any(isinstance(item, dict) for item in value):
        for item in value:
            walk(item, f"{path}[]", maps, found)
    else:
        found[path] = value


def actual(report: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    maps = {path[:i] for path in fields for i in (m.start() for m in re.finditer(r"\.\*", path))}
    found: dict[str, Any] = {}
    for key, value in report.items():
        if key == "targets":  # a target's variants have the fields of the top-level variants
            for target in value:
                for inner, item in target.items():
                    if inner != "variants":
                        walk(item, f"targets[].{inner}", maps, found)
                found["targets[].variants"] = target["variants"]
                walk(target["variants"], "variants", maps, found)
        else:
            walk(value, key, maps, found)
    metric = f".{report['metric']}"
    return {(path[:-len(metric)] + ".<metric>" if path.startswith("optimization.artifacts.*.")
             and path.endswith(metric) else path): value for path, value in found.items()}


def test_the_page_describes_version_2():
    from edgekit.report.contract import SCHEMA_VERSION

    assert SCHEMA_VERSION == 2 and DOC.read_text().startswith("# report.json, schema version 2")


def test_the_build_report_has_exactly_the_documented_fields(tiny_build):
    """The tiny build is the default recipe (digits-cnn: small-cnn on digits, classification, accuracy) at
    test size, for rpi4: the same fields."""
    _, _, report = tiny_build
    fields = documented()
    found = actual(report, fields)
    undocumented = sorted(set(found) - set(fields))
    assert not undocumented, f"fields not in docs/report-json.md: {undocumented}"
    for path, value in found.items():
        allowed, _ = fields[path]
        assert TYPES[type(value)] in allowed, f"{path}: {TYPES[type(value)]}, documented as {allowed}"
    always = [path for path, (_, present) in fields.items() if present == "always"]
    missing = [path for path in always
               if not any(f == path or f.startswith((f"{path}.", f"{path}[]")) for f in found)]
    assert not missing, f"documented as always there, missing: {missing}"


@pytest.mark.parametrize("path", ["target", "variants", "selected", "selection_reason", "fits", "budgets"])
def test_the_top_level_is_the_lead_targets_verdict(tiny_build, path):
    _, _, report = tiny_build
    lead = report["targets"][0]
    assert report[path] == lead[{"target": "target"}.get(path, path)]
