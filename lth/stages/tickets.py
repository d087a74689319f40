"""One-shot tickets and their controls: one sparse run per job, reused when it finished.

Ticket(t, k): mask the dense final weights at sparsity t, start from the dense
epoch-k weights times the mask, train epochs k..E with the mask held at zero (lth.stages.sparse).
Controls change exactly one ingredient: `reinit` the starting weights (a fresh
initialisation), `random_mask` the positions of the survivors (same count per layer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from lth import tracking
from lth.config.cell import Cell
from lth.data.splits import DataSplits
from lth.stages import sparse
from lth.stages.dense import DenseParent
from lth.tracking import schema
from lth.tracking.artifacts import log_config
from lth.tracking.claim import claim
from lth.tracking.identity import TICKET_PARAM_GROUPS, cell_key, family_hash, ticket_key


@dataclass(frozen=True)
class CellResult:
    """The outcome of one job, as printed in sweep tables and saved as result.json."""

    threshold: float
    reset_epoch: int
    scope: str
    method: str
    control: str
    seed: int
    weights_remaining: float
    test_accuracy: float | None  # None when the run diverged: a status, not a number
    dense_test_accuracy: float
    epochs_trained: int
    reused: bool
    ticket_run_id: str
    dense_run_id: str
    stability_barrier: float | None = None  # stability=on: the analysed network's error barrier on test
    stability_val_barrier: float | None = None  # the same on validation, which decides lth.stable
    stability_work: str | None = None  # what this job did for the analysis: "reused", "trained 6 copy epochs", ...
    reset_choice: str | None = None  # reset.epoch=auto: which k was chosen, and why
    structure: str = "none"  # prune.structure: which weights the mask could remove

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def ticket_tags(cell: Cell, parent_run_id: str, dense: DenseParent, threshold: float,
                level: int | None = None) -> dict[str, str]:
    """Tags that let searches and the report find and compare tickets numerically."""
    where = schema.SparseTags(threshold, cell.reset_epoch, cell.prune.scope, cell.prune.method, cell.prune.control,
                              cell.train.seed, level)
    # The dense run: claims reuse only runs rewound from this very one. The cell: the report
    # averages seeds and pairs controls within it.
    lineage = schema.lineage_tags(parent_run_id, dense.key, dense.run_id, family_hash(cell),
                                  cell_key(cell))
    return {**lineage, **where.tags()}


def run_name(cell: Cell) -> str:
    """`t=0.80 k=1`, with the control and a non-zero seed appended."""
    name = f"t={cell.prune.threshold:.2f} k={cell.reset_epoch}"
    name += f" {cell.prune.control}" if cell.prune.control != "none" else ""
    return name + (f" seed={cell.train.seed}" if cell.train.seed != 0 else "")


def cell_result(cell: Cell, dense: DenseParent, run_id: str, metrics: Mapping[str, float], reused: bool,
                threshold: float | None = None) -> CellResult:
    """The job's outcome from its run's summary metrics (lth.stages.sparse.SparseRun.metrics, or a finished run's)."""
    return CellResult(
        threshold=cell.prune.threshold if threshold is None else threshold,
        reset_epoch=cell.reset_epoch,
        scope=cell.prune.scope,
        method=cell.prune.method,
        control=cell.prune.control,
        seed=cell.train.seed,
        weights_remaining=float(metrics[schema.WEIGHTS_REMAINING]),
        test_accuracy=metrics.get(schema.TEST_ACCURACY),
        dense_test_accuracy=dense.test_accuracy,
        epochs_trained=int(metrics[schema.EPOCHS_TRAINED]),
        reused=reused,
        ticket_run_id=run_id,
        dense_run_id=dense.run_id,
        structure=cell.prune.structure,
    )


def ensure_ticket(cell: Cell, experiment_id: str, data: DataSplits, dense: DenseParent) -> CellResult:
    """Return the FINISHED one-shot ticket (or control) of `cell`, training it first if no job has."""
    tags = ticket_tags(cell, dense.run_id, dense, cell.prune.threshold)
    with claim(cell.state, experiment_id, schema.TICKET_ROLE, ticket_key(cell), run_name(cell), tags,
               dense.run_id) as stage:
        if stage.finished is not None:
            sparse.refuse_reused_collapse(cell.prune, stage.finished)
            return cell_result(cell, dense, stage.run_id, stage.finished.data.metrics, reused=True)
        with tracking.active_run(stage.run_id):
            log_config(cell, TICKET_PARAM_GROUPS, cell.cluster.name)
            plan = sparse.mask_layout(cell, data)
            masks = sparse.one_shot_masks(cell, plan, dense.weights_at(cell.train.epochs))
            run = sparse.train_masked(cell, data, dense, masks, sparse.starting_weights(cell, dense), stage.run_id)
        return cell_result(cell, dense, stage.run_id, run.metrics, reused=False)
