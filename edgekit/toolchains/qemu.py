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
import re
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


def plugin(source_name: str = "count_plugin.c", qemu: str = "qemu-system-arm") -> Path:
    """A counting plugin of board/ (`source_name`), compiled for the installed `qemu` on first use and cached
    under its source and that QEMU's version."""
    source = (BOARD / source_name).read_text()
    key = hashlib.sha256((source + tools.version(tools.require(qemu))).encode()).hexdigest()[:16]
    path = sources.cache_root() / "qemu-plugin" / f"{Path(source_name).stem}-{key}.so"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        (Path(scratch) / source_name).write_text(source)
        built = Path(scratch) / "count.so"
        result = subprocess.run([tools.require("cc"), "-shared", "-fPIC", "-O2", "-o", str(built),
                                 str(Path(scratch) / source_name)], capture_output=True, text=True)
        if result.returncode:
            raise StageError(STAGE, f"could not compile edgekit's QEMU plugin: {result.stderr.strip()[-300:]}")
        built.replace(path)
    return path


def run(core: Core, elf: Path, timeout: float = 120, counter: str = "plugin") -> QemuRun:
    """Run `elf` on `core`'s board to its exit, counting instructions. A fault, hang or emulator crash raises.
    `counter`: "plugin" (edgekit's TCG plugin; falls back to "log" when this QEMU cannot load plugins) or
    "log" (QEMU's own `-d in_asm,exec,nochain` log, about 20 times slower, the same counts)."""
    mark = symbol_address(elf, MARK)
    with tempfile.TemporaryDirectory() as scratch:
        counts, log = Path(scratch) / "counts.json", Path(scratch) / "exec.log"
        command = [tools.require("qemu-system-arm"), "-M", core.board, "-nographic", "-monitor", "none",
                   "-serial", "none", "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
        counting = ["-plugin", f"{plugin()},out={counts},mark={hex(mark)}"] if counter == "plugin" else \
            ["-d", "in_asm,exec,nochain", "-D", str(log)]
        result = _qemu([*command, *counting], core, elf, timeout * (1 if counter == "plugin" else 20))
        if counter == "plugin" and "plugin" in result.stderr and not counts.is_file() and result.returncode:
            return run(core, elf, timeout, counter="log")  # a QEMU built without plugin support
        fault = _fault(result.stdout)
        if fault:
            raise Fault(STAGE, f"{elf.name} on an emulated {core.name}: {fault}")
        if counter == "log" and log.is_file():
            total, marks = _count_log(log, mark)
        elif counts.is_file():
            counted = json.loads(counts.read_text())
            total, marks = counted["total"], counted["marks"]
        else:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise StageError(STAGE, f"QEMU ({core.board}) stopped without counting (exit status "
                                    f"{result.returncode}): {last}")
    return QemuRun(result.stdout, result.stderr, result.returncode, total, tuple(marks), qemu_version())


class Fault(StageError):
    """The program stopped in a fault handler (HardFault, BusFault...): the core's fault registers say why."""


def _qemu(command: list[str], core: Core, elf: Path, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise StageError(STAGE, f"{elf.name} on an emulated {core.name} ({core.board}) did not finish within "
                                f"{timeout:.0f} s (a hang, or a model too large for the limit)") from None


_BLOCK_INSN = re.compile(r"^0x([0-9a-f]+):\s")
_EXEC = re.compile(r"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/")


def _count_log(log: Path, mark: int) -> tuple[int, list[int]]:
    """What the plugin counts, from QEMU's log: each translated block's instruction count (in_asm), added at
    every execution of the block (exec, with chaining off so that every one is logged); a block starting at
    the marker records the running count after its own instructions, as the plugin does."""
    sizes: dict[int, int] = {}
    total, marks, block, first = 0, [], 0, None
    with log.open(errors="replace") as lines:
        for line in lines:
            if line.startswith("IN:"):
                block, first = 0, None
            elif (found := _BLOCK_INSN.match(line)) is not None:
                first = int(found.group(1), 16) if first is None else first
                block += 1
                sizes[first] = block
            elif (executed := _EXEC.match(line)) is not None:
                pc = int(executed.group(1), 16)
                total += sizes.get(pc, 0)
                if pc == mark:
                    marks.append(total)
    return total, marks


def _fault(stdout: str) -> str | None:
    for line in stdout.splitlines():
        if line.startswith('{"fault"'):
            record = json.loads(line)
            return f"{record['fault']} (CFSR {record['cfsr']}): the program crashed"
    return None
