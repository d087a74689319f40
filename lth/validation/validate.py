"""Checks that turn bad input into one clear line before any training starts.

Each key is checked as it is declared (lth.config.pieces, while the typed `Cell` is built); then every
named rule that relates several keys (lth.validation.rules) runs in turn.
"""

from __future__ import annotations

from omegaconf import DictConfig

from lth.config.cell import Cell
from lth.config.vocabulary import ConfigError
from lth.tracking.http import http_environment
from lth.validation.rules import RULES

__all__ = ["Cell", "ConfigError", "http_environment", "validate_config"]


def validate_config(cfg: DictConfig) -> Cell:
    """Static checks of one job's config (no TensorFlow, no data loading), then its typed cell.

    Raises:
        ConfigError: On the first problem found.
    """
    cell = Cell.of(cfg)
    for rule in RULES:
        rule(cfg, cell)
    return cell
