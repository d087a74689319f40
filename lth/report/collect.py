"""Read a family of runs (one dense config, any seeds) from MLflow into plain records.

A family is every dense parent that differs only in `train.seed` or `train.data_seed` (tag `lth.family`),
with its tickets, controls and IMP levels. Runs that did not finish are kept, so the
report can say which cells are missing and why. Every tag and metric is read through
lth.tracking.schema, next to the code that writes it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lth import tracking
from lth.report.stability import Analysis, read_analysis
from lth.tracking import schema
from lth.training.chance import dense_at_chance

SETTING_PREFIXES = ("prune.", "reset.")  # the params that tell the experiments of one family apart
Settings = tuple[tuple[str, str], ...]
# Prune settings added later, and what a run logged before them meant: so an old run and a new one at the
# default do not read as two settings (the report labels cells by the settings that differ).
LATER_SETTINGS: dict[str, str] = {"prune.structure": "none"}


@dataclass(frozen=True)
class Point:
    """One sparse run: a one-shot ticket, a control, or one IMP level."""

    kind: str  # ticket, reinit, random_mask, imp, imp_reinit or imp_random_mask
    seed: int
    threshold: float
    reset_epoch: int
    status: str
    weights_remaining: float | None
    test_accuracy: float | None
    diverged: bool
    empty_layers: bool  # some layer kept no weight at all (tag lth.collapsed_layers)
    run_id: str
    scope: str = "global"
    val_accuracy: float | None = None  # the final epoch's validation accuracy; None for runs logged before it
    cell: str | None = None  # tag lth.cell; None for runs logged before it existed
    level: int | None = None  # IMP level; None for one-shot runs
    settings: Settings = ()  # prune.* and reset.* params (an IMP level's come from its job's run)
    divergence: str = ""  # the lth.diverged verdict (nan, chance, level N)
    floor_layers: bool = False  # some layer held at prune.min_density's floor (tag lth.floor_layers)
    dead_channels: float | None = None  # output channels whose whole kernel slice is pruned (metric)
    early_stop_epoch: int | None = None  # epoch of minimum val_loss (metric); None for runs logged before it
    early_stop_test_accuracy: float | None = None  # test accuracy of the weights at that epoch
    # weights_remaining is of all prunable weights (schema.on_common_base); False: an xnnpack_1x1 or prune.ignore run
    # logged before that, with the share of its masked layers, which is on another axis than every other run's.
    base_known: bool = True
    data_seed: int | None = None  # param train.data_seed; None: the seed orders the data too (and runs before it)
    dense_run: str = ""  # tag lth.dense_run: the dense parent it was rewound from; "" on runs logged before the tag

    @property
    def replicate(self) -> tuple[int, int]:
        """(seed, data-order seed): which replicate of its cell this run is (a control's control seed aside)."""
        return self.seed, order_seed(self.seed, self.data_seed)

    @property
    def finished(self) -> bool:
        """The run ran to its end: a result, whether it learned or not."""
        return self.status == schema.FINISHED

    @property
    def learned(self) -> bool:
        """Finished with an accuracy that means something: not diverged and no layer emptied."""
        return (self.finished and not self.diverged and not self.empty_layers and self.test_accuracy is not None
                and math.isfinite(self.test_accuracy))

    @property
    def cell_id(self) -> str:
        """The experiment this run is a replicate of; runs without `lth.cell` fall back to (scope, reset, threshold)."""
        if self.cell:
            return self.cell
        return f"legacy scope={self.scope} k={self.reset_epoch} t={self.threshold:.6f}"

    @property
    def control_seed(self) -> int:
        """Replicates of a control also differ in `prune.control_seed`; a ticket has none."""
        return int(dict(self.settings).get("prune.control_seed", "0")) if self.kind not in ("ticket", "imp") else 0

    def accuracy(self, metric: str) -> float | None:
        """`val_accuracy` or `test_accuracy` of this run."""
        return self.val_accuracy if metric == schema.VAL_ACCURACY else self.test_accuracy


@dataclass(frozen=True)
class DenseRun:
    """One dense parent, as the report needs it."""

    seed: int
    status: str
    test_accuracy: float | None
    val_accuracy: float | None
    run_id: str
    name: str = ""
    params: tuple[tuple[str, str], ...] = ()  # data.* params: which splits validate and test
    early_stop_epoch: int | None = None  # epoch of minimum val_loss (metric); None for runs logged before it
    early_stop_test_accuracy: float | None = None  # test accuracy of the weights at that epoch
    data_seed: int | None = None  # param train.data_seed; None: the seed orders the data too (and runs before it)
    final_test_accuracy: float | None = None  # the last epoch's, whatever report.measure reads: chance judges it

    @property
    def replicate(self) -> tuple[int, int]:
        """(seed, data-order seed): the replicate every cell of the family runs once for this parent."""
        return self.seed, order_seed(self.seed, self.data_seed)

    @property
    def final_test(self) -> float | None:
        """The last epoch's test accuracy, whatever report.measure reads (None unless FINISHED)."""
        return self.final_test_accuracy if self.final_test_accuracy is not None else self.accuracy(schema.TEST_ACCURACY)

    @property
    def at_chance(self) -> bool:
        """Finished at chance level (lth.training.chance); False when its class count was not logged (`data.num_classes`).

        Judged as its job line and tag judged it: on the final accuracy, also under report.measure=early_stop.
        """
        classes, test = dict(self.params).get("data.num_classes"), self.final_test
        return classes is not None and test is not None and dense_at_chance(test, int(classes))

    def accuracy(self, metric: str) -> float | None:
        """`val_accuracy` or `test_accuracy` of this parent (None unless FINISHED)."""
        if self.status != schema.FINISHED:
            return None
        return self.val_accuracy if metric == schema.VAL_ACCURACY else self.test_accuracy


@dataclass
class Family:
    """The runs a report covers."""

    family: str
    dense: list[DenseRun] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    analyses: list[Analysis] = field(default_factory=list)  # finished instability analyses (lth.report.stability)

    @property
    def finished_dense(self) -> list[DenseRun]:
        """Dense parents that finished with a test accuracy, by seed."""
        return sorted((d for d in self.dense if d.accuracy(schema.TEST_ACCURACY) is not None), key=lambda d: d.seed)

    @property
    def seeds(self) -> list[int]:
        """The train seeds of the finished dense parents."""
        return sorted({d.seed for d in self.finished_dense})

    @property
    def replicates(self) -> list[tuple[int, int]]:
        """(seed, data-order seed) every cell is expected to have run: one per finished dense parent."""
        return sorted({d.replicate for d in self.finished_dense})

    def parent_of(self, point: Point) -> DenseRun | None:
        """The dense parent `point` was rewound from (tag lth.dense_run), else the finished one of its replicate."""
        by_run = next((d for d in self.dense if point.dense_run and d.run_id == point.dense_run), None)
        return by_run or next((d for d in self.finished_dense if d.replicate == point.replicate), None)

    @property
    def dense_accuracies(self) -> list[float]:
        """Test accuracies of the finished dense parents."""
        return [float(d.test_accuracy) for d in self.finished_dense if d.test_accuracy is not None]


def order_seed(seed: int, data_seed: int | None) -> int:
    """The seed of the data order: `train.data_seed`, or the seed when it is not set (lth.config.cell.TrainConfig)."""
    return seed if data_seed is None else data_seed


def _data_seed(params: dict[str, str]) -> int | None:
    """`train.data_seed` as logged ("None" when not set; absent on runs logged before it)."""
    value = params.get("train.data_seed")
    return None if value in (None, "None", "null") else int(value)


def _settings(params: dict[str, str]) -> Settings:
    found = {k: v for k, v in params.items() if k.startswith(SETTING_PREFIXES)}
    if any(k.startswith("prune.") for k in found):  # runs logged before a key existed meant its default
        found = {**LATER_SETTINGS, **found}
    return tuple(sorted(found.items()))


def _emptied_and_floor(run: Run) -> tuple[bool, bool]:
    """(a layer kept no weight, a layer sits at the floor) from the run's tags.

    Runs logged before `lth.floor_layers` existed (they lack the `dead_channels` metric logged
    with it) tagged floor layers as collapsed too; their sparsity.json tells which were empty.
    """
    listed, floor = schema.collapse_lists(run.data.tags)
    if not listed or schema.DEAD_CHANNELS in run.data.metrics:
        return bool(listed), bool(floor)
    try:
        report = tracking.fetch(run.info.run_id, schema.SPARSITY_REPORT, lambda path: json.loads(path.read_text()))
    except Exception:  # noqa: BLE001 - no mask logged (or unreadable): keep the tag's word for it
        return True, False
    kept = {layer["layer"]: int(layer["kept"]) for layer in report["layers"]}
    emptied = any(kept.get(name, 0) == 0 for name in listed)
    return emptied, any(kept.get(name, 0) > 0 for name in listed)


def _point(run: Run, kind: str, settings: Settings, data_seed: int | None = None) -> Point:
    tags = run.data.tags
    where, outcome = schema.SparseTags.read(tags), schema.Outcome.read(run.data.metrics)
    emptied, floor = _emptied_and_floor(run)
    return Point(
        kind=kind,
        seed=where.seed,
        threshold=where.threshold,
        reset_epoch=where.reset_epoch,
        status=run.info.status,
        weights_remaining=outcome.weights_remaining,
        test_accuracy=outcome.test_accuracy,
        diverged=schema.divergence(tags) is not None,
        empty_layers=emptied,
        run_id=run.info.run_id,
        scope=where.scope,
        val_accuracy=outcome.val_accuracy,
        cell=tags.get(schema.CELL),
        level=where.level,
        settings=settings,
        divergence=schema.divergence(tags) or "",
        floor_layers=floor,
        dead_channels=outcome.dead_channels,
        early_stop_epoch=outcome.early_stop_epoch,
        early_stop_test_accuracy=outcome.early_stop_test_accuracy,
        base_known=schema.on_common_base(run.data.metrics, dict(settings)),
        data_seed=data_seed,
        dense_run=tags.get(schema.DENSE_RUN, ""),
    )


def _dense(run: Run) -> DenseRun:
    outcome = schema.Outcome.read(run.data.metrics)
    return DenseRun(int(run.data.tags.get(schema.SEED, 0)), run.info.status, outcome.test_accuracy,
                    outcome.val_accuracy, run.info.run_id, run.data.tags.get(schema.RUN_NAME, ""),
                    tuple(sorted((k, v) for k, v in run.data.params.items() if k.startswith("data."))),
                    outcome.early_stop_epoch, outcome.early_stop_test_accuracy, _data_seed(run.data.params),
                    outcome.test_accuracy if run.info.status == schema.FINISHED else None)


def families_of(experiment_id: str, dense_run_id: str | None = None) -> list[str]:
    """Families in an experiment, or the family of one dense parent."""
    client = MlflowClient()
    if dense_run_id is not None:
        return [client.get_run(dense_run_id).data.tags[schema.FAMILY]]
    runs = client.search_runs([experiment_id], f"tags.`{schema.ROLE}` = '{schema.DENSE_ROLE}'", max_results=10000)
    return sorted({r.data.tags[schema.FAMILY] for r in runs if schema.FAMILY in r.data.tags})


def collect(experiment_id: str, family: str) -> Family:
    """Every run of a family: dense parents, one-shot tickets and controls, IMP levels."""
    runs = MlflowClient().search_runs(
        [experiment_id], f"tags.`{schema.FAMILY}` = '{family}'", max_results=50000)
    params = {run.info.run_id: run.data.params for run in runs}  # IMP levels log none: their job's run holds them
    result = Family(family)
    for run in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)):
        tags = run.data.tags
        role, kind = tags.get(schema.ROLE), schema.kind(tags.get(schema.METHOD, ""), tags.get(schema.CONTROL, "none"))
        if role == schema.DENSE_ROLE:
            result.dense.append(_dense(run))
        elif role == schema.TICKET_ROLE and tags.get(schema.METHOD) != "imp":  # IMP jobs are drawn via their levels
            result.points.append(_point(run, kind, _settings(run.data.params), _data_seed(run.data.params)))
        elif role == schema.STABILITY_ROLE and (analysis := read_analysis(run)) is not None:
            result.analyses.append(analysis)
        elif role == schema.LEVEL_ROLE:  # IMP is drawn level by level; the job run only summarises its last level
            job_params = run.data.params or params.get(tags.get(schema.PARENT, ""), {})
            result.points.append(_point(run, "imp" if kind == "imp" else f"imp_{kind}", _settings(job_params),
                                        _data_seed(job_params)))
    return result
