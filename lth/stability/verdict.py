"""What "stable from k" means, defined once for `reset.epoch=auto` and for the report.

A network is *stable from k* when its error barrier is below the threshold at k and at every
later reset epoch that was analysed: late resetting is meant to find the point after which
SGD noise no longer matters, so a k whose later neighbour is unstable again is not that point.
A barrier is judged on validation (never on test: k is a training decision).

Pure: no tracker, no training. lth.stability.auto and lth.report.stability both call it.
"""

from __future__ import annotations

from collections.abc import Mapping


def stable_from(barriers: Mapping[int, float], threshold: float) -> int | None:
    """The earliest analysed k at which the barrier, and every later analysed k's, is below `threshold`.

    Args:
        barriers: Reset epoch k -> validation error barrier (a fraction: 0.02 is 2%).
        threshold: A barrier below it is stable.

    Returns:
        That k, or None when the latest analysed k is unstable (or nothing was analysed).
    """
    chosen = None
    for k in sorted(barriers, reverse=True):
        if not barriers[k] < threshold:  # NaN (a path that diverged) is not stable either
            break
        chosen = k
    return chosen


def unstable_again(barriers: Mapping[int, float], threshold: float) -> list[int]:
    """The analysed k before `stable_from` that are stable on their own (a later k is unstable again)."""
    onwards = stable_from(barriers, threshold)
    return sorted(k for k, barrier in barriers.items() if barrier < threshold and (onwards is None or k < onwards))
