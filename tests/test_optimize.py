"""Each optimization technique on a tiny CNN on digits (issue 5): what it promises holds in the Keras weights
and in the converted .tflite."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY_RECIPE

from edgekit import convert, data, recipes
from edgekit.cli import main
from edgekit.model_info import inspect_tflite
from edgekit.optimize import artifact_sparsity, artifact_weights, layer_kernels, optimize

PRUNED = ["conv2", "dense1"]  # the tiny CNN's layers pruned by default; conv1 and classes stay dense


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe") / "tiny-digits.toml"
    path.write_text(TINY_RECIPE)
    return recipes.load(path)


@pytest.fixture(scope="module")
def trained(tiny, digits):
    from edgekit import train

    return train.train(tiny, digits, seed=0).model


def _optimized(trained, tiny, digits, **settings):
    recipe = tiny.with_changes(optimize=settings)
    result = optimize(trained, recipe, digits)
    representative = digits.representative(64, 0)
    int8 = convert.tflite_int8(result.model, representative, digits.x_val[:128])
    return result, int8.content


@pytest.fixture(scope="module")
def unstructured(trained, tiny, digits):
    return _optimized(trained, tiny, digits, sparsity=0.5)


@pytest.fixture(scope="module")
def two_four(trained, tiny, digits):
    return _optimized(trained, tiny, digits, sparsity="2:4")


@pytest.fixture(scope="module")
def clustered(trained, tiny, digits):
    return _optimized(trained, tiny, digits, sparsity=0.0, pruning_epochs=0, clusters=4, cluster_epochs=1)


def _blocks_along_input(kernel: np.ndarray, input_axis: int) -> np.ndarray:
    """Blocks of 4 consecutive weights along the input axis, one block a row."""
    return np.moveaxis(kernel, input_axis, -1).reshape(-1, 4)


@pytest.mark.slow
def test_unstructured_sparsity_holds_through_qat_into_the_tflite(unstructured):
    result, content = unstructured
    assert result.quantization_aware and result.pruned_layers == PRUNED
    assert result.kept_dense == ["conv1", "classes"]
    prune_step = next(s for s in result.steps if s["step"] == "prune")
    for name in PRUNED:
        assert prune_step["sparsity"][name] == pytest.approx(0.5, abs=0.01)
    assert prune_step["sparsity"]["conv1"] == 0 and prune_step["sparsity"]["classes"] == 0
    kernels = layer_kernels(result.model)  # after QAT
    for name in PRUNED:
        assert np.mean(kernels[name] == 0) == pytest.approx(0.5, abs=0.01)
    rows = {row["layer"]: row for row in artifact_sparsity(content, ["conv1", "conv2", "dense1", "classes"])}
    assert set(rows) == {"conv1", "conv2", "dense1", "classes"}
    for name in PRUNED:
        assert rows[name]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert rows["conv1"]["sparsity"] < 0.05 and rows["classes"]["sparsity"] < 0.05
    # edgekit.model_info measures the whole file: the pruned layers' zeros over every weight
    weights = {name: rows[name]["weights"] for name in rows}
    expected = sum(0.5 * weights[name] for name in PRUNED) / sum(weights.values())
    assert inspect_tflite(content).weight_sparsity == pytest.approx(expected, abs=0.01)


@pytest.mark.slow
def test_every_step_records_time_and_the_validation_metric(unstructured):
    result, _ = unstructured
    assert [s["step"] for s in result.steps] == ["prune", "qat"]
    for step in result.steps:
        assert step["seconds"] > 0 and step["metric"]["name"] == "accuracy" and step["metric"]["split"] == "val"
        assert 0 < step["metric"]["after"] <= 1 and 0 < step["metric"]["before"] <= 1
    assert result.steps[1]["metric"]["before"] == result.steps[0]["metric"]["after"]


@pytest.mark.slow
def test_two_by_four_pattern_holds_in_keras_and_in_the_int8_file(two_four):
    result, content = two_four
    prune_step = next(s for s in result.steps if s["step"] == "prune")
    kernels = layer_kernels(result.model)
    for name in PRUNED:
        assert prune_step["sparsity"][name] == pytest.approx(0.5, abs=0.01)
        blocks = _blocks_along_input(kernels[name], -2)  # Keras: (..., inputs, outputs)
        assert (np.sum(blocks == 0, axis=1) >= 2).all(), name
    ops = artifact_weights(content)
    assert [op["op"] for op in ops] == ["CONV_2D", "CONV_2D", "FULLY_CONNECTED", "FULLY_CONNECTED"]
    for op in ops[1:3]:  # conv2, dense1; TFLite: (outputs, ..., inputs)
        assert op["values"].dtype == np.int8
        assert (np.sum(_blocks_along_input(op["values"], -1) == 0, axis=1) >= 2).all(), op["tensor"]


@pytest.mark.slow
def test_clustered_kernels_keep_at_most_n_values_into_the_int8_file(clustered):
    result, content = clustered
    assert [s["step"] for s in result.steps] == ["cluster", "qat"]
    cluster_step = result.steps[0]
    assert set(cluster_step["unique_weights"]) == {"conv1", "conv2", "dense1", "classes"}
    assert all(1 <= count <= 4 for count in cluster_step["unique_weights"].values()), cluster_step
    for op in artifact_weights(content):
        assert op["values"].dtype == np.int8
        per_channel = op["values"].reshape(len(op["values"]), -1)
        assert max(len(np.unique(channel)) for channel in per_channel) <= 4, op["tensor"]


def test_a_pattern_selects_the_layers_to_prune(trained, tiny):
    from edgekit.optimize import prune_selection

    def settings(**changes):
        return tiny.with_changes(optimize=changes).optimize

    chosen, kept = prune_selection(trained, settings())
    assert chosen == PRUNED and kept == {
        "conv1": "the first convolution (few weights; every later feature depends on it)",
        "classes": "the last Dense layer (the outputs)"}
    chosen, kept = prune_selection(trained, settings(prune_layers=("conv*",)))
    assert chosen == ["conv1", "conv2"] and kept == {"dense1": "not matched by prune_layers",
                                                     "classes": "not matched by prune_layers"}
    chosen, kept = prune_selection(trained, settings(keep_dense=("dense*",)))
    assert chosen == ["conv2"] and list(kept) == ["conv1", "dense1", "classes"]
    assert kept["dense1"] == "matched by keep_dense"


def _separable_model():
    """Conv2D (6 outputs), DepthwiseConv2D, SeparableConv2D, 1x1 Conv2D, Dense, all named automatically."""
    from edgekit._tf import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.SeparableConv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(8, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))


def test_depthwise_layers_and_2_4_on_odd_inputs_stay_dense_with_the_reason(tiny):
    """tfmot's registry never prunes a depthwise kernel, and 2:4 along 6 inputs would leave 2 of them dense:
    both are kept dense and reported so, instead of being listed as pruned."""
    from edgekit._tf import keras
    from edgekit.optimize import prune_selection

    keras.backend.clear_session()
    model = _separable_model()
    conv, depthwise, _, pointwise, dense = [layer.name for layer in model.layers
                                            if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D",
                                                                        "SeparableConv2D", "Dense")]
    unstructured = tiny.with_changes(optimize={"prune_layers": ("*",)}).optimize
    chosen, kept = prune_selection(model, unstructured)
    assert chosen == [conv, pointwise, dense]
    assert kept == {depthwise: "depthwise: tfmot does not prune depthwise kernels"}
    structured = tiny.with_changes(optimize={"prune_layers": ("*",), "sparsity": "2:4"}).optimize
    chosen, kept = prune_selection(model, structured)
    assert chosen == [pointwise, dense], "conv has 1 input, depthwise is never pruned"
    assert kept[conv] == "2:4 needs inputs in multiples of 4; it has 1"
    with pytest.raises(Exception, match=r"^optimize: no layer to prune \(.*2:4 needs inputs in multiples of 4"):
        prune_selection(model, tiny.with_changes(optimize={"prune_layers": (conv,), "sparsity": "2:4"}).optimize)


def test_qat_wraps_a_separable_conv_in_a_model_whose_names_tf_keras_has_forgotten():
    """A model loaded in a fresh process keeps its names ('conv2d', ...) while tf_keras's naming counters
    start at zero; tfmot's SeparableConv2D rewrite then made a second 'conv2d' and wired the wrong layer."""
    from edgekit._tf import keras, tfmot
    from edgekit.optimize import _quantize_apply

    keras.backend.clear_session()
    model = _separable_model()
    keras.backend.clear_session()  # what a fresh process that loads the file starts from
    qat_model, left_out = _quantize_apply(model, tfmot().quantization.keras.default_8bit.Default8BitQuantizeScheme())
    assert left_out == set()
    names = [layer.name for layer in qat_model.layers]
    assert len(names) == len(set(names))
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    assert np.abs(qat_model.predict(x, verbose=0) - model.predict(x, verbose=0)).max() < 0.1


