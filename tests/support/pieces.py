"""Typed config pieces from the partial groups tests write by hand (lth.config.cell.piece, one call per group)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from lth.config.cell import PIECES
from lth.config.pieces import piece


def pieces(groups: dict[str, Any]) -> SimpleNamespace:
    """`pieces({"model": {...}, "train": {...}}).train` is that group's typed piece."""
    return SimpleNamespace(**{name: piece(PIECES[name][1], values, name) for name, values in groups.items()})
