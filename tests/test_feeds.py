"""Models as users bring them (issue 18, items 1 and 2): symbolic and fixed dimensions, integer scalars, and
recurrent state, in ONNX and TFLite files built here (tests/stateful.py) and run in the real runtimes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import stateful
from click.testing import CliRunner

from edgekit import feeds
from edgekit.cli import main
from edgekit.errors import UsageError

SAMPLES_HUGE = 2**31


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("stateful")
    return {
        # one state [2, batch, 16] with a fixed leading dimension, a symbolic batch, an int64 scalar sample rate
        "vad.onnx": stateful.onnx_model(folder / "vad.onnx"),
        # the recurrent state as separate h and c inputs, their updates as hn and cn
        "hc.onnx": stateful.onnx_model(folder / "hc.onnx", states=("h", "c"), layers=1,
                                       state_outputs={"h": "hn", "c": "cn"}),
        # the samples dimension symbolic: only --input can say its size
        "dyn.onnx": stateful.onnx_model(folder / "dyn.onnx", samples="samples"),
        # names in a TFLite signature; the converter orders the inputs by name (state before input)
        "vad.tflite": stateful.tflite_model(folder / "vad.tflite"),
        # the state's batch dimension is -1 in the file: unresolved without --input
        "dyn.tflite": stateful.tflite_model(folder / "dyn.tflite", dynamic_state_batch=True),
        # float inputs only, as TFLite Micro takes them
        "float.tflite": stateful.tflite_model(folder / "float.tflite", rate=False),
    }


def bench(path, *args: str) -> tuple[int, list | None, str]:
    done = CliRunner().invoke(main, ["bench", str(path), "--runs", "10", "--warmup", "2", "--json", *args])
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    return done.exit_code, json.loads(done.stdout) if done.stdout.strip() else None, done.stderr


def by_name(result: dict) -> dict[str, dict]:
    return {f["name"]: f for f in result["feeds"]["inputs"]}


# ---- the plan, read statically --------------------------------------------------------------------------

def test_parse_input_forms(tmp_path):
    assert feeds.parse_input("state:2x1x128").shape == (2, 1, 128)
    assert feeds.parse_input("state:[2,1,128]:float32").dtype == "float32"
    assert feeds.parse_input("sr:[]").shape == ()
    assert feeds.parse_input("serving_default_x:0:1x4").name == "serving_default_x:0"
    assert feeds.parse_input("sr=8000").value == 8000
    np.save(tmp_path / "chunk.npy", np.zeros((1, 64), np.float32))
    assert feeds.parse_input(f"input={tmp_path / 'chunk.npy'}").file == tmp_path / "chunk.npy"
    for bad in ("state", "state:2xhalf", "=3", "x=/no/such.npy", "x:-1x4"):
        with pytest.raises(UsageError, match="--input"):
            feeds.parse_input(bad)


def test_plan_resolves_batch_keeps_fixed_dims_and_pairs_state(models):
    plan = feeds.plan(models["vad.onnx"])
    shapes = {f.label: f.shape for f in plan.feeds}
    # the batch axis (named 'batch', also inside the state) is 1; the state's fixed 2 is kept, never rewritten
    assert shapes == {"input": (1, 64), "state": (2, 1, 16), "sr": ()}
    assert plan.state == (("state", "stateN"),)
    assert plan.values["sr"].dtype == np.int64 and int(plan.values["sr"]) == feeds.DEFAULT_RATE
    assert plan.notes and "sr" in plan.notes[0] and "--input sr=VALUE" in plan.notes[0]
    hc = feeds.plan(models["hc.onnx"])
    assert hc.state == (("h", "hn"), ("c", "cn"))


def test_plan_names_what_it_cannot_resolve_and_takes_the_fix(models):
    with pytest.raises(UsageError) as error:
        feeds.plan(models["dyn.onnx"])
    line = str(error.value)
    assert "\n" not in line
    for shown in ("input [batch, samples] float32", "state [2, batch, 16] float32", "sr [] int64",
                  "--input input:1xN"):
        assert shown in line
    plan = feeds.plan(models["dyn.onnx"], feeds.parse_inputs(["input:1x64", "sr=8000"]))
    assert [f.shape for f in plan.feeds] == [(1, 64), (2, 1, 16), ()]
    assert int(plan.values["sr"]) == 8000 and plan.feeds[2].source == "value 8000"


def test_plan_refuses_what_contradicts_the_model(models):
    cases = {"state:1x1x16": "has 2 at axis 0, fixed by the model", "nope:1": "has no input 'nope'",
             "sr=0.5": "holds whole numbers", "state:2x1x16:int8": "is float32 in the model"}
    for given, message in cases.items():
        with pytest.raises(UsageError, match=message):
            feeds.plan(models["vad.onnx"], feeds.parse_inputs([given]))


def test_tflite_signature_names_order_and_state(models):
    plan = feeds.plan(models["vad.tflite"])
    assert [f.label for f in plan.feeds] == ["input", "state", "sr"]  # the data's input first
    assert plan.feeds[1].name == "serving_default_state:0" and plan.feeds[1].state_label == "stateN"
    with pytest.raises(UsageError, match=r"state \[2, \?, 16\] float32.*--input state:2xNx16"):
        feeds.plan(models["dyn.tflite"])


# ---- bench, with and without --input -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["vad.onnx", "hc.onnx", "vad.tflite"])
def test_bench_feeds_every_input_and_times_steady_state(models, name):
    code, results, stderr = bench(models[name])
    assert code in (0, 3), stderr  # 3: an ONNX file misses rpi4's op check (LiteRT loads .tflite)
    result = results[0]
    fed = by_name(result)
    assert fed["sr"]["source"].startswith("value 16000")
    states = {n: f["state_from"] for n, f in fed.items() if f["state_from"]}
    assert states == ({"h": "hn", "c": "cn"} if name == "hc.onnx" else {"state": "stateN"})
    assert result["feeds"]["state_method"].startswith("steady state")
    assert "fed 16000" in stderr and "is fed back into input" in stderr
    assert result["latency_ms"]["median"] > 0
    if name == "vad.tflite":
        # every input and the state, on the emulated Cortex-A72 too: its 4th invoke (3 warm-ups feeding the state
        # back) gives the bytes this host's LiteRT gives for the same sequence
        assert result["target_latency"]["basis"] == "emulated"
        assert "output bytes identical to this host's LiteRT" in result["ops"]["detail"]


@pytest.mark.parametrize("name", ["dyn.onnx", "dyn.tflite"])
def test_bench_unresolved_is_one_line_then_input_fixes_it(models, name, tmp_path):
    code, _, stderr = bench(models[name])
    assert code == 2 and stderr.count("\n") == 1 and stderr.startswith("Error: ") and "--input" in stderr
    state = np.full((2, 1, 16), 0.5, np.float32)
    np.save(tmp_path / "state.npy", state)
    given = ["--input", "input:1x64"] if name == "dyn.onnx" else ["--input", f"state={tmp_path / 'state.npy'}"]
    code, results, stderr = bench(models[name], *given, "--input", "sr=8000")
    assert code in (0, 3), stderr
    fed = by_name(results[0])
    assert fed["sr"]["source"] == "value 8000" and fed["state"]["shape"] == [2, 1, 16]
    if name == "dyn.tflite":
        assert fed["state"]["source"] == "file state.npy"


def test_the_timed_call_feeds_the_state_back(models):
    """LiteRT: after two timed calls the state input holds the state output of the second, which is the
    model applied twice from zeros (the same steps done by hand)."""
    from edgekit.runtimes.litert import TFLiteRunner

    plan = feeds.plan(models["vad.tflite"])
    runner = TFLiteRunner(models["vad.tflite"])
    state_in, state_out = plan.state[0]
    values = {**plan.values, plan.primary: np.full((1, stateful.SAMPLES), 0.05, np.float32)}  # zeros stay zeros
    by_hand = dict(values)
    for _ in range(2):
        by_hand[state_in] = runner.outputs(by_hand)[state_out]
    call = runner.feed(values, plan.state)
    call()
    call()
    details = {d["name"]: d["index"] for d in runner._interpreter.get_input_details()}
    fed_back = runner._interpreter.get_tensor(details[state_in])
    assert np.abs(fed_back).max() > 0 and np.allclose(fed_back, by_hand[state_in])


def test_data_refused_for_a_model_of_several_inputs(models):
    code, _, stderr = bench(models["vad.onnx"], "--data", "digits")
    assert code == 2 and "--data feeds a model of one input; this one has 3 (input, state, sr)" in stderr


@pytest.mark.parametrize("name", ["vad.onnx", "hc.onnx", "dyn.onnx", "vad.tflite", "dyn.tflite", "float.tflite"])
def test_inspect_reads_every_model_made_here(models, name):
    done = CliRunner().invoke(main, ["inspect", str(models[name]), "--json"])
    assert done.exit_code == 0, done.stderr
    report = json.loads(done.stdout)
    assert len(report["inputs"]) == {"hc.onnx": 4, "float.tflite": 2}.get(name, 3)


def test_a_microcontroller_target_says_why_a_model_of_several_inputs_is_not_emulated(models):
    """TFLite Micro runs it on this host (every input fed), but the Cortex-M program feeds one input: the latency
    stays the labelled fallback, with one warning saying why."""
    code, results, stderr = bench(models["float.tflite"], "--target", "nucleo-l4r5zi")
    assert code in (0, 3), stderr
    assert "nucleo-l4r5zi: not emulated: the Cortex-M program feeds one input; the model has 2" in stderr
    result = results[0]
    assert result["ops"]["supported"] and result["ops"]["checked_with"] == "tflite-micro"
    latency = result["target_latency"]  # the fallback: no figure for a float model (the CPI fit's rates are int8's)
    assert latency is None or latency["basis"] == "estimated" and "feeds one input" in latency["method"]


def test_a_state_output_of_another_shape_is_not_fed_back(models):
    """Batch 2 on the data input broadcasts against the fixed batch-1 state: the new state is [2, 2, 16], which
    cannot go back into [2, 1, 16]; the run is timed without feeding it back, and says so."""
    code, results, stderr = bench(models["vad.tflite"], "--input", "input:2x64")
    assert code == 0, stderr
    assert results[0]["feeds"]["state_method"] is None
    assert "output 'stateN' (2x2x16 float32) cannot be fed back into input 'state' (2x1x16 float32)" in stderr


def test_the_runtime_message_is_whole_and_one_line(models):
    """ONNX Runtime's refusal keeps its own words (the node and what mismatched), not cut; one line, exit 2."""
    code, _, stderr = bench(models["dyn.onnx"], "--input", "input:1x32")
    lines = stderr.splitlines()
    assert code == 2 and lines[-1].startswith("Error: ") and sum(line.startswith("Error") for line in lines) == 1
    assert "ONNX Runtime cannot run it while running the model on its inputs: " in stderr
    assert "MatMul node" in stderr and "dimension mismatch" in stderr
    with pytest.raises(UsageError, match="dimension 'batch' is given as 2 and as 3"):
        feeds.plan(models["vad.onnx"], feeds.parse_inputs(["input:2x64", "state:2x3x16"]))


