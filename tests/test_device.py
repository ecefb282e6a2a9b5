"""Bundles for phones and boards, the on-device script run with TensorFlow made unimportable, the
benchmark_model log parser, and `edgekit compare` with its refitted profile."""

# ruff: noqa: E501 (the benchmark_model logs keep their lines whole, as the tool prints them)

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit import targets
from edgekit.cli import main
from edgekit.compare import parse_benchmark_model_log, parse_serial_log, read_result
from edgekit.estimate import estimate_latency
from edgekit.model_info import inspect_model

SBC_FILES = {"README.md", "bench_on_device.py", "expected_output.npy", "labels.txt", "model.json",
             "requirements.txt", "run.sh", "test_input.npy"}
PHONE_FILES = {"README.md", "bench_android.sh", "expected_output.npy", "labels.txt", "model.json",
               "test_input.npy"}

# Runs a script as __main__ with TensorFlow, tf_keras and edgekit unimportable, as on a device that has
# only numpy and LiteRT.
NO_TENSORFLOW = """
import runpy, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_keras", "edgekit"):
            raise ImportError(f"{name} is not installed on this device")
sys.meta_path.insert(0, Refuse())
for name in [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "edgekit")]:
    del sys.modules[name]
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# The summary of a benchmark_model run as the tool prints it (the layout of a published log: TI Processor SDK
# documentation, benchmark_model with --num_threads=4 --use_xnnpack=true), the graph path and figures ours.
BENCHMARK_MODEL_LOG = """INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/edgekit/int8.tflite]
INFO: Signature to run: []
INFO: #threads used for CPU inference: [4]
INFO: Use xnnpack: [1]
INFO: Loaded model /data/local/tmp/edgekit/int8.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: XNNPACK delegate created.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.
INFO: The input model file size (MB): 0.0269
INFO: Initialized session in 3.517ms.
INFO: Running benchmark for at least 20 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=4833 first=612 curr=98 min=93 max=612 avg=101.3 std=12 p5=95 median=99 p95=110

INFO: Running benchmark for at least 200 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=9930 first=101 curr=97 min=92 max=433 avg=99.8 std=9 p5=94 median=98 p95=107

