"""What a training run measured, and the verdict that makes its number not a result: divergence."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lth.training.chance import CHANCE_ACCURACY_FACTOR, dense_at_chance
from lth.training.early_stop import EarlyStop

CHANCE_LOSS_FRACTION = 0.98  # a final training loss above this share of ln(classes) has learned nothing


@dataclass(frozen=True)
class FitResult:
    """What a training run measured."""

    test_loss: float
    test_accuracy: float
    epochs_trained: int
    seconds: float
    diverged: bool  # the loss became NaN/inf; training was stopped there
    diverged_epoch: int | None  # first epoch (1-based, absolute) whose loss was not finite
    last_train_loss: float | None  # training loss of the last epoch trained
    early_stop: EarlyStop | None = None  # the epoch of minimum val_loss and the test figures there


def divergence(result: FitResult, dense_accuracy: float, num_classes: int) -> str | None:
    """`nan` if the loss became NaN/inf, `chance` if it never left chance level, else None.

    Chance is judged only when the dense parent itself is not at chance (lth.training.chance): otherwise
    every run of that config sits there and the verdict is the parent's, which the job line and
    the report name instead.
    """
    if result.diverged:
        return "nan"
    chance_loss = math.log(num_classes)
    learned = not dense_at_chance(dense_accuracy, num_classes)
    stuck = result.last_train_loss is not None and result.last_train_loss >= CHANCE_LOSS_FRACTION * chance_loss
    if learned and stuck and result.test_accuracy <= CHANCE_ACCURACY_FACTOR / num_classes:
        return "chance"
    return None
