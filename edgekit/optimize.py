"""Optimization: magnitude pruning (unstructured or 2:4), weight clustering, then int8 quantization-aware
training that keeps the sparsity and the clusters; or post-training quantization (int8, int16x8) left to
the converter. Each step records what it did (time, validation metric, sparsity, distinct weights).

The float baseline is never modified: tfmot's pruning wrappers share layers with the model they
wrap, so pruning works on a clone.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from edgekit.convert import Conversion
from edgekit.data import Dataset
from edgekit.recipes import Recipe
from edgekit.tasks import TASKS
from edgekit.train import TrainResult, fit, make_optimizer

log = logging.getLogger("edgekit")


# The layer kinds whose kernels the reports follow, and the ones tfmot prunes and clusters: its registries
# leave a DepthwiseConv2D's kernel alone (`DepthwiseConv2D: []`), so a depthwise layer is never reported
# as pruned.
PRUNABLE = ("Conv2D", "DepthwiseConv2D", "Dense")
COMPRESSIBLE = ("Conv2D", "Dense")


@dataclass
class OptimizeResult:
    model: Any  # the QAT model, or the pruned / clustered float model when there is no QAT
    quantization_aware: bool
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # One record per step: {step, seconds, metric {name, split, before, after}, sparsity {layer: share of
    # zeros}, unique_weights {layer: distinct kernel values}} (sparsity after pruning, uniques after clustering)
    steps: list[dict[str, Any]] = field(default_factory=list)
    pruned_layers: list[str] = field(default_factory=list)
    kept_dense: list[str] = field(default_factory=list)  # weight layers left dense
    kept_dense_reasons: dict[str, str] = field(default_factory=dict)  # layer -> why it was left dense
    left_to_converter: list[dict[str, str]] = field(default_factory=list)  # {layer, type} QAT could not wrap
    quantize: str = "qat"  # what the build does next: qat (done here), ptq or int16x8 (at conversion)


@dataclass
class PruneResult(TrainResult):
    """The pruning phase's training result, with the layers it pruned and the ones it left dense (and why)."""

    pruned_layers: list[str] = field(default_factory=list)
    kept_dense: dict[str, str] = field(default_factory=dict)  # layer -> why it was left dense


@dataclass
class QATResult(TrainResult):
    """The quantization-aware training phase's result, with the layers left to the converter's calibration."""

    left_to_converter: list[dict[str, str]] = field(default_factory=list)  # {layer, type} QAT could not wrap


def optimize(model, recipe: Recipe, data: Dataset, distribute: str | None = None) -> OptimizeResult:
    """Prune, cluster and quantization-aware train a clone of `model` as the recipe's [optimize] asks,
    recording what each step did. `distribute` runs every step under that tf.distribute strategy: the clone,
    tfmot's wrappers and the optimizers are all created inside its scope (tfmot's own variables, the pruning
    step and masks, the cluster centroids and the quantizers' ranges, are then mirrored like the weights)."""
    from edgekit.distribute import scope

    with scope(distribute):
        return _optimize(model, recipe, data)


def _optimize(model, recipe: Recipe, data: Dataset) -> OptimizeResult:
    settings = recipe.optimize
    result = OptimizeResult(model=clone(model), quantization_aware=False, quantize=settings.quantize)
    if settings.quantize == "qat" and not settings.qat_epochs:
        result.quantize = "ptq"
    # The clone's outputs are the float model's (same layers, same weights): scoring the model itself reuses
    # the predict function the baseline stage traced, where the clone would trace its own (issue 9).
    metric = _validation_metric(model, recipe, data)
    if settings.pruned:
        started = time.perf_counter()
        pruned = prune(result.model, recipe, data)
        result.model, result.pruned_layers = pruned.model, pruned.pruned_layers
        result.kept_dense, result.kept_dense_reasons = list(pruned.kept_dense), pruned.kept_dense
        result.history["prune"] = pruned.history
        metric = _record(result, "prune", started, metric, recipe, data, sparsity=True)
    if settings.clusters:
        started = time.perf_counter()
        clustered = cluster(result.model, recipe, data, preserve_sparsity=settings.pruned)
        result.model = clustered.model
        result.history["cluster"] = clustered.history
        metric = _record(result, "cluster", started, metric, recipe, data, sparsity=settings.pruned, unique=True)
    if settings.quantization_aware:
        started = time.perf_counter()
        qat = quantize_aware(result.model, recipe, data, preserve_sparsity=settings.pruned,
                             preserve_clusters=bool(settings.clusters))
        result.model, result.quantization_aware, result.left_to_converter = qat.model, True, qat.left_to_converter
        result.history["qat"] = qat.history
        _record(result, "qat", started, metric, recipe, data, sparsity=settings.pruned,
                unique=bool(settings.clusters))
    return result


