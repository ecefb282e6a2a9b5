"""Target profiles: every built-in file loads and cites its figures; bad files fail with exact messages."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edgekit import _toml, targets
from edgekit.errors import UsageError
from edgekit.targets import DeviceClass, Precision, Runtime

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = {
    "android-flagship", "android-midrange", "rpi4", "rpi5", "rpi-zero-2w", "jetson-orin-nano",
    "arduino-nano-33-ble-sense", "nucleo-l4r5zi", "stm32f746-disco", "stm32h743", "esp32-s3", "rp2040",
    "alif-ensemble-e7", "nxp-imx93",
}
NUMERIC_LINE = re.compile(r"^\s*[A-Za-z0-9_-]+\s*=\s*[-+]?(\d|\.\d)")

# A valid microcontroller profile; the error tests change one thing in it.
BOARD = """\
name = "my-board"
title = "My board"
class = "mcu"
runtime = "tflite-micro"
precisions = ["int8", "float32"]

[cpu]
arch = "armv7e-m"
core = "Cortex-M4F"
clock_mhz = 100
cores = 1
features = ["dsp", "fpu-sp"]

[memory]
ram_kb = 128
flash_kb = 512
ram_available_kb = 96
flash_available_kb = 320
reserve_reason = "estimate: firmware and TFLM runtime"

