"""Iterative magnitude pruning (Frankle & Carbin 2019; open_lth's `lottery` command).

One job runs L levels. Level l keeps (1 - rate)^l of the prunable weights: it prunes
by magnitude of the previous level's trained weights (the dense final weights for
level 1), never regrowing a pruned weight, rewinds the survivors to the dense epoch-k
weights and retrains epochs k..E. Each level is a nested MLflow run under the job's
run and is reused when finished, so a rerun resumes at the first unfinished level.

A level that diverges ends the job there: nothing can be pruned by magnitude of NaN or
chance-level weights. The `reinit` control trains the real ticket's level-l mask at
every level (Frankle & Carbin) from a fresh initialisation; only its weights differ.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import mlflow
from mlflow.entities import Run, RunData
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from lth import tracking
from lth.claim import claim
from lth.dense import DenseParent
from lth.identity import TICKET_PARAM_GROUPS, imp_level_key, ticket_key
from lth.masks import Masks, load_masks
from lth.models import Weights
from lth.runlog import log_config, run_weights
from lth.scopes import imp_threshold
from lth.splits import DataSplits
from lth.tickets import (
    CellResult,
    cell_result,
    magnitude_of,
    prunable_names,
    refuse_reused_collapse,
    starting_weights,
    ticket_tags,
    train_masked,
)
from lth.validate import ConfigError

log = logging.getLogger("lth")
LEVEL_ROLE = "imp_level"
# On a job: the level whose files it ends with, found by key, since a reused level keeps
# the `mlflow.parentRunId` of the job that trained it.
LAST_LEVEL_TAG, LAST_LEVEL_KEY_TAG = "lth.last_level", "lth.last_level_key"
TICKET_RUN_TAG = "lth.ticket_run_id"  # on a reinit control's job: the ticket job whose masks it trains
TICKET_DIVERGED_TAG = "lth.ticket_diverged_level"  # on a reinit control's job: where its ticket stopped


@dataclass(frozen=True)
class Level:
    """A finished level: what the next one prunes from and what the job summarises."""

    run_id: str
    masks: Masks
    final: Weights
    metrics: dict[str, float]
    verdict: str | None  # `nan` or `chance` when it diverged (lth.health.divergence)


def level_threshold(rate: float, level: int) -> float:
    """Fraction of prunable weights removed after `level` levels at `rate`."""
    return imp_threshold(rate, level)


def finished_level(cfg: DictConfig, experiment_id: str, level: int, dense_run_id: str) -> Run | None:
    """The FINISHED run of level `level` of `cfg`'s IMP from dense run `dense_run_id`, whichever job trained it."""
    return tracking.finished_run(tracking.find_runs(experiment_id, LEVEL_ROLE, imp_level_key(cfg, level), dense_run_id))


def _ticket_masks(ticket_cfg: DictConfig, experiment_id: str, level: int, dense_run_id: str) -> Masks | None:
    """The ticket's level-`level` mask, or None when the ticket stopped (diverged) before it."""
    run = finished_level(ticket_cfg, experiment_id, level, dense_run_id)
    return None if run is None else tracking.fetch(run.info.run_id, "mask.npz", load_masks)


def _same_masks(first: Masks, second: Masks) -> bool:
    return first.keys() == second.keys() and all((first[name] == second[name]).all() for name in first)


def _level(cfg: DictConfig, experiment_id: str, data: DataSplits, dense: DenseParent, job_run_id: str,
           names: list[str], level: int, previous: Level | None, ticket_masks: Masks | None) -> Level:
    """Reuse or train one level; `ticket_masks` (reinit control) replaces pruning `names` by magnitude."""
    threshold, reset_epoch = level_threshold(float(cfg.prune.rate), level), int(cfg.reset.epoch)
    tags = {**ticket_tags(cfg, job_run_id, dense, threshold), "lth.level": str(level)}
    name = f"level {level} t={threshold:.3f} k={reset_epoch}"
    with claim(cfg, experiment_id, LEVEL_ROLE, imp_level_key(cfg, level), name, tags, dense.run_id) as stage:
        if stage.finished is not None:
            refuse_reused_collapse(cfg, stage.finished)
            masks = tracking.fetch(stage.run_id, "mask.npz", load_masks)
            if ticket_masks is not None and not _same_masks(masks, ticket_masks):
                raise ConfigError(f"IMP level run {stage.run_id} of this reinit control has a mask of its own, not the "
                                  f"ticket's (trained before controls kept the ticket's masks): delete it "
                                  f"(mlflow runs delete --run-id {stage.run_id})")
            return Level(stage.run_id, masks, run_weights(stage.run_id, "weights/final.npz"),
                         dict(stage.finished.data.metrics), stage.finished.data.tags.get("lth.diverged"))
        log.info("IMP level %d of %d: %.2f%% of weights remain", level, cfg.prune.levels, 100 * (1 - threshold))
        with tracking.active_run(stage.run_id, nested=True):
            if ticket_masks is not None:
                masks = ticket_masks
            else:
                source = dense.weights_at(int(cfg.train.epochs)) if previous is None else previous.final
                masks = magnitude_of(cfg, names, source, threshold, None if previous is None else previous.masks)
            start = starting_weights(cfg, dense, reset_epoch)
            _, _, final, verdict = train_masked(cfg, data, dense, masks, start, reset_epoch, stage.run_id)
        return Level(stage.run_id, masks, final, dict(MlflowClient().get_run(stage.run_id).data.metrics), verdict)


