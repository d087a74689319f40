"""One job's config as frozen, typed pieces: a `Cell`, built once after validation (lth.validate).

The fields' vocabularies are declared once, in lth.vocabulary. A stage takes the pieces it
uses (`claim(state, ...)`, `build_model(model, ...)`), never the raw Hydra config, and an
identity hash is computed from `Cell.groups`, the resolved config, exactly as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf

from lth.pieces import piece
from lth.vocabulary import (
    Backend,
    ConfigError,
    Control,
    LrScaling,
    Method,
    OnCollapse,
    Optimizer,
    Precision,
    Schedule,
    Structure,
    WeightDecayMode,
)

HASHED_GROUPS: tuple[str, ...] = ("model", "data", "train", "prune", "reset")  # what identities are computed from


# The fields mirror conf/<group>/*.yaml, where each key's meaning is written. A default is
# what a config written before the key existed meant, so old configs still build.


@dataclass(frozen=True)
class ModelConfig:
    """The `model` group: which network, at which size."""

    name: str  # a key of lth.training.models.ARCHITECTURES
    input_size: int  # square input side in pixels
    num_classes: int  # classifier width
    input_channels: int = 3  # 1 for LeNet's grey images
    alpha: float = 1.0  # MobileNetV2's width multiplier
    bn_momentum: float = 0.999  # MobileNetV2's BatchNorm momentum (Keras' default)
    hidden_units: tuple[int, ...] = ()  # LeNet's hidden widths


@dataclass(frozen=True)
class DataConfig:
    """The `data` group: one dataset's loader and split; each loader reads the keys it declares."""

    name: str  # digits, fashion_mnist, synthetic (lth.data.arrays) or imagenet (lth.data.shards)
    num_classes: int  # labels in the dataset
    image_size: int | None = None  # images are brought to this side (the model's input)
    channels: int = 3  # 1: grey; 3: grey copied to RGB
    path: str | None = None  # folder of the files (hashed as their content, never as the path)
    split_seed: int = 0  # fixes the splits independently of train.seed
    test_fraction: float | None = None  # digits: held-out test share
    val_fraction: float | None = None  # digits, fashion_mnist: validation share of the training part
    train_limit: int | None = None  # keep the first N training images
    val_limit: int | None = None  # shards: validate on the first N images
    test_limit: int | None = None  # test on the first N images
    train_size: int | None = None  # synthetic: generated training images
    val_size: int | None = None  # synthetic: generated validation images
    test_size: int | None = None  # synthetic: generated test images
    val_split: str | None = None  # shards: the manifest split validated every epoch
    test_split: str | None = None  # shards: the manifest split tested once at the end
    read_parallelism: int = 8  # shards: training files read at once
    shuffle_buffer: int = 10000  # shards: records mixed per epoch
    cache: str | None = None  # shards: null, memory or a file prefix
    crop_area_range: tuple[float, ...] = (0.08, 1.0)  # shards: random-resized crop area
    crop_aspect_range: tuple[float, ...] = (0.75, 1.3333333)  # shards: random-resized crop aspect ratio
    flip: bool = True  # shards: random left-right flips
    eval_crop_fraction: float = 0.875  # shards: central crop of the shorter side


@dataclass(frozen=True)
class TrainConfig:
    """The `train` group: schedule, optimizer, seed, and where and how precisely the run computes."""

    epochs: int  # E: the dense run trains 0..E, a ticket k..E
    batch_size: int  # global batch size
    learning_rate: float  # peak rate
    seed: int  # initial weights (and the data order unless data_seed is set)
    optimizer: Optimizer = "sgd"  # sgd with momentum, adamw or adam
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0  # see weight_decay_mode
    lr_schedule: Schedule = "cosine"  # a function of the optimizer step, resumed at epoch k
    warmup_epochs: int = 0  # cosine only
    step_milestones: tuple[int, ...] = ()  # step only: epochs where the rate is multiplied by step_gamma
    step_gamma: float = 0.1  # step only
    backend: Backend = "tensorflow"  # Keras backend
    devices: int | Literal["auto"] = "auto"  # devices of one run's data parallelism
    precision: Precision = "float32"  # Keras dtype policy; masks act on float32 master weights
    sync_bn: bool = False  # TensorFlow data parallel: BatchNorm over the global batch
    lr_scaling: LrScaling = "none"  # linear: learning_rate * batch_size / lr_reference_batch
    lr_reference_batch: int = 256  # the batch learning_rate refers to under linear scaling
    steps_per_execution: int = 1  # optimizer steps per call into the compiled step
    weight_decay_mode: WeightDecayMode = "decoupled"  # decoupled (the optimizer's) or l2 (TF-slim's loss term)
    data_seed: int | None = None  # SGD noise (example order, augmentation); None = seed

    @property
    def order_seed(self) -> int:
        """The seed of the data order and augmentation: `data_seed`, or `seed` when it is not set."""
        return self.seed if self.data_seed is None else self.data_seed


@dataclass(frozen=True)
class PruneConfig:
    """The `prune` group: how the mask is built, and which control replaces one ingredient."""

    method: Method  # magnitude (one-shot at threshold) or imp (levels of rate)
    threshold: float  # one-shot: fraction of prunable weights removed
    scope: str  # a key of lth.pruning.scopes.SCOPES
    min_density: float = 0.0  # floor on every layer's kept fraction
    on_collapse: OnCollapse = "warn"  # an emptied layer: warn and train, or refuse before training
    ignore: tuple[str, ...] = ()  # layers kept dense
    control: Control = "none"  # none = the ticket
    control_seed: int = 0  # the control's randomness
    levels: int = 1  # imp: prune-rewind-retrain rounds
    rate: float = 0.2  # imp: fraction of the survivors removed per level
    layer_rates: Mapping[str, float] = field(default_factory=dict)  # imp: layers with a rate of their own
    structure: Structure = "none"  # which weights a mask may remove: any, the 1x1 convolutions, or whole channels


