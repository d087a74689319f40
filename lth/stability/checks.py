"""Checks of the `stability` group, before any training (called by lth.config.validate)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import ListConfig

from lth.config.vocabulary import ConfigError

BN_MODES = ("recompute", "interpolate")
REFERENCES = ("dense", "cell")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_stability(stability: Any, method: str, threshold: float) -> None:
    """One clear line for a `stability` group that cannot run.

    Raises:
        ConfigError: On the first problem found.
    """
    def check(condition: bool, message: str) -> None:
        if not condition:
            raise ConfigError(message)

    points, bn, batches = stability.points, stability.bn, stability.bn_batches
    check(_whole(points) and points >= 2,
          f"stability.points must be an integer >= 2 (both ends of the path), got {points!r}")
    check(bn in BN_MODES, f"stability.bn must be recompute or interpolate, got {bn!r}")
    check(_whole(batches) and batches >= 1, f"stability.bn_batches must be a positive integer, got {batches!r}")
    check(isinstance(stability.threshold, (int, float)) and 0.0 < stability.threshold < 1.0,
          f"stability.threshold must be an error barrier in (0, 1) (0.02 = 2%), got {stability.threshold!r}")
    check(stability.reference in REFERENCES, f"stability.reference must be dense or cell, got {stability.reference!r}")
    seeds = stability.data_seeds
    check(seeds is None or (isinstance(seeds, (list, tuple, ListConfig)) and len(seeds) >= 1
                            and all(_whole(seed) and seed >= 0 for seed in seeds)),
          f"stability.data_seeds must be null or a non-empty list of non-negative integers, got {seeds!r}")
    candidates = stability.candidates
    check(isinstance(candidates, (list, tuple, ListConfig)) and len(candidates) >= 1 and all(_whole(k) for k in candidates),
          f"stability.candidates must be a non-empty list of reset epochs, got {candidates!r}")
    reference_seed = stability.get("reference_seed", 0)
    check(_whole(reference_seed) and reference_seed >= 0,
          f"stability.reference_seed must be a non-negative integer (a train.seed), got {reference_seed!r}")
    if method == "imp":  # an IMP job's copies would need every level retrained per data seed
        check(not stability.enabled, "stability=on analyses one-shot tickets and the dense network, not prune.method=imp")
        check(stability.reference == "dense",
              "reset.epoch=auto with prune.method=imp needs stability.reference=dense (an IMP cell is not analysed)")


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
