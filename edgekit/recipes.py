"""Recipes: one TOML file per deployable model (models/*.toml), loaded into frozen dataclasses."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from edgekit import _toml, zoo
from edgekit.errors import UsageError
from edgekit.tasks import TASKS

# The first metric of each task is its default. Higher is better for accuracy and auc, lower for mae/rmse.
METRICS = {"classification": ("accuracy",), "binary": ("accuracy", "auc"), "regression": ("mae", "rmse"),
           "anomaly": ("auc",)}
OPTIMIZERS = ("adam", "sgd", "rmsprop")
SCHEDULES = ("polynomial", "constant")
QUANTIZE_MODES = ("qat", "ptq", "int16x8")
STRUCTURED_SPARSITY = ("2:4",)  # M-by-N patterns: M zeros in every block of N weights along the input axis
EXTERNAL = "external"  # the builder of a model trained elsewhere (`edgekit optimize`): no zoo builder, no args
KEYS = ("name", "description", "dataset", "task", "metric", "expected_params", "model", "train", "optimize")


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str = "adam"


@dataclass(frozen=True)
class OptimizeSettings:
    sparsity: float | str  # fraction of the pruned layers' weights set to zero (0 turns pruning off), or "2:4"
    schedule: str  # polynomial: ramp from 0 to `sparsity`; constant: `sparsity` from the first step
    pruning_epochs: int
    pruning_learning_rate: float
    qat_epochs: int  # int8 quantization-aware training; 0 means plain post-training quantization
    qat_learning_rate: float
    calibration_samples: int  # representative training samples for the int8 converter
    max_drop: float  # points of the metric the int8 model may lose against the float baseline
    # fnmatch patterns of layer names to prune; () prunes every Conv2D, DepthwiseConv2D and Dense layer but
    # the model's first convolution and its last Dense layer
    prune_layers: tuple[str, ...] = ()
    keep_dense: tuple[str, ...] = ()  # fnmatch patterns of layer names never pruned
    quantize: str = "qat"  # qat (ptq when qat_epochs is 0) | ptq | int16x8 (int16 activations, int8 weights)
    clusters: int = 0  # weight clusters per kernel; 0 turns clustering off
    cluster_epochs: int = 2  # fine-tuning epochs while clustering

    @property
    def structured(self) -> bool:
        return isinstance(self.sparsity, str)

    @property
    def pruned(self) -> bool:
        return bool(self.sparsity)

    @property
    def quantization_aware(self) -> bool:
        return self.quantize == "qat" and self.qat_epochs > 0

    @property
    def precision(self) -> str:
        """The precision of the quantized artifact the build makes: int8 or int16x8."""
        return "int16x8" if self.quantize == "int16x8" else "int8"


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    dataset: str
    task: str
    metric: str
    builder: str
    builder_args: dict[str, Any]
    train: TrainSettings
    optimize: OptimizeSettings
    expected_params: int | None = None
    input_shape: tuple[int, ...] | None = None  # the model's input; None takes the data's own shape
    file: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["file"] = str(self.file) if self.file else None
        return data

    def summary(self) -> dict[str, str]:
        """One row of the `edgekit models` table."""
        sparsity = self.optimize.sparsity
        return {"recipe": self.name, "builder": self.builder, "dataset": self.dataset, "metric": self.metric,
                "sparsity": sparsity if isinstance(sparsity, str) else f"{sparsity:.0%}",
                "qat epochs": str(self.optimize.qat_epochs), "description": self.description}

    def with_changes(self, **changes: Any) -> Recipe:
        """A copy with top-level fields, or `train`/`optimize` sub-fields given as dicts, replaced."""
        for section in ("train", "optimize"):
            if isinstance(changes.get(section), dict):
                changes[section] = replace(getattr(self, section), **changes[section])
        return replace(self, **changes)


def names() -> list[str]:
    return list(_toml.builtin_names("models"))


def load(name_or_path: str | Path) -> Recipe:
    """A built-in recipe name (`digits-cnn`) or a path to a user's recipe file."""
    path = _toml.resolve("models", "recipe", name_or_path, "edgekit models")
    return _parse(_toml.Table(_toml.read(path), path), path)


def from_mapping(data: dict[str, Any], source: str) -> Recipe:
    """A recipe from values given some other way (the command line), checked exactly as a file is;
    messages name `source` where they would name the file."""
    path = Path(source)
    return _parse(_toml.Table(data, path), path)


