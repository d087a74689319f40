"""A ticket's run name says its threshold, reset epoch, control and seed."""

from __future__ import annotations

from collections.abc import Callable

from lth.config.cell import Cell
from lth.stages.tickets import run_name


def test_the_run_name_carries_the_control_and_a_non_zero_seed(compose: Callable[..., object]) -> None:
    cell = Cell.of(compose("prune.threshold=0.8", "reset.epoch=1"))
    assert run_name(cell) == "t=0.80 k=1"
    assert run_name(cell.with_control("reinit").with_seeds(3, None)) == "t=0.80 k=1 reinit seed=3"