def _run_levels(cfg: DictConfig, experiment_id: str, data: DataSplits, dense: DenseParent, job_run_id: str,
                ticket_cfg: DictConfig | None) -> list[Level]:
    """Inside the job's run: levels 1..L, stopping after one that diverged (or where the ticket stopped)."""
    done: list[Level] = []
    names = prunable_names(cfg, data)
    for level in range(1, int(cfg.prune.levels) + 1):
        ticket_masks = None if ticket_cfg is None else _ticket_masks(ticket_cfg, experiment_id, level, dense.run_id)
        if ticket_cfg is not None and ticket_masks is None:
            log.warning("the ticket's IMP stopped before level %d: its reinit control stops there too", level)
            break
        outcome = _level(cfg, experiment_id, data, dense, job_run_id, names, level, done[-1] if done else None,
                         ticket_masks)
        done.append(outcome)
        mlflow.log_metrics({"level_weights_remaining": outcome.metrics["weights_remaining"],
                            **({"level_test_accuracy": outcome.metrics["test_accuracy"]}
                               if "test_accuracy" in outcome.metrics else {})}, step=level)
        if outcome.verdict is not None:  # its weights are NaN or learned nothing: no next level can come from them
            log.warning("IMP level %d diverged (%s): the job ends there", level, outcome.verdict)
            break
    return done


def _summary(cfg: DictConfig, dense: DenseParent, done: list[Level]) -> tuple[dict[str, float], dict[str, str]]:
    """The job's metrics (its last level's figures) and the tags that say where and why it ended."""
    last, count = done[-1], len(done)
    metrics = {"weights_remaining": last.metrics["weights_remaining"], "sparsity": last.metrics["sparsity"],
               "dense_test_accuracy": dense.test_accuracy,
               "epochs_trained": sum(int(level.metrics["epochs_trained"]) for level in done)}
    tags = {LAST_LEVEL_TAG: str(count), LAST_LEVEL_KEY_TAG: imp_level_key(cfg, count)}
    if last.verdict is not None:  # a status, not a number: the job has no test_accuracy
        tags.update({"lth.diverged": f"level {count}", "lth.diverged_level": str(count)})
    elif count < int(cfg.prune.levels):  # a reinit control whose ticket diverged: no level L to report
        tags[TICKET_DIVERGED_TAG] = str(count)  # its last level is the ticket's diverged one
    else:
        metrics["test_accuracy"] = last.metrics["test_accuracy"]
    return metrics, tags


def _job_result(cfg: DictConfig, dense: DenseParent, run_id: str, data: RunData, reused: bool) -> CellResult:
    """The job's CellResult, at the threshold of the level it ended with."""
    last = int(data.tags.get(LAST_LEVEL_TAG, cfg.prune.levels))
    return cell_result(cfg, dense, run_id, data.metrics, reused, level_threshold(float(cfg.prune.rate), last))


def ensure_imp(cfg: DictConfig, experiment_id: str, data: DataSplits, dense: DenseParent) -> CellResult:
    """Return the FINISHED IMP job of `cfg`, running its unfinished levels first.

    The `reinit` control first makes sure its ticket (the same config with control
    none) exists, reusing or training it, and then trains each level with that
    ticket's level mask.
    """
    levels, reset_epoch = int(cfg.prune.levels), int(cfg.reset.epoch)
    tags = {**ticket_tags(cfg, dense.run_id, dense, level_threshold(float(cfg.prune.rate), levels)),
            LAST_LEVEL_KEY_TAG: imp_level_key(cfg, levels)}
    name = f"imp r={float(cfg.prune.rate):g} L={levels} k={reset_epoch}"
    with claim(cfg, experiment_id, "ticket", ticket_key(cfg), name, tags, dense.run_id) as job:
        if job.finished is not None:
            return _job_result(cfg, dense, job.run_id, job.finished.data, True)
        ticket_cfg, ticket = None, None
        if cfg.prune.control == "reinit":  # before the job's run is active: the ticket's runs are its own
            ticket_cfg = copy.deepcopy(cfg)
            ticket_cfg.prune.control = "none"
            ticket = ensure_imp(ticket_cfg, experiment_id, data, dense)
        with tracking.active_run(job.run_id):
            log_config(cfg, TICKET_PARAM_GROUPS)
            if ticket is not None:
                mlflow.set_tag(TICKET_RUN_TAG, ticket.ticket_run_id)
            metrics, end_tags = _summary(cfg, dense, _run_levels(cfg, experiment_id, data, dense, job.run_id,
                                                                  ticket_cfg))
            mlflow.set_tags(end_tags)
            mlflow.log_metrics(metrics)
        return _job_result(cfg, dense, job.run_id, MlflowClient().get_run(job.run_id).data, False)
