"""Iterative magnitude pruning (Frankle & Carbin 2019; open_lth's `lottery` command).

One job runs L levels. Level l keeps (1 - rate)^l of the prunable weights: it prunes
by magnitude of the previous level's trained weights (the dense final weights for
level 1), never regrowing a pruned weight, rewinds the survivors to the dense epoch-k
weights and retrains epochs k..E. Each level is a nested MLflow run under the job's
run and is reused when finished, so a rerun resumes at the first unfinished level.
"""

from __future__ import annotations

import logging

import mlflow
from omegaconf import DictConfig

from lth import tracking
from lth.claim import claim
from lth.data import DataSplits
from lth.dense import DenseParent
from lth.identity import TICKET_PARAM_GROUPS, imp_level_key, ticket_key
from lth.masks import Masks, load_masks
from lth.runlog import log_config, run_weights
from lth.tickets import (
    CellResult,
    cell_result,
    magnitude_of,
    prunable_names,
    starting_weights,
    ticket_tags,
    train_masked,
)

log = logging.getLogger("lth")


def level_threshold(rate: float, level: int) -> float:
    """Fraction of prunable weights removed after `level` levels at `rate`."""
    return 1.0 - (1.0 - rate) ** level


def _level(cfg: DictConfig, experiment_id: str, data: DataSplits, dense: DenseParent, job_run_id: str,
           names: list[str], level: int, source: dict, previous: Masks | None) -> tuple[Masks, dict, dict]:
    """Reuse or train one level; returns (its masks, its final weights, its metrics)."""
    threshold, reset_epoch = level_threshold(float(cfg.prune.rate), level), int(cfg.reset.epoch)
    tags = {**ticket_tags(cfg, job_run_id, dense, threshold), "lth.level": str(level)}
    name = f"level {level} t={threshold:.3f} k={reset_epoch}"
    with claim(cfg, experiment_id, "imp_level", imp_level_key(cfg, level), name, tags) as stage:
        if stage.finished is not None:
            masks = tracking.fetch(stage.run_id, "mask.npz", load_masks)
            return masks, run_weights(stage.run_id, "weights/final.npz"), dict(stage.finished.data.metrics)
        log.info("IMP level %d of %d: %.2f%% of weights remain", level, cfg.prune.levels, 100 * (1 - threshold))
        with tracking.active_run(stage.run_id, nested=True):
            masks = magnitude_of(cfg, names, source, threshold, previous)
            start = starting_weights(cfg, dense, reset_epoch)
            result, report, final, verdict = train_masked(cfg, data, dense, masks, start, reset_epoch, stage.run_id)
        metrics = {"weights_remaining": report["weights_remaining"], "sparsity": report["sparsity"],
                   **({"test_accuracy": result.test_accuracy} if verdict is None else {})}
        return masks, final, metrics


def ensure_imp(cfg: DictConfig, experiment_id: str, data: DataSplits, dense: DenseParent) -> CellResult:
    """Return the FINISHED IMP job of `cfg`, running its unfinished levels first."""
    levels, epochs, reset_epoch = int(cfg.prune.levels), int(cfg.train.epochs), int(cfg.reset.epoch)
    final_threshold = level_threshold(float(cfg.prune.rate), levels)
    tags = ticket_tags(cfg, dense.run_id, dense, final_threshold)
    name = f"imp r={float(cfg.prune.rate):g} L={levels} k={reset_epoch}"
    with claim(cfg, experiment_id, "ticket", ticket_key(cfg), name, tags) as job:
        if job.finished is not None:
            return cell_result(cfg, dense, job.run_id, job.finished.data.metrics, True, final_threshold)
        with tracking.active_run(job.run_id):
            log_config(cfg, TICKET_PARAM_GROUPS)
            names = prunable_names(cfg, data)
            source, masks, metrics = dense.weights_at(epochs), None, {}
            for level in range(1, levels + 1):
                masks, source, metrics = _level(cfg, experiment_id, data, dense, job.run_id, names, level,
                                                source, masks)
                if "test_accuracy" not in metrics:  # a diverged level has no accuracy to carry on
                    mlflow.set_tag("lth.diverged", f"level {level}")
                mlflow.log_metrics({"level_weights_remaining": metrics["weights_remaining"],
                                    **({"level_test_accuracy": metrics["test_accuracy"]}
                                       if "test_accuracy" in metrics else {})}, step=level)
            summary = {
                **({"test_accuracy": metrics["test_accuracy"]} if "test_accuracy" in metrics else {}),
                "weights_remaining": metrics["weights_remaining"],
                "sparsity": metrics["sparsity"],
                "dense_test_accuracy": dense.test_accuracy,
                "epochs_trained": levels * (epochs - reset_epoch),
            }
            mlflow.log_metrics(summary)
        return cell_result(cfg, dense, job.run_id, summary, False, final_threshold)
