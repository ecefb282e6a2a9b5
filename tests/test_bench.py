"""`edgekit bench`: one model against targets, with a verdict per budget and exit 3 on a miss (issue 3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import main
from edgekit.units import size_text


def _int8(model, shape, path):
    from edgekit._files import captured_stderr_fd
    from edgekit.convert import int8_converter

    samples = np.random.default_rng(0).uniform(0, 1, (4, *shape)).astype(np.float32)
    with captured_stderr_fd():
        path.write_bytes(int8_converter(model, samples).convert())
    return path


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    """About 1.2 MB of int8 weights: fits a Raspberry Pi, not an Arduino's 704 KB of flash."""
    from edgekit._tf import keras

    model = keras.Sequential([keras.Input((1200,)), keras.layers.Dense(1000, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    rng = np.random.default_rng(1)  # non-zero biases: the converter drops all-zero ones
    model.set_weights([rng.normal(0, 0.05, w.shape).astype(np.float32) for w in model.get_weights()])
    return _int8(model, (1200,), tmp_path_factory.mktemp("bench") / "wide.tflite")


@pytest.fixture(scope="module")
def fft_model(tmp_path_factory):
    """RFFT2D and COMPLEX_ABS are TFLite builtins that TFLite Micro does not register."""
    from edgekit._files import captured_stderr_fd
    from edgekit._tf import tf

    @tf.function(input_signature=[tf.TensorSpec((1, 64), tf.float32)])
    def spectrum(x):
        return tf.abs(tf.signal.rfft(x))

    converter = tf.lite.TFLiteConverter.from_concrete_functions([spectrum.get_concrete_function()])
    path = tmp_path_factory.mktemp("bench") / "fft.tflite"
    with captured_stderr_fd():
        path.write_bytes(converter.convert())
    return path


def _bench(*args):
    return CliRunner().invoke(main, ["bench", *map(str, args), "--runs", "10", "--warmup", "1"])


def test_fits_a_large_target_and_misses_a_small_one(wide_model):
    big = _bench(wide_model, "--target", "rpi4")
    assert big.exit_code == 0, big.output
    assert "rpi4: FITS" in big.stdout
    small = _bench(wide_model, "--target", "arduino-nano-33-ble-sense")
    assert small.exit_code == 3, small.output
    assert "flash     MISS" in small.stdout
    assert small.stderr.strip().splitlines()[-1] == (
        "Error: wide.tflite does not fit arduino-nano-33-ble-sense (flash)")


def test_json_holds_every_figure(wide_model):
    # esp32-s3: a microcontroller edgekit cannot emulate (Xtensa), so host-measured arena and cost model;
    # the emulated Cortex-M figures are tests/test_emulation.py's
    result = _bench(wide_model, "--target", "esp32-s3", "--json")
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)  # one result a target
    assert report["structure"]["op_counts"] == {"FULLY_CONNECTED": 2, "SOFTMAX": 1}
    assert report["macs"] == 1200 * 1000 + 1000 * 10
    assert [op["macs"] for op in report["structure"]["ops"]] == [1_200_000, 10_000, 0]
    assert report["params"] == 1200 * 1000 + 1000 + 1000 * 10 + 10
    assert report["flash"]["model_bytes"] == wide_model.stat().st_size
    ram = report["ram"]
    assert ram["basis"] == "measured" and ram["arena_bytes"] > 0
    assert ram["required_bytes"] >= ram["arena_min_bytes"] * 1.2
    assert report["ops"] == {"supported": True, "missing": [], "checked_with": "tflite-micro",
                             "detail": "runs in the TFLite Micro runtime"}
    assert report["latency_ms"]["where"] == "host" and report["latency_ms"]["runs"] == 10
    estimate = report["target_latency"]
    assert estimate["basis"] == "estimated" and estimate["ms"] > 0 and "per-op cost model" in estimate["method"]
    checks = {c["budget"]: c for c in report["fit"]["checks"]}
    assert set(checks) == {"latency", "ram", "flash", "ops", "precision"}
    assert checks["latency"]["value"] == pytest.approx(estimate["ms"])
    assert checks["flash"]["summary"].startswith(f"{size_text(wide_model.stat().st_size)} of ")
    ram = checks["ram"]  # the measured arena and the profile's margin, each said
    assert ram["summary"].startswith(f"{size_text(report['ram']['arena_min_bytes'])} measured + 20% margin = "
                                     f"{size_text(report['ram']['required_bytes'])} of ")
    assert report["fit"]["fits"] is True


def test_a_missing_micro_op_is_named(fft_model):
    result = _bench(fft_model, "--target", "nucleo-l4r5zi", "--json")
    assert result.exit_code == 3, result.output
    [report] = json.loads(result.stdout)  # one result a target
    assert report["ops"]["supported"] is False
    assert report["ops"]["missing"] == ["RFFT2D", "COMPLEX_ABS"]
    assert "(ops)" in result.stderr


def test_budget_overrides_and_all_targets(wide_model, monkeypatch):
    # Budgets across every target, not the emulator: without it no M0+ and M7 libraries are compiled here
    # (tests/test_emulation.py runs the emulated cores).
    from edgekit.toolchains import aarch64, tools

    monkeypatch.setattr(tools, "missing", lambda *needed: ["qemu-system-arm"])
    monkeypatch.setattr(aarch64, "missing", lambda: ["qemu-aarch64"])  # nor the Cortex-A runs (test_target_properties)
    tight = _bench(wide_model, "--target", "rpi4", "--latency-ms", "0.001")
    assert tight.exit_code == 3 and "latency   MISS" in tight.stdout
    every = _bench(wide_model, "--target", "all")
    assert every.exit_code == 3  # the microcontrollers with less flash than 1.2 MB miss
    # one warning for each missing emulator, not one for the first alone
    warnings = [line.split(": ", 1)[1] for line in every.stderr.splitlines() if ": not emulated: " in line
                and line.split(": ", 1)[1].startswith("not emulated: ")]
    assert sorted(w.split(";")[0] for w in warnings) == ["not emulated: qemu-aarch64 not found",
                                                         "not emulated: qemu-system-arm not found"]
    for name in ("rpi4", "rp2040", "stm32h743", "android-flagship"):
        assert name in every.stdout
    # one unit convention: the flash check of one target reads as that target's cell in the table of all
    small = _bench(wide_model, "--target", "arduino-nano-33-ble-sense")
    flash = next(line for line in small.stdout.splitlines() if line.strip().startswith("flash")).split(None, 2)[2]
    figure = flash.split(",")[0]
    assert figure == f"{size_text(wide_model.stat().st_size)} of 704 KiB" and figure.startswith("1.2 MiB")
    assert figure in next(line for line in every.stdout.splitlines() if line.startswith("arduino-nano-33-ble-sense "))
    assert " KB" not in small.stdout + every.stdout and "1 thread, host" in small.stdout


def test_bad_model_files_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    result = _bench(empty, "--target", "rpi4")
    assert result.exit_code == 2
    assert result.stderr == f"Error: {empty}: not a TFLite or ONNX model (empty file)\n"
    missing = _bench(tmp_path / "nope.tflite")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


def test_data_must_fit_the_model_input(wide_model):
    result = _bench(wide_model, "--target", "rpi4", "--data", "digits")
    assert result.exit_code == 2
    assert result.stderr == ("Error: builtin:digits: samples of shape 8x8x1 (64 values) cannot fit the model "
                             "input 1200 (1200 values)\n")


def test_a_streaming_model_with_resource_variables(tmp_path):
    """State kept in resource variables (VAR_HANDLE / READ_VARIABLE / ASSIGN_VARIABLE), as streaming audio
    models keep it, runs in LiteRT and in TFLite Micro."""
    from edgekit._files import captured_stderr_fd
    from edgekit._tf import tf

    class Streaming(tf.Module):
        def __init__(self):
            self.state = tf.Variable(tf.zeros((1, 16)))

        @tf.function(input_signature=[tf.TensorSpec((1, 16), tf.float32)])
        def __call__(self, x):
            self.state.assign(self.state * 0.5 + x)
            return tf.nn.relu(self.state)

    module = Streaming()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    path = tmp_path / "stream.tflite"
    with captured_stderr_fd():
        path.write_bytes(converter.convert())
    result = _bench(path, "--target", "rpi4", "--target", "nucleo-l4r5zi", "--json")
    assert result.exit_code == 0, result.output
    reports = {r["target"]: r for r in json.loads(result.stdout)}
    assert "VAR_HANDLE" in reports["rpi4"]["structure"]["op_counts"]
    assert reports["nucleo-l4r5zi"]["ops"]["supported"] is True
    assert reports["nucleo-l4r5zi"]["ram"]["arena_min_bytes"] > 0


def test_without_qemu_aarch64_a_pi_keeps_its_cost_model_and_says_why(wide_model, monkeypatch, tmp_path):
    """A Cortex-A target on a machine without qemu-aarch64: one warning naming the package, and the profile's
    cost model, labelled; a user's profile that has only a core and a clock gets no latency, not a guess."""
    from edgekit.toolchains import aarch64

    monkeypatch.setattr(aarch64, "missing", lambda: ["qemu-aarch64"])
    board = tmp_path / "my-a72.toml"
    board.write_text('name = "my-a72"\n[cpu]\ncore = "Cortex-A72"\nclock_mhz = 1500\ncores = 4\n'
                     "[memory]\nram_kb = 1048576\n")
    result = _bench(wide_model, "--target", "rpi4", "--target", board, "--json")
    assert result.exit_code == 0, result.output
    reports = {r["target"]: r for r in json.loads(result.stdout)}
    latency = reports["rpi4"]["target_latency"]
    assert latency["basis"] == "estimated" and latency["ms"] > 0
    assert latency["method"].startswith("not emulated: qemu-aarch64 not found; install them (Debian/Ubuntu: "
                                        "apt-get install qemu-user")
    assert reports["my-a72"]["target_latency"] is None
    assert "rpi4: not emulated: qemu-aarch64 not found" in result.stderr


def test_without_the_cross_compiler_or_qemu_one_line_says_what_to_install(wide_model, monkeypatch):
    """A Cortex-M target on a machine without the emulation tools: one warning naming the packages, and a
    labelled estimate from the CPI fit's instructions per MAC (the profile has no cost model of its own)."""
    from edgekit.toolchains import tools

    monkeypatch.setattr(tools, "missing", lambda: ["qemu-system-arm"])
    result = _bench(wide_model, "--target", "nucleo-l4r5zi", "--json")
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)
    latency = report["target_latency"]
    assert latency["basis"] == "estimated" and latency["ms"] > 0 and latency["band"].startswith("x/÷")
    assert latency["method"].startswith("not emulated: qemu-system-arm not found; install them (Debian/Ubuntu: "
                                        "apt-get install qemu-system-arm")
    assert report["ram"]["basis"] == "measured"  # the host runtime's arena, with the profile's margin
    warnings = [line for line in result.stderr.splitlines() if "not emulated" in line]
    assert len(warnings) == 1 and "apt-get install qemu-system-arm" in warnings[0]
