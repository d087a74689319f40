"""The early-stop point of a run (Frankle & Carbin 2019): the epoch of minimum validation loss.

The lottery-ticket papers compare networks at their early-stop iteration, not at the end
of a fixed schedule: a sparse network that peaks sooner and then overfits is read where
it peaked. `EarlyStopPoint` follows the validation loss Keras logs after every epoch and
keeps the weights of its minimum (the first one, on a tie), so the test set is read once,
at the end, with those weights. Nothing stops training: the full schedule still runs, so
tickets keep rewinding to the same dense epochs.

The best point so far is also written next to the run's backup, atomically, so a job
that dies and resumes still knows the minimum of the epochs it trained before.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np


@dataclass(frozen=True)
class EarlyStop:
    """Where a run's validation loss was lowest, and the test figures of its weights there."""

    epoch: int  # 1-based absolute epoch (the step its val_loss was logged at)
    val_loss: float
    test_loss: float
    test_accuracy: float


class EarlyStopPoint(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the lowest finite `val_loss` (the first, on a tie).

    Args:
        state_file: Where the best point so far is kept between processes (an `.npz`); it is
            read at construction, so a resumed job continues from the point its earlier part found.
        writer: False on the processes of a group other than 0: they follow the same point
            (the validation loss is global) and read the file, but only process 0 writes it.
    """

    def __init__(self, state_file: Path, writer: bool = True) -> None:
        super().__init__()
        self.state_file, self.writer = state_file, writer
        self.epoch: int | None = None
        self.val_loss = math.inf
        self.weights: list[np.ndarray] | None = None
        if state_file.is_file():
            with np.load(state_file) as saved:
                self.epoch, self.val_loss = int(saved["epoch"]), float(saved["val_loss"])
                self.weights = [saved[f"w{index}"] for index in range(int(saved["count"]))]

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("val_loss")
        if loss is None or not math.isfinite(float(loss)) or float(loss) >= self.val_loss:
            return
        self.epoch, self.val_loss = epoch + 1, float(loss)
        self.weights = [np.array(weight) for weight in self.model.get_weights()]
        if not self.writer:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_suffix(".partial.npz")
        np.savez(partial, epoch=self.epoch, val_loss=self.val_loss, count=len(self.weights),
                 **{f"w{index}": weight for index, weight in enumerate(self.weights)})
        os.replace(partial, self.state_file)  # atomic: a signal leaves the old point or the new one

    def evaluate(self, model: keras.Model, test: Any, final_epoch: int, final: tuple[float, float],
                 test_loss_factor: float = 1.0) -> EarlyStop | None:
        """The test figures at the early-stop epoch; None when no epoch logged a finite val_loss.

        Args:
            model: The trained model (its final weights are put back afterwards).
            test: The test input.
            final_epoch: The last epoch trained; if it is the minimum, `final` is its result.
            final: (test_loss, test_accuracy) of the final weights.
            test_loss_factor: Keras' test loss times this is the true mean (padded evaluation).
        """
        if self.epoch is None or self.weights is None:
            return None
        if self.epoch == final_epoch:
            return EarlyStop(self.epoch, self.val_loss, *final)
        trained = model.get_weights()
        model.set_weights(self.weights)
        test_loss, test_accuracy = model.evaluate(test, verbose=0)
        model.set_weights(trained)
        return EarlyStop(self.epoch, self.val_loss, float(test_loss) * test_loss_factor, float(test_accuracy))
