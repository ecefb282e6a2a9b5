"""Optimization: magnitude pruning, then int8 quantization-aware training that keeps the sparsity.

The float baseline is never modified: tfmot's pruning wrappers share layers with the model they
wrap, so pruning works on a clone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from edgekit.data import Dataset
from edgekit.recipes import Recipe
from edgekit.tasks import TASKS
from edgekit.train import fit, make_optimizer

log = logging.getLogger("edgekit")


@dataclass
class OptimizeResult:
    model: object  # the QAT model (or the pruned float model when qat_epochs == 0)
    quantization_aware: bool
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def optimize(model, recipe: Recipe, data: Dataset) -> OptimizeResult:
    settings = recipe.optimize
    result = OptimizeResult(model=clone(model), quantization_aware=False)
    if settings.sparsity:
        pruned = prune(result.model, recipe, data)
        result.model = pruned.model
        result.history["prune"], result.seconds["prune"] = pruned.history, pruned.seconds
    if settings.qat_epochs:
        qat = quantize_aware(result.model, recipe, data, preserve_sparsity=bool(settings.sparsity))
        result.model, result.quantization_aware = qat.model, True
        result.history["qat"], result.seconds["qat"] = qat.history, qat.seconds
    return result


def check_supported(model, recipe: Recipe) -> None:
    """Refuse, before training, what is known to convert wrongly. tfmot's QAT folds batch normalization into
    a preceding Conv2D or DepthwiseConv2D only; after a Dense layer the QAT model and the converter fold it
    differently, and the int8 model then disagrees with its Keras source (measured here: the MLPerf Tiny
    autoencoder's int8 outputs were 9x off; post-training quantization of the same model agrees to 99.9%)."""
    if not recipe.optimize.qat_epochs:
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


def prune(model, recipe: Recipe, data: Dataset):
    from edgekit._tf import tfmot

    sparsity = tfmot().sparsity.keras
    batch = recipe.train.batch_size
    steps_per_epoch = -(-len(TASKS[recipe.task].training_pairs(data.x_train, data.y_train)[0]) // batch)
    wrapped = sparsity.prune_low_magnitude(model, pruning_schedule=pruning_schedule(recipe, steps_per_epoch))
    result = fit(wrapped, data, recipe.task, recipe.optimize.pruning_epochs, batch,
                 make_optimizer(recipe.train, recipe.optimize.pruning_learning_rate), phase="prune",
                 callbacks=[sparsity.UpdatePruningStep()])
    result.model = sparsity.strip_pruning(wrapped)
    return result


def quantize_aware(model, recipe: Recipe, data: Dataset, preserve_sparsity: bool):
    from edgekit._tf import tfmot

    mot = tfmot()
    annotated = mot.quantization.keras.quantize_annotate_model(model)
    if preserve_sparsity:
        scheme = mot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
        qat_model = mot.quantization.keras.quantize_apply(annotated, scheme)
    else:
        qat_model = mot.quantization.keras.quantize_apply(annotated)
    return fit(qat_model, data, recipe.task, recipe.optimize.qat_epochs, recipe.train.batch_size,
               make_optimizer(recipe.train, recipe.optimize.qat_learning_rate), phase="qat")
