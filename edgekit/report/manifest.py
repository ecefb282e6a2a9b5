"""The build folder's manifest.json: written last, listing every file with its sha256, so a folder without it is
a build that did not finish; `verify` re-hashes a folder against it."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit._files import sha256, write_json
from edgekit.errors import UsageError

if TYPE_CHECKING:
    from edgekit.recipes import Recipe
    from edgekit.results import BuildResult

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


def write_manifest(directory: Path, files: list[str], just_before: Callable[[], object] | None = None,
                   **provenance: Any) -> dict[str, Any]:
    """Hash every file and write manifest.json (atomically); `just_before` runs between the hashing (the slow part)
    and the write, so what it does and the manifest's appearing are as close together as they can be."""
    directory = Path(directory)
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions(),
        **provenance,
        "files": {name: {"sha256": sha256(directory / name), "size_bytes": (directory / name).stat().st_size}
                  for name in sorted(files)},
    }
    if just_before is not None:
        just_before()
    write_json(directory / MANIFEST, manifest)
    return manifest


def write_build_manifest(directory: Path, files: list[str], result: BuildResult, recipe: Recipe, seed: int,
                         dataset: dict[str, Any], just_before: Callable[[], object] | None = None) -> dict[str, Any]:
    """A build folder's manifest: the provenance (recipe, every target with its selection, seed, data), the
    lead target's metrics per variant, what a rebuild reproduces, and every file's sha256."""
    lead = result.lead
    return write_manifest(
        directory, files, just_before, recipe=recipe.to_dict(), target=lead.target.to_dict(), seed=seed,
        dataset=dataset,
        metrics={v.name: {recipe.metric: v.metric_value, "size_bytes": v.measured.size_bytes} for v in lead.variants},
        deterministic=determinism(files), targets=[t.target.to_dict() for t in result.targets],
        fits={t.name: {"selected": t.selection.variant, "fits": t.selection.fits} for t in result.targets})


# --- What a rebuild reproduces ---------------------------------------------------------------------------

# Files whose bytes differ between two builds of the same inputs by their nature, and why. Everything
# else was measured byte-identical across two fresh CPU builds (benchmarks/resume.json).
VARIES_BY_NATURE = {
    "report.json": "host timings (latency percentiles, training and optimization seconds), the RAM the process "
                   "measured, and which stages came from the cache",
    "report.md": "the host timings of report.json",
    "report.html": "the host timings and measured RAM of report.json, and the figures drawn from them",
    "plots/host_latency.png": "host timings",
    "plots/memory.png": "the RAM the process measured",
}


def determinism(files: list[str]) -> dict[str, Any]:
    """The manifest's `deterministic` section: which files a rebuild with the same recipe, data, seed,
    target, options and library versions reproduces byte for byte, and which differ and why."""
    differ = {name: reason for name, reason in VARIES_BY_NATURE.items() if name in files}
    if _trained_on_gpu():
        reason = ("trained on a GPU, whose kernels TensorFlow does not run deterministically unless "
                  "tf.config.experimental.enable_op_determinism() is on")
        differ.update({name: reason for name in files if name not in differ and name != "labels.txt"})
    return {"identical": sorted(name for name in files if name not in differ), "differ": differ,
            "basis": "same recipe, data, seed, target, build options and library versions; TensorFlow trains "
                     "deterministically on CPU, and float32.keras is saved without tf_keras's save time"}


def _trained_on_gpu() -> bool:
    from edgekit._tf import tf

    return bool(tf.config.list_physical_devices("GPU"))
