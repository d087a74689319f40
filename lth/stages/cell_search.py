"""The lottery-ticket search for one cell of a sweep.

1. Make sure the dense parent exists (lth.stages.dense): reuse a FINISHED run with the same
   dense hash, or train it under a lock, so concurrent jobs train it exactly once.
2. Make sure the cell's ticket exists: a one-shot ticket or control (lth.stages.tickets) or
   an iterative-pruning job (lth.stages.imp), logged as a child of the dense run.
3. With `stability=on`, analyse it (at threshold 0: the dense network) under other SGD
   noise (lth.stability); `reset.epoch=auto` analyses the candidates of the cell's reference
   replicate before step 2, so every replicate of the cell trains at one k.

Every stage is idempotent: a rerun reuses finished runs and resumes unfinished ones.

A run over several processes (lth.common.processes) does all of this on process 0 alone; the
others load their part of the data and train along with it (lth.training.group).
"""

from __future__ import annotations

import dataclasses
import functools
import logging

from omegaconf import DictConfig

from lth import tracking
from lth.common import processes
from lth.config.cell import Cell
from lth.config.vocabulary import ConfigError
from lth.data import load_data
from lth.data.splits import DataSplits, Part
from lth.pruning.scopes import check_floor_fits
from lth.stability.auto import resolve_reset_epoch
from lth.stability.stage import analyse_cell, dense_cell_result, tag_reset_choice
from lth.stages import sparse
from lth.stages.dense import DenseParent, ensure_dense
from lth.stages.imp import ensure_imp
from lth.stages.tickets import CellResult, ensure_ticket
from lth.tracking.lock import exclusive
from lth.training import group
from lth.training.devices import replica_devices, seed_everything
from lth.validation.validate import validate_config

log = logging.getLogger("lth")

# The jobs of a local sweep run in one process and mostly share their data: the pipelines are built
# once (a memory cache then stays filled: measured 5 s of each demo ticket's first epoch). Safe because
# the order of examples is a function of (seed, epoch) alone, read when each epoch's iterator starts.
# Two: a stability analysis trains a copy under another data seed, then walks the path on the cell's
# data again. No more, since each pipeline may hold a memory cache (data.cache=memory). (A job whose
# reset.epoch=auto reads another seed's reference holds its own input too while it decides: three at most.)
shared_data = functools.lru_cache(maxsize=2)(load_data)


def _data(cell: Cell) -> DataSplits:
    """This process's input: every batch whole, or (JAX data parallel) this process's part of it.

    Raises:
        ConfigError: A batch that does not split evenly over the run's devices (JAX).
    """
    replicas = len(replica_devices(cell.train.devices))
    if cell.train.backend == "jax" and cell.train.batch_size % replicas:
        raise ConfigError(f"train.batch_size={cell.train.batch_size} must split evenly over the run's {replicas} "
                          f"devices (JAX data parallel): use a multiple of {replicas}")
    group_of = processes.current()
    part = Part(group_of.index, group_of.count)
    data = shared_data(cell.data, cell.train.batch_size, cell.train.order_seed, replicas, part)
    if group_of.several:  # read off the input itself: a process that fed whole batches would train the same
        log.info("process %d of %d feeds %d of every %d training images", group_of.index, group_of.count,
                 len(data.train[0][1]), cell.train.batch_size)
    return data


def _prepare(cfg: DictConfig) -> tuple[Cell, str, DataSplits]:
    """Validate everything that can be checked before training; return (the typed cell, experiment id, data)."""
    cell = validate_config(cfg)  # from here on, only typed pieces travel
    seed_everything(cell.train.seed)  # data order must not depend on the job's place in a sweep
    try:  # data sizes and layer names can only be checked once loaded and built; still before any training
        data = _data(cell)
        log.info(data.summary)
        sizes = sparse.prunable_sizes(cell, data)
        if cell.prune.structure == "channel":  # the floor is in channels (a layer keeps about f^2 of its weights)
            sparse.check_structure_fits(cell, data)
        else:
            check_floor_fits(list(sizes.values()), sparse.final_threshold(cell.prune, sizes), cell.prune.min_density)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    with exclusive(cell.state.state_dir, "tracking", cell.state.lock_timeout_min, "the tracking store"):
        # A new SQLite store is created by its first writer; concurrent first writers corrupt the migration.
        tracking.retry_transient_errors(dataclasses.asdict(cell.tracking))
        experiment_id = tracking.connect(cell.tracking.uri, cell.tracking.experiment)
    return cell, experiment_id, data


def _follow(cfg: DictConfig) -> object:
    """A process other than 0: validate, load this process's part of the data, train along with process 0.

    Every step that builds or assigns the network's variables is a collective under JAX's
    distribution, so this builds it where process 0 does (sparse.prunable_sizes in _prepare).
    """
    try:
        cell = validate_config(cfg)
        seed_everything(cell.train.seed)
        data = _data(cell)
        sparse.prunable_sizes(cell, data)
    except Exception:
        processes.broadcast(None)  # process 0 fails the same way: hear it say so, so neither waits for the other
        raise
    return group.follow(cell, data)


def run_dense(cfg: DictConfig) -> DenseParent:
    """Only the dense parent of `cfg` (a cluster sweep trains it as its own job before the tickets)."""
    if not processes.current().leader:
        return _follow(cfg)  # type: ignore[return-value]  # process 0's DenseParent

    def job() -> DenseParent:
        cell, experiment_id, data = _prepare(cfg)
        return ensure_dense(cell, experiment_id, data)

    return group.lead(job)


def run_cell(cfg: DictConfig) -> CellResult:
    """Validate, then make sure the dense parent and this cell's ticket exist."""
    if not processes.current().leader:
        return _follow(cfg)  # type: ignore[return-value]  # process 0's CellResult

    def job() -> CellResult:
        cell, experiment_id, data = _prepare(cfg)
        dense = ensure_dense(cell, experiment_id, data)
        why = None
        if cell.reset.epoch == "auto":  # analyses the candidates first (lth.stability.auto)
            cell, why = resolve_reset_epoch(cell, experiment_id, _data)
        dense.require_epoch(cell.reset_epoch)
        if cell.stability.enabled and cell.prune.threshold == 0:  # the dense network itself is analysed
            result = dense_cell_result(cell, dense)
        elif cell.prune.method == "imp":
            result = ensure_imp(cell, experiment_id, data, dense)
        else:
            result = ensure_ticket(cell, experiment_id, data, dense)
        if cell.stability.enabled:
            result = analyse_cell(cell, experiment_id, dense, result, _data)
        return result if why is None else tag_reset_choice(result, why)

    return group.lead(job)
