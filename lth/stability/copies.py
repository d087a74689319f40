"""What an instability analysis is of (a `Subject`), and its copies trained under other SGD noise.

A subject is the dense network or a ticket at reset epoch k. Every copy starts from exactly
the same state: weights, mask, zeroed optimizer slots, optimizer step and loss scale, and
trains epochs k..E with its own `train.data_seed`. Copy 1 has the subject run's data seed:
- a ticket's run, or the dense run at k = 0, *is* copy 1 (it started from that very state);
- at k > 0 the dense run is not: it kept its SGD momentum through epoch k, while a copy
  starts with none. So copy 1 is trained afresh from the epoch-k checkpoint like the others
  (E − k more epochs), and only data order tells the copies apart, as it does for tickets.
Copies 2..n take `stability.data_seeds`. A copy is a run of its own (role `stability_copy`,
under the subject's run), claimed by identity like every stage, so a rerun reuses finished
copies and resumes a killed one from its backup. It logs the weights it started from
(`weights/start.npz`, as a ticket does), its optimizer's start state
(`weights/start_optimizer.npz`) and its final weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from lth import tracking
from lth.config.cell import Cell
from lth.data.splits import DataSplits
from lth.pruning.masks import Masks, load_masks
from lth.stages.dense import DenseParent
from lth.tracking import schema
from lth.tracking.artifacts import log_config, log_weights, run_weights
from lth.tracking.claim import claim
from lth.tracking.identity import TICKET_PARAM_GROUPS, family_hash, stable_hash, ticket_key
from lth.training import group
from lth.training.models import Weights
from lth.training.network import network_for

DataFor = Callable[[Cell], DataSplits]  # this process's input of a cell (lth.stages.cell_search), for a copy's data seed


@dataclass(frozen=True)
class Subject:
    """The network an analysis is of: its run (copy 1), identity and start."""

    run_id: str  # copy 1: the dense parent, or the ticket run
    key: str  # identity of what copy 1 trained from its start (copies and analyses are keyed on it)
    label: str  # `dense k=2`, `t=0.80 k=1`
    threshold: float  # 0 for the dense network
    reset_epoch: int
    data_seed: int  # copy 1's
    start: group.Start  # where every copy starts
    masks: Masks | None  # None: dense
    run_is_first_copy: bool = True  # False: the run's start state differs from a copy's, so copy 1 is trained too
    copies_key: str = ""  # what copies are keyed on; empty: `key`

    def tags(self, cell: Cell, dense: DenseParent) -> dict[str, str]:
        """Tags of a run about this subject (a copy or an analysis): lineage, the analysed run, where it sits."""
        return {**schema.lineage_tags(self.run_id, dense.key, dense.run_id, family_hash(cell), self.key),
                schema.ANALYSED_RUN: self.run_id, schema.THRESHOLD: str(self.threshold),
                schema.RESET_EPOCH: str(self.reset_epoch)}

    def final_weights(self) -> Weights:
        """The subject run's final weights."""
        return run_weights(self.run_id, schema.FINAL_WEIGHTS)


def dense_subject(cell: Cell, dense: DenseParent) -> Subject:
    """The dense network at the cell's reset epoch k (copy 1 is the dense run at k = 0, trained afresh after)."""
    k = cell.reset_epoch
    start = group.Start(dense.weights_at(k), None, k, dense.iterations_at(k), dense.loss_scale_at(k))
    # A new identity at k > 0: analyses keyed on the old one had the dense run, momentum and all, as copy 1,
    # and must not be reused. Copies keep the old key: copies 2..n always started from the shared state, and
    # copy 1 was never a copy run before (its data seed returned the dense run), so nothing unequal is found.
    copies_key = stable_hash({"dense": dense.key, "reset": k})
    key = stable_hash({"dense": dense.key, "reset": k, "first_copy": "trained from epoch k"}) if k else copies_key
    return Subject(dense.run_id, key, f"dense k={k}", 0.0, k, cell.train.order_seed, start, None,
                   run_is_first_copy=k == 0, copies_key=copies_key)