# ---- export and compare ------------------------------------------------------------------------------------

def cli(*args: str):
    done = CliRunner().invoke(main, list(args))
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    return done


def test_a_board_bundle_stores_every_input_and_carries_the_state(models, tmp_path):
    import subprocess
    import sys

    bundle = tmp_path / "vad-rpi4"
    done = cli("export", str(models["vad.tflite"]), "--target", "rpi4", "--out", str(bundle), "--input", "sr=8000")
    assert done.exit_code == 0, done.stderr
    with np.load(bundle / "test_inputs.npz") as stored:
        assert sorted(stored.files) == sorted(["serving_default_input:0", "serving_default_state:0",
                                               "serving_default_sr:0"])
        assert int(stored["serving_default_sr:0"]) == 8000
    described = json.loads((bundle / "model.json").read_text())
    assert described["inputs_given"] == ["sr=8000"] and described["feeds"]["state_method"]
    run_sh = (bundle / "run.sh").read_text()
    assert "--input test_inputs.npz" in run_sh and "--state 'serving_default_state:0=" in run_sh
    state = run_sh.split("--state '")[1].split("'")[0]
    ran = subprocess.run([sys.executable, "bench_on_device.py", "--model", "vad.tflite", "--runs", "10", "--warmup",
                          "1", "--input", "test_inputs.npz", "--state", state, "--out", "result.json"],
                         cwd=bundle, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    result = json.loads((bundle / "result.json").read_text())
    assert "steady state" in result["latency_ms"]["note"] and result["check"]["ok"]
    # this host is not a Raspberry Pi: compare refuses it unless forced, then benchmarks the bundle's model again
    # with the bundle's own --input
    refused = cli("compare", str(bundle), str(bundle / "result.json"))
    assert refused.exit_code == 2 and "cannot be a measurement of rpi4" in refused.stderr
    done = cli("compare", str(bundle), str(bundle / "result.json"), "--force", "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["forced"]


def test_a_dynamic_model_exports_with_input_and_compares_with_it(models, tmp_path):
    bundle = tmp_path / "dyn"
    refused = cli("export", str(models["dyn.tflite"]), "--target", "rpi4", "--out", str(bundle))
    assert refused.exit_code == 2 and "--input state:2xNx16" in refused.stderr and not bundle.exists()
    done = cli("export", str(models["dyn.tflite"]), "--target", "rpi4", "--out", str(bundle), "--input",
               "state:2x1x16")
    assert done.exit_code == 0, done.stderr
    assert json.loads((bundle / "model.json").read_text())["inputs_given"] == ["state:2x1x16"]
    from edgekit.compare import load_build

    report, _ = load_build(bundle)  # benchmarked again with the bundle's --input, not refused
    assert by_name(report["targets"][0]["variants"][0])["state"]["shape"] == [2, 1, 16]


def test_phone_and_microcontroller_bundles_of_several_inputs(models, tmp_path):
    phone = tmp_path / "phone"
    done = cli("export", str(models["vad.tflite"]), "--target", "android-midrange", "--out", str(phone))
    assert done.exit_code == 0, done.stderr
    readme = (phone / "README.md").read_text()
    assert "--input_layer='serving_default_input:0,serving_default_state:0,serving_default_sr:0'" in readme
    assert "serving_default_state::0:/data/local/tmp/edgekit/inputs/1.bin" in readme
    assert (phone / "inputs" / "2.bin").read_bytes() == np.array(16000, np.int64).tobytes()
    mcu = cli("export", str(models["vad.tflite"]), "--target", "nucleo-l4r5zi", "--out", str(tmp_path / "mcu"))
    assert mcu.exit_code == 2 and "a microcontroller bundle's program feeds one input; this model has 3" in mcu.stderr


def test_an_input_too_large_to_allocate_is_one_line(tmp_path):
    """A declared dimension of 2**31 (a damaged file, or a misread one) is refused before anything allocates."""
    path = stateful.onnx_model(tmp_path / "huge.onnx", samples=SAMPLES_HUGE)
    with pytest.raises(UsageError, match=r"huge.onnx: input input \[batch, 2147483648\] float32 at 1x2147483648 "
                                         r"would take 8.0 GiB; give it a shape to run with --input input:SHAPE"):
        feeds.plan(path)