def _validation_metric(model, recipe: Recipe, data: Dataset) -> float:
    outputs = model.predict(data.x_val, verbose=0)
    return TASKS[recipe.task].score(recipe.metric, outputs, data.x_val, data.y_val)


def _record(result: OptimizeResult, step: str, started: float, before: float, recipe: Recipe, data: Dataset,
            sparsity: bool = False, unique: bool = False) -> float:
    after = _validation_metric(result.model, recipe, data)
    record: dict[str, Any] = {"step": step, "seconds": round(time.perf_counter() - started, 2),
                              "metric": {"name": recipe.metric, "split": "val", "before": before, "after": after}}
    kernels = layer_kernels(result.model)
    if sparsity:
        record["sparsity"] = {name: float(np.mean(k == 0)) for name, k in kernels.items()}
    if unique:
        record["unique_weights"] = {name: int(len(np.unique(k))) for name, k in kernels.items()}
    result.steps.append(record)
    result.seconds[step] = record["seconds"]  # one timing per step: the training section and the steps agree
    log.info("%s: val %s %.4f -> %.4f in %.1f s", step, recipe.metric, before, after, record["seconds"])
    return after


def layer_kernels(model) -> dict[str, np.ndarray]:
    """Layer name -> kernel values of every Conv2D, DepthwiseConv2D and Dense layer, looking through tfmot's
    wrappers (QAT keeps the float kernel as a variable; what it quantizes is read from that)."""
    kernels = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if type(inner).__name__ not in PRUNABLE:
            continue
        candidates = [w for w in layer.weights if w.name.split("/")[-1].split(":")[0] in ("kernel", "depthwise_kernel")]
        if candidates:
            kernels[inner.name] = candidates[0].numpy()
    return kernels


def check_supported(model, recipe: Recipe) -> None:
    """Refuse, before training, what is known to convert wrongly. tfmot's QAT folds batch normalization into
    a preceding Conv2D or DepthwiseConv2D only; after a Dense layer the QAT model and the converter fold it
    differently, and the int8 model then disagrees with its Keras source (measured here: the MLPerf Tiny
    autoencoder's int8 outputs were 9x off; post-training quantization of the same model agrees to 99.9%)."""
    if not recipe.optimize.quantization_aware:
        return
    from edgekit._tf import keras

    for layer in model.layers:
        inbound = getattr(layer, "_inbound_nodes", [])
        parents = [p for node in inbound for p in _inbound_layers(node)]
        if isinstance(layer, keras.layers.BatchNormalization) and any(
                isinstance(p, keras.layers.Dense) for p in parents):
            from edgekit.errors import UsageError

            raise UsageError(f"recipe '{recipe.name}': layer '{layer.name}' normalizes a Dense layer's output, which "
                             "int8 quantization-aware training converts wrongly; set optimize.qat_epochs = 0 to "
                             "use post-training quantization")


def _inbound_layers(node) -> list:
    layers = node.inbound_layers
    return list(layers) if isinstance(layers, list | tuple) else [layers]


