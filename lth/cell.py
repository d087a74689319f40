"""One job's config as frozen, typed pieces: a `Cell`, built once after validation (lth.validate).

Every vocabulary is declared here once, as a `Literal` type with the tuple of its values;
validation, the devices and the training loop all read these. A stage takes the pieces it
uses (`claim(state, ...)`, `build_model(model, ...)`), never the raw Hydra config, and an
identity hash is computed from `Cell.groups`, the resolved config, exactly as before.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from omegaconf import DictConfig, OmegaConf

Backend = Literal["tensorflow", "jax"]
Precision = Literal["float32", "mixed_bfloat16", "mixed_float16"]
Optimizer = Literal["sgd", "adamw", "adam"]
Schedule = Literal["cosine", "step", "constant"]
LrScaling = Literal["none", "linear"]
WeightDecayMode = Literal["decoupled", "l2"]
Method = Literal["magnitude", "imp"]
Control = Literal["none", "reinit", "random_mask"]
OnCollapse = Literal["warn", "refuse"]
BACKENDS: tuple[str, ...] = typing.get_args(Backend)
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
OPTIMIZERS: tuple[str, ...] = typing.get_args(Optimizer)
SCHEDULES: tuple[str, ...] = typing.get_args(Schedule)
LR_SCALINGS: tuple[str, ...] = typing.get_args(LrScaling)
WEIGHT_DECAY_MODES: tuple[str, ...] = typing.get_args(WeightDecayMode)
METHODS: tuple[str, ...] = typing.get_args(Method)
CONTROLS: tuple[str, ...] = typing.get_args(Control)
ON_COLLAPSE: tuple[str, ...] = typing.get_args(OnCollapse)
IMAGENET_NEEDS_TENSORFLOW = "data=imagenet reads TFRecord shards with tf.data: it needs train.backend=tensorflow"
HASHED_GROUPS: tuple[str, ...] = ("model", "data", "train", "prune", "reset")  # what identities are computed from


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the fix."""


@dataclass(frozen=True)
class ModelConfig:
    """The `model` group: which network, at which size."""

    name: str
    input_size: int
    num_classes: int
    input_channels: int = 3
    alpha: float = 1.0  # MobileNetV2's width multiplier
    bn_momentum: float = 0.999  # MobileNetV2's BatchNorm momentum
    hidden_units: tuple[int, ...] = ()  # LeNet's hidden widths


@dataclass(frozen=True)
class DataConfig:
    """The `data` group: one dataset's loader and split; each loader reads the keys it declares."""

    name: str
    num_classes: int
    image_size: int | None = None
    channels: int = 3
    path: str | None = None
    split_seed: int = 0
    test_fraction: float | None = None
    val_fraction: float | None = None
    train_limit: int | None = None
    val_limit: int | None = None
    test_limit: int | None = None
    train_size: int | None = None
    val_size: int | None = None
    test_size: int | None = None
    val_split: str | None = None
    test_split: str | None = None
    read_parallelism: int = 8
    shuffle_buffer: int = 10000
    cache: str | None = None
    crop_area_range: tuple[float, ...] = (0.08, 1.0)
    crop_aspect_range: tuple[float, ...] = (0.75, 4 / 3)
    flip: bool = True
    eval_crop_fraction: float = 0.875


@dataclass(frozen=True)
class TrainConfig:
    """The `train` group: schedule, optimizer, seed, and where and how precisely the run computes."""

    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    optimizer: Optimizer = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: Schedule = "cosine"
    warmup_epochs: int = 0
    step_milestones: tuple[int, ...] = ()
    step_gamma: float = 0.1
    backend: Backend = "tensorflow"
    devices: int | Literal["auto"] = "auto"
    precision: Precision = "float32"
    sync_bn: bool = False
    lr_scaling: LrScaling = "none"
    lr_reference_batch: int = 256
    steps_per_execution: int = 1
    weight_decay_mode: WeightDecayMode = "decoupled"  # configs written before the key existed mean decoupled


