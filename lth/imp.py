"""Iterative magnitude pruning (Frankle & Carbin 2019; open_lth's `lottery` command).

One job runs L levels. Level l keeps (1 - rate)^l of the prunable weights: it prunes
by magnitude of the previous level's trained weights (the dense final weights for
level 1), never regrowing a pruned weight, rewinds the survivors to the dense epoch-k
weights and retrains epochs k..E. Each level is a nested MLflow run under the job's
run and is reused when finished, so a rerun resumes at the first unfinished level.

Layers named in `prune.layer_rates` prune their own rate of their survivors per level,
within the layer (Frankle & Carbin prune LeNet's output layer at 10%, the rest at 20%).

A level that diverges ends the job there: nothing can be pruned by magnitude of NaN or
chance-level weights. The controls train the real ticket's level-l mask at every level
(Frankle & Carbin): `reinit` from a fresh initialisation, `random_mask` with each layer's
survivors moved to random positions (same count per layer) from the rewound weights.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import mlflow
import numpy as np
from mlflow.entities import Run, RunData
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from lth import tracking
from lth.claim import claim
from lth.dense import DenseParent
from lth.identity import TICKET_PARAM_GROUPS, imp_level_key, ticket_key
from lth.masks import Masks, load_masks, random_masks_like
from lth.models import Weights, kernel_path
from lth.runlog import log_config, run_weights
from lth.scopes import imp_level_threshold, imp_masks
from lth.splits import DataSplits
from lth.tickets import (
    CellResult,
    cell_result,
    control_seed,
    layer_rates,
    prunable_sizes,
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
TICKET_RUN_TAG = "lth.ticket_run_id"  # on a control's job: the ticket job whose masks it trains
TICKET_DIVERGED_TAG = "lth.ticket_diverged_level"  # on a control's job: where its ticket stopped
CONTROLS_OF_TICKET_MASKS: tuple[str, ...] = ("reinit", "random_mask")  # controls that train the ticket's level masks


@dataclass(frozen=True)
class Level:
    """A finished level: what the next one prunes from and what the job summarises."""

    run_id: str
    masks: Masks
    final: Weights
    metrics: dict[str, float]
    verdict: str | None  # `nan` or `chance` when it diverged (lth.health.divergence)


def level_threshold(cfg: DictConfig, sizes: Mapping[str, int], level: int) -> float:
    """The exact fraction of prunable weights (sizes by layer) removed after `level` levels."""
    return imp_level_threshold(sizes, float(cfg.prune.rate), level, layer_rates(cfg.prune))


def control_masks(cfg: DictConfig, ticket_masks: Masks, level: int) -> Masks:
    """A control's level mask: the ticket's (reinit), or its counts per layer at random positions (random_mask)."""
    if cfg.prune.control != "random_mask":
        return ticket_masks
    seed = int(np.random.SeedSequence([control_seed(cfg), level]).generate_state(1)[0])  # a new draw per level
    return random_masks_like(ticket_masks, seed)


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
           sizes: Mapping[str, int], level: int, previous: Level | None, ticket_masks: Masks | None) -> Level:
    """Reuse or train one level of the layers `sizes` names; a control trains from `ticket_masks` instead."""
    threshold, reset_epoch = level_threshold(cfg, sizes, level), int(cfg.reset.epoch)
    wanted = None if ticket_masks is None else control_masks(cfg, ticket_masks, level)
    tags = {**ticket_tags(cfg, job_run_id, dense, threshold), "lth.level": str(level)}
    name = f"level {level} t={threshold:.3f} k={reset_epoch}"
    with claim(cfg, experiment_id, LEVEL_ROLE, imp_level_key(cfg, level), name, tags, dense.run_id) as stage:
        if stage.finished is not None:
            refuse_reused_collapse(cfg, stage.finished)
            masks = tracking.fetch(stage.run_id, "mask.npz", load_masks)
            if wanted is not None and not _same_masks(masks, wanted):
                raise ConfigError(f"IMP level run {stage.run_id} of this {cfg.prune.control} control has a mask of its "
                                  f"own, not one from the ticket's (trained before controls kept the ticket's masks): "
                                  f"delete it (mlflow runs delete --run-id {stage.run_id})")
            return Level(stage.run_id, masks, run_weights(stage.run_id, "weights/final.npz"),
                         dict(stage.finished.data.metrics), stage.finished.data.tags.get("lth.diverged"))
        log.info("IMP level %d of %d: %.2f%% of weights remain", level, cfg.prune.levels, 100 * (1 - threshold))
        with tracking.active_run(stage.run_id, nested=True):
            if wanted is not None:
                masks = wanted
            else:
                source = dense.weights_at(int(cfg.train.epochs)) if previous is None else previous.final
                masks = imp_masks({name: source[kernel_path(name)] for name in sizes}, float(cfg.prune.rate), level,
                                  str(cfg.prune.scope), layer_rates(cfg.prune),
                                  None if previous is None else previous.masks, float(cfg.prune.min_density))
            start = starting_weights(cfg, dense, reset_epoch)
            _, _, final, verdict = train_masked(cfg, data, dense, masks, start, reset_epoch, stage.run_id)
        return Level(stage.run_id, masks, final, dict(MlflowClient().get_run(stage.run_id).data.metrics), verdict)


def _run_levels(cfg: DictConfig, experiment_id: str, data: DataSplits, dense: DenseParent, job_run_id: str,
                sizes: Mapping[str, int], ticket_cfg: DictConfig | None) -> list[Level]:
    """Inside the job's run: levels 1..L of the layers in `sizes`, ending after a diverged one (or the ticket's end)."""
    done: list[Level] = []
    for level in range(1, int(cfg.prune.levels) + 1):
        ticket_masks = None if ticket_cfg is None else _ticket_masks(ticket_cfg, experiment_id, level, dense.run_id)
        if ticket_cfg is not None and ticket_masks is None:
            log.warning("the ticket's IMP stopped before level %d: its %s control stops there too", level,
                        cfg.prune.control)
            break
        outcome = _level(cfg, experiment_id, data, dense, job_run_id, sizes, level, done[-1] if done else None,
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


def _job_result(cfg: DictConfig, dense: DenseParent, sizes: Mapping[str, int], run_id: str, data: RunData,
                reused: bool) -> CellResult:
    """The job's CellResult, at the threshold of the level it ended with."""
    last = int(data.tags.get(LAST_LEVEL_TAG, cfg.prune.levels))
    return cell_result(cfg, dense, run_id, data.metrics, reused, level_threshold(cfg, sizes, last))


