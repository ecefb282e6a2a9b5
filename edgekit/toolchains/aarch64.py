"""An aarch64 Linux runtime for emulated Cortex-A cores: Debian 12's arm64 Python 3.11 and the aarch64 wheels of
numpy and ai-edge-litert, unpacked into a sysroot that `qemu-aarch64 -L SYSROOT -cpu CORE` runs, and edgekit's
counting plugin for QEMU's user-mode emulator.

Nothing is installed on the host: the .debs are fetched with `apt-get download` under a private apt
configuration (architecture arm64, its own lists and state under the cache, the host's dpkg database
untouched) and unpacked with `dpkg-deb -x`; the wheels are fetched with `pip download --platform ...
--only-binary=:all:` and unzipped into the sysroot's dist-packages. The sysroot is built once and cached under
EDGEKIT_CACHE_DIR (~/.cache/edgekit)/aarch64/KEY, KEY a hash of what was asked for (the Debian package names,
the pinned wheels, RECIPE); `manifest.json` beside it records what was fetched (each .deb's version, each
wheel's file name).

Each core gets its own root (`cores/CORE`): links to the shared sysroot's folders plus `proc/cpuinfo` and
`sys/devices/system/cpu/{possible,present}` describing one core of that kind. QEMU looks absolute paths up in
the `-L` folder first, so the runtime's CPU detection reads these instead of the host's x86 files (on which it
crashes). XNNPACK picks its kernels from the features QEMU's CPU model reports (HWCAP) and this file agrees
with them: asimd everywhere, asimddp (dot product) on the A76, and on the A720 (QEMU's `max`, narrowed by
options) also i8mm, bf16 and SVE2. The MIDR part in this file names the core to cpuinfo (XNNPACK picks a few
kernels by it, e.g. the A76's float GEMM).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import StageError, UsageError
from edgekit.toolchains import sources, tools

STAGE = "aarch64 runtime"
RECIPE = 1
QEMU = "qemu-aarch64"
BOARD = Path(__file__).parent / "board"
# Debian 12 (bookworm) arm64: Python 3.11 and the libraries it, numpy and LiteRT load.
DEBS = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libstdc++6",
        "libgcc-s1", "zlib1g", "libexpat1", "libffi8", "libssl3", "libbz2-1.0", "liblzma5", "libcrypt1",
        "libsqlite3-0", "libuuid1", "libncursesw6", "libtinfo6", "libzstd1")
DEBIAN_SUITES = ("bookworm", "bookworm-updates")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEBIAN_SECURITY = "bookworm-security"
# ai-edge-litert 2.3.0 and numpy 2.2.6 with the dependencies pip resolved for them, pinned so that the sysroot
# is the same on every machine.
WHEELS = ("numpy==2.2.6", "ai-edge-litert==2.3.0", "ml-dtypes==0.7.0", "flatbuffers==25.12.19",
          "protobuf==7.36.2", "backports.strenum==1.2.8", "tqdm==4.70.1", "typing-extensions==4.16.0")
PLATFORMS = ("manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
PYTHON = "usr/bin/python3.11"
SITE = "usr/lib/python3/dist-packages"


@dataclass(frozen=True)
class CortexA:
    name: str  # edgekit's name for the core (QEMU's -cpu name unless qemu_cpu says otherwise)
    part: int  # MIDR part number
    variant: int
    revision: int
    features: str  # /proc/cpuinfo's Features line, as Linux prints it on the real chip
    qemu_cpu: str = ""  # QEMU's -cpu model and options; empty: the name

    def __post_init__(self):
        if not self.qemu_cpu:
            object.__setattr__(self, "qemu_cpu", self.name)

    def cpuinfo(self) -> str:
        return (f"processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: {self.features}\nCPU implementer\t: 0x41\n"
                f"CPU architecture: 8\nCPU variant\t: {self.variant:#x}\nCPU part\t: {self.part:#05x}\n"
                f"CPU revision\t: {self.revision}\n\n")


CORES = {core.name: core for core in (
    # Raspberry Pi Zero 2 W / Pi 3 (BCM2710/RP3A0: no crypto extension)
    CortexA("cortex-a53", 0xD03, 0x0, 4, "fp asimd evtstrm crc32 cpuid"),
    # Raspberry Pi 4 (BCM2711: no crypto extension)
    CortexA("cortex-a72", 0xD08, 0x0, 3, "fp asimd evtstrm crc32 cpuid"),
    # Raspberry Pi 5 (BCM2712): ARMv8.2 with dot product
    CortexA("cortex-a76", 0xD0B, 0x4, 1, "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                                         "asimdrdm lrcpc dcpop asimddp"),
    # Snapdragon 8 Gen 3's big cores (Armv9.2: dot product, fp16, i8mm, bf16, SVE2), run as QEMU 7.2's `max`
    # with its options narrowed to the A720's (qemu-aarch64 7.2 measured with getauxval and prctl in the guest):
    # - max alone adds SME (HWCAP2 sme, sme_i8i32, sme_f32f32, sme_fa64, ...), which the A720 lacks and which
    #   XNNPACK/cpuinfo take from HWCAP2 (with it LiteRT runs KleidiAI's SME kernels, kai_*_sme): sme=off
    #   removes all of it (HWCAP2 0x7f877fff -> 0x77fff);
    # - max's SVE vector length is 512 bits (prctl PR_SVE_GET_VL 64, rdvl 64); the A720's is 128: sve128=on
    #   (the only length then: PR_SVE_SET_VL 32 gives 16). LiteRT 2.3.0's wheel holds no SVE kernel, though.
    # What max keeps that the A720 has not (svef32mm svef64mm, 7.2 has no option for them) stays out of the
    # Features line, and so does evtstrm (qemu-aarch64 does not report it); XNNPACK uses neither. The MIDR
    # QEMU gives an `mrs midr_el1` is its own (0x000f0510, implementer 0, part 'Q'); cpuinfo reads the MIDR
    # from /proc/cpuinfo, which says A720 (part 0xD81: Linux's cputype.h, from the TRM's MIDR_EL1 table); an
    # unknown part picked the same kernels. The Features line is QEMU's HWCAPs less those; that the A720 has
    # each of the optional ones (the crypto and SVE2 crypto, rng, mte) was not checked against Arm's TRM.
    CortexA("cortex-a720", 0xD81, 0x0, 1,
            "fp asimd aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 "
            "sm3 sm4 asimddp sha512 sve asimdfhm ilrcpc flagm sb paca pacg dcpodp sve2 sveaes svepmull svebitperm "
            "svesha3 svesm4 flagm2 frint svei8mm svebf16 i8mm bf16 rng bti mte",
            qemu_cpu="max,sme=off,sve128=on"),
)}


def core(name: str) -> CortexA:
    if name not in CORES:
        raise UsageError(f"no emulated aarch64 core {name!r}; known: {', '.join(CORES)}")
    return CORES[name]


def qemu() -> str:
    """qemu-aarch64's path, or one StageError line saying what to install."""
    return tools.require(QEMU)