[budgets]
latency_ms = 500
ram_kb = 96
flash_kb = 320
"""


def write(tmp_path: Path, text: str, name: str = "my-board.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def changed(old: str, new: str) -> str:
    assert old in BOARD
    return BOARD.replace(old, new)


def load_error(path: Path | str) -> str:
    with pytest.raises(UsageError) as caught:
        targets.load(path)
    return str(caught.value)


def test_the_twelve_built_in_targets():
    assert set(targets.names()) == BUILTIN
    assert [t.name for t in targets.load_all()] == targets.names()


@pytest.mark.parametrize("name", targets.names())
def test_built_in_target_loads_and_is_consistent(name):
    target = targets.load(name)
    assert target.name == name == target.file.stem
    assert target.title
    assert target.precisions and len(set(target.precisions)) == len(target.precisions)
    memory, budgets = target.memory, target.budgets
    assert 0 < memory.ram_available_kb <= memory.ram_kb
    assert (memory.flash_kb is None) == (memory.flash_available_kb is None)
    if memory.flash_kb is not None:
        assert 0 < memory.flash_available_kb <= memory.flash_kb
    assert "estimate" in memory.reserve_reason  # the reserves are edgekit's estimates and say so
    assert budgets.latency_ms is not None and budgets.latency_ms > 0
    assert budgets.ram_kb is not None and budgets.ram_kb <= memory.ram_available_kb
    if target.device_class is DeviceClass.MCU:
        assert target.runtime is Runtime.TFLM
        assert budgets.latency_ms <= 1000
        assert (budgets.ram_kb, budgets.flash_kb) == (memory.ram_available_kb, memory.flash_available_kb)
    else:
        assert target.runtime is Runtime.LITERT
        assert target.precisions[0] is Precision.INT8 and Precision.FLOAT32 in target.precisions
    if not target.cpu.has_fpu:
        assert target.precisions == (Precision.INT8,)
    json.dumps(target.to_dict())


@pytest.mark.parametrize("name", targets.names())
def test_every_figure_has_a_source_comment(name):
    lines = targets.load(name).file.read_text().splitlines()
    uncited = [line for number, line in enumerate(lines) if NUMERIC_LINE.match(line)
               and "#" not in line and not (number > 0 and lines[number - 1].lstrip().startswith("#"))]
    assert uncited == []


def test_the_checks_are_not_vacuous():
    rp2040 = targets.load("rp2040")
    assert not rp2040.cpu.has_fpu and rp2040.precisions == (Precision.INT8,)
    assert {t.device_class for t in targets.load_all()} == set(DeviceClass)


def test_rpi4_the_default_build_target():
    rpi4 = targets.load("rpi4")
    assert (rpi4.device_class, rpi4.runtime) == (DeviceClass.SBC, Runtime.LITERT)
    assert (rpi4.cpu.arch, rpi4.cpu.core, rpi4.cpu.clock_mhz, rpi4.cpu.cores) == ("armv8-a", "Cortex-A72",
                                                                                   1800, 4)
    assert rpi4.cpu.features == ("neon",)  # Armv8.0-A: no dot product, no fp16 arithmetic
    assert rpi4.precisions == (Precision.INT8, Precision.FLOAT32)
    assert rpi4.memory.ram_kb == 4 * 1024 * 1024 and rpi4.memory.flash_kb is None
    assert rpi4.budgets.latency_ms == 50
    assert rpi4.summary() == {
        "name": "rpi4", "class": "sbc", "core": "Cortex-A72", "clock": "1800 MHz", "cores": "4",
        "RAM available": "3 GiB", "flash available": "-", "runtime": "litert", "precisions": "int8, float32",
        "latency budget": "50 ms",
    }


def test_to_dict_mirrors_the_file(tmp_path):
    path = write(tmp_path, BOARD)
    expected = tomllib.loads(BOARD)
    expected["memory"].setdefault("arena_margin", 0.0)  # the one optional field, shown with its default
    assert targets.load(path).to_dict() == {**expected, "file": str(path)}


def test_a_user_file_loads_by_path(tmp_path, monkeypatch):
    path = write(tmp_path, BOARD)
    target = targets.load(path)
    assert (target.name, target.file, target.device_class) == ("my-board", path, DeviceClass.MCU)
    assert target.summary()["flash available"] == "320 KiB"
    monkeypatch.chdir(tmp_path)
    assert targets.load("./my-board.toml") == target
    assert targets.load("my-board.toml") == target


def test_a_profile_without_flash_or_budgets_loads(tmp_path):
    text = BOARD.split("[budgets]")[0].replace("flash_kb = 512\n", "").replace("flash_available_kb = 320\n", "")
    target = targets.load(write(tmp_path, text.replace('"mcu"', '"sbc"').replace('"tflite-micro"', '"litert"')))
    assert (target.memory.flash_kb, target.memory.flash_available_kb) == (None, None)
    assert target.budgets == targets.Budgets(latency_ms=None, ram_kb=None, flash_kb=None)
    assert target.summary()["latency budget"] == "-"


def test_the_readme_example_profile_loads(tmp_path):
    readme = (ROOT / "targets" / "README.md").read_text()
    minimal, full = re.findall(r"```toml\n(.*?)```", readme, re.S)[:2]
    assert targets.load(write(tmp_path, full)).name == "my-board"
    m33 = targets.load(write(tmp_path, minimal))
    assert (m33.name, m33.device_class, m33.runtime, m33.cpu.arch, m33.latency) == (
        "my-m33", targets.DeviceClass.MCU, targets.Runtime.TFLM, "armv8-m.main", None)
    assert "dsp" in m33.cpu.features and m33.memory.ram_available_kb == 256 and "none given" in \
        m33.memory.reserve_reason


def test_with_budgets_overrides_and_keeps(tmp_path):
    target = targets.load(write(tmp_path, BOARD))
    faster = target.with_budgets(latency_ms=100)
    assert faster.budgets == targets.Budgets(latency_ms=100.0, ram_kb=96.0, flash_kb=320.0)
    assert target.budgets.latency_ms == 500  # the original is unchanged
    assert target.with_budgets() == target
    smaller = target.with_budgets(ram_kb=64, flash_kb=200.5)
    assert smaller.budgets == targets.Budgets(latency_ms=500.0, ram_kb=64.0, flash_kb=200.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.name = "other"


def test_with_budgets_rejects_impossible_budgets(tmp_path):
    path = write(tmp_path, BOARD)
    target = targets.load(path)
    with pytest.raises(UsageError) as caught:
        target.with_budgets(ram_kb=200)
    assert str(caught.value) == (f"RAM budget of 200 KiB is more than the 96 KiB of RAM available on target "
                                 f"'my-board' ({path})")
    with pytest.raises(UsageError) as caught:
        target.with_budgets(flash_kb=321)
    assert str(caught.value) == (f"flash budget of 321 KiB is more than the 320 KiB of flash available on "
                                 f"target 'my-board' ({path})")
    with pytest.raises(UsageError) as caught:
        target.with_budgets(latency_ms=0)
    assert str(caught.value) == "latency budget must be a number > 0 ms, got 0"
    with pytest.raises(UsageError) as caught:
        target.with_budgets(ram_kb="lots")
    assert str(caught.value) == "RAM budget must be a number > 0 KiB, got 'lots'"


def test_unknown_name_suggests_the_closest():
    assert load_error("rpi44") == "unknown target 'rpi44'; did you mean 'rpi4'? `edgekit targets` lists them"


def test_unknown_name_without_a_close_one_lists_them():
    assert load_error("toaster") == (f"unknown target 'toaster'; valid: {', '.join(sorted(BUILTIN))}; "
                                     "`edgekit targets` lists them")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    assert load_error(path) == f"target file '{path}' does not exist"


def test_malformed_toml(tmp_path):
    text = BOARD.replace('title = "My board"', "title = My board")
    with pytest.raises(tomllib.TOMLDecodeError) as decode:
        tomllib.loads(text)
    path = write(tmp_path, text)
    assert load_error(path) == f"{path}: not valid TOML: {decode.value}"


@pytest.mark.parametrize(("text", "message"), [
    (BOARD + "notes = 'x'\n", "unknown key 'budgets.notes'; valid keys here: flash_kb, latency_ms, ram_kb"),
    ("colour = 'red'\n" + BOARD, "unknown key 'colour'; valid keys here: budgets, class, cpu, latency, memory, "
                                 "name, npu, precisions, runtime, title"),
    (changed("cores = 1\n", "cores = 1\nl2_cache_kb = 0\n"),
     "unknown key 'cpu.l2_cache_kb'; valid keys here: arch, clock_mhz, core, cores, emulated_as, features"),

    # a misspelt required key: named as the unknown key it is, with the key it means, not as that key missing
    (changed("clock_mhz = 100", "clokc_mhz = 100"), "unknown key 'cpu.clokc_mhz'; did you mean 'cpu.clock_mhz'? "
     "valid keys here: arch, clock_mhz, core, cores, emulated_as, features"),
    (changed("[cpu]", "[cpus]"), "unknown key 'cpus'; did you mean 'cpu'? valid keys here: budgets, class, cpu, "
     "latency, memory, name, npu, precisions, runtime, title"),
    (changed("ram_kb = 128", "ram = 128"), "unknown key 'memory.ram'; did you mean 'memory.ram_kb'? valid keys here: "
     "arena_margin, flash_available_kb, flash_kb, ram_available_kb, ram_kb, reserve_reason"),
    (BOARD + "latency_msec = 5\n", "unknown key 'budgets.latency_msec'; did you mean 'budgets.latency_ms'? valid keys "
     "here: flash_kb, latency_ms, ram_kb"),
])
def test_unknown_key_names_the_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    assert load_error(path) == f"{path}: {message}"


@pytest.mark.parametrize(("old", "new", "message"), [
    ("clock_mhz = 100", 'clock_mhz = "fast"', "key 'cpu.clock_mhz': expected a number > 0, got 'fast'"),
    ("clock_mhz = 100", "clock_mhz = 0", "key 'cpu.clock_mhz': expected a number > 0, got 0.0"),
    ("cores = 1", "cores = 1.5", "key 'cpu.cores': expected an integer >= 1, got 1.5"),
    ("ram_kb = 128", "ram_kb = true", "key 'memory.ram_kb': expected an integer >= 1, got True"),
    ('name = "my-board"\n', "", "key 'name': expected a string, missing"),
    ('name = "my-board"', 'name = "My Board"', "key 'name': expected lowercase letters, digits, '-' and '_', "
                                               "starting with a letter or digit, got 'My Board'"),
    ('class = "mcu"', 'class = "laptop"', "key 'class': expected one of 'phone', 'sbc', 'mcu', got 'laptop'"),
    ('precisions = ["int8", "float32"]', 'precisions = ["int4"]',
     "key 'precisions': expected a non-empty list without repeats of 'float32', 'float16', 'int8', 'int16x8', "
     "got ['int4']"),
    ('precisions = ["int8", "float32"]', "precisions = []",
     "key 'precisions': expected a non-empty list without repeats of 'float32', 'float16', 'int8', 'int16x8', "
     "got []"),
    ('features = ["dsp", "fpu-sp"]', 'features = ["dsp", "fpu_sp"]',
     "key 'cpu.features': unknown feature 'fpu_sp'; valid: " + ", ".join(targets.FEATURES)),
    ("[cpu]\n", "", "key 'cpu': expected a table, missing"),
    ("cores = 1\n", 'cores = 1\nemulated_as = "cortex-a99"\n',
     "key 'cpu.emulated_as': expected one of 'cortex-a53', 'cortex-a72', 'cortex-a76', 'cortex-a720', 'none', "
     "got 'cortex-a99'"),
])
def test_wrong_values_name_the_file_key_and_expectation(tmp_path, old, new, message):
    path = write(tmp_path, changed(old, new))
    assert load_error(path) == f"{path}: {message}"


@pytest.mark.parametrize(("old", "new", "message"), [
    ('runtime = "tflite-micro"', 'runtime = "litert"',
     "key 'runtime': expected 'tflite-micro' for a microcontroller (class 'mcu'), got 'litert'"),
    ('features = ["dsp", "fpu-sp"]', 'features = ["dsp"]',
     "key 'precisions': core 'Cortex-M4F' has no FPU (cpu.features has none of 'fpu-sp', 'fpu-dp', 'neon'), "
     "so it runs int8 only; got ['int8', 'float32']"),
    ('precisions = ["int8", "float32"]', 'precisions = ["int8", "float16"]',
     "key 'precisions': tflite-micro has no float16 kernels; got ['int8', 'float16']"),
    ("ram_available_kb = 96", "ram_available_kb = 129",
     "key 'memory.ram_available_kb': expected at most memory.ram_kb (128), got 129"),
    ("flash_available_kb = 320", "flash_available_kb = 513",
     "key 'memory.flash_available_kb': expected at most memory.flash_kb (512), got 513"),
    ("flash_available_kb = 320\n", "",
     "key 'memory.flash_available_kb': expected an integer >= 1 because memory.flash_kb is given "
     "(give both or neither), missing"),
    ("ram_kb = 96\nflash", "ram_kb = 97\nflash",
     "key 'budgets.ram_kb': expected at most memory.ram_available_kb (96), got 97.0"),
    ("latency_ms = 500", "latency_ms = -1", "key 'budgets.latency_ms': expected a number > 0, got -1.0"),
])
def test_inconsistent_profiles_are_rejected(tmp_path, old, new, message):
    path = write(tmp_path, changed(old, new))
    assert load_error(path) == f"{path}: {message}"


def test_a_built_in_file_is_named_after_its_name(tmp_path, monkeypatch):
    folder = tmp_path / "targets"
    folder.mkdir()
    path = write(folder, BOARD, "other-board.toml")
    monkeypatch.setattr(_toml, "builtin_dir", lambda kind: folder)
    assert targets.names() == ["other-board"]
    assert load_error("other-board") == (f"{path}: key 'name': expected 'other-board' (a built-in target is "
                                         "named after its file), got 'my-board'")


def test_loading_targets_does_not_import_tensorflow():
    code = ("import sys, edgekit.targets; edgekit.targets.load_all(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_resolve_keeps_the_first_of_each_target_in_the_order_given():
    assert [t.name for t in targets.resolve(["rpi4", "nucleo-l4r5zi", "rpi4"])] == ["rpi4", "nucleo-l4r5zi"]
    every = [t.name for t in targets.resolve(["rpi5", "all", "rpi4"])]
    assert every == ["rpi5", *[name for name in targets.names() if name != "rpi5"]]
    loaded = targets.load("esp32-s3")
    assert targets.resolve([loaded, "esp32-s3"]) == [loaded]
    with pytest.raises(UsageError, match=r"^unknown target 'rpi44'; did you mean 'rpi4'\? `edgekit targets` lists"):
        targets.resolve(["all", "rpi44"])


def test_a_cortex_a_board_needs_only_its_core_and_clock(tmp_path):
    """targets/README.md's example: a Cortex-A55 board runs as the emulated A53 (in-order, the nearest QEMU
    model), with the defaults of a board running LiteRT; the built-in Cortex-A profiles each name their core."""
    readme = (ROOT / "targets" / "README.md").read_text()
    a55 = targets.load(write(tmp_path, re.findall(r"```toml\n(.*?)```", readme, re.S)[2]))
    assert (a55.name, a55.title, a55.device_class, a55.runtime, a55.cpu.emulated_as, a55.cpu.cores, a55.latency) == (
        "my-a55-board", "my-a55-board", targets.DeviceClass.SBC, targets.Runtime.LITERT, "cortex-a53", 4, None)
    assert a55.precisions == (targets.Precision.INT8, targets.Precision.FLOAT32) and a55.cpu.has_fpu
    assert a55.memory.ram_available_kb == a55.memory.ram_kb and a55.memory.reserve_reason == targets.NO_RESERVE
    expected = {"rpi-zero-2w": "cortex-a53", "rpi4": "cortex-a72", "rpi5": "cortex-a76",
                "android-midrange": "cortex-a76", "jetson-orin-nano": "cortex-a76", "android-flagship": "cortex-a720",
                "nxp-imx93": "cortex-a53"}
    assert {t.name: t.cpu.emulated_as for t in targets.load_all() if t.cpu.emulated_as} == expected
    assert targets.load("esp32-s3").cpu.emulated_as is None
