"""Typed config pieces from the partial groups tests write by hand (lth.cell.piece, one call per group)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from lth.cell import DataConfig, ModelConfig, PruneConfig, ResetConfig, StateConfig, TrainConfig, piece

KINDS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "prune": PruneConfig,
                          "reset": ResetConfig, "lth": StateConfig}


def pieces(groups: dict[str, Any]) -> SimpleNamespace:
    """`pieces({"model": {...}, "train": {...}}).train` is that group's typed piece."""
    return SimpleNamespace(**{name: piece(KINDS[name], values, name) for name, values in groups.items()})