NEEDED = (QEMU, "apt-get", "dpkg-deb", "cc")  # what building the root and counting need


def missing() -> list[str]:
    return tools.missing(NEEDED)


def qemu_version() -> str:
    return tools.version(qemu())


def key() -> str:
    request = json.dumps({"recipe": RECIPE, "debian": DEBIAN_SUITES, "debs": DEBS, "wheels": WHEELS,
                          "platforms": PLATFORMS})
    return hashlib.sha256(request.encode()).hexdigest()[:16]


def folder() -> Path:
    return sources.cache_root() / "aarch64" / key()


def manifest() -> dict:
    """What the cached sysroot was built from (building it first if needed)."""
    return json.loads((sysroot() / "manifest.json").read_text())


def sysroot(progress=None) -> Path:
    """The shared sysroot (Python, numpy, LiteRT for aarch64), built on first use and cached."""
    root = folder() / "root"
    if (root / "manifest.json").is_file():
        return root
    for name in ("apt-get", "dpkg-deb"):
        if shutil.which(name) is None:
            raise StageError(STAGE, f"{name} not found: the aarch64 sysroot is made from Debian's arm64 packages "
                                    "with apt-get download and dpkg-deb (Debian/Ubuntu hosts)")
    root.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("edgekit").info("building the aarch64 runtime for the emulated Cortex-A cores (once: about "
                                      "50 MB fetched, 155 MB under %s)", root.parent)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=root.parent) as scratch:
        work = Path(scratch)
        building = work / "root"
        debs = _download_debs(work / "apt", work / "debs")
        for deb in sorted((work / "debs").glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(building)], f"could not unpack {deb.name}")
        wheels = _download_wheels(work / "wheels")
        site = building / SITE
        site.mkdir(parents=True, exist_ok=True)
        for wheel in wheels:
            with zipfile.ZipFile(work / "wheels" / wheel) as archive:
                archive.extractall(site)
        if not (building / PYTHON).is_file():
            raise StageError(STAGE, f"the arm64 packages held no {PYTHON}")
        # import once: checks the sysroot and writes the bytecode caches, so that no later run compiles
        _run([qemu(), "-L", str(building), "-cpu", "cortex-a72", str(building / PYTHON), "-I", "-c",
              "import json, numpy, ai_edge_litert.interpreter"], "the aarch64 Python could not import numpy and LiteRT")
        record = {"recipe": RECIPE, "debs": debs, "wheels": wheels, "build_s": round(time.monotonic() - started, 1)}
        (building / "manifest.json").write_text(json.dumps(record, indent=1) + "\n")
        if root.exists():  # a half-built one from an interrupted run
            shutil.rmtree(root)
        building.replace(root)
    return root


