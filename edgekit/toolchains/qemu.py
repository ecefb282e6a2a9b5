"""Run a program on QEMU's model of an Arm MPS2/MPS3 board, counting the instructions the core executes.

`qemu-system-arm -M BOARD -nographic -semihosting-config enable=on,target=native -kernel PROGRAM.elf`: the
program's printf and exit go through semihosting, so its stdout is the program's own output and its exit
status the program's. edgekit's TCG plugin (board/count_plugin.c, compiled once per QEMU version with the
host C compiler) counts every executed instruction and records the count at each call of `edgekit_mark`.

A hard fault prints one line from the board file's handler and exits; a hang is stopped at `timeout`; a
QEMU crash (a lock-up QEMU cannot model, a board it does not have) is its exit status. Each becomes one
StageError line, and nothing QEMU prints reaches edgekit's stdout.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import StageError
from edgekit.toolchains import sources, tools
from edgekit.toolchains.cores import Core
from edgekit.toolchains.firmware import BOARD, symbol_address

STAGE = "emulation"
MARK = "edgekit_mark"


@dataclass(frozen=True)
class QemuRun:
    stdout: str
    stderr: str
    exit_status: int
    total_instructions: int
    marks: tuple[int, ...]  # running instruction count at each edgekit_mark call
    qemu: str  # QEMU's version line


def qemu_version() -> str:
    return tools.version(tools.require("qemu-system-arm"))


def plugin() -> Path:
    """The counting plugin, compiled for the installed QEMU on first use and cached."""
    source = (BOARD / "count_plugin.c").read_text()
    key = hashlib.sha256((source + qemu_version()).encode()).hexdigest()[:16]
    path = sources.cache_root() / "qemu-plugin" / f"count-{key}.so"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        (Path(scratch) / "count_plugin.c").write_text(source)
        built = Path(scratch) / "count.so"
        result = subprocess.run([tools.require("cc"), "-shared", "-fPIC", "-O2", "-o", str(built),
                                 str(Path(scratch) / "count_plugin.c")], capture_output=True, text=True)
        if result.returncode:
            raise StageError(STAGE, f"could not compile edgekit's QEMU plugin: {result.stderr.strip()[-300:]}")
        built.replace(path)
    return path


def run(core: Core, elf: Path, timeout: float = 120) -> QemuRun:
    """Run `elf` on `core`'s board to its exit, counting instructions. A fault, hang or emulator crash raises."""
    with tempfile.TemporaryDirectory() as scratch:
        counts = Path(scratch) / "counts.json"
        command = [tools.require("qemu-system-arm"), "-M", core.board, "-nographic", "-monitor", "none",
                   "-serial", "none", "-semihosting-config", "enable=on,target=native", "-kernel", str(elf),
                   "-plugin", f"{plugin()},out={counts},mark={hex(symbol_address(elf, MARK))}"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise StageError(STAGE, f"{elf.name} on an emulated {core.name} ({core.board}) did not finish within "
                                    f"{timeout:.0f} s (a hang, or a model too large for the limit)") from None
        fault = _fault(result.stdout)
        if fault:
            raise StageError(STAGE, f"{elf.name} on an emulated {core.name}: {fault}")
        if not counts.is_file():
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise StageError(STAGE, f"QEMU ({core.board}) stopped without counting (exit status "
                                    f"{result.returncode}): {last}")
        counted = json.loads(counts.read_text())
    return QemuRun(result.stdout, result.stderr, result.returncode, counted["total"], tuple(counted["marks"]),
                   qemu_version())


def _fault(stdout: str) -> str | None:
    for line in stdout.splitlines():
        if line.startswith('{"fault"'):
            record = json.loads(line)
            return f"{record['fault']} (CFSR {record['cfsr']}): the program crashed"
    return None
