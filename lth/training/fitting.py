"""One training loop for dense parents and tickets: optimizer, schedule, fit, evaluate.

The learning rate is a Keras schedule of the optimizer's step counter. A ticket
rewound to epoch k sets that counter to the dense run's count after epoch k (logged
as `optimizer_iterations`; k * steps_per_epoch unless mixed_float16 skipped steps), so
its schedule resumes exactly where the dense run was at epoch k.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from lth.config.cell import TrainConfig
from lth.data.splits import DataSplits
from lth.training.backup import SignalSafeBackup
from lth.training.early_stop import EarlyStopPoint
from lth.training.result import FitResult

log = logging.getLogger("lth")


def learning_rate(train: TrainConfig, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The configured learning rate as a function of the optimizer step."""
    peak, epochs = float(train.learning_rate), train.epochs
    if train.lr_scaling == "linear":  # Goyal et al. 2017: the rate grows with the global batch
        peak *= train.batch_size / train.lr_reference_batch
    if train.lr_schedule == "constant":
        return peak
    if train.lr_schedule == "step":
        boundaries = [int(epoch) * steps_per_epoch for epoch in train.step_milestones]
        values = [peak * float(train.step_gamma) ** i for i in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    warmup = train.warmup_epochs * steps_per_epoch
    total = epochs * steps_per_epoch
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(total - warmup, 1), warmup_target=peak, warmup_steps=warmup
        )
    return keras.optimizers.schedules.CosineDecay(peak, decay_steps=max(total, 1))


def build_optimizer(train: TrainConfig, steps_per_epoch: int, start_epoch: int) -> keras.optimizers.Optimizer:
    """The configured optimizer, its step counter set to the start of `start_epoch`.

    `train.weight_decay_mode`: under `decoupled` the optimizer decays every variable; under
    `l2` the decay is TF-slim's loss term on the kernels (lth.training.network.attach_kernel_l2),
    so the optimizer decays nothing.
    """
    rate = learning_rate(train, steps_per_epoch)
    decoupled = train.weight_decay_mode == "decoupled"
    decay = float(train.weight_decay) if decoupled else 0.0
    if train.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(rate, momentum=float(train.momentum), weight_decay=decay or None)
    elif train.optimizer == "adam":  # Frankle & Carbin's LeNet recipe: Adam, no weight decay
        optimizer = keras.optimizers.Adam(rate, weight_decay=decay or None)
    elif decoupled:
        optimizer = keras.optimizers.AdamW(rate, weight_decay=decay)
    else:  # Keras' AdamW refuses to decay nothing; Adam is AdamW without the decay
        optimizer = keras.optimizers.Adam(rate)
    optimizer.iterations.assign(start_epoch * steps_per_epoch)
    return optimizer


def optimizer_state(optimizer: keras.optimizers.Optimizer) -> dict[str, float]:
    """The optimizer's step counter and, under mixed_float16, its loss scale.

    Steps whose gradients were not finite under a `LossScaleOptimizer` are skipped and do
    not advance the counter, so after k epochs it may be below k * steps_per_epoch: a
    ticket rewound to epoch k resumes the schedule from this value, not from k * S.
    """
    state = {"optimizer_iterations": float(keras.ops.convert_to_numpy(optimizer.iterations))}
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        state["loss_scale"] = float(keras.ops.convert_to_numpy(optimizer.dynamic_scale))
    return state


class EpochEnd(keras.callbacks.Callback):
    """Calls `handler(epochs_completed, logs)` after every epoch (with the learning rate and `optimizer_state` added)."""

    def __init__(self, handler: Callable[[int, dict[str, float]], None]) -> None:
        super().__init__()
        self.handler = handler

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = {key: float(value) for key, value in (logs or {}).items()}
        metrics["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        metrics.update(optimizer_state(self.model.optimizer))
        self.handler(epoch + 1, metrics)


class TrueValidationLoss(keras.callbacks.Callback):
    """Rescales the epoch's `val_loss` in the shared logs to the true mean, for the callbacks after it.

    Evaluation padded to split over several devices divides the loss by the padded count
    (lth.data.pydataset.OrderedBatches); the factor is 1 otherwise.
    """

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None and "val_loss" in logs:
            logs["val_loss"] = float(logs["val_loss"]) * self.factor


class EpochOrder(keras.callbacks.Callback):
    """Tells the input which epoch begins (`DataSplits.begin_epoch`), and says when a run resumed from a backup."""

    def __init__(self, data: DataSplits, start_epoch: int, epochs: int) -> None:
        super().__init__()
        self.data, self.start_epoch, self.epochs = data, start_epoch, epochs
        self.first = True

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.data.begin_epoch(epoch)
        if self.first and epoch > self.start_epoch:  # BackupAndRestore moved the start
            log.info("resumed from the backup of epoch %d; training epochs %d..%d", epoch, epoch + 1, self.epochs)
        self.first = False


def _verbosity(setting: Any) -> int:
    if setting == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(setting)


def fit_and_evaluate(
    model: keras.Model,
    data: DataSplits,
    epochs: int,
    start_epoch: int,
    backup_dir: Path,
    on_epoch_end: Callable[[int, dict[str, float]], None],
    verbose: Any = "auto",
    writer: bool = True,
) -> FitResult:
    """Train a compiled model for epochs start_epoch..epochs, then evaluate on the test split.

    Masks must already be attached (constraints are read when the step is traced).
    Training state is backed up every epoch in `backup_dir`, so a job that dies
    resumes from its last completed epoch when it is started again. In a run over several
    processes every process calls this in step; only the `writer` (process 0) writes there.
    """
    started = time.perf_counter()
    history = None
    early_stop = EarlyStopPoint(backup_dir / "early_stop.npz", writer)
    if start_epoch < epochs:
        history = model.fit(
            data.train,
            validation_data=data.val,
            epochs=epochs,
            initial_epoch=start_epoch,
            shuffle=False,  # the input orders itself by (seed, epoch); Keras would shuffle a PyDataset's batches
            callbacks=[
                TrueValidationLoss(data.val_loss_factor),  # first: the others read the true val_loss
                EpochOrder(data, start_epoch, epochs),
                EpochEnd(on_epoch_end),  # first: an epoch's checkpoint is logged before its backup exists
                early_stop,  # before the backup: a resumed job never lacks the point of an epoch it skips
                SignalSafeBackup(str(backup_dir), writer),
                keras.callbacks.TerminateOnNaN(),
            ],
            verbose=_verbosity(verbose),
        )
    seconds = time.perf_counter() - started
    test_loss, test_accuracy = model.evaluate(data.test, verbose=0)
    test_loss *= data.test_loss_factor
    trained = len(history.epoch) if history is not None else 0
    losses = history.history.get("loss", []) if history is not None else []
    bad = [epoch + 1 for epoch, loss in zip(history.epoch, losses) if not math.isfinite(loss)] if history else []
    diverged = bool(bad) or not math.isfinite(test_loss)
    diverged_epoch = bad[0] if bad else (epochs if diverged else None)
    last = float(losses[-1]) if losses else None
    final_epoch = history.epoch[-1] + 1 if history is not None and history.epoch else start_epoch
    point = early_stop.evaluate(model, data.test, final_epoch, (float(test_loss), float(test_accuracy)),
                                data.test_loss_factor)
    return FitResult(float(test_loss), float(test_accuracy), trained, seconds, diverged, diverged_epoch, last, point)
