"""What a failed `edgekit build` leaves (issue 19 item 6): nothing, when it stopped before any stage finished in a
folder of its own, or the folder with UNFINISHED saying what stopped it and how to resume; never a bare .lock.
These builds fail in the data stage, so nothing trains."""

from __future__ import annotations

import re

from click.testing import CliRunner

from edgekit.build import UNFINISHED, mark_unfinished
from edgekit.cache import Entry, StageCache
from edgekit.cli import main

FOLDER = "digits-cnn-rpi4"


def _build(out, data: str):
    return CliRunner().invoke(main, ["build", "--recipe", "digits-cnn", "--target", "rpi4", "--out", str(out),
                                     "--data", data])


def test_a_build_that_fails_before_any_stage_finishes_leaves_no_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _build(tmp_path / "out", str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (f"Error: {tmp_path / 'empty'}: no class subfolders; put each class's "
                                              "images or .wav clips in a subfolder named after the class")
    assert list((tmp_path / "out").iterdir()) == [], "no folder holding only .lock"


def test_a_failed_build_with_finished_stages_keeps_them_and_says_it_is_unfinished(tmp_path):
    directory = tmp_path / FOLDER
    directory.mkdir()
    cache = StageCache(directory)
    cache.save("train", cache.key("train", seed=0), Entry({"seconds": 1.0}, {"float32.keras": b"an earlier run's"}))
    result = _build(tmp_path, "nothere.npz")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1].startswith("Error: nothere.npz: no such file or folder; ")
    assert sorted(p.name for p in directory.iterdir()) == [".cache", ".lock", UNFINISHED]
    assert (directory / ".lock").read_text() == "", "the lock is released"
    lines = (directory / UNFINISHED).read_text().splitlines()
    assert re.fullmatch(r"edgekit build stopped \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\): nothere\.npz: no such "
                        r"file or folder; a data spec is .*", lines[0]), lines[0]
    assert lines[1:] == [
        "This folder is not a finished build: it has no manifest.json, and its files may be out of date or missing.",
        "Finished stages kept in .cache/ for the next run: train.",
        "Run the same `edgekit build` command again to resume from the first stage that did not finish (after "
        "fixing what stopped it), or add --force to start over."]


def test_a_running_build_is_marked_unfinished_until_its_manifest(tmp_path):
    """Written when the build starts, so that one killed outright (SIGKILL, a power cut) says so too."""
    text = mark_unfinished(tmp_path).read_text()
    assert re.match(r"edgekit build started .* \(PID \d+ on .*\) and has not finished; if it is no longer running, it "
                    r"was stopped before the end\.\n", text), text
    assert "No stage finished, so nothing is kept for the next run." in text