def clone(model):
    from edgekit._tf import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def pruning_schedule(recipe: Recipe, steps_per_epoch: int):
    """The schedule reaches the final sparsity on a step that is both a pruning step and inside
    training, so the stripped model holds exactly the sparsity asked for."""
    from edgekit._tf import tfmot

    sparsity = tfmot().sparsity.keras
    settings = recipe.optimize
    total_steps = settings.pruning_epochs * steps_per_epoch
    frequency = max(1, total_steps // 20)
    if settings.schedule == "constant":
        return sparsity.ConstantSparsity(settings.sparsity, begin_step=0, frequency=frequency)
    # Ramp over the first ~70% of the steps, leaving the rest to recover accuracy at full sparsity.
    end_step = max(frequency, int(total_steps * 0.7) // frequency * frequency)
    return sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=settings.sparsity,
                                    begin_step=0, end_step=end_step, frequency=frequency)


def prune_selection(model, settings) -> tuple[list[str], dict[str, str]]:
    """(layers to prune, {weight layer kept dense: why}). By default every Conv2D and Dense layer but the first
    convolution (few weights, and every later feature depends on it) and the last Dense layer (the class
    scores); `prune_layers` names the layers instead, and `keep_dense` always wins. Depthwise layers stay
    dense (tfmot does not prune them), and under 2:4 so does a layer whose inputs are not a multiple of 4
    (tfmot would leave the remainder dense and the pattern would not hold)."""
    weighted = [layer for layer in model.layers if type(layer).__name__ in PRUNABLE]
    convolutions = [layer.name for layer in weighted if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D")]
    dense = [layer.name for layer in weighted if type(layer).__name__ == "Dense"]
    block = int(settings.sparsity.split(":")[1]) if settings.structured else 0
    kept: dict[str, str] = {}
    for layer in weighted:
        name, inputs = layer.name, int(layer.weights[0].shape[-2])
        if type(layer).__name__ not in COMPRESSIBLE:
            kept[name] = "depthwise: tfmot does not prune depthwise kernels"
        elif settings.prune_layers and not any(fnmatch.fnmatchcase(name, p) for p in settings.prune_layers):
            kept[name] = "not matched by prune_layers"
        elif not settings.prune_layers and name in convolutions[:1]:
            kept[name] = "the first convolution (few weights; every later feature depends on it)"
        elif not settings.prune_layers and name in dense[-1:]:
            kept[name] = "the last Dense layer (the outputs)"
        elif any(fnmatch.fnmatchcase(name, p) for p in settings.keep_dense):
            kept[name] = "matched by keep_dense"
        elif block and inputs % block:
            kept[name] = f"{settings.sparsity} needs inputs in multiples of {block}; it has {inputs}"
    chosen = [layer.name for layer in weighted if layer.name not in kept]
    if not chosen:
        from edgekit.errors import UsageError

        reasons = "; ".join(f"{name}: {why}" for name, why in kept.items()) or "the model has no Conv2D or Dense layer"
        raise UsageError(f"optimize: no layer to prune ({reasons}); check prune_layers and keep_dense")
    return chosen, kept


def prune(model, recipe: Recipe, data: Dataset) -> PruneResult:
    from edgekit._tf import keras, tfmot

    sparsity = tfmot().sparsity.keras
    settings = recipe.optimize
    batch = recipe.train.batch_size
    steps_per_epoch = -(-len(TASKS[recipe.task].training_pairs(data.x_train, data.y_train)[0]) // batch)
    chosen, kept = prune_selection(model, settings)
    if isinstance(settings.sparsity, str):  # settings.structured: "m:n"
        m, n = (int(v) for v in settings.sparsity.split(":"))
        frequency = max(1, settings.pruning_epochs * steps_per_epoch // 20)
        options = {"sparsity_m_by_n": (m, n),
                   "pruning_schedule": sparsity.ConstantSparsity(m / n, begin_step=0, frequency=frequency)}
    else:
        options = {"pruning_schedule": pruning_schedule(recipe, steps_per_epoch)}

    def wrap(layer):
        return sparsity.prune_low_magnitude(layer, **options) if layer.name in chosen else layer

    wrapped = keras.models.clone_model(model, clone_function=wrap)
    result = fit(wrapped, data, recipe.task, settings.pruning_epochs, batch,
                 make_optimizer(recipe.train, settings.pruning_learning_rate), phase="prune",
                 callbacks=[sparsity.UpdatePruningStep()])
    return PruneResult(model=sparsity.strip_pruning(wrapped), history=result.history, seconds=result.seconds,
                       pruned_layers=chosen, kept_dense=kept)


def _rebuilt(layer):
    """A fresh layer of the same config (clone_model's default), for the layers a clone leaves unwrapped."""
    return layer.__class__.from_config(layer.get_config())


def cluster(model, recipe: Recipe, data: Dataset, preserve_sparsity: bool):
    """Weight clustering: each kernel's values are replaced by `clusters` shared centroids (k-means++
    initialised), fine-tuned, then stripped back to plain layers. Zeros stay zeros when the model was pruned."""
    from edgekit._tf import keras, tfmot

    clustering = tfmot().clustering.keras
    settings = recipe.optimize
    options: dict[str, Any] = {"number_of_clusters": settings.clusters,
                               "cluster_centroids_init": clustering.CentroidInitialization.KMEANS_PLUS_PLUS}
    if preserve_sparsity:
        options["preserve_sparsity"] = True

    def wrap(layer):  # the Conv2D and Dense layers only: tfmot refuses whole models holding other layers.
        # Both branches keep the trained layer object (and so its weights): clone_model copies no weights.
        return clustering.cluster_weights(layer, **options) if type(layer).__name__ in COMPRESSIBLE else layer

    clustered = keras.models.clone_model(model, clone_function=wrap)
    result = fit(clustered, data, recipe.task, settings.cluster_epochs, recipe.train.batch_size,
                 make_optimizer(recipe.train, settings.pruning_learning_rate), phase="cluster")
    result.model = clustering.strip_clustering(clustered)
    return result


def quantize_aware(model, recipe: Recipe, data: Dataset, preserve_sparsity: bool,
                   preserve_clusters: bool = False) -> QATResult:
    """Int8 quantization-aware training. The layers tfmot cannot wrap (Rescaling, LSTM, custom layers, ...) are
    left unannotated: the converter calibrates them on the representative samples instead, and
    `result.left_to_converter` names them."""
    from edgekit._tf import tfmot

    mot = tfmot()
    if preserve_clusters:
        scheme = mot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=preserve_sparsity)
    elif preserve_sparsity:
        scheme = mot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    else:
        scheme = mot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
    qat_model, left_out = _quantize_apply(model, scheme)
    result = fit(qat_model, data, recipe.task, recipe.optimize.qat_epochs, recipe.train.batch_size,
                 make_optimizer(recipe.train, recipe.optimize.qat_learning_rate), phase="qat")
    left_to_converter = [{"layer": layer.name, "type": type(layer).__name__}
                         for layer in model.layers if layer.name in left_out]
    if left_out:
        log.info("qat: left to the converter's calibration: %s", ", ".join(sorted(left_out)))
    return QATResult(model=result.model, history=result.history, seconds=result.seconds,
                     left_to_converter=left_to_converter)


_UNSUPPORTED = re.compile(r"Layer (?P<name>[^:\s]+):<class '[^']+'> is not supported")


def _quantize_apply(model, scheme) -> tuple[Any, set[str]]:
    """(QAT model, names of the layers left unannotated). tfmot names the layer it cannot quantize in its
    error; that layer is left out and the rest annotated again, so tfmot's own registry decides.

    The model's layer names are reserved first: tfmot replaces a SeparableConv2D by new DepthwiseConv2D and
    Conv2D layers named automatically, and in a process that loaded the model from a file the automatic
    'conv2d' clashes with the model's own, after which tf_keras wires the graph by name to the wrong layer."""
    from edgekit._tf import keras, reserve_layer_names, tfmot

    quantization = tfmot().quantization.keras
    left_out: set[str] = set()
    for _ in model.layers:
        def annotate(layer):
            if isinstance(layer, keras.layers.InputLayer) or layer.name in left_out:
                return _rebuilt(layer)
            return quantization.quantize_annotate_layer(_rebuilt(layer))

        annotated = keras.models.clone_model(model, clone_function=annotate)
        annotated.set_weights(model.get_weights())
        reserve_layer_names([layer.name for layer in model.layers])
        try:
            return quantization.quantize_apply(annotated, scheme), left_out
        except RuntimeError as error:
            unsupported = _UNSUPPORTED.search(str(error))
            if not unsupported or unsupported["name"] in left_out:
                raise
            left_out.add(unsupported["name"])
    raise RuntimeError("quantization-aware training could not wrap the model")  # unreachable: one name per pass


# What the converted file holds: the weights of each conv / depthwise conv / dense op.

_WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1}


def artifact_weights(content: bytes) -> list[dict[str, Any]]:
    """One entry per CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED op of a .tflite file, in file order:
    {op, tensor, values} with the stored weight values (int8 in a quantized file) in TFLite's layout
    (output channels first, input channels last)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(content, 0)
    graph = model.subgraphs[0]
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in model.operatorCodes]
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    producer = {int(out): op for op in graph.operators for out in op.outputs}
    dtypes = {schema.TensorType.INT8: np.int8, schema.TensorType.FLOAT32: np.float32,
              schema.TensorType.FLOAT16: np.float16, schema.TensorType.INT16: np.int16}
    found = []
    for op in graph.operators:
        name = names.get(codes[op.opcodeIndex], "")
        if name not in _WEIGHT_OPS:
            continue
        index = int(op.inputs[_WEIGHT_OPS[name]])
        producing = producer.get(index)  # float16 weights and sparse encodings reach the op through one op
        if producing is not None and names.get(codes[producing.opcodeIndex]) in ("DEQUANTIZE", "DENSIFY"):
            index = int(producing.inputs[0])
        tensor = graph.tensors[index]
        buffer = model.buffers[tensor.buffer]
        if buffer.data is None or tensor.type not in dtypes:
            continue
        values = np.frombuffer(bytes(buffer.data), dtypes[tensor.type]).reshape(tuple(tensor.shape))
        found.append({"op": name, "tensor": tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name,
                      "values": values})
    return found


def artifact_sparsity(content: bytes, layers: list[str] | None = None) -> list[dict[str, Any]]:
    """Per weight op of a .tflite file: {op, tensor, layer, weights, sparsity}. `layers` (the model's
    conv / dense layer names in order) names each op's layer: by the layer name in the tensor name where the
    converter kept it, otherwise by position when the counts agree."""
    weights = artifact_weights(content)
    rows = []
    for position, entry in enumerate(weights):
        layer = None
        if layers:
            named = [n for n in layers if f"/{n}/" in f"/{entry['tensor']}/" or f"_{n}/" in entry["tensor"]]
            layer = named[0] if len(named) == 1 else (layers[position] if len(layers) == len(weights) else None)
        values = entry["values"]
        rows.append({"op": entry["op"], "tensor": entry["tensor"], "layer": layer, "weights": int(values.size),
                     "sparsity": float(np.mean(values == 0))})
    return rows


@dataclass(frozen=True)
class OptimizedConversion:
    """The quantized file, verified against the optimized model, and OptimizeResult's records (no model)."""

    conversion: Conversion
    prunable: list[str]  # the conv / dense layers in order, through QAT wrappers: names the file's weight ops
    quantization_aware: bool
    quantize: str  # what was done: qat, ptq or int16x8
    history: dict[str, dict[str, list[float]]]
    seconds: dict[str, float]
    steps: list[dict[str, Any]]
    pruned_layers: list[str]
    kept_dense: list[str]
    kept_dense_reasons: dict[str, str]
    left_to_converter: list[dict[str, str]]

    def record(self) -> dict[str, Any]:
        """Every field but the conversion, JSON-ready (the build's cache keeps the conversion as a file)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "conversion"}


def optimize_and_convert(model, recipe: Recipe, data: Dataset, seed: int, distribute: str | None = None, *,
                         check_inputs: np.ndarray | None = None,
                         stage: Callable[[str], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
                         ) -> OptimizedConversion:
    """The one optimize-and-convert path of `edgekit build` and `edgekit optimize`: optimize a clone of the
    trained `model` as `recipe.optimize` asks, then convert it to its quantized format, calibrated on seeded
    training samples and verified against the optimized model on `check_inputs` (default: the first
    convert.CHECK_SAMPLES validation inputs). The same model, data and seed give the same bytes on CPU.
    `stage(name)` wraps the optimize and the convert steps (the build names a failed stage with it)."""
    from edgekit import convert
    from edgekit._tf import keras

    with stage("optimize"):
        check_supported(model, recipe)
        # Seeded here rather than carried over from training, so that optimizing a model trained in an earlier
        # run (or loaded from a file) shuffles and initialises exactly as it would straight after training.
        keras.utils.set_random_seed(seed)
        optimized = optimize(model, recipe, data, distribute)
    with stage("convert"):
        representative = data.representative(recipe.optimize.calibration_samples, seed)
        inputs = data.x_val[:convert.CHECK_SAMPLES] if check_inputs is None else check_inputs
        quantized = convert.convert(optimized.model, f"tflite-{recipe.optimize.precision}", representative, inputs,
                                    recipe.task)
    prunable = [getattr(layer, "layer", layer).name for layer in optimized.model.layers
                if type(getattr(layer, "layer", layer)).__name__ in PRUNABLE]
    return OptimizedConversion(quantized, prunable, optimized.quantization_aware, optimized.quantize,
                               optimized.history, optimized.seconds, optimized.steps, optimized.pruned_layers,
                               optimized.kept_dense, optimized.kept_dense_reasons, optimized.left_to_converter)


def check_drop(recipe: Recipe, name: str, reference: float, quantized: float) -> None:
    """The accuracy guard of `edgekit build` and `edgekit optimize`: BudgetError (exit 3) when the quantized
    model's metric falls more than `max_drop` points behind the float model's, naming the settings to try."""
    from edgekit.errors import BudgetError

    drop = TASKS[recipe.task].drop_points(recipe.metric, reference, quantized)
    if drop > recipe.optimize.max_drop:
        raise BudgetError(f"{name} test {recipe.metric} {quantized:.4f} is {drop:.2f} points behind float "
                          f"{reference:.4f}; max_drop is {recipe.optimize.max_drop:g}; try {next_settings(recipe)}")


def next_settings(recipe: Recipe) -> str:
    """The [optimize] settings most likely to win the accuracy back, from the ones this build used."""
    settings, tries = recipe.optimize, []
    if settings.clusters:
        tries.append(f"more clusters (clusters = {settings.clusters * 2})")
    if isinstance(settings.sparsity, str):  # settings.structured
        tries.append("unstructured pruning (sparsity = 0.5) instead of 2:4")
    elif settings.sparsity:
        tries.append(f"lower sparsity (sparsity = {max(0.0, round(settings.sparsity - 0.2, 2)):g})")
        if settings.pruning_epochs:
            tries.append(f"more pruning_epochs ({settings.pruning_epochs * 2})")
    if settings.quantization_aware:
        tries.append(f"more qat_epochs ({settings.qat_epochs * 2})")
    elif settings.quantize != "int16x8":
        tries.append('quantization-aware training instead of post-training quantization (quantize = "qat", '
                     "qat_epochs = 2)")
    if settings.quantize != "int16x8" and recipe.task != "classification":
        tries.append('int16 activations (quantize = "int16x8")')
    tries.append(f"or a larger max_drop (now {settings.max_drop:g})")
    return ", ".join(tries)