INFO: Inference timings in us: Init: 3517, First inference: 612, Warmup (avg): 101.3, Inference (avg): 99.8
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=2.98438 overall=3.23047
"""
# Older builds print no prefix, no percentiles, averages in scientific notation and, from 2.x, "Peak memory
# footprint"; logcat adds its own prefix.
OLD_LOG = """count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798

Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=4.92969 overall=138.809
"""
LOGCAT_LOG = """07-08 15:34:26.202 I/tflite  ( 5395): Inference timings in us: Init: 458883, First inference: 2732148, Warmup (avg): 2.73215e+06, Inference (avg): 2.71985e+06
07-08 15:34:26.202 I/tflite  ( 5395): Memory footprint delta from the start of the tool (MB): init=286.73 overall=337
"""


def _export(model: Path, target: str, out: Path) -> None:
    result = CliRunner().invoke(main, ["export", str(model), "--target", target, "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)


def _run_on_device(bundle: Path, model: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TENSORFLOW, "bench_on_device.py", "--model", model,
                           "--threads", "1", "--runs", "20", "--warmup", "2", "--input", "test_input.npy",
                           "--expected", "expected_output.npy", "--out", "result.json", *extra],
                          cwd=bundle, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def measured(tiny_build, tmp_path_factory):
    """Both variants bundled for rpi4 and measured by bench_on_device.py in a TensorFlow-free process."""
    _, build_dir, _ = tiny_build
    results = {}
    for variant in ("int8", "float32"):
        bundle = tmp_path_factory.mktemp(f"rpi4-{variant}")
        _export(build_dir / f"{variant}.tflite", "rpi4", bundle)
        done = _run_on_device(bundle, f"{variant}.tflite")
        assert done.returncode == 0, done.stdout + done.stderr
        results[variant] = bundle
    return build_dir, results


def test_board_bundle_holds_the_model_its_check_and_the_script(measured):
    build_dir, bundles = measured
    bundle = bundles["int8"]
    assert {p.name for p in bundle.iterdir()} >= SBC_FILES | {"int8.tflite"}
    described = json.loads((bundle / "model.json").read_text())
    assert described["inputs"][0]["dtype"] == "int8" and described["inputs"][0]["scale"]
    manifest = json.loads((build_dir / "manifest.json").read_text())
    assert described["sha256"] == manifest["files"]["int8.tflite"]["sha256"]
    assert (bundle / "int8.tflite").read_bytes() == (build_dir / "int8.tflite").read_bytes()
    assert np.load(bundle / "test_input.npy").dtype == np.int8
    assert np.load(bundle / "expected_output.npy").dtype == np.int8
    assert np.load(bundles["float32"] / "test_input.npy").dtype == np.float32
    assert (bundle / "requirements.txt").read_text().split() == ["numpy", "ai-edge-litert"]
    assert "--threads 4" in (bundle / "run.sh").read_text()  # the thread count rpi4's estimate assumes
    assert "edgekit compare" in (bundle / "README.md").read_text()


def test_device_script_imports_neither_tensorflow_nor_edgekit():
    source = (Path(__file__).parents[1] / "edgekit" / "export" / "device" / "bench_on_device.py").read_text()
    imports = {line.split()[1].split(".")[0] for line in source.splitlines()
               if line.strip().startswith(("import ", "from "))}
    assert imports <= {"__future__", "argparse", "hashlib", "json", "os", "platform", "resource", "sys", "time",
                       "numpy", "importlib", "ai_edge_litert", "tflite_runtime"}


@pytest.mark.parametrize("variant", ["int8", "float32"])
def test_device_script_writes_a_result(measured, variant):
    _, bundles = measured
    result = json.loads((bundles[variant] / "result.json").read_text())
    latency = result["latency_ms"]
    assert result["runs"] == 20 and result["warmup"] == 2 and result["threads"] == 1
    assert 0 < latency["min"] <= latency["median"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert result["check"]["ok"] and result["model"] == f"{variant}.tflite"
    assert result["memory"]["peak_rss_bytes"] > 0 and result["runtime"]["name"] == "ai-edge-litert"
    assert result["device"]["cpu"] and result["device"]["os"]
    if variant == "int8":
        assert result["check"]["max_abs_difference"] == 0


def test_device_script_fails_when_the_output_differs(measured, tmp_path):
    _, bundles = measured
    for name in ("int8.tflite", "test_input.npy", "bench_on_device.py"):
        (tmp_path / name).write_bytes((bundles["int8"] / name).read_bytes())
    expected = np.load(bundles["int8"] / "expected_output.npy")
    np.save(tmp_path / "expected_output.npy", (expected.astype(np.int16) + 1).clip(-128, 127).astype(np.int8))
    done = _run_on_device(tmp_path, "int8.tflite")
    assert done.returncode == 1 and "does not give the stored output" in done.stderr
    assert not (tmp_path / "result.json").exists()


@pytest.mark.parametrize("variant", ["int8", "float32"])
def test_compare_prints_estimate_against_measured(measured, variant):
    build_dir, bundles = measured
    # measured on this x86-64 host, not on a Pi: refused, unless --force, which marks it
    refused = CliRunner().invoke(main, ["compare", str(build_dir), str(bundles[variant] / "result.json")])
    assert refused.exit_code == 2 and refused.stderr.startswith("Error: result.json cannot be a measurement of rpi4: "
                                                                "the result was measured on x86-64 (x86_64)")
    result = CliRunner().invoke(main, ["compare", str(build_dir), str(bundles[variant] / "result.json"), "--force"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert f"{variant}.tflite ({variant}) on rpi4" in result.stdout and "Forced (--force): " in result.stdout
    assert "latency" in result.stdout and "memory" in result.stdout and "sha256" in result.stdout
    data = json.loads(CliRunner().invoke(main, ["compare", str(build_dir), str(bundles[variant] / "result.json"),
                                                "--json", "--force"]).stdout)
    assert data["variant"] == variant and data["latency_error"] is not None and data["forced"]
    measured_ms = json.loads((bundles[variant] / "result.json").read_text())["latency_ms"]["median"]
    assert data["latency_error"] == pytest.approx(data["estimate"]["ms"] / measured_ms - 1)


def test_calibrated_profile_moves_the_estimate_onto_the_measurement(measured, tmp_path):
    build_dir, bundles = measured
    out = tmp_path / "rpi4-measured.toml"
    host = bundles["int8"] / "result.json"
    # This machine's measurement is no Pi's: --calibrate never refits from it, --force or not.
    for force in ([], ["--force"]):
        refused = CliRunner().invoke(main, ["compare", str(build_dir), str(host), "--calibrate", str(out), *force])
        assert refused.exit_code == 2 and not out.exists()
    assert "--calibrate refits only from a measurement of the target itself" in refused.stderr
    # The same file as the script writes it on a Pi 4 (aarch64): the device part is what the script records there.
    data = json.loads(host.read_text())
    data["device"] = {**data["device"], "machine": "aarch64", "cpu": "Raspberry Pi 4 Model B Rev 1.4"}
    pi = tmp_path / "result.json"
    pi.write_text(json.dumps(data))
    result = CliRunner().invoke(main, ["compare", str(build_dir), str(pi), "--calibrate", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    refitted = targets.load(out)
    assert refitted.cpu.emulated_as is None  # the copy keeps its refitted cost model, not the emulated A72
    measured_ms = json.loads((bundles["int8"] / "result.json").read_text())["latency_ms"]["median"]
    estimate = estimate_latency(inspect_model(build_dir / "int8.tflite"), refitted, "int8")
    assert estimate.ms == pytest.approx(measured_ms, rel=0.01)
    point = refitted.latency.calibration[-1]
    assert point.source.startswith(f"edgekit compare result.json: Raspberry Pi 4 Model B Rev 1.4 (aarch64, "
                                   f"{data['device']['os']}), {data['created']}, edgekit ")
    assert point.published_ms == pytest.approx(measured_ms)
    assert refitted.latency.threads == 1 and refitted.name == "rpi4-calibrated"
    original = targets.load("rpi4").latency
    ratio = refitted.latency.macs_per_cycle["int8"]["conv"] / original.macs_per_cycle["int8"]["conv"]
    assert refitted.latency.macs_per_cycle["float32"]["dense"] / original.macs_per_cycle["float32"]["dense"] == \
        pytest.approx(ratio)
    # The refitted profile is a target like any other.
    bench = CliRunner().invoke(main, ["bench", str(build_dir / "int8.tflite"), "--target", str(out), "--runs", "10",
                                      "--json"])
    assert bench.exit_code in (0, 3), bench.output
    [result] = json.loads(bench.stdout)  # one result a target
    assert result["target_latency"]["ms"] == pytest.approx(measured_ms, rel=0.01)


def test_phone_bundle_has_the_adb_script(tiny_build, tmp_path):
    _, build_dir, _ = tiny_build
    _export(build_dir / "int8.tflite", "android-midrange", tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= PHONE_FILES | {"int8.tflite"}
    readme = (tmp_path / "README.md").read_text()
    assert "android_aarch64_benchmark_model" in readme and "./bench_android.sh int8.tflite" in readme
    script = tmp_path / "bench_android.sh"
    assert script.stat().st_mode & 0o100
    subprocess.run(["sh", "-n", str(script)], check=True)
    assert "--graph=" in script.read_text() and "benchmark_model.log" in script.read_text()


def test_benchmark_model_log_is_parsed():
    log = parse_benchmark_model_log(BENCHMARK_MODEL_LOG)
    assert log["init_ms"] == pytest.approx(3.517) and log["first_ms"] == pytest.approx(0.612)
    assert log["warmup_avg_ms"] == pytest.approx(0.1013) and log["inference_avg_ms"] == pytest.approx(0.0998)
    assert log["runs"] == 9930 and log["stats_ms"]["median"] == pytest.approx(0.098)
    assert log["memory_mb"] == {"init": 2.98438, "overall": 3.23047}
    assert log["model"] == "int8.tflite" and log["threads"] == 4 and log["session_init_ms"] == pytest.approx(3.517)

    old = parse_benchmark_model_log(OLD_LOG)
    assert old["inference_avg_ms"] == pytest.approx(2950.34) and old["warmup_avg_ms"] == pytest.approx(3512.39)
    assert old["memory_mb"]["overall"] == pytest.approx(138.809) and old["stats_ms"]["avg"] == pytest.approx(2950.34)
    logcat = parse_benchmark_model_log(LOGCAT_LOG)
    assert logcat["inference_avg_ms"] == pytest.approx(2719.85) and logcat["memory_mb"]["overall"] == 337


def test_compare_reads_a_benchmark_model_log(tiny_build, tmp_path):
    _, build_dir, _ = tiny_build
    log = tmp_path / "benchmark_model.log"
    log.write_text("edgekit: device=Google Pixel 6a\nedgekit: android=14\n" + BENCHMARK_MODEL_LOG)
    result = read_result(log)
    assert result["kind"] == "benchmark_model" and result["latency_ms"] == pytest.approx(0.098)
    assert result["memory_bytes"] == pytest.approx(3.23047 * 2**20) and result["device"] == "Google Pixel 6a"
    done = CliRunner().invoke(main, ["compare", str(build_dir), str(log)])  # a phone's log against a Pi build
    assert done.exit_code == 2 and "the result comes from a phone, rpi4 is a single-board computer" in done.stderr
    done = CliRunner().invoke(main, ["compare", str(build_dir), str(log), "--force"])
    assert done.exit_code == 0, done.output + repr(done.exception)
    assert "int8.tflite (int8)" in done.stdout and "model file name" in done.stdout


def test_compare_reads_a_serial_log(tiny_build, tmp_path):
    _, build_dir, _ = tiny_build
    log = tmp_path / "serial.log"
    log.write_text("boot\n" + "".join(f'{{"run": {i}, "latency_ms": {20 + i % 3}, "ok": true}}\n' for i in range(9))
                   + '{"latency_ms": 2')
    assert len(parse_serial_log(log.read_text())) == 9
    done = CliRunner().invoke(main, ["compare", str(build_dir), str(log), "--variant", "int8", "--json"])
    assert done.exit_code == 2 and done.stderr == (
        "Error: serial.log cannot be a measurement of rpi4: the result ran TFLite Micro (serial log), rpi4 runs "
        "litert; the result comes from a microcontroller, rpi4 is a single-board computer (--force compares anyway, "
        "marked)\n")
    done = CliRunner().invoke(main, ["compare", str(build_dir), str(log), "--variant", "int8", "--json", "--force"])
    assert done.exit_code == 0, done.output + repr(done.exception)
    assert json.loads(done.stdout)["result"]["latency_ms"] == 21


def test_compare_refuses_what_is_not_a_result(tiny_build, tmp_path):
    _, build_dir, _ = tiny_build
    junk = tmp_path / "notes.txt"
    junk.write_text("hello\n")
    done = CliRunner().invoke(main, ["compare", str(build_dir), str(junk)])
    assert done.exit_code == 2 and "is not a device result" in done.stderr
    done = CliRunner().invoke(main, ["compare", str(tmp_path), str(junk)])
    assert done.exit_code == 2 and "has no report.json" in done.stderr


def test_compare_names_the_target_the_result_ran_on(measured):
    build_dir, bundles = measured
    result = str(bundles["int8"] / "result.json")
    named = CliRunner().invoke(main, ["compare", str(build_dir), result, "--target", "rpi4", "--json", "--force"])
    assert named.exit_code == 0, named.output
    assert json.loads(named.stdout)["target"] == "rpi4"
    other = CliRunner().invoke(main, ["compare", str(build_dir), result, "--target", "nucleo-l4r5zi"])
    assert other.exit_code == 2
    assert "the build was not made for target 'nucleo-l4r5zi'; it was for rpi4" in other.stderr


def test_compare_takes_a_bundle_folder_or_a_saved_bench_json(tmp_path):
    """A model nobody built with edgekit: its microcontroller bundle (the model only as model_data.cc's array)
    and a saved `edgekit bench --json` each stand in for the build folder."""
    from test_tflm import int8_conv

    model = tmp_path / "foreign.tflite"
    model.write_bytes(int8_conv(8))
    bundle = tmp_path / "bundle"
    _export(model, "nucleo-l4r5zi", bundle)
    assert not (bundle / "foreign.tflite").exists()
    log = tmp_path / "serial.log"
    log.write_text("".join(f'{{"run": {i}, "latency_us": 900, "arena_used": 2048}}\n' for i in range(5)))
    done = CliRunner().invoke(main, ["compare", str(bundle), str(log), "--json"])
    assert done.exit_code == 0, done.output + repr(done.exception)
    data = json.loads(done.stdout)
    assert data["target"] == "nucleo-l4r5zi" and data["variant"] == "foreign" and data["estimate"]["ms"] > 0
    bench = CliRunner().invoke(main, ["bench", str(model), "--target", "nucleo-l4r5zi", "--runs", "10", "--json"])
    saved = tmp_path / "bench.json"
    saved.write_text(bench.stdout)
    done = CliRunner().invoke(main, ["compare", str(saved), str(log), "--json"])
    assert done.exit_code == 0, done.output + repr(done.exception)
    assert json.loads(done.stdout)["estimate"]["ms"] == pytest.approx(data["estimate"]["ms"])
    (bundle / "model_data.cc").write_text("// edited\n")
    done = CliRunner().invoke(main, ["compare", str(bundle), str(log)])
    assert done.exit_code == 2 and "has neither foreign.tflite nor a model_data.cc" in done.stderr
    junk = tmp_path / "notes.json"
    junk.write_text("{}")
    done = CliRunner().invoke(main, ["compare", str(junk), str(log)])
    assert done.exit_code == 2 and "is not the JSON `edgekit bench --json` prints" in done.stderr


def test_an_emulated_phone_or_pi_figure_is_compared_at_the_measurements_threads():
    from edgekit.compare import at_threads

    estimate = {"ms": 1.0, "low_ms": 0.5, "high_ms": 2.0, "threads": 1, "error_factor": 2.0, "method": "counted",
                "emulation": {"ms_by_threads": {"1": 1.0, "2": 1.2, "3": 1.4, "4": 1.6}}}
    four = at_threads(estimate, 4)
    assert (four["ms"], four["low_ms"], four["high_ms"], four["threads"]) == (1.6, 0.8, 3.2, 4)
    assert four["method"].endswith("at the measurement's 4 threads: 1.6 ms")
    assert at_threads(estimate, 1) is estimate and at_threads(estimate, None) is estimate
    assert at_threads({**estimate, "emulation": None}, 4)["ms"] == 1.0  # a cost model's figure stays
