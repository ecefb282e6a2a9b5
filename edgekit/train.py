"""Float training: recipe settings + dataset -> a trained tf_keras model and its history."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

from edgekit import progress
from edgekit.data import Dataset
from edgekit.errors import StageError
from edgekit.recipes import Recipe, TrainSettings
from edgekit.tasks import TASKS
from edgekit.zoo import build_model

log = logging.getLogger("edgekit")


@dataclass
class TrainResult:
    model: object  # tf_keras.Model
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


def train(recipe: Recipe, data: Dataset, seed: int = 0, distribute: str | None = None) -> TrainResult:
    """Build the recipe's model and train it in float32; `distribute` (mirrored or multiworker, see
    edgekit.distribute) trains it under that tf.distribute strategy, batch_size being the global batch."""
    from edgekit._tf import keras
    from edgekit.distribute import scope

    keras.utils.set_random_seed(seed)
    with scope(distribute):  # the model and its optimizer's variables are created under the strategy
        model = build_model(recipe.builder, data.input_shape, data.num_classes, recipe.builder_args)
        return fit(model, data, recipe.task, recipe.train.epochs, recipe.train.batch_size,
                   make_optimizer(recipe.train), phase="train")


def make_optimizer(settings: TrainSettings, learning_rate: float | None = None):
    from edgekit._tf import keras

    kinds = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
             "rmsprop": keras.optimizers.RMSprop}
    return kinds[settings.optimizer](learning_rate=learning_rate or settings.learning_rate)


def fit(model, data: Dataset, task: str, epochs: int, batch_size: int, optimizer, phase: str,
        callbacks=()) -> TrainResult:
    """Compile and fit one phase (train, prune or qat) with epoch progress on the log and a NaN guard."""
    kind = TASKS[task]
    model.compile(optimizer=optimizer, loss=kind.loss, metrics=list(kind.keras_metrics))
    started = time.perf_counter()
    x, y = kind.training_pairs(data.x_train, data.y_train)
    history = model.fit(
        x, y, validation_data=kind.training_pairs(data.x_val, data.y_val), epochs=epochs,
        batch_size=batch_size, verbose=0, shuffle=True,
        callbacks=[*callbacks, _EpochLog(phase, epochs)],
    )
    return TrainResult(model, {k: [float(v) for v in vs] for k, vs in history.history.items()},
                       time.perf_counter() - started)


def _epoch_log_class():
    from edgekit._tf import keras

    class EpochLog(keras.callbacks.Callback):
        """One log line per epoch, and a progress bar over the phase's steps (edgekit.progress: drawn only
        when a display is open); stops at once on a NaN or infinite loss."""

        def __init__(self, phase: str, epochs: int):
            super().__init__()
            self.phase, self.epochs = phase, epochs
            self.bar = progress.Task(None, phase, 1)  # drawn from on_train_begin, when the steps are known

        def on_train_begin(self, logs=None):
            self.bar = progress.begin(self.phase, self.epochs * (self.params.get("steps") or 1))

        def on_train_end(self, logs=None):
            self.bar.close()

        def on_train_batch_end(self, batch, logs=None):
            # Checked per batch, not per epoch: once the weights hold NaN every later step is wasted time.
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(loss):
                self.bar.close()
                raise StageError(self.phase, f"loss became {loss} in epoch {self.epoch + 1} "
                                 "(try a lower learning rate, or check the input normalisation)")
            self.bar.advance()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.started = epoch, time.perf_counter()
            self.bar.describe(f"{self.phase} epoch {epoch + 1}/{self.epochs}")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            figures = "  ".join(f"{key} {value:.4f}" for key, value in logs.items())
            log.info("%s epoch %d/%d  %s  (%.1fs)", self.phase, epoch + 1, self.epochs, figures,
                     time.perf_counter() - self.started)

    return EpochLog


def _EpochLog(phase: str, epochs: int):  # noqa: N802 - reads as the class it builds
    return _epoch_log_class()(phase, epochs)
