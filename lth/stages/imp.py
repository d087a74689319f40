"""Iterative magnitude pruning (Frankle & Carbin 2019; open_lth's `lottery` command).

One job runs L levels. Level l keeps (1 - rate)^l of the prunable weights: it prunes
by magnitude of the previous level's trained weights (the dense final weights for
level 1), never regrowing a pruned weight, rewinds the survivors to the dense epoch-k
weights and retrains epochs k..E (lth.stages.sparse). Each level is a nested MLflow run under
the job's run and is reused when finished, so a rerun resumes at the first unfinished level.

Layers named in `prune.layer_rates` prune their own rate of their survivors per level,
within the layer (Frankle & Carbin prune LeNet's output layer at 10%, the rest at 20%).

A level that diverges ends the job there: nothing can be pruned by magnitude of NaN or
chance-level weights. The controls train the real ticket's level-l mask at every level
(Frankle & Carbin): `reinit` from a fresh initialisation, `random_mask` with each layer's
survivors moved to random positions (same count per layer) from the rewound weights.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from lth import tracking
from lth.config.cell import Cell
from lth.config.vocabulary import CONTROLS, ConfigError
from lth.data.splits import DataSplits
from lth.pruning.masks import Masks, load_masks
from lth.stages import sparse
from lth.stages.dense import DenseParent
from lth.stages.tickets import CellResult, cell_result, ticket_tags
from lth.tracking import schema
from lth.tracking.artifacts import log_config, run_weights
from lth.tracking.claim import claim
from lth.tracking.client import Run, RunData
from lth.tracking.identity import TICKET_PARAM_GROUPS, imp_level_key, ticket_key
from lth.training.models import Weights

log = logging.getLogger("lth")
CONTROLS_OF_TICKET_MASKS: tuple[str, ...] = tuple(c for c in CONTROLS if c != "none")  # both train the ticket's masks


@dataclass(frozen=True)
class Level:
    """A finished level: what the next one prunes from and what the job summarises."""

    run_id: str
    masks: Masks
    final: Weights
    metrics: Mapping[str, float]
    verdict: str | None  # `nan` or `chance` when it diverged (lth.training.result.divergence)


def finished_level(cell: Cell, experiment_id: str, level: int, dense_run_id: str) -> Run | None:
    """The FINISHED run of level `level` of `cell`'s IMP from dense run `dense_run_id`, whichever job trained it."""
    key = imp_level_key(cell, level)
    return tracking.finished_run(tracking.find_runs(experiment_id, schema.LEVEL_ROLE, key, dense_run_id))


def _same_masks(first: Masks, second: Masks) -> bool:
    return first.keys() == second.keys() and all((first[name] == second[name]).all() for name in first)


@dataclass(frozen=True)
class ImpJob:
    """The levels of one IMP job (a ticket, or a control that trains its ticket's masks)."""

    cell: Cell
    experiment_id: str
    data: DataSplits
    dense: DenseParent
    run_id: str  # the job's run, parent of its new levels
    sizes: Mapping[str, int]  # the pruned layers' kernel sizes, in network order
    ticket: Cell | None  # a control's ticket (the same cell with control none), whose masks it trains
    all_prunable: int  # every prunable weight of the network: the base of weights_remaining

    def _ticket_masks(self, level: int) -> Masks | None:
        """The ticket's level-`level` mask, or None when the ticket stopped (diverged) before it."""
        assert self.ticket is not None
        run = finished_level(self.ticket, self.experiment_id, level, self.dense.run_id)
        return None if run is None else tracking.fetch(run.info.run_id, schema.MASK, load_masks)

    def level(self, level: int, previous: Level | None, ticket_masks: Masks | None) -> Level:
        """Reuse or train one level; a control trains from its ticket's level mask instead of pruning."""
        cell = self.cell
        threshold = sparse.level_threshold(cell.prune, self.sizes, level)
        wanted = None if ticket_masks is None else sparse.control_level_masks(cell, ticket_masks, level)
        tags = ticket_tags(cell, self.run_id, self.dense, threshold, level)
        name = f"level {level} t={threshold:.3f} k={cell.reset_epoch}"
        key = imp_level_key(cell, level)
        with claim(cell.state, self.experiment_id, schema.LEVEL_ROLE, key, name, tags, self.dense.run_id) as stage:
            if stage.finished is not None:
                sparse.refuse_reused_collapse(cell.prune, stage.finished)
                masks = tracking.fetch(stage.run_id, schema.MASK, load_masks)
                if wanted is not None and not _same_masks(masks, wanted):
                    raise ConfigError(f"IMP level run {stage.run_id} of this {cell.prune.control} control has a mask "
                                      f"of its own, not one from the ticket's (trained before controls kept the "
                                      f"ticket's masks): delete it (mlflow runs delete --run-id {stage.run_id})")
                # A level logged before the common base is summed up on it (its own run keeps what it logged).
                metrics = sparse.rebased_metrics(stage.finished.data.metrics, masks, self.all_prunable)
                return Level(stage.run_id, masks, run_weights(stage.run_id, schema.FINAL_WEIGHTS), metrics,
                             schema.divergence(stage.finished.data.tags))
            log.info("IMP level %d of %d: %.2f%% of the pruned layers' weights remain", level, cell.prune.levels,
                     100 * (1 - threshold))
            with tracking.active_run(stage.run_id, nested=True):
                if wanted is not None:
                    masks = wanted
                else:
                    source = self.dense.weights_at(cell.train.epochs) if previous is None else previous.final
                    masks = sparse.level_masks(cell.prune, self.sizes, source, level,
                                               None if previous is None else previous.masks)
                run = sparse.train_masked(cell, self.data, self.dense, masks,
                                          sparse.starting_weights(cell, self.dense), stage.run_id)
            return Level(stage.run_id, masks, run.final, run.metrics, run.verdict)

    def levels(self) -> list[Level]:
        """Inside the job's run: levels 1..L, ending after a diverged one (or where the ticket ended)."""
        done: list[Level] = []
        for level in range(1, self.cell.prune.levels + 1):
            ticket_masks = None if self.ticket is None else self._ticket_masks(level)
            if self.ticket is not None and ticket_masks is None:
                log.warning("the ticket's IMP stopped before level %d: its %s control stops there too", level,
                            self.cell.prune.control)
                break
            outcome = self.level(level, done[-1] if done else None, ticket_masks)
            done.append(outcome)
            accuracy = outcome.metrics.get(schema.TEST_ACCURACY)
            tracking.log_metrics({schema.LEVEL_WEIGHTS_REMAINING: outcome.metrics[schema.WEIGHTS_REMAINING],
                                **({schema.LEVEL_TEST_ACCURACY: accuracy} if accuracy is not None else {})}, step=level)
            if outcome.verdict is not None:  # its weights are NaN or learned nothing: no next level can come from them
                log.warning("IMP level %d diverged (%s): the job ends there", level, outcome.verdict)
                break
        return done