@dataclass(frozen=True)
class ResetConfig:
    """The `reset` group: the dense epoch k the survivors are rewound to (0 = the initialisation)."""

    epoch: int | Literal["auto"]  # k, at most train.epochs; auto = the candidate stable from which on (lth.stability.auto)


@dataclass(frozen=True)
class StabilityConfig:
    """The `stability` group: instability analysis (linear mode connectivity) of the cell's network."""

    enabled: bool = False  # analyse this cell's ticket (or, at threshold 0, the dense network)
    data_seeds: tuple[int, ...] | None = None  # data seeds of copies 2..n; None = (the run's data seed + 1,)
    points: int = 30  # α values on the linear path, both ends included
    bn: Literal["recompute", "interpolate"] = "recompute"  # BatchNorm statistics along the path
    bn_batches: int = 32  # training batches the statistics are recomputed from at each α
    threshold: float = 0.02  # stable: an error barrier below this
    reference: Literal["cell", "dense"] = "dense"  # what reset.epoch=auto analyses at each candidate
    candidates: tuple[int, ...] = (0, 1, 2, 4)  # the epochs reset.epoch=auto chooses from
    reference_seed: int = 0  # train.seed whose reference decides k for every replicate of a cell: one k per cell


@dataclass(frozen=True)
class StateConfig:
    """The `lth` group: shared state, locks, kept epochs and what a sweep writes at its end."""

    state_dir: Path  # locks and backups, shared by every job of a sweep
    keep_epochs: tuple[int, ...] | Literal["all"] = "all"  # dense epochs kept as reset candidates
    lock_timeout_min: float = 720.0  # how long a job waits for another working on the same run
    verbose: str | int = "auto"  # Keras progress
    report_dir: Path = Path("reports")  # where a sweep writes its report
    report_tolerance: float = 0.01  # a winner's mean validation accuracy is at most this below dense


@dataclass(frozen=True)
class TrackingConfig:
    """The `tracking` group: where runs are logged, and MLflow's HTTP retries (None: MLflow's default)."""

    uri: str  # MLflow tracking URI
    experiment: str  # the experiment of dense parents and tickets
    http_retries: int | None = None  # retries of one request
    http_backoff_factor: float | None = None  # seconds, a whole number
    http_backoff_jitter_s: float | None = None  # random extra wait per retry
    http_timeout_s: float | None = None  # a request without an answer by then is retried


@dataclass(frozen=True)
class ClusterConfig:
    """The `cluster` group as a run sees it (the launcher's own keys live under `hydra.launcher`)."""

    name: str = "local"  # tagged on every run


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
    stability: StabilityConfig = StabilityConfig()  # not hashed: an analysis never changes the run it analyses

    @classmethod
    def of(cls, cfg: DictConfig) -> Cell:
        """The typed cell of a composed job config (validate it first: lth.validate.validate_config)."""
        absent = [group for group in PIECES if group not in cfg and group not in OPTIONAL_GROUPS]
        if absent:
            raise ConfigError(f"the config has no {absent[0]} group (compose it from conf/train.yaml)")
        groups = {name: OmegaConf.to_container(cfg[name], resolve=True) for name in HASHED_GROUPS}
        pieces = {field: piece(kind, cfg[group], group) for group, (field, kind) in PIECES.items() if group in cfg}
        return cls(**pieces, groups=groups)

    def with_control(self, control: Control) -> Cell:
        """The same cell with another `prune.control` (an IMP control's ticket is its cell with none)."""
        groups = {**self.groups, "prune": {**self.groups["prune"], "control": control}}
        return dataclasses.replace(self, prune=dataclasses.replace(self.prune, control=control), groups=groups)

    def with_seeds(self, seed: int, data_seed: int | None) -> Cell:
        """The same cell as another replicate: initial weights from `seed`, data in `data_seed`'s order."""
        train = {**self.groups["train"], "seed": seed}
        if "data_seed" in train or data_seed is not None:  # a config from before data_seed keeps its identity
            train["data_seed"] = data_seed
        return dataclasses.replace(self, train=dataclasses.replace(self.train, seed=seed, data_seed=data_seed),
                                   groups={**self.groups, "train": train})

    def with_reset_epoch(self, epoch: int) -> Cell:
        """The same cell rewound to `epoch` (what `reset.epoch=auto` resolves to)."""
        groups = {**self.groups, "reset": {**self.groups["reset"], "epoch": epoch}}
        return dataclasses.replace(self, reset=ResetConfig(epoch), groups=groups)

    @property
    def reset_epoch(self) -> int:
        """k, once `auto` is resolved (lth.stability.auto)."""
        if not isinstance(self.reset.epoch, int):
            raise RuntimeError("reset.epoch=auto must be resolved before the cell is trained")
        return self.reset.epoch


# Config group -> (the Cell's field, its piece). The `lth` group is the cell's state.
PIECES: dict[str, tuple[str, type]] = {
    "model": ("model", ModelConfig), "data": ("data", DataConfig), "train": ("train", TrainConfig),
    "prune": ("prune", PruneConfig), "reset": ("reset", ResetConfig), "lth": ("state", StateConfig),
    "tracking": ("tracking", TrackingConfig), "cluster": ("cluster", ClusterConfig),
    "stability": ("stability", StabilityConfig),
}
OPTIONAL_GROUPS: tuple[str, ...] = ("stability",)  # configs written before it existed still build