@dataclass(frozen=True)
class PruneConfig:
    """The `prune` group: how the mask is built, and which control replaces one ingredient."""

    method: Method
    threshold: float
    scope: str
    min_density: float = 0.0
    on_collapse: OnCollapse = "warn"
    ignore: tuple[str, ...] = ()
    control: Control = "none"
    control_seed: int = 0
    levels: int = 1
    rate: float = 0.2
    layer_rates: Mapping[str, float] = field(default_factory=dict)  # configs before the key existed have none


@dataclass(frozen=True)
class ResetConfig:
    """The `reset` group: the dense epoch k the survivors are rewound to (0 = the initialisation)."""

    epoch: int


@dataclass(frozen=True)
class StateConfig:
    """The `lth` group: shared state, locks, kept epochs and what a sweep writes at its end."""

    state_dir: Path
    keep_epochs: tuple[int, ...] | Literal["all"] = "all"
    lock_timeout_min: float = 720.0
    verbose: str | int = "auto"
    report_dir: Path = Path("reports")
    report_tolerance: float = 0.01


@dataclass(frozen=True)
class TrackingConfig:
    """The `tracking` group: where runs are logged, and MLflow's HTTP retries (None: MLflow's default)."""

    uri: str
    experiment: str
    http_retries: int | None = None
    http_backoff_factor: float | None = None
    http_backoff_jitter_s: float | None = None
    http_timeout_s: float | None = None


@dataclass(frozen=True)
class ClusterConfig:
    """The `cluster` group as a run sees it (the launcher's own keys live under `hydra.launcher`)."""

    name: str = "local"


Piece = TypeVar("Piece")


def piece(kind: type[Piece], group: Mapping[str, Any], name: str) -> Piece:
    """Build one typed piece from a config group (a DictConfig or a plain mapping).

    Lists become tuples and paths `Path`s, so a piece is hashable where its fields are.
    A field typed as a `Literal` takes only its values.

    Raises:
        ConfigError: For a key the piece does not declare, a missing required key, or a
            value outside a field's vocabulary.
    """
    values = OmegaConf.to_container(group, resolve=True) if isinstance(group, DictConfig) else dict(group)
    assert isinstance(values, dict)
    fields = {f.name: f for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]} is not a key of the {name} group (known: {sorted(fields)})")
    missing = [key for key, f in fields.items() if key not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{name}.{missing[0]} is missing")
    hints = typing.get_type_hints(kind)
    built = {}
    for key, value in values.items():
        allowed = typing.get_args(hints[key]) if typing.get_origin(hints[key]) is Literal else None
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{name}.{key} must be one of {list(allowed)}, got {value!r}")
        if isinstance(value, list):
            value = tuple(value)
        elif value is None and key == "layer_rates":
            value = {}
        elif value is not None and hints[key] is Path:
            value = Path(value)
        elif hints[key] is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # `model.alpha=1` on a command line is an int; the piece promises a float
        built[key] = value
    return kind(**built)


@dataclass(frozen=True)
class Cell:
    """One job of a sweep: every group as a typed piece, and the resolved groups that identities hash."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    prune: PruneConfig
    reset: ResetConfig
    state: StateConfig
    tracking: TrackingConfig
    cluster: ClusterConfig
    groups: Mapping[str, Any]  # the resolved model, data, train, prune and reset groups (lth.tracking.identity)

    @classmethod
    def of(cls, cfg: DictConfig) -> Cell:
        """The typed cell of a composed job config (validate it first: lth.validate.validate_config)."""
        groups = {name: OmegaConf.to_container(cfg[name], resolve=True) for name in HASHED_GROUPS}
        return cls(piece(ModelConfig, cfg.model, "model"), piece(DataConfig, cfg.data, "data"),
                   piece(TrainConfig, cfg.train, "train"), piece(PruneConfig, cfg.prune, "prune"),
                   piece(ResetConfig, cfg.reset, "reset"), piece(StateConfig, cfg.lth, "lth"),
                   piece(TrackingConfig, cfg.tracking, "tracking"), piece(ClusterConfig, cfg.cluster, "cluster"),
                   groups)

    def with_control(self, control: Control) -> Cell:
        """The same cell with another `prune.control` (an IMP control's ticket is its cell with none)."""
        groups = {**self.groups, "prune": {**self.groups["prune"], "control": control}}
        return dataclasses.replace(self, prune=dataclasses.replace(self.prune, control=control), groups=groups)