def core_root(name: str) -> Path:
    """`cores/NAME`: the shared sysroot's folders linked, plus this core's proc/cpuinfo and cpu lists."""
    spec = core(name)
    shared = sysroot()
    root = folder() / "cores" / name
    cpuinfo = root / "proc" / "cpuinfo"
    if cpuinfo.is_file() and cpuinfo.read_text() == spec.cpuinfo():
        return root
    root.mkdir(parents=True, exist_ok=True)
    for entry in shared.iterdir():
        if entry.is_dir() and entry.name not in ("proc", "sys") and not (root / entry.name).exists():
            (root / entry.name).symlink_to(os.path.relpath(entry, root))
    cpus = root / "sys" / "devices" / "system" / "cpu"
    cpus.mkdir(parents=True, exist_ok=True)
    for listing in ("possible", "present", "online"):
        (cpus / listing).write_text("0\n")
    cpuinfo.parent.mkdir(parents=True, exist_ok=True)
    partial = cpuinfo.with_suffix(".partial")
    partial.write_text(spec.cpuinfo())
    partial.replace(cpuinfo)
    return root


def _apt_config(apt: Path) -> Path:
    """A private apt: architecture arm64, Debian 12's archive, lists and an empty dpkg status of its own."""
    for sub in ("etc/apt/sources.list.d", "etc/apt/apt.conf.d", "etc/apt/preferences.d", "var/lib/apt/lists/partial",
                "var/cache/apt/archives/partial", "var/lib/dpkg"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "var/lib/dpkg/status").write_text("")
    options = f"[arch=arm64 signed-by={KEYRING}]"
    (apt / "etc/apt/sources.list").write_text(
        "".join(f"deb {options} http://deb.debian.org/debian {suite} main\n" for suite in DEBIAN_SUITES)
        + f"deb {options} http://deb.debian.org/debian-security {DEBIAN_SECURITY} main\n")
    config = apt / "apt.conf"
    config.write_text(f'APT::Architecture "arm64";\nAPT::Architectures {{ "arm64"; }};\nDir "{apt}/";\n'
                      f'Dir::State::status "{apt}/var/lib/dpkg/status";\n'
                      'Dir::Etc::trusted "/etc/apt/trusted.gpg";\nDir::Etc::trustedparts "/etc/apt/trusted.gpg.d";\n'
                      'APT::Sandbox::User "root";\n')
    return config


def _download_debs(apt: Path, into: Path) -> dict[str, str]:
    config = _apt_config(apt)
    environment = {**os.environ, "APT_CONFIG": str(config)}
    into.mkdir(parents=True, exist_ok=True)
    _run(["apt-get", "update", "-q"], "apt-get update (arm64 lists) failed", environment)
    _run(["apt-get", "download", "-q", *DEBS], "apt-get download of the arm64 packages failed", environment, into)
    versions = {}
    for deb in into.glob("*.deb"):
        fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"], f"could not read {deb.name}")
        parsed = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
        versions[parsed["Package"]] = parsed["Version"]
    return dict(sorted(versions.items()))


def _download_wheels(into: Path) -> list[str]:
    platforms = [argument for platform in PLATFORMS for argument in ("--platform", platform)]
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--dest", str(into), *platforms,
          "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", *WHEELS],
         "pip download of the aarch64 wheels failed")
    return sorted(wheel.name for wheel in into.glob("*.whl"))


def _run(command: list[str], failure: str, environment: dict | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=cwd)
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise StageError(STAGE, f"{failure}: {last}")
    return result.stdout


@functools.cache
def plugin() -> Path:
    """The user-mode counting plugin (board/count_a64_plugin.c), compiled for the installed qemu-aarch64."""
    from edgekit.toolchains.qemu import plugin as compiled

    return compiled("count_a64_plugin.c", "qemu-aarch64")


def main() -> None:
    """`python -m edgekit.toolchains.aarch64`: build (or find) the sysroot and print where it is."""
    started = time.monotonic()
    try:
        root = sysroot()
        for name in CORES:
            core_root(name)
    except StageError as error:
        sys.exit(f"Error: {error}")
    print(f"{root} ({time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
