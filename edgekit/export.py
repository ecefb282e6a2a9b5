"""Export: the files that make a build folder complete. `manifest.json` is written last and lists
every file with its sha256, so a folder without it is a build that did not finish."""

from __future__ import annotations

import contextlib
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from edgekit._files import sha256, write_json

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