def _summary(cell: Cell, dense: DenseParent, done: list[Level]) -> tuple[dict[str, float], dict[str, str]]:
    """The job's metrics (its last level's figures) and the tags that say where and why it ended."""
    last, count = done[-1], len(done)
    metrics = {schema.WEIGHTS_REMAINING: last.metrics[schema.WEIGHTS_REMAINING],
               schema.WEIGHTS_REMAINING_OF_MASKED_LAYERS: last.metrics[schema.WEIGHTS_REMAINING_OF_MASKED_LAYERS],
               schema.SPARSITY: last.metrics[schema.SPARSITY], schema.DENSE_TEST_ACCURACY: dense.test_accuracy,
               schema.EPOCHS_TRAINED: sum(int(level.metrics[schema.EPOCHS_TRAINED]) for level in done)}
    tags = {schema.LAST_LEVEL: str(count), schema.LAST_LEVEL_KEY: imp_level_key(cell, count)}
    if last.verdict is not None:  # a status, not a number: the job has no test_accuracy
        tags.update({schema.DIVERGED: f"level {count}", schema.DIVERGED_LEVEL: str(count)})
    elif count < cell.prune.levels:  # a reinit control whose ticket diverged: no level L to report
        tags[schema.TICKET_DIVERGED] = str(count)  # its last level is the ticket's diverged one
    else:
        metrics[schema.TEST_ACCURACY] = last.metrics[schema.TEST_ACCURACY]
    return metrics, tags


def _job_result(cell: Cell, dense: DenseParent, sizes: Mapping[str, int], run_id: str, data: RunData,
                reused: bool) -> CellResult:
    """The job's CellResult, at the threshold of the level it ended with."""
    last = int(data.tags.get(schema.LAST_LEVEL, cell.prune.levels))
    return cell_result(cell, dense, run_id, data.metrics, reused, sparse.level_threshold(cell.prune, sizes, last))


def ensure_imp(cell: Cell, experiment_id: str, data: DataSplits, dense: DenseParent) -> CellResult:
    """Return the FINISHED IMP job of `cell`, running its unfinished levels first.

    A control first makes sure its ticket (the same cell with control none) exists,
    reusing or training it, and then trains each level from that ticket's level mask.
    """
    levels, reset_epoch = cell.prune.levels, cell.reset_epoch
    sizes = sparse.prunable_sizes(cell, data)
    tags = {**ticket_tags(cell, dense.run_id, dense, sparse.level_threshold(cell.prune, sizes, levels)),
            schema.LAST_LEVEL_KEY: imp_level_key(cell, levels)}
    name = f"imp r={cell.prune.rate:g} L={levels} k={reset_epoch}"
    with claim(cell.state, experiment_id, schema.TICKET_ROLE, ticket_key(cell), name, tags,
               dense.run_id) as job:
        if job.finished is not None:
            return _job_result(cell, dense, sizes, job.run_id, job.finished.data, True)
        ticket_cell, ticket = None, None
        if cell.prune.control in CONTROLS_OF_TICKET_MASKS:  # before the job's run is active: the ticket's runs are its own
            ticket_cell = cell.with_control("none")
            ticket = ensure_imp(ticket_cell, experiment_id, data, dense)
        with tracking.active_run(job.run_id):
            log_config(cell, TICKET_PARAM_GROUPS, cell.cluster.name)
            if ticket is not None:
                tracking.set_tags({schema.TICKET_RUN: ticket.ticket_run_id})
            done = ImpJob(cell, experiment_id, data, dense, job.run_id, sizes, ticket_cell,
                          sparse.all_prunable_weights(cell, data)).levels()
            metrics, end_tags = _summary(cell, dense, done)
            tracking.set_tags(end_tags)
            tracking.log_metrics(metrics)
        return _job_result(cell, dense, sizes, job.run_id, tracking.get_run(job.run_id).data, False)
