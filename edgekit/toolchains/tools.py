"""The programs an emulated run needs, found on PATH or explained in one line: the Arm bare-metal GCC with
newlib, QEMU's system emulator for Arm, and a host C compiler for edgekit's QEMU plugin."""

from __future__ import annotations

import functools
import shutil
import subprocess

from edgekit.errors import StageError

STAGE = "emulation"
INSTALL = {
    "arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib",
    "arm-none-eabi-g++": "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib",
    "arm-none-eabi-nm": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "cc": "gcc",
    "qemu-aarch64": "qemu-user",  # the Cortex-A runs (edgekit.toolchains.aarch64)
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
}
NEEDED = ("arm-none-eabi-g++", "arm-none-eabi-gcc", "arm-none-eabi-nm", "qemu-system-arm", "cc")


def missing(needed: tuple[str, ...] = NEEDED) -> list[str]:
    """The programs of `needed` (default: the Cortex-M runs') that are not on PATH."""
    return [name for name in needed if shutil.which(name) is None]


def install_hint(names: list[str]) -> str:
    packages = sorted({package for name in names for package in INSTALL[name].split()})
    return (f"{', '.join(names)} not found; install them (Debian/Ubuntu: apt-get install {' '.join(packages)}; "
            "macOS: brew install qemu and Arm's arm-none-eabi toolchain)")


def require(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StageError(STAGE, install_hint([name]))
    return path


@functools.cache
def version(program: str) -> str:
    """The first line `program --version` prints (part of every cache key built with it)."""
    result = subprocess.run([program, "--version"], capture_output=True, text=True)
    return (result.stdout or result.stderr).splitlines()[0].strip() if result.returncode == 0 else "unknown"
