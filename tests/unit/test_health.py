"""Verdicts that keep a broken run from reading as an accuracy."""

from __future__ import annotations

import math

from lth.fitting import FitResult
from lth.health import collapsed_layers, divergence


def _result(accuracy: float, last_loss: float | None, diverged: bool = False) -> FitResult:
    return FitResult(2.3, accuracy, 3, 1.0, diverged, 2 if diverged else None, last_loss)


def test_nan_loss_is_divergence() -> None:
    assert divergence(_result(0.1, float("nan"), diverged=True), dense_accuracy=0.96, num_classes=10) == "nan"


def test_loss_stuck_at_chance_is_divergence_only_if_the_dense_run_learned() -> None:
    stuck = _result(0.1, math.log(10) * 0.999)
    assert divergence(stuck, dense_accuracy=0.96, num_classes=10) == "chance"
    assert divergence(stuck, dense_accuracy=0.11, num_classes=10) is None  # nothing learned anywhere: no verdict
    assert divergence(_result(0.9, 0.3), dense_accuracy=0.96, num_classes=10) is None


def test_collapsed_layers_are_empty_or_held_at_the_floor() -> None:
    report = {"layers": [{"layer": "a", "kept": 0, "weights": 100}, {"layer": "b", "kept": 10, "weights": 1000},
                         {"layer": "c", "kept": 11, "weights": 1000}, {"layer": "d", "kept": 50, "weights": 100}]}
    assert collapsed_layers(report, 0.0) == ["a"]
    assert collapsed_layers(report, 0.01) == ["a", "b"]  # b kept exactly ceil(0.01 * 1000): the floor held it
