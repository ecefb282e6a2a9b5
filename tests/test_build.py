"""The end-to-end build, asserted on what it wrote (issue 2)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from edgekit import data, recipes


def test_manifest_lists_every_file_with_its_sha256(tiny_build):
    _, directory, _ = tiny_build
    manifest = json.loads((directory / "manifest.json").read_text())
    assert set(manifest["files"]) >= {"float32.tflite", "int8.tflite", "model.onnx", "report.json",
                                      "report.md", "float32.keras", "labels.txt"}
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == entry["sha256"], name
    assert manifest["seed"] == 0
    assert manifest["target"]["name"] == "rpi4"
    assert manifest["recipe"]["name"] == "tiny-digits"
    assert manifest["versions"]["tensorflow"].startswith("2.")
    assert not list(directory.glob("*.partial*")), "temporary files left behind"
    assert not (directory / "UNFINISHED").exists(), "a finished build is not marked unfinished"
    # rpi4 is a single-board computer: the bundle a developer copies to the Pi, listed like every other file
    assert {"bundle/rpi4/bench_on_device.py", "bundle/rpi4/run.sh", "bundle/rpi4/int8.tflite", "bundle/rpi4/model.json",
            "bundle/rpi4/test_input.npy", "bundle/rpi4/expected_output.npy"} <= set(manifest["files"])
    assert [t["name"] for t in manifest["targets"]] == ["rpi4"]
    assert manifest["fits"] == {"rpi4": {"selected": "int8", "fits": True}}


def test_report_has_the_contract_fields(tiny_build):
    _, _, report = tiny_build
    assert report["recipe"] == "tiny-digits" and report["target"] == "rpi4"
    assert report["dataset"]["name"] == "digits"
    assert report["dataset"]["train"] + report["dataset"]["val"] + report["dataset"]["test"] == 1797
    names = [v["name"] for v in report["variants"]]
    assert names == ["float32", "int8", "onnx"]
    for variant in report["variants"]:
        for key in ("name", "format", "precision", "file", "size_bytes", "gzip_bytes", "sparsity", "accuracy"):
            assert key in variant, key
        latency = variant["latency_ms"]
        assert latency["where"] == "host" and latency["runs"] == 20
        assert 0 < latency["median"] <= latency["p90"] <= latency["p99"]
    assert report["selected"] == "int8"


def test_int8_is_smaller_sparse_and_within_the_allowed_drop(tiny_build, tiny_recipe):
    _, directory, report = tiny_build
    variants = {v["name"]: v for v in report["variants"]}
    recipe = recipes.load(tiny_recipe)
    assert variants["int8"]["size_bytes"] < variants["float32"]["size_bytes"]
    assert (directory / "int8.tflite").stat().st_size == variants["int8"]["size_bytes"]
    assert variants["int8"]["precision"] == "int8" and variants["float32"]["precision"] == "float32"
    assert abs(variants["int8"]["sparsity"] - recipe.optimize.sparsity) <= 0.02
    assert variants["float32"]["sparsity"] < 0.05, "the float baseline must not be pruned"
    drop = (variants["float32"]["accuracy"] - variants["int8"]["accuracy"]) * 100
    assert drop <= recipe.optimize.max_drop


def test_onnx_matches_the_keras_baseline(tiny_build):
    import onnxruntime as ort

    from edgekit._tf import keras

    _, directory, _ = tiny_build
    x = data.load("digits").x_test
    expected = keras.models.load_model(directory / "float32.keras").predict(x, verbose=0)
    session = ort.InferenceSession(str(directory / "model.onnx"), providers=["CPUExecutionProvider"])
    actual = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_report_accuracy_is_what_the_artifact_scores(tiny_build):
    """The accuracy in report.json is re-measured here with LiteRT directly, not trusted."""
    from ai_edge_litert.interpreter import Interpreter

    _, directory, report = tiny_build
    dataset = data.load("digits")
    interpreter = Interpreter(model_path=str(directory / "int8.tflite"))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = inp["quantization"]
    correct = 0
    for x, y in zip(dataset.x_test, dataset.y_test, strict=True):
        q = np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], q[np.newaxis])
        interpreter.invoke()
        correct += int(interpreter.get_tensor(out["index"]).argmax() == y)
    int8 = next(v for v in report["variants"] if v["name"] == "int8")
    assert int8["accuracy"] == pytest.approx(correct / len(dataset.y_test))


def test_markdown_report_and_terminal_table(tiny_build):
    result, directory, report = tiny_build
    markdown = (directory / "report.md").read_text()
    assert "| int8 | tflite | int8 |" in markdown
    assert "Ship `int8`" in markdown
    assert "int8" in result.stdout and "Ship: int8 to rpi4" in result.stdout
    assert "train epoch" not in result.stdout, "progress belongs on stderr"


def test_the_data_split_is_fixed_and_stratified():
    first, second = data.load("digits"), data.load("digits")
    np.testing.assert_array_equal(first.y_test, second.y_test)
    counts = np.bincount(first.y_test, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38


def test_every_variant_carries_the_target_verdict(tiny_build):
    _, _, report = tiny_build
    for variant in report["variants"]:
        assert {c["budget"] for c in variant["fit"]["checks"]} == {"latency", "ram", "flash", "ops", "precision"}
    int8 = next(v for v in report["variants"] if v["name"] == "int8")
    latency = int8["target_latency"]
    assert latency["basis"] == "emulated" and latency["emulation"]["profile_threads"] == 4  # LiteRT, emulated A72
    assert latency["ms"] == min(latency["emulation"]["ms_by_threads"].values())  # at its fastest thread count
    assert latency["emulation"]["core"] == "cortex-a72" and latency["emulation"]["kernels"]
    assert latency["instructions"] > 0 and latency["low_ms"] < latency["ms"] < latency["high_ms"]
    assert int8["ram"]["basis"] == "measured" and int8["ram"]["rss_rise_bytes"] > 0
    assert 0 < int8["ram"]["heap"]["total_bytes"] < int8["ram"]["rss_rise_bytes"]  # its own heap, apart
    assert report["fits"] is True


def test_a_build_that_misses_its_budget_is_complete_and_exits_3(tmp_path, tiny_recipe):
    from click.testing import CliRunner

    from edgekit import targets
    from edgekit.cli import main

    profile = targets.load("rpi4").file.read_text()
    board = tmp_path / "slow-pi.toml"
    board.write_text(profile.replace('name = "rpi4"', 'name = "slow-pi"')
                     .replace("latency_ms = 50", "latency_ms = 1e-6"))
    result = CliRunner().invoke(main, ["build", "--target", str(board), "--recipe", str(tiny_recipe),
                                       "--out", str(tmp_path), "--runs", "10", "--warmup", "1"])
    assert result.exit_code == 3, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: the build is complete in ") and "int8 does not fit slow-pi: " in last
    assert " ms of 1e-06 ms, " in last and "% over (emulated)" in last
    directory = tmp_path / "tiny-digits-slow-pi"
    assert (directory / "manifest.json").exists()
    assert json.loads((directory / "report.json").read_text())["fits"] is False


def test_the_accuracy_guard_exits_3_after_a_complete_folder_and_the_table(tiny_build, tiny_recipe, tmp_path,
                                                                          monkeypatch):
    """As a missed budget does: every file written (verify passes), the table printed, then one error line.
    max_drop is lowered below any possible drop (past what a recipe file accepts) so the real guard fires."""
    import dataclasses
    import shutil

    from click.testing import CliRunner

    from edgekit.cli import main

    _, directory, _ = tiny_build
    shutil.copytree(directory, tmp_path / directory.name)  # every stage is cached: only the report runs
    load = recipes.load

    def strict(name):
        recipe = load(name)
        return dataclasses.replace(recipe, optimize=dataclasses.replace(recipe.optimize, max_drop=-101.0))

    monkeypatch.setattr(recipes, "load", strict)
    result = CliRunner().invoke(main, ["build", "--target", "rpi4", "--recipe", str(tiny_recipe),
                                       "--out", str(tmp_path), "--runs", "20", "--warmup", "2"])
    assert result.exit_code == 3, result.output
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"Error: the build is complete in {tmp_path / directory.name}, but int8 test accuracy ")
    assert "points behind float" in result.stderr and "max_drop is -101" in result.stderr
    assert "Ship: int8 to rpi4" in result.stdout and result.stdout.strip().endswith(f"{tmp_path / directory.name}")
    manifest = json.loads((tmp_path / directory.name / "manifest.json").read_text())
    assert {"labels.txt", "bundle/rpi4/run.sh"} <= set(manifest["files"])
    verified = CliRunner().invoke(main, ["verify", str(tmp_path / directory.name)])
    assert verified.exit_code == 0, verified.output


def test_verify_finds_changed_missing_and_extra_files(tiny_build, tmp_path):
    import shutil

    from click.testing import CliRunner

    from edgekit.cli import main

    _, directory, _ = tiny_build
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    clean = CliRunner().invoke(main, ["verify", str(copy)])
    assert clean.exit_code == 0 and clean.stdout.strip().endswith("every file matches manifest.json")
    content = (copy / "int8.tflite").read_bytes()
    (copy / "int8.tflite").write_bytes(content[:-1] + bytes([content[-1] ^ 0xFF]))  # one bit pattern changed
    (copy / "labels.txt").unlink()
    (copy / "notes.txt").write_text("mine")
    changed = CliRunner().invoke(main, ["verify", str(copy)])
    assert changed.exit_code == 1
    lines = changed.stdout.splitlines()
    assert lines[0].startswith("changed: int8.tflite (sha256 ") and lines[1:] == ["missing: labels.txt",
                                                                               "not in the manifest: notes.txt"]
    assert changed.stderr == f"Error: {copy}: 3 file(s) differ from manifest.json\n"
    (copy / "manifest.json").unlink()
    unfinished = CliRunner().invoke(main, ["verify", str(copy)])
    assert unfinished.exit_code == 2 and "no manifest.json, so not a finished build folder" in unfinished.stderr


def test_a_fresh_build_records_its_cache_and_what_a_rebuild_reproduces(tiny_build):
    _, directory, report = tiny_build
    assert report["cache"]["resumed"] is False and report["cache"]["reused"] == []
    assert report["cache"]["computed"] == ["train", "baseline", "optimize", "bench-rpi4-float32", "bench-rpi4-int8",
                                           "bench-rpi4-onnx"]
    manifest = json.loads((directory / "manifest.json").read_text())
    deterministic = manifest["deterministic"]
    assert sorted(deterministic["identical"] + list(deterministic["differ"])) == sorted(manifest["files"])
    assert {"report.json", "report.md"} <= set(deterministic["differ"])
    assert "host timings" in deterministic["differ"]["report.json"]
    assert (directory / ".cache" / "train" / "entry.json").is_file() and (directory / ".lock").read_text() == ""
    assert not [name for name in manifest["files"] if name.startswith(".")], "the cache and lock are not artifacts"


def test_the_log_reads_in_stage_order_with_one_timing_per_step(tiny_build):
    """Issue 19 item 5: stages logged in the order they run, the data sizes as words, and each optimization step
    timed once (the training section and the step records give the same seconds)."""
    result, _, report = tiny_build
    lines = result.stderr.splitlines()
    stages = [line for line in lines if line.startswith("[") and line.endswith("]")]
    assert stages[:5] == ["[data]", "[train]", "[baseline]", "[optimize]", "[convert]"], stages
    assert "digits: 1,257 train / 180 validation / 360 test samples" in lines
    assert not any("{" in line for line in lines)
    for step in report["optimization"]["steps"]:
        assert report["training"][step["step"]]["seconds"] == step["seconds"], step["step"]
