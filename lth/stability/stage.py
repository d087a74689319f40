"""The stability stage of a cell (`stability=on`): analyse its ticket, or at threshold 0 the dense network.

Runs after the cell's ticket exists (lth.stages.cell_search). A cell at `prune.threshold=0` trains no ticket:
its subject is the dense network at k, and its job reports the dense parent.
"""

from __future__ import annotations

import dataclasses
import logging

from lth import tracking
from lth.config.cell import Cell
from lth.stability.analysis import Stability, ensure_stability
from lth.stability.copies import DataFor, dense_subject, ticket_subject
from lth.stages.dense import DenseParent
from lth.stages.tickets import CellResult
from lth.tracking import schema

log = logging.getLogger("lth")


def dense_cell_result(cell: Cell, dense: DenseParent) -> CellResult:
    """What a `prune.threshold=0` cell reports under stability=on: the dense parent, not retrained."""
    return CellResult(threshold=0.0, reset_epoch=cell.reset_epoch, scope=cell.prune.scope, method=cell.prune.method,
                      control=cell.prune.control, seed=cell.train.seed, weights_remaining=1.0,
                      test_accuracy=dense.test_accuracy, dense_test_accuracy=dense.test_accuracy, epochs_trained=0,
                      reused=True, ticket_run_id=dense.run_id, dense_run_id=dense.run_id)


def analyse_cell(cell: Cell, experiment_id: str, dense: DenseParent, result: CellResult,
                 data_for: DataFor) -> CellResult:
    """The cell's result with its error barrier: its ticket's, or (threshold 0) the dense network's at k."""
    if cell.prune.threshold == 0:
        subject = dense_subject(cell, dense)
    elif result.test_accuracy is None:  # diverged: its copies would too, and a path between NaNs says nothing
        log.warning("ticket %s diverged: no stability analysis", result.ticket_run_id)
        return result
    else:
        subject = ticket_subject(cell, dense, result.ticket_run_id)
    found = ensure_stability(cell, experiment_id, dense, subject, data_for)
    # `reused` stays the ticket's: a reused ticket whose analysis is new did not train its ticket epochs again.
    return dataclasses.replace(result, stability_barrier=found.barrier, stability_val_barrier=found.val_barrier,
                               stability_work=stability_work(found))


def stability_work(found: Stability) -> str:
    """What this job did for an analysis, for its job line."""
    if found.walked_again:
        return "analysis reused, walked again on validation" + (
            f" ({found.epochs_trained} copy epochs retrained)" if found.epochs_trained else "")
    if found.reused:
        return "analysis reused"
    if found.epochs_trained:
        return f"analysis new: trained {found.epochs_trained} copy epochs"
    return "analysis new: paths walked, no copy trained"


def tag_reset_choice(result: CellResult, why: str) -> CellResult:
    """Tag the cell's run with why reset.epoch=auto chose its k; the job line says it too."""
    if result.ticket_run_id != result.dense_run_id:  # a dense parent serves every k: never tag it with one
        tracking.log_to_run(result.ticket_run_id, tags={schema.RESET_CHOICE: why})
    return dataclasses.replace(result, reset_choice=why)
