"""Small file helpers shared by the stages: atomic writes, hashes, native stderr capture."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write to a temporary name in the same folder and rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; a build folder is for sharing
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, value: Any) -> Path:
    return write_atomic(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gzip_size(data: bytes) -> int:
    """Size after gzip -9: what pruning saves shows up here, not in the raw flatbuffer."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


@contextlib.contextmanager
def captured_stderr_fd() -> Iterator[list[str]]:
    """Capture what native code (the TFLite converter, TFLite Micro) writes to file descriptor 2.

    Python's sys.stderr is not enough: C++ writes to the descriptor directly. The captured text is
    appended to the yielded list when the block ends."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        lines: list[str] = []
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


LOCK = ".lock"


@contextlib.contextmanager
def folder_lock(directory: Path) -> Iterator[dict[str, Any] | None]:
    """Hold `directory/.lock` for the block, or fail at once naming the process that holds it.

    fcntl.flock rather than an O_CREAT|O_EXCL lock file: the kernel releases a flock when its process dies,
    SIGKILL included, so a killed build can never leave a lock that blocks the next one, and no guess about
    whether a PID is still alive (PIDs are reused) decides anything. The holder writes its pid, host and
    start time into the file only so that a refused build can say who holds the folder, and empties it on
    release; a non-empty file found when the lock is free was left by a build that died. Yields that dead
    holder's record (None after a clean release), for the caller to log. flock is local to one machine:
    NFS may emulate it with byte-range locks, or not at all on old servers."""
    import fcntl
    import socket
    import time

    from edgekit.errors import EdgekitError

    path = Path(directory) / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EdgekitError(f"{directory} is in use by another build ({_holder(_read_lock(fd))}); wait for it "
                               "to finish, or build into another --out") from None
        except OSError as e:  # a file system without locks (some network mounts)
            raise EdgekitError(f"{directory}: cannot lock the build folder ({e.strerror}); build into a local "
                               "folder with --out") from None
        stale = _read_lock(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode(), 0)
        try:
            yield stale
        finally:
            os.ftruncate(fd, 0)  # a clean release: the next build finds nothing to call stale
    finally:
        os.close(fd)  # closing drops the flock


def _read_lock(fd: int) -> dict[str, Any] | None:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"null")
    except ValueError:  # written by someone else, or cut short: still worth naming as unknown
        return {}
    return record if isinstance(record, dict) else None


def _holder(record: dict[str, Any] | None) -> str:
    if not record:  # None: the holder has not written it yet; {}: not a record edgekit wrote
        return "PID unknown"
    return f"PID {record.get('pid', '?')} on {record.get('host', '?')}, started {record.get('started', '?')}"
