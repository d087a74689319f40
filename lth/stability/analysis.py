"""Instability analysis of one subject: train its copies, walk the linear paths, log the barrier.

The analysis is a run of its own (role `stability`) under the analysed run, claimed by an
identity of the subject and the settings that change its numbers (copies' data seeds, points,
BatchNorm mode and batches), so a rerun reuses it and trains nothing. It logs:
- `barrier`: the mean over copies 2..n of each path's barrier to copy 1, and `barrier_<seed>`;
- `error` at step i: test error at the i-th α, averaged over the paths; `error_<seed>` per path;
- `stability.png`, and the tags lth.stable, lth.threshold, lth.reset_epoch.
The analysed run itself gets `stability_barrier` at step k and `stability_error_k<k>` at
step = α index (suffixed `_interpolate` under stability.bn=interpolate), and the figure.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lth import processes, tracking
from lth.cell import Cell
from lth.dense import DenseParent
from lth.stability.copies import DataFor, Subject, copy_seeds, ensure_copy
from lth.stability.path import PathErrors, path_errors
from lth.stability.plot import path_figure, save
from lth.tracking import schema
from lth.tracking.claim import claim
from lth.tracking.identity import stable_hash
from lth.training.network import network_for
from lth.vocabulary import ConfigError

log = logging.getLogger("lth")
FIGURE = "stability.png"


@dataclass(frozen=True)
class Stability:
    """What an analysis found."""

    barrier: float  # mean over the copies' paths
    stable: bool  # barrier < stability.threshold
    run_id: str  # the analysis run
    subject: Subject
    reused: bool


def analysis_key(cell: Cell, subject: Subject) -> str:
    """Identity of an analysis: its subject and every setting that changes its numbers."""
    settings = cell.stability
    return stable_hash({"of": subject.key, "data_seeds": list(copy_seeds(cell)), "points": settings.points,
                        "bn": settings.bn, "bn_batches": settings.bn_batches if settings.bn == "recompute" else 0})


def _suffix(cell: Cell) -> str:
    return "" if cell.stability.bn == "recompute" else f"_{cell.stability.bn}"


def _log_on_analysed(cell: Cell, subject: Subject, barrier: float, curve: np.ndarray, figure: Path) -> None:
    """The barrier (step k), the mean curve (step = α index) and the figure, on the analysed run itself."""
    k, suffix = subject.reset_epoch, _suffix(cell)
    tracking.log_to_run(subject.run_id, series={f"stability_barrier{suffix}": {k: barrier},
                                                f"stability_error_k{k}{suffix}": dict(enumerate(curve))},
                        files={f"stability/k{k}{suffix}": figure})


def _walk(cell: Cell, data_for: DataFor, subject: Subject,
          finals: dict[int, dict[str, np.ndarray]]) -> dict[int, PathErrors]:
    """Each copy's path to copy 1, evaluated on copy 1's data (test split; BatchNorm from its training batches)."""
    data = data_for(cell)
    network = network_for(cell.model, cell.train, data.steps_per_epoch)
    network.load(subject.start.weights, subject.masks, subject.reset_epoch)  # the masks: a trained copy's zeros
    first = subject.final_weights()
    points = cell.stability.points
    paths = {}
    for seed, final in finals.items():
        def progress(index: int, alpha: float, error: float, seed: int = seed) -> None:
            if index % max(1, points // 6) == 0 or index == points - 1:
                log.info("stability %s, copy data_seed=%d: α=%.2f test error %.4f (%d/%d)", subject.label, seed,
                         alpha, error, index + 1, points)

        paths[seed] = path_errors(network.model, data, first, final, points, cell.stability.bn,
                                  cell.stability.bn_batches, subject.masks, progress)
        if paths[seed].masked_nonzero:  # cannot happen: both ends are zero there
            raise RuntimeError(f"{paths[seed].masked_nonzero} pruned weights were not zero on the path")
    return paths


def ensure_stability(cell: Cell, experiment_id: str, dense: DenseParent, subject: Subject,
                     data_for: DataFor) -> Stability:
    """The FINISHED analysis of `subject` under `cell.stability`, training its copies first if no job has."""
    if processes.current().several:
        raise ConfigError("stability analysis runs on one process: run it without several SLURM tasks or Spark workers")
    threshold = cell.stability.threshold
    tags = {**subject.tags(cell, dense), schema.SCOPE: cell.prune.scope, schema.SEED: str(cell.train.seed),
            schema.CONTROL: cell.prune.control}
    with claim(cell.state, experiment_id, schema.STABILITY_ROLE, analysis_key(cell, subject),
               f"stability {subject.label}", tags, dense.run_id) as stage:
        if stage.finished is not None:
            barrier = float(stage.finished.data.metrics[schema.BARRIER])
            return Stability(barrier, barrier < threshold, stage.run_id, subject, reused=True)
        finals = {seed: ensure_copy(cell, experiment_id, dense, subject, seed, data_for) for seed in copy_seeds(cell)}
        with tracking.active_run(stage.run_id):
            tracking.log_params({"stability.data_seeds": str(list(finals)), "stability.points": cell.stability.points,
                                 "stability.bn": cell.stability.bn, "stability.bn_batches": cell.stability.bn_batches,
                                 "stability.threshold": threshold, "train.data_seed": subject.data_seed})
            paths = _walk(cell, data_for, subject, finals)
            barrier = float(np.mean([found.barrier for found in paths.values()]))
            curve = np.mean([found.errors for found in paths.values()], axis=0)
            for index, error in enumerate(curve):
                tracking.log_metrics({schema.PATH_ERROR: float(error),
                                      **{f"error_{seed}": found.errors[index] for seed, found in paths.items()}},
                                     step=index)
            tracking.log_metrics({schema.BARRIER: barrier, **{f"barrier_{s}": p.barrier for s, p in paths.items()}})
            stable = barrier < threshold
            tracking.set_tags({schema.STABLE: str(stable).lower()})
            with tempfile.TemporaryDirectory(prefix="lth-") as scratch:
                figure = save(path_figure(paths, f"{subject.label} ({cell.stability.bn} BatchNorm)", threshold),
                              Path(scratch) / FIGURE)
                tracking.log_to_run(stage.run_id, files={"": figure})
                _log_on_analysed(cell, subject, barrier, curve, figure)
        log.info("stability %s: barrier %.2f%% (%s; stable below %g%%)", subject.label, 100 * barrier,
                 "stable" if stable else "unstable", 100 * threshold)
        return Stability(barrier, stable, stage.run_id, subject, reused=False)