def ticket_subject(cell: Cell, dense: DenseParent, ticket_run_id: str) -> Subject:
    """A one-shot ticket (or control) run: copies start from its logged start weights and mask."""
    k = cell.reset_epoch
    masks = tracking.fetch(ticket_run_id, schema.MASK, load_masks)
    start = group.Start(run_weights(ticket_run_id, schema.START_WEIGHTS), masks, k, dense.iterations_at(k),
                        dense.loss_scale_at(k))
    label = f"t={cell.prune.threshold:.2f} k={k}" + (f" {cell.prune.control}" if cell.prune.control != "none" else "")
    return Subject(ticket_run_id, ticket_key(cell), label, cell.prune.threshold, k, cell.train.order_seed,
                   start, masks)


def copy_seeds(cell: Cell) -> tuple[int, ...]:
    """Data seeds of copies 2..n: `stability.data_seeds`, or the run's data seed + 1."""
    seeds = cell.stability.data_seeds
    return tuple(seeds) if seeds is not None else (cell.train.order_seed + 1,)


def copy_key(subject: Subject, data_seed: int) -> str:
    """Identity of a copy: its subject's copies key and its data seed."""
    return stable_hash({"copy_of": subject.copies_key or subject.key, "data_seed": data_seed})


def _copy_cell(cell: Cell, data_seed: int) -> Cell:
    return dataclasses.replace(cell, train=dataclasses.replace(cell.train, data_seed=data_seed))


@dataclass(frozen=True)
class Copy:
    """A trained copy: its final weights, and the epochs this job trained for it (0: reused)."""

    final: Weights
    epochs_trained: int


def ensure_copy(cell: Cell, experiment_id: str, dense: DenseParent, subject: Subject, data_seed: int,
                data_for: DataFor) -> Copy:
    """The subject's copy with `data_seed`, training it first if no job has.

    A copy with the subject run's own data seed is copy 1: the run itself when it started from
    the copies' state (`Subject.run_is_first_copy`), else a copy like the others.
    """
    if data_seed == subject.data_seed and subject.run_is_first_copy:
        return Copy(subject.final_weights(), 0)
    tags = {**subject.tags(cell, dense), schema.DATA_SEED: str(data_seed)}
    name = f"copy data_seed={data_seed} of {subject.label}"
    with claim(cell.state, experiment_id, schema.COPY_ROLE, copy_key(subject, data_seed), name, tags,
               dense.run_id) as stage:
        if stage.finished is not None:
            return Copy(run_weights(stage.run_id, schema.FINAL_WEIGHTS), 0)
        copy = _copy_cell(cell, data_seed)
        data = data_for(copy)
        with tracking.active_run(stage.run_id):
            log_config(copy, TICKET_PARAM_GROUPS, cell.cluster.name)
            network = network_for(copy.model, copy.train, data.steps_per_epoch)
            epochs, k = copy.train.epochs, subject.reset_epoch

            def loaded() -> None:  # the start state every copy shares, as the copy really holds it
                log_weights(network.snapshot(), schema.START_WEIGHTS)
                log_weights(network.optimizer_state(), schema.START_OPTIMIZER)

            result = group.train(network, data, subject.start, epochs, copy.state.state_dir / "backup" / stage.run_id,
                                 lambda epoch, metrics: tracking.log_metrics(metrics, step=epoch), copy.state.verbose,
                                 loaded=loaded)
            if result.diverged:
                raise RuntimeError(f"stability copy {stage.run_id} ({name}) diverged: its path would mean nothing")
            final = network.snapshot()
            log_weights(final, schema.FINAL_WEIGHTS)
            tracking.log_metrics(schema.outcome_metrics(result.test_accuracy, result.test_loss, epochs - k,
                                                        (epochs - k) * network.replicas, result.seconds, None))
        return Copy(final, epochs - k)
