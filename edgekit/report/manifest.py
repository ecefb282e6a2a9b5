"""The build folder's manifest.json: written last, listing every file with its sha256, so a folder without it is
a build that did not finish; `verify` re-hashes a folder against it."""

from __future__ import annotations

import contextlib
import json
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from edgekit._files import sha256, write_json
from edgekit.errors import UsageError

MANIFEST = "manifest.json"
PACKAGES = ("edgekit", "tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert",
            "tflite-micro", "tf2onnx", "onnx", "onnxruntime", "numpy", "scikit-learn")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def forget_manifest(directory: Path) -> None:
    """Called before a build writes anything: an old manifest must not vouch for new files."""
    with contextlib.suppress(FileNotFoundError):
        (Path(directory) / MANIFEST).unlink()


def verify(directory: Path) -> list[str]:
    """Re-hash every file the manifest lists. Returns one line per difference (empty when all match):
    missing, changed (size or sha256), and files in the folder the manifest does not list."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise UsageError(f"{directory}: no {MANIFEST}, so not a finished build folder (a build that stopped, or "
                         "not a build at all)")
    try:
        listed = json.loads(path.read_text())["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{path}: not a readable manifest ({type(e).__name__}: {e})") from None
    problems = []
    for name, entry in sorted(listed.items()):
        file = directory / name
        if not file.is_file():
            problems.append(f"missing: {name}")
        elif file.stat().st_size != entry["size_bytes"] or sha256(file) != entry["sha256"]:
            problems.append(f"changed: {name} (sha256 {sha256(file)[:12]}..., the manifest says "
                            f"{entry['sha256'][:12]}...)")
    for file in sorted(directory.iterdir()):
        if file.is_file() and file.name != MANIFEST and file.name not in listed and not file.name.startswith("."):
            problems.append(f"not in the manifest: {file.name}")
    return problems


def write_manifest(directory: Path, files: list[str], **provenance: Any) -> dict[str, Any]:
    directory = Path(directory)
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions(),
        **provenance,
        "files": {name: {"sha256": sha256(directory / name), "size_bytes": (directory / name).stat().st_size}
                  for name in sorted(files)},
    }
    write_json(directory / MANIFEST, manifest)
    return manifest