def ensure_imp(cfg: DictConfig, experiment_id: str, data: DataSplits, dense: DenseParent) -> CellResult:
    """Return the FINISHED IMP job of `cfg`, running its unfinished levels first.

    A control first makes sure its ticket (the same config with control none)
    exists, reusing or training it, and then trains each level from that ticket's
    level mask.
    """
    levels, reset_epoch = int(cfg.prune.levels), int(cfg.reset.epoch)
    sizes = prunable_sizes(cfg, data)
    tags = {**ticket_tags(cfg, dense.run_id, dense, level_threshold(cfg, sizes, levels)),
            LAST_LEVEL_KEY_TAG: imp_level_key(cfg, levels)}
    name = f"imp r={float(cfg.prune.rate):g} L={levels} k={reset_epoch}"
    with claim(cfg, experiment_id, "ticket", ticket_key(cfg), name, tags, dense.run_id) as job:
        if job.finished is not None:
            return _job_result(cfg, dense, sizes, job.run_id, job.finished.data, True)
        ticket_cfg, ticket = None, None
        if cfg.prune.control in CONTROLS_OF_TICKET_MASKS:  # before the job's run is active: the ticket's runs are its own
            ticket_cfg = copy.deepcopy(cfg)
            ticket_cfg.prune.control = "none"
            ticket = ensure_imp(ticket_cfg, experiment_id, data, dense)
        with tracking.active_run(job.run_id):
            log_config(cfg, TICKET_PARAM_GROUPS)
            if ticket is not None:
                mlflow.set_tag(TICKET_RUN_TAG, ticket.ticket_run_id)
            metrics, end_tags = _summary(cfg, dense, _run_levels(cfg, experiment_id, data, dense, job.run_id,
                                                                  sizes, ticket_cfg))
            mlflow.set_tags(end_tags)
            mlflow.log_metrics(metrics)
        return _job_result(cfg, dense, sizes, job.run_id, MlflowClient().get_run(job.run_id).data, False)
