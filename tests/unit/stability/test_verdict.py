""""Stable from k": the earliest k from which on every analysed barrier is below the threshold."""

from __future__ import annotations

import math

from lth.stability.verdict import stable_from, unstable_again


def test_a_k_whose_later_neighbour_is_unstable_is_not_stable_from() -> None:
    barriers = {0: 0.01, 1: 0.30, 2: 0.01, 4: 0.005}
    assert stable_from(barriers, 0.02) == 2
    assert unstable_again(barriers, 0.02) == [0]


def test_nothing_is_stable_when_the_latest_k_is_not_and_nan_is_never_stable() -> None:
    assert stable_from({0: 0.01, 4: 0.5}, 0.02) is None
    assert stable_from({0: 0.01, 4: math.nan}, 0.02) is None
    assert stable_from({}, 0.02) is None
    assert stable_from({0: 0.02}, 0.02) is None  # below the threshold, not at it