def test_layers_tfmot_cannot_quantize_are_left_to_the_converter_and_listed(tiny, digits):
    from edgekit._tf import keras
    from edgekit.optimize import quantize_aware

    inputs = keras.Input(digits.input_shape)
    x = keras.layers.Rescaling(0.5, name="halve")(inputs)  # tfmot's registry has no Rescaling
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="classes")(keras.layers.Flatten(name="flat")(x))
    model = keras.Model(inputs, outputs)
    result = quantize_aware(model, tiny, digits, preserve_sparsity=False)
    assert result.left_to_converter == [{"layer": "halve", "type": "Rescaling"}]
    assert {layer.name for layer in result.model.layers} >= {"halve", "quant_conv", "quant_classes"}
    int8 = convert.tflite_int8(result.model, digits.representative(64, 0), digits.x_val[:128])
    assert inspect_tflite(int8.content).inputs[0].dtype == "int8"


def test_recipe_keys_of_the_optimize_section(tmp_path):
    def parse(section: str):
        path = tmp_path / "r.toml"
        text = TINY_RECIPE.replace("sparsity = 0.5\n", "") if "sparsity" in section else TINY_RECIPE
        path.write_text(text.replace("[optimize]\n", f"[optimize]\n{section}\n"))
        return recipes.load(path).optimize

    assert parse('sparsity = "2:4"').sparsity == "2:4"
    loaded = parse('quantize = "int16x8"\nclusters = 16\nprune_layers = ["conv*"]\nkeep_dense = ["conv1"]')
    assert (loaded.quantize, loaded.precision, loaded.clusters, loaded.cluster_epochs) == ("int16x8", "int16x8", 16, 2)
    assert loaded.prune_layers == ("conv*",) and loaded.keep_dense == ("conv1",)
    default = recipes.load("digits-cnn").optimize
    assert (default.quantize, default.clusters, default.prune_layers, default.keep_dense) == ("qat", 0, (), ())
    with pytest.raises(Exception, match=r"key 'optimize.sparsity': expected one of '2:4', got '1:4'"):
        parse('sparsity = "1:4"')
    with pytest.raises(Exception, match=r"key 'optimize.quantize': expected one of 'qat', 'ptq', 'int16x8'"):
        parse('quantize = "int4"')