def from_optimize_options(name: str, *, task: str, sparsity: str, schedule: str, pruning_epochs: int,
                          prune_layers: tuple[str, ...], keep_dense: tuple[str, ...], quantize: str, qat_epochs: int,
                          clusters: int, cluster_epochs: int, max_drop: float, batch_size: int, learning_rate: float,
                          calibration_samples: int) -> Recipe:
    """The recipe `edgekit optimize`'s options describe for a model trained elsewhere (builder `external`),
    checked as a recipe file's [optimize] table is; messages name the command line. `sparsity` is the option as
    typed (a share, or 2:4); pruning fine-tunes at `learning_rate`, QAT at half of it."""
    try:
        pruning: float | str = sparsity if sparsity in STRUCTURED_SPARSITY else float(sparsity)
    except ValueError:
        raise _toml.UsageError(f"--sparsity '{sparsity}': expected a number from 0 to 0.95, or 2:4") from None
    return from_mapping({
        "name": name, "task": task, "model": {"builder": "external"},
        "train": {"epochs": 1, "batch_size": batch_size, "learning_rate": learning_rate},
        "optimize": {"sparsity": pruning, "schedule": schedule, "pruning_epochs": pruning_epochs if pruning else 0,
                     "prune_layers": list(prune_layers), "keep_dense": list(keep_dense), "quantize": quantize,
                     "qat_epochs": qat_epochs, "clusters": clusters, "cluster_epochs": cluster_epochs,
                     "max_drop": max_drop, "calibration_samples": calibration_samples,
                     "pruning_learning_rate": learning_rate, "qat_learning_rate": learning_rate / 2},
    }, "command line")


def load_all() -> list[Recipe]:
    return [load(name) for name in names()]


def _parse(top: _toml.Table, path: Path) -> Recipe:
    top.only(*KEYS)
    name = top.get("name", str)
    if path.parent == _toml.builtin_dir("models") and name != path.stem:
        raise _toml.UsageError(f"{path}: key 'name': expected '{path.stem}' (the file name), got {name!r}")
    task = top.choice("task", tuple(TASKS))
    recipe_fields = dict(
        name=name,
        description=top.get("description", str, ""),
        dataset=top.get("dataset", str, ""),
        task=task,
        metric=top.choice("metric", METRICS[task], METRICS[task][0]),
        expected_params=top.integer("expected_params", None, minimum=1),
    )

    model = top.table("model").only("builder", "args", "input")
    builder = model.get("builder", str)
    if builder not in zoo.BUILDERS and builder != EXTERNAL:
        raise UsageError(f"{path}: key 'model.builder': unknown builder {builder!r}; "
                         f"{_did_you_mean(builder, list(zoo.BUILDERS))}valid: {', '.join(zoo.BUILDERS)}")
    args = model.table("args", required=False)
    if builder == EXTERNAL:
        args.only(valid=f"builder '{EXTERNAL}' takes").done()
    builder_args = {} if builder == EXTERNAL else zoo.check_args(args, builder)
    shape = model.get("input", list, None, expected="a list of positive integers")
    if shape is not None and (not shape or not all(isinstance(d, int) and d > 0 for d in shape)):
        raise _toml.UsageError(f"{path}: key 'model.input': expected a list of positive integers, got {shape!r}")
    model.done()

    train = top.table("train").only(*(f.name for f in fields(TrainSettings)))
    train_settings = TrainSettings(
        epochs=train.integer("epochs", minimum=1),
        batch_size=train.integer("batch_size", 32, minimum=1),
        learning_rate=train.number("learning_rate", 1e-3, minimum=0),
        optimizer=train.choice("optimizer", OPTIMIZERS, "adam"),
    )
    train.done()

    opt = top.table("optimize", required=False).only(*(f.name for f in fields(OptimizeSettings)))
    if isinstance(opt.data.get("sparsity"), str):
        sparsity = opt.choice("sparsity", STRUCTURED_SPARSITY)
    else:
        sparsity = opt.number("sparsity", 0.5, minimum=0.0, maximum=0.95)
    optimize_settings = OptimizeSettings(
        sparsity=sparsity,
        schedule=opt.choice("schedule", SCHEDULES, "polynomial"),
        pruning_epochs=opt.integer("pruning_epochs", 4 if sparsity else 0, minimum=0),
        pruning_learning_rate=opt.number("pruning_learning_rate", train_settings.learning_rate / 2, minimum=0),
        qat_epochs=opt.integer("qat_epochs", 2, minimum=0),
        qat_learning_rate=opt.number("qat_learning_rate", train_settings.learning_rate / 4, minimum=0),
        calibration_samples=opt.integer("calibration_samples", 200, minimum=1),
        max_drop=opt.number("max_drop", 1.0, minimum=0),
        prune_layers=opt.strings("prune_layers", ()),
        keep_dense=opt.strings("keep_dense", ()),
        quantize=opt.choice("quantize", QUANTIZE_MODES, "qat"),
        clusters=opt.integer("clusters", 0, minimum=0),
        cluster_epochs=opt.integer("cluster_epochs", 2, minimum=1),
    )
    opt.done()
    if optimize_settings.sparsity and not optimize_settings.pruning_epochs:
        raise _toml.UsageError(f"{path}: key 'optimize.pruning_epochs': expected >= 1 when sparsity > 0, got 0")
    if optimize_settings.clusters == 1:
        raise _toml.UsageError(f"{path}: key 'optimize.clusters': expected 0 (off) or at least 2, got 1")
    top.done()
    return Recipe(**recipe_fields, builder=builder, builder_args=builder_args, train=train_settings,
                  optimize=optimize_settings, input_shape=tuple(shape) if shape else None, file=path)


def _did_you_mean(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f"did you mean {close[0]!r}? " if close else ""
