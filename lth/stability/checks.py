"""Checks of a sweep with reset.epoch=auto, before any training (the single group's: lth.validation.rules)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lth.config.vocabulary import ConfigError


def check_auto_reference(cells: Sequence[Any]) -> None:
    """A sweep with reset.epoch=auto must run its reference replicate (lth.stability.auto.reference_of).

    Every replicate decides k from `train.seed=stability.reference_seed` with its data in its own
    order. A sweep without that replicate would train its dense parent just to decide, and the report
    would then expect every cell on it too, so no cell of the sweep could be complete.

    Args:
        cells: The sweep's jobs, as lth.config.cell.Cell.

    Raises:
        ConfigError: The sweep's auto jobs do not include their reference replicate.
    """
    auto = [cell for cell in cells if cell.reset.epoch == "auto"]
    for seed in sorted({cell.stability.reference_seed for cell in auto}):
        if not any(cell.train.seed == seed and cell.train.data_seed is None for cell in auto):
            seeds = sorted({cell.train.seed for cell in auto})
            raise ConfigError(
                f"reset.epoch=auto decides k for every replicate from train.seed={seed} with its data in its own "
                f"order (stability.reference_seed={seed}, train.data_seed=null), which this sweep does not run, and "
                f"the report would expect every cell on it too: add train.seed={seed} (with train.data_seed=null) "
                f"to the sweep, or set stability.reference_seed to one of its seeds {seeds}")
