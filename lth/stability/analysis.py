"""Instability analysis of one subject: train its copies, walk the linear paths, log the barriers.

The analysis is a run of its own (role `stability`) under the analysed run, claimed by an
identity of the subject and the settings that change its numbers (copies' data seeds, points,
BatchNorm mode and batches), so a rerun reuses it and trains nothing. Every path is walked on
the validation split, which decides, and on the test split, which is reported (lth.stability.path).
It logs:
- `val_barrier` and `barrier` (test): the mean over copies 2..n of each path's barrier to copy 1,
  and `val_barrier_<seed>`, `barrier_<seed>`;
- `val_error` and `error` at step i: the error at the i-th α, averaged over the paths;
  `val_error_<seed>`, `error_<seed>` per path;
- `stability.png`, and the tags lth.stable (validation barrier < stability.threshold),
  lth.threshold, lth.reset_epoch.
The analysed run itself gets `stability_barrier` and `stability_val_barrier` at step k, and
`stability_error_k<k>` and `stability_val_error_k<k>` at step = α index (suffixed
`_interpolate` under stability.bn=interpolate), and the figure.

An analysis logged before validation was walked (no `val_barrier`) is never reused as if it
had one: its path is walked again on validation from its copies' stored weights (nothing is
retrained), and its lth.stable is judged again on validation.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow.entities import Run

from lth import tracking
from lth.common import processes
from lth.config.cell import Cell
from lth.config.vocabulary import ConfigError
from lth.stability.copies import DataFor, Subject, copy_seeds, ensure_copy
from lth.stability.path import SPLITS, PathErrors, path_errors
from lth.stability.path_figures import path_figure, save
from lth.stages.dense import DenseParent
from lth.tracking import schema
from lth.tracking.claim import claim
from lth.tracking.identity import stable_hash
from lth.training.models import Weights
from lth.training.network import network_for

log = logging.getLogger("lth")
FIGURE = "stability.png"


@dataclass(frozen=True)
class Stability:
    """What an analysis found."""

    barrier: float  # on test, the paper's figure: mean over the copies' paths
    val_barrier: float  # on validation, which decides
    stable: bool  # val_barrier < stability.threshold
    run_id: str  # the analysis run
    subject: Subject
    reused: bool  # the analysis run existed before this job (see walked_again)
    epochs_trained: int = 0  # copy epochs this job trained for it
    walked_again: bool = False  # reused, but logged before validation: this job walked it on validation


def analysis_key(cell: Cell, subject: Subject) -> str:
    """Identity of an analysis: its subject and every setting that changes its numbers."""
    settings = cell.stability
    return stable_hash({"of": subject.key, "data_seeds": list(copy_seeds(cell)), "points": settings.points,
                        "bn": settings.bn, "bn_batches": settings.bn_batches if settings.bn == "recompute" else 0})


def _suffix(cell: Cell) -> str:
    return "" if cell.stability.bn == "recompute" else f"_{cell.stability.bn}"


def _prefix(split: str) -> str:
    return "val_" if split == "val" else ""


def _finals(cell: Cell, experiment_id: str, dense: DenseParent, subject: Subject,
            data_for: DataFor) -> tuple[Weights, dict[int, Weights], int]:
    """Copy 1's final weights, copies 2..n's by data seed, and the copy epochs this job trained."""
    first = ensure_copy(cell, experiment_id, dense, subject, subject.data_seed, data_for)
    others = {seed: ensure_copy(cell, experiment_id, dense, subject, seed, data_for) for seed in copy_seeds(cell)}
    return first.final, {seed: copy.final for seed, copy in others.items()}, (
        first.epochs_trained + sum(copy.epochs_trained for copy in others.values()))


def _walk(cell: Cell, data_for: DataFor, subject: Subject, first: Weights, finals: dict[int, Weights],
          splits: tuple[str, ...] = SPLITS) -> dict[str, dict[int, PathErrors]]:
    """Each copy's path to copy 1 on each split, evaluated on copy 1's data (BatchNorm from its training batches)."""
    data = data_for(cell)
    network = network_for(cell.model, cell.train, data.steps_per_epoch)
    network.load(subject.start.weights, subject.masks, subject.reset_epoch)  # the masks: a trained copy's zeros
    points = cell.stability.points
    paths: dict[str, dict[int, PathErrors]] = {split: {} for split in splits}
    for seed, final in finals.items():
        def progress(index: int, alpha: float, errors: dict[str, float], seed: int = seed) -> None:
            if index % max(1, points // 6) == 0 or index == points - 1:
                found = ", ".join(f"{split} error {error:.4f}" for split, error in errors.items())
                log.info("stability %s, copy data_seed=%d: α=%.2f %s (%d/%d)", subject.label, seed, alpha, found,
                         index + 1, points)

        walked = path_errors(network.model, data, first, final, points, cell.stability.bn, cell.stability.bn_batches,
                             subject.masks, progress, splits)
        for split, found in walked.items():
            if found.masked_nonzero:  # cannot happen: both ends are zero there
                raise RuntimeError(f"{found.masked_nonzero} pruned weights were not zero on the path")
            paths[split][seed] = found
    return paths


def _mean_barrier(paths: dict[int, PathErrors]) -> float:
    return float(np.mean([found.barrier for found in paths.values()]))


def _log(cell: Cell, subject: Subject, run_id: str, paths: dict[str, dict[int, PathErrors]]) -> None:
    """Each split's curves and barriers on the analysis run, and their means on the analysed run.

    The mean barriers go last: an analysis that has `val_barrier` has everything else of validation too.
    """
    k, suffix = subject.reset_epoch, _suffix(cell)
    curves: dict[str, dict[int, float]] = {}
    means: dict[str, dict[int, float]] = {}
    on_analysed: dict[str, dict[int, float]] = {}
    for split, by_seed in paths.items():
        prefix = _prefix(split)
        curve = np.mean([found.errors for found in by_seed.values()], axis=0)
        curves[prefix + schema.PATH_ERROR] = dict(enumerate(map(float, curve)))
        for seed, found in by_seed.items():
            curves[f"{prefix}{schema.PATH_ERROR}_{seed}"] = dict(enumerate(found.errors))
            curves[f"{prefix}{schema.BARRIER}_{seed}"] = {0: found.barrier}
        means[prefix + schema.BARRIER] = {0: _mean_barrier(by_seed)}
        on_analysed[f"stability_{prefix}barrier{suffix}"] = {k: _mean_barrier(by_seed)}
        on_analysed[f"stability_{prefix}error_k{k}{suffix}"] = dict(enumerate(map(float, curve)))
    tracking.log_to_run(subject.run_id, series=on_analysed)
    tracking.log_to_run(run_id, series=curves)
    tracking.log_to_run(run_id, series=means)


def _figure(cell: Cell, subject: Subject, run_id: str, paths: dict[str, dict[int, PathErrors]]) -> None:
    with tempfile.TemporaryDirectory(prefix="lth-") as scratch:
        figure = save(path_figure(paths, f"{subject.label} ({cell.stability.bn} BatchNorm)", cell.stability.threshold),
                      Path(scratch) / FIGURE)
        tracking.log_to_run(run_id, files={"": figure})
        tracking.log_to_run(subject.run_id, files={f"stability/k{subject.reset_epoch}{_suffix(cell)}": figure})


def _walk_again_on_validation(cell: Cell, experiment_id: str, dense: DenseParent, subject: Subject,
                              data_for: DataFor, finished: Run) -> Stability:
    """An analysis logged before validation was walked: walk it on validation from its copies' stored weights."""
    first, finals, trained = _finals(cell, experiment_id, dense, subject, data_for)
    paths = _walk(cell, data_for, subject, first, finals, ("val",))
    val_barrier = _mean_barrier(paths["val"])
    # Judged on its own logged threshold (not part of its identity), and tagged before `val_barrier` is
    # logged: a job killed in between leaves it without `val_barrier`, so the next one walks it again.
    threshold = float(finished.data.params.get("stability.threshold", cell.stability.threshold))
    stable = val_barrier < threshold
    tracking.log_to_run(finished.info.run_id, tags={schema.STABLE: str(stable).lower()})
    _log(cell, subject, finished.info.run_id, paths)
    log.info("stability %s: analysis %s was logged before paths were walked on validation: walked it on "
             "validation from its copies' weights (%s): barrier %.2f%% on validation", subject.label,
             finished.info.run_id, f"{trained} copy epochs retrained" if trained else "nothing retrained",
             100 * val_barrier)
    return Stability(float(finished.data.metrics[schema.BARRIER]), val_barrier, stable, finished.info.run_id, subject,
                     reused=True, epochs_trained=trained, walked_again=True)


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
            metrics = stage.finished.data.metrics
            if schema.VAL_BARRIER not in metrics:
                return _walk_again_on_validation(cell, experiment_id, dense, subject, data_for, stage.finished)
            val_barrier = float(metrics[schema.VAL_BARRIER])
            return Stability(float(metrics[schema.BARRIER]), val_barrier, val_barrier < threshold, stage.run_id,
                             subject, reused=True)
        first, finals, trained = _finals(cell, experiment_id, dense, subject, data_for)
        with tracking.active_run(stage.run_id):
            tracking.log_params({"stability.data_seeds": str(list(finals)), "stability.points": cell.stability.points,
                                 "stability.bn": cell.stability.bn, "stability.bn_batches": cell.stability.bn_batches,
                                 "stability.threshold": threshold, "train.data_seed": subject.data_seed})
            paths = _walk(cell, data_for, subject, first, finals)
            barrier, val_barrier = _mean_barrier(paths["test"]), _mean_barrier(paths["val"])
            stable = val_barrier < threshold  # validation decides; the test barrier is only reported
            tracking.set_tags({schema.STABLE: str(stable).lower()})
            _log(cell, subject, stage.run_id, paths)  # before the run ends FINISHED: a finished analysis has them all
            _figure(cell, subject, stage.run_id, paths)
        log.info("stability %s: barrier %.2f%% on validation (%s; stable below %g%%), %.2f%% on test", subject.label,
                 100 * val_barrier, "stable" if stable else "unstable", 100 * threshold, 100 * barrier)
        return Stability(barrier, val_barrier, stable, stage.run_id, subject, reused=False, epochs_trained=trained)
