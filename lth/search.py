"""The lottery-ticket search for one cell of a sweep.

1. Make sure the dense parent exists (lth.dense): reuse a FINISHED run with the same
   dense hash, or train it under a lock, so concurrent jobs train it exactly once.
2. Make sure the cell's ticket exists: a one-shot ticket or control (lth.tickets) or
   an iterative-pruning job (lth.imp), logged as a child of the dense run.

Every stage is idempotent: a rerun reuses finished runs and resumes unfinished ones.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from lth import tracking
from lth.data import load_data
from lth.dense import DenseParent, ensure_dense
from lth.devices import seed_everything
from lth.imp import ensure_imp
from lth.locking import exclusive
from lth.scopes import check_floor_fits
from lth.splits import DataSplits
from lth.tickets import CellResult, ensure_ticket, final_threshold, prunable_sizes
from lth.validate import ConfigError, validate_config

log = logging.getLogger("lth")


def _prepare(cfg: DictConfig) -> tuple[str, DataSplits]:
    """Validate everything that can be checked before training; return (experiment id, data)."""
    validate_config(cfg)
    seed_everything(int(cfg.train.seed))  # data order must not depend on the job's place in a sweep
    try:  # data sizes and layer names can only be checked once loaded and built; still before any training
        data = load_data(cfg.data, int(cfg.train.batch_size), int(cfg.train.seed))
        log.info(data.summary)
        sizes = prunable_sizes(cfg, data)
        check_floor_fits(list(sizes.values()), final_threshold(cfg.prune, sizes), float(cfg.prune.min_density))
    except ValueError as error:
        raise ConfigError(str(error)) from error
    with exclusive(Path(cfg.lth.state_dir), "tracking", float(cfg.lth.lock_timeout_min), "the tracking store"):
        # A new SQLite store is created by its first writer; concurrent first writers corrupt the migration.
        tracking.retry_transient_errors(cfg.tracking)
        experiment_id = tracking.connect(str(cfg.tracking.uri), str(cfg.tracking.experiment))
    return experiment_id, data


def run_dense(cfg: DictConfig) -> DenseParent:
    """Only the dense parent of `cfg` (a cluster sweep trains it as its own job before the tickets)."""
    experiment_id, data = _prepare(cfg)
    return ensure_dense(cfg, experiment_id, data)


def run_cell(cfg: DictConfig) -> CellResult:
    """Validate, then make sure the dense parent and this cell's ticket exist."""
    experiment_id, data = _prepare(cfg)
    dense = ensure_dense(cfg, experiment_id, data)
    dense.require_epoch(int(cfg.reset.epoch))
    if cfg.prune.method == "imp":
        return ensure_imp(cfg, experiment_id, data, dense)
    return ensure_ticket(cfg, experiment_id, data, dense)