def test_the_guard_message_follows_the_settings_used(tiny):
    from edgekit.optimize import next_settings

    pruned_qat = next_settings(tiny)
    assert "lower sparsity (sparsity = 0.3)" in pruned_qat and "more qat_epochs (2)" in pruned_qat
    clustered_ptq = next_settings(tiny.with_changes(optimize={"clusters": 8, "quantize": "ptq"}))
    assert "more clusters (clusters = 16)" in clustered_ptq
    assert 'quantization-aware training instead of post-training quantization (quantize = "qat"' in clustered_ptq
    assert "unstructured pruning" in next_settings(tiny.with_changes(optimize={"sparsity": "2:4"}))


def test_the_build_reports_each_step_and_the_layers_kept_dense(tiny_build):
    _, _, report = tiny_build
    optimization = report["optimization"]
    assert optimization["kept_dense"] == ["conv1", "classes"] and optimization["pruned_layers"] == PRUNED
    assert optimization["kept_dense_reasons"]["classes"] == "the last Dense layer (the outputs)"
    assert optimization["left_to_converter"] == []
    assert [s["step"] for s in optimization["steps"]] == ["prune", "qat"]
    assert set(optimization["artifacts"]) == {"float32", "int8"}
    for figures in optimization["artifacts"].values():
        assert figures["gzip_bytes"] < figures["size_bytes"]
    ops = {row["layer"]: row["sparsity"] for row in optimization["artifact_sparsity"]["ops"]}
    assert ops["conv2"] == pytest.approx(0.5, abs=0.02) and ops["conv1"] < 0.05
    int8 = next(v for v in report["variants"] if v["name"] == "int8")
    assert int8["sparsity"] == pytest.approx(0.5, abs=0.02) and int8["sparsity_all_weights"] < int8["sparsity"]


