"""README.md's measured figures are the benchmark outputs' (benchmarks/readme.py), and no doc points outside
the repository (issue 15)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import readme  # benchmarks/, on pytest's pythonpath

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("*/README.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # the target of a Markdown link


def test_every_generated_region_is_the_benchmark_outputs():
    stale = readme.stale(readme.README.read_text())
    assert not stale, (f"README.md's generated regions differ from benchmarks/*.json: {', '.join(stale)}; "
                       f"regenerate them with `{readme.REGENERATE}` in the repository's root")


def test_a_changed_benchmark_output_makes_its_region_stale(monkeypatch):
    text = readme.README.read_text()
    original = readme.load

    def load(name: str) -> dict:
        loaded = original(name)
        if name == "resume":
            loaded["full_build_s"] += 1.0
        return loaded

    monkeypatch.setattr(readme, "load", load)
    assert readme.stale(text) == ["resume"]
    assert readme.stale(readme.render(text)) == []


def test_regions_are_checked_by_name():
    text = "<!-- generated:resume -->\nold\n<!-- /generated -->\n<!-- generated:mystery -->\n<!-- /generated -->\n"
    problems = readme.stale(text)
    assert "resume" in problems and "mystery (unknown region)" in problems
    assert "default-build (missing)" in problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_link_points_outside_the_repository(doc):
    text = doc.read_text()
    assert "../shared" not in text, f"{doc.relative_to(ROOT)} points at ../shared, which a clone does not have"
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):  # a URL or an anchor in the page
            continue
        resolved = (doc.parent / target.split("#")[0]).resolve()
        assert resolved.is_relative_to(ROOT), f"{doc.relative_to(ROOT)} links {target}, outside the repository"
        assert resolved.exists(), f"{doc.relative_to(ROOT)} links {target}, which does not exist"
