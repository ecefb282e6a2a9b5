"""Stage results of `edgekit build`, kept in the build folder so that a re-run resumes where the last one stopped.

Each stage's result sits in `<build>/.cache/<stage>/` under a key made of everything it was computed from
(recipe fields, data fingerprint, seed, upstream artifact hashes, library versions, edgekit's own code). One
entry per stage: its files (model bytes) and `entry.json`, written last, with the key, the stage's plain
values and the sha256 of each file. An entry counts only when `entry.json` is there, its key matches and
every file hashes as listed, so a build killed while writing leaves nothing a re-run would trust."""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._files import write_atomic, write_json

log = logging.getLogger("edgekit")

CACHE = ".cache"
ENTRY = "entry.json"
SCHEMA = 1  # bump when what an entry holds changes shape: older entries then miss instead of misleading


@dataclass(frozen=True)
class Entry:
    """A stage's result: JSON-friendly values, and files as bytes (name -> content)."""

    values: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict, repr=False)


def fingerprint(value: Any) -> str:
    """sha256 of a JSON-friendly value, independent of dict order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def array_fingerprint(*arrays: np.ndarray) -> str:
    """sha256 over the shapes, dtypes and bytes of `arrays`."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


# Where what the cache keeps is computed; code_fingerprint follows their imports of edgekit modules from here.
STAGE_MODULES = ("edgekit.build", "edgekit.cache", "edgekit.train", "edgekit.optimize", "edgekit.convert",
                 "edgekit.bench", "edgekit.data", "edgekit.zoo", "edgekit.tasks")
# Imported by edgekit.build for the report and export stages, which are never cached: editing a plot keeps a
# trained model. edgekit.progress draws the progress bars of the cached stages and changes none of their results.
REPORT_ONLY = ("edgekit.report.html", "edgekit.report.plots", "edgekit.report.contract", "edgekit.report.confusion",
               "edgekit.export", "edgekit.progress")


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 of the edgekit source the cached stages run. An editable install keeps one version number while
    its code changes, so the version alone would let a re-run trust results the old code computed. Only the
    modules the stages import (at any depth, function-level imports included) count, so that editing the
    CLI or adding a command does not throw away a trained model."""
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(stage_sources(package)):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def stage_sources(package: Path) -> set[Path]:
    """The source files of STAGE_MODULES and of every edgekit module they import."""
    found: set[Path] = set()
    pending = list(STAGE_MODULES)
    while pending:
        module = pending.pop()
        path = None if module in REPORT_ONLY else _source(package, module)
        if path is not None and path not in found:
            found.add(path)
            pending += _edgekit_imports(path)
    toolchains = package / "toolchains"
    if any(path.is_relative_to(toolchains) for path in found):  # the emulated runs: board files, the CPI fit
        found |= {p for p in toolchains.rglob("*") if p.suffix in (".json", ".c", ".cc", ".ld")}
    return found


def _source(package: Path, module: str) -> Path | None:
    """edgekit.a.b -> a/b.py or a/b/__init__.py; None for a name that is not a module (an imported function)."""
    relative = Path(*module.split(".")[1:])
    if relative == Path():
        return package / "__init__.py"
    for path in (package / relative.with_suffix(".py"), package / relative / "__init__.py"):
        if path.is_file():
            return path
    return None


def _edgekit_imports(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names if alias.name.startswith("edgekit.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "edgekit":
            modules.append(node.module)
            modules += [f"{node.module}.{alias.name}" for alias in node.names]  # submodules, or else skipped
    parents = [".".join(m.split(".")[:i]) for m in modules for i in range(2, m.count(".") + 1)]
    return modules + parents


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """What every key includes: the library versions and edgekit's code."""
    from edgekit.report.manifest import versions

    return {"versions": versions(), "edgekit_code": code_fingerprint(), "schema": SCHEMA}


class StageCache:
    """The cache of one build folder, and the record of which stages this run reused. `also` names other
    build folders whose entries count too (a build for several targets reuses the training of a finished
    build for one of them); an entry found there is copied here, so this folder stands alone afterwards."""

    def __init__(self, directory: Path, also: tuple[Path, ...] | list[Path] = ()):
        self.root = Path(directory) / CACHE
        self.others = [Path(folder) / CACHE for folder in also if Path(folder).resolve() != Path(directory).resolve()]
        self.reused: list[str] = []
        self.computed: list[str] = []
        self.keys: dict[str, str] = {}

    def key(self, stage: str, **inputs: Any) -> str:
        return fingerprint({"stage": stage, "inputs": inputs, **environment()})

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def run(self, stage: str, key: str, compute: Callable[[], Entry], reuse: bool = True) -> Entry:
        """The cached result of `stage` when its key matches, else `compute()`'s, saved for the next run.
        `reuse=False` computes it whatever the cache holds (and saves it)."""
        self.keys[stage] = key
        entry, where = (self.load(stage, key) if reuse else None), "cache"
        for other in self.others if entry is None and reuse else ():
            entry, where = self.load(stage, key, other), str(other.parent)
            if entry is not None:
                self.save(stage, key, entry)
                break
        if entry is not None:
            log.info("%s: reused from %s (key %s)", stage, where, key[:12])
            self.reused.append(stage)
            return entry
        entry = compute()
        self.save(stage, key, entry)
        self.computed.append(stage)
        return entry

    def load(self, stage: str, key: str, root: Path | None = None) -> Entry | None:
        """The entry of `stage` under `key` in this cache (or in `root`, another one), or None."""
        folder = (root or self.root) / stage
        try:
            record = json.loads((folder / ENTRY).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("key") != key:
            return None
        files = {}
        for name, digest in record.get("files", {}).items():
            try:
                files[name] = (folder / name).read_bytes()
            except OSError:
                files[name] = None
            if files[name] is None or hashlib.sha256(files[name]).hexdigest() != digest:
                log.info("%s: cache entry damaged (%s), computing it again", stage, name)
                return None
        return Entry(record.get("values", {}), files)

    def save(self, stage: str, key: str, entry: Entry) -> None:
        """Files first, `entry.json` last: until it is written, the entry does not exist."""
        folder = self.root / stage
        shutil.rmtree(folder, ignore_errors=True)  # the old entry stops counting before its files are replaced
        for name, content in entry.files.items():
            write_atomic(folder / name, content)
        write_json(folder / ENTRY, {"stage": stage, "key": key, "values": entry.values,
                                    "files": {name: hashlib.sha256(content).hexdigest()
                                              for name, content in entry.files.items()}})

    def record(self) -> dict[str, Any]:
        """For report.json: which stages came from the cache, which ran, and their keys (shortened)."""
        return {"resumed": bool(self.reused), "reused": list(self.reused), "computed": list(self.computed),
                "keys": {stage: key[:12] for stage, key in self.keys.items()}}