@pytest.fixture(scope="module")
def heavy_int16x8_build(tmp_path_factory):
    """int16x8 after 95% pruning with no drop allowed: the build completes, then the guard fails it."""
    out = tmp_path_factory.mktemp("int16x8")
    recipe = out / "recipe.toml"
    recipe.write_text(TINY_RECIPE.replace("sparsity = 0.5", 'sparsity = 0.95\nschedule = "constant"\n'
                                          'quantize = "int16x8"').replace("max_drop = 5.0", "max_drop = 0.0"))
    result = CliRunner().invoke(main, ["build", "--target", "rpi4", "--recipe", str(recipe), "--out", str(out),
                                       "--runs", "10", "--warmup", "1"])
    return result, out / "tiny-digits-rpi4"


@pytest.mark.slow
def test_int16x8_converts_and_runs_with_int16_activations(heavy_int16x8_build):
    from ai_edge_litert.interpreter import Interpreter

    _, directory = heavy_int16x8_build
    report = json.loads((directory / "report.json").read_text())
    variants = {v["name"]: v for v in report["variants"]}
    assert variants["int16x8"]["precision"] == "int16x8" and variants["int16x8"]["file"] == "int16x8.tflite"
    assert report["selected"] == "float32", "rpi4 does not list int16x8"
    interpreter = Interpreter(model_path=str(directory / "int16x8.tflite"))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.int16 and out["dtype"] == np.int16
    interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], np.int16))
    interpreter.invoke()
    assert interpreter.get_tensor(out["index"]).shape == (1, 10)


def test_the_guard_fires_on_a_large_drop_and_names_what_to_try(heavy_int16x8_build):
    result, directory = heavy_int16x8_build
    assert result.exit_code == 3, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: the build is complete in {directory}, but int16x8 test accuracy ")
    assert "points behind float" in last and (directory / "manifest.json").is_file()
    assert "max_drop is 0; try lower sparsity (sparsity = 0.75)" in last and "larger max_drop" in last


def test_clustering_keeps_the_trained_weights_of_the_layers_it_does_not_cluster(tiny, digits):
    """clone_model copies no weights: a layer left unclustered must be the trained one, not a fresh copy."""
    from edgekit._tf import keras
    from edgekit.optimize import cluster

    inputs = keras.Input(digits.input_shape)
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="classes")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    bn = model.get_layer("bn")
    bn.set_weights([np.full(4, 2.0), np.full(4, 0.5), np.full(4, 3.0), np.full(4, 7.0)])  # gamma beta mean var
    recipe = tiny.with_changes(optimize={"clusters": 4, "cluster_epochs": 1})
    clustered = cluster(model, recipe, digits, preserve_sparsity=False).model
    gamma, beta, mean, variance = clustered.get_layer("bn").get_weights()
    assert np.allclose(gamma, 2.0, atol=0.1) and np.allclose(variance, 7.0, rtol=0.5), "bn was re-initialised"
    assert len(np.unique(clustered.get_layer("conv").get_weights()[0])) <= 4
