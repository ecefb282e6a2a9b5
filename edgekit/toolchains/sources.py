"""The third-party sources TensorFlow Lite Micro is built from, at the commits TFLM itself pins.

tflite-micro 90b983c names its dependencies in `tensorflow/lite/micro/tools/make/third_party_downloads.inc`
and `ext_libs/*_download.sh`; edgekit uses exactly those commits. They are never copied into edgekit: on
first use each is downloaded from its upstream repository into edgekit's cache and checked against the
sha256 of its extracted files (an archive's own bytes differ between compressors; its files do not). An
offline machine points `EDGEKIT_SOURCES` (or `--sources`) at a folder holding the archives, named as in
`ARCHIVES` below (`tflite-micro-90b983c.tar.gz`, ...): edgekit then reads them from there and downloads
nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import StageError, UsageError

SOURCES_ENV = "EDGEKIT_SOURCES"
CACHE_ENV = "EDGEKIT_CACHE_DIR"
STAGE = "tflite-micro sources"


@dataclass(frozen=True)
class Source:
    name: str  # the key edgekit uses: the folder under the sources root
    project: str
    repository: str  # owner/name on GitHub
    ref: str  # commit (or tag, for flatbuffers)
    archive: str  # the archive's file name in an offline folder
    top: str  # the archive's single top folder
    tree_sha256: str  # over the sorted (path, sha256 of content) of every regular file extracted

    @property
    def url(self) -> str:
        ref = f"refs/tags/{self.ref}" if self.ref.startswith("v") else self.ref
        return f"https://github.com/{self.repository}/archive/{ref}.tar.gz"


ARCHIVES = (
    Source("tflite-micro", "TensorFlow Lite Micro", "tensorflow/tflite-micro",
           "90b983c2b3f1480642e040bbd2ddb37b998f3424",
           "tflite-micro-90b983c.tar.gz", "tflite-micro-90b983c2b3f1480642e040bbd2ddb37b998f3424",
           "b64c3727e701301512dd95977a8aaafa1f2000db991df483e3b020b8c3f39991"),
    Source("cmsis_nn", "CMSIS-NN", "ARM-software/CMSIS-NN", "4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae",
           "CMSIS-NN-4ab83cc.tar.gz", "CMSIS-NN-4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae",
           "f8bddbff41b3ca2381ea20c1c98a03c8069de769dc9ccdfef7214584d4239f73"),
    Source("cmsis", "CMSIS 6 (Core headers)", "ARM-software/CMSIS_6", "5782d6f8057906d360f4b95ec08a2354afe5c9b9",
           "CMSIS_6-5782d6f.tar.gz", "CMSIS_6-5782d6f8057906d360f4b95ec08a2354afe5c9b9",
           "844dc064c65541c89380f08ad1bb11699b49cf05a160417f1b5095cd82ca251b"),
    Source("flatbuffers", "FlatBuffers", "google/flatbuffers", "v25.9.23", "flatbuffers-25.9.23.tar.gz",
           "flatbuffers-25.9.23", "4e380aa980fdb7889e833060dfb73d9bf67601557e367cc107527247fa30ef2c"),
    Source("gemmlowp", "gemmlowp", "google/gemmlowp", "719139ce755a0f31cbf1c37f7f98adcc7fc9f425",
           "gemmlowp-719139c.tar.gz", "gemmlowp-719139ce755a0f31cbf1c37f7f98adcc7fc9f425",
           "dd3b9117a72e54d639553e42002daf6d18f1fd9c216b66e5e4ee11638511eb0e"),
    Source("ruy", "ruy", "google/ruy", "d37128311b445e758136b8602d1bbd2a755e115d", "ruy-d371283.tar.gz",
           "ruy-d37128311b445e758136b8602d1bbd2a755e115d",
           "31a52217b9151c32bec160950d8565b3a0af99f9919dd65743351d0d4fabce70"),
)
BY_NAME = {source.name: source for source in ARCHIVES}
# TFLM's own patch to the flatbuffers headers (its Makefile applies it after downloading).
FLATBUFFERS_PATCH = "tensorflow/lite/micro/tools/make/flatbuffers.patch"


def cache_root() -> Path:
    """Where edgekit keeps what it downloads and compiles: EDGEKIT_CACHE_DIR, else $XDG_CACHE_HOME/edgekit
    (~/.cache/edgekit)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgekit"


def tree_sha256(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def commits() -> dict[str, str]:
    """name -> the pinned commit or tag: what a figure produced from these sources cites."""
    return {source.name: source.ref for source in ARCHIVES}


def source_root(offline: Path | str | None = None) -> Path:
    """A folder holding every source, checked, one sub-folder per `Source.name` (flatbuffers patched as TFLM
    patches it). Made once in the cache; later calls only look. `offline` (or EDGEKIT_SOURCES) is a folder
    of the archives, used instead of the network."""
    root = cache_root() / "sources" / ARCHIVES[0].ref[:12]
    if (root / ".complete").is_file():
        return root
    folder = offline or os.environ.get(SOURCES_ENV)
    if folder is not None and not Path(folder).is_dir():
        raise UsageError(f"{SOURCES_ENV}={folder}: no such folder; it should hold "
                         + ", ".join(s.archive for s in ARCHIVES))
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".partial-") as partial:
        staging = Path(partial)
        for source in ARCHIVES:
            archive = Path(folder) / source.archive if folder else _download(source, staging)
            if not archive.is_file():
                raise UsageError(f"{archive}: missing; {SOURCES_ENV} must hold {source.archive} "
                                 f"({source.project} {source.ref[:12]}, from {source.url})")
            _extract(source, archive, staging / source.name)
        _patch(staging / "flatbuffers", staging / "tflite-micro" / FLATBUFFERS_PATCH)
        (staging / ".complete").write_text("\n".join(f"{s.name} {s.ref}" for s in ARCHIVES) + "\n")
        if not (root / ".complete").is_file():  # another process may have finished first
            shutil.rmtree(root, ignore_errors=True)
            staging.rename(root)
            staging.mkdir()  # for TemporaryDirectory's clean-up
    return root


def _download(source: Source, staging: Path) -> Path:
    target = staging / source.archive
    try:
        with urllib.request.urlopen(source.url, timeout=120) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as error:
        raise StageError(STAGE, f"could not download {source.project} from {source.url} ({error}); offline, set "
                                f"{SOURCES_ENV} to a folder holding {source.archive}") from None
    return target


def _extract(source: Source, archive: Path, destination: Path) -> None:
    unpacked = destination.parent / f".{source.name}-unpacked"
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise StageError(STAGE, f"{archive}: not a readable .tar.gz ({error})") from None
    top = unpacked / source.top
    if not top.is_dir():
        raise StageError(STAGE, f"{archive}: expected one top folder {source.top}/")
    found = tree_sha256(top)
    if found != source.tree_sha256:
        raise StageError(STAGE, f"{archive}: its files are not {source.project} at {source.ref} (sha256 of the "
                                f"extracted tree {found[:16]}..., expected {source.tree_sha256[:16]}...)")
    top.rename(destination)
    shutil.rmtree(unpacked)


def _patch(folder: Path, patch: Path) -> None:
    result = subprocess.run(["patch", "-p1", "--quiet", "-i", str(patch)], cwd=folder, capture_output=True, text=True)
    if result.returncode:
        raise StageError(STAGE, f"TFLM's flatbuffers.patch did not apply: {(result.stdout + result.stderr).strip()}")
