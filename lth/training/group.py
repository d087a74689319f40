"""One run trained by several processes: process 0 leads every stage, the others train along.

Process 0 runs the search exactly as a single process would: it claims runs, reuses
finished ones, logs to MLflow and writes backups. Each time it trains, it first sends
the others an `Order`: the start it loads (weights, masks, epoch, optimizer step, loss
scale) and the backup folder. Every process then loads that very start and calls the same
`fit_and_evaluate`, feeding its part of every global batch, so the data-parallel steps run
in step. When the job ends, process 0 sends its result (or its failure) and the others
return it. So masks and start weights are computed once, on process 0, and the others
never touch the tracking store: the dense-once and reuse rules are those of one process.

On one process `train` is `network.load` followed by `fit_and_evaluate`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lth.common import processes
from lth.config.cell import Cell
from lth.data.splits import DataSplits
from lth.training.fitting import fit_and_evaluate
from lth.training.models import Weights
from lth.training.network import MaskedNetwork, network_for
from lth.training.result import FitResult

log = logging.getLogger("lth")
T = TypeVar("T")


@dataclass(frozen=True)
class Start:
    """What a training starts from (the arguments of `MaskedNetwork.load`)."""

    weights: Weights
    masks: Mapping[str, np.ndarray] | None  # None: dense
    epoch: int
    iteration: int | None = None  # the optimizer step to resume the schedule from
    loss_scale: float | None = None  # mixed_float16's dynamic loss scale to start from


@dataclass(frozen=True)
class Order:
    """What process 0 tells the others next: train from `start`, or (start None) the job ended."""

    start: Start | None
    backup_dir: Path | None = None
    result: Any = None  # the job's result, when it ended
    failure: str | None = None  # why the job failed on process 0, when it did


def train(network: MaskedNetwork, data: DataSplits, start: Start, epochs: int, backup_dir: Path,
          on_epoch_end: Callable[[int, dict[str, float]], None], verbose: Any,
          loaded: Callable[[], None] = lambda: None) -> FitResult:
    """Process 0 (or a plain run): have every process load `start` and train epochs start.epoch..epochs.

    Args:
        loaded: Called between loading and training (e.g. to log the start weights).
    """
    if processes.current().several:
        processes.broadcast(Order(start, backup_dir))
    network.load(start.weights, start.masks, start.epoch, start.iteration, start.loss_scale)
    loaded()
    return fit_and_evaluate(network.model, data, epochs, start.epoch, backup_dir, on_epoch_end, verbose)


def lead(job: Callable[[], T]) -> T:
    """Process 0: run the job, then tell the others its result (or that it failed) so they return."""
    if not processes.current().several:
        return job()
    try:
        result = job()
    except Exception as error:
        processes.broadcast(Order(None, failure=f"{type(error).__name__}: {error}"))
        raise
    processes.broadcast(Order(None, result=result))
    return result


def follow(cell: Cell, data: DataSplits) -> Any:
    """Any process but 0: train along with every order of process 0; return the job's result.

    Raises:
        RuntimeError: The job failed on process 0 (its error is named).
    """
    group = processes.current()
    trained = 0
    while True:
        order: Order = processes.broadcast(None)
        if order.start is None:
            if order.failure is not None:
                raise RuntimeError(f"process 0 of this run failed: {order.failure}")
            log.info("process %d of %d: %d training(s) done with process 0", group.index, group.count, trained)
            return order.result
        start, backup_dir = order.start, order.backup_dir
        assert backup_dir is not None
        network = network_for(cell.model, cell.train, data.steps_per_epoch)
        network.load(start.weights, start.masks, start.epoch, start.iteration, start.loss_scale)
        fit_and_evaluate(network.model, data, cell.train.epochs, start.epoch, backup_dir,
                         lambda epoch, metrics: None, verbose=0, writer=False)
        trained += 1
