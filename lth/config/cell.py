"""One job's config as frozen, typed pieces: a `Cell`, built once after validation (lth.validation.validate).

Each group's keys are declared once, in lth.config.dense_groups, ticket_groups and runtime_groups. A
stage takes the pieces it uses (`claim(state, ...)`, `build_model(model, ...)`), never the raw Hydra
config, and the identities are computed from the pieces themselves (lth.tracking.identity), as their
declarations say: there is no second, untyped copy of the config to keep in step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from omegaconf import DictConfig

from lth.config.dense_groups import DataConfig, ModelConfig, TrainConfig
from lth.config.pieces import piece
from lth.config.runtime_groups import ClusterConfig, StabilityConfig, StateConfig, TrackingConfig
from lth.config.ticket_groups import PruneConfig, ResetConfig
from lth.config.vocabulary import ConfigError, Control

# Config group -> (the Cell's field, its declared dataclass). The `lth` group is the cell's state.
PIECES: dict[str, tuple[str, type]] = {
    "model": ("model", ModelConfig), "data": ("data", DataConfig), "train": ("train", TrainConfig),
    "prune": ("prune", PruneConfig), "reset": ("reset", ResetConfig), "lth": ("state", StateConfig),
    "tracking": ("tracking", TrackingConfig), "cluster": ("cluster", ClusterConfig),
    "stability": ("stability", StabilityConfig),
}
DENSE_GROUPS: tuple[str, ...] = ("model", "data", "train")  # decide the dense parent (lth.tracking.identity)
TICKET_GROUPS: tuple[str, ...] = (*DENSE_GROUPS, "prune", "reset")  # decide a ticket; the rest never a result
OPTIONAL_GROUPS: tuple[str, ...] = ("stability",)  # configs written before it existed still build
__all__ = ["Cell", "ClusterConfig", "DataConfig", "ModelConfig", "PruneConfig", "ResetConfig", "StabilityConfig",
           "StateConfig", "TrackingConfig", "TrainConfig", "PIECES"]


@dataclass(frozen=True)
class Cell:
    """One job of a sweep: every group as a typed piece; its identities are computed from them."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    prune: PruneConfig
    reset: ResetConfig
    state: StateConfig
    tracking: TrackingConfig
    cluster: ClusterConfig
    stability: StabilityConfig = StabilityConfig()  # not hashed: an analysis never changes the run it analyses

    @classmethod
    def of(cls, cfg: DictConfig) -> Cell:
        """The typed cell of a composed job config (validate it first: lth.validation.validate.validate_config)."""
        absent = [group for group in PIECES if group not in cfg and group not in OPTIONAL_GROUPS]
        if absent:
            raise ConfigError(f"the config has no {absent[0]} group (compose it from conf/train.yaml)")
        pieces = {field: piece(kind, cfg[group], group) for group, (field, kind) in PIECES.items() if group in cfg}
        return cls(**pieces)

    def with_control(self, control: Control) -> Cell:
        """The same cell with another `prune.control` (an IMP control's ticket is its cell with none)."""
        return dataclasses.replace(self, prune=dataclasses.replace(self.prune, control=control))

    def with_seeds(self, seed: int, data_seed: int | None) -> Cell:
        """The same cell as another replicate: initial weights from `seed`, data in `data_seed`'s order."""
        return dataclasses.replace(self, train=dataclasses.replace(self.train, seed=seed, data_seed=data_seed))

    def with_reset_epoch(self, epoch: int) -> Cell:
        """The same cell rewound to `epoch` (what `reset.epoch=auto` resolves to)."""
        return dataclasses.replace(self, reset=ResetConfig(epoch))

    @property
    def reset_epoch(self) -> int:
        """k, once `auto` is resolved (lth.stability.auto)."""
        if not isinstance(self.reset.epoch, int):
            raise RuntimeError("reset.epoch=auto must be resolved before the cell is trained")
        return self.reset.epoch

