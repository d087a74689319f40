"""Read a family of runs (one dense config, any seeds) from MLflow into plain records.

A family is every dense parent that differs only in `train.seed` (tag `lth.family`),
with its tickets, controls and IMP levels. Runs that did not finish are kept, so the
report can say which cells are missing and why.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lth import tracking
from lth.tracking import schema

CELL_TAG = schema.CELL  # the run's ticket identity minus train.seed, prune.control and prune.control_seed
SETTING_PREFIXES = ("prune.", "reset.")  # the params that tell the experiments of one family apart
Settings = tuple[tuple[str, str], ...]


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
        return self.val_accuracy if metric == "val_accuracy" else self.test_accuracy


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

    def accuracy(self, metric: str) -> float | None:
        """`val_accuracy` or `test_accuracy` of this parent (None unless FINISHED)."""
        if self.status != schema.FINISHED:
            return None
        return self.val_accuracy if metric == "val_accuracy" else self.test_accuracy


@dataclass
class Family:
    """The runs a report covers."""

    family: str
    dense: list[DenseRun] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)

    @property
    def finished_dense(self) -> list[DenseRun]:
        """Dense parents that finished with a test accuracy, by seed."""
        return sorted((d for d in self.dense if d.accuracy("test_accuracy") is not None), key=lambda d: d.seed)

    @property
    def seeds(self) -> list[int]:
        """Seeds every cell is expected to have run: those of the finished dense parents."""
        return sorted({d.seed for d in self.finished_dense})

    @property
    def dense_accuracies(self) -> list[float]:
        """Test accuracies of the finished dense parents."""
        return [float(d.test_accuracy) for d in self.finished_dense if d.test_accuracy is not None]


def _kind(run: Run) -> str:
    tags = run.data.tags
    if tags.get("lth.control", "none") != "none":
        return tags["lth.control"]
    return "imp" if tags.get("lth.method") == "imp" else "ticket"


def _settings(params: dict[str, str]) -> Settings:
    return tuple(sorted((k, v) for k, v in params.items() if k.startswith(SETTING_PREFIXES)))


def _emptied_and_floor(run: Run) -> tuple[bool, bool]:
    """(a layer kept no weight, a layer sits at the floor) from the run's tags.

    Runs logged before `lth.floor_layers` existed (they lack the `dead_channels` metric logged
    with it) tagged floor layers as collapsed too; their sparsity.json tells which were empty.
    """
    tags = run.data.tags
    listed = [name for name in tags.get("lth.collapsed_layers", "").split(",") if name]
    if not listed or "dead_channels" in run.data.metrics:
        return bool(listed), bool(tags.get("lth.floor_layers"))
    try:
        report = tracking.fetch(run.info.run_id, "sparsity.json", lambda path: json.loads(path.read_text()))
    except Exception:  # noqa: BLE001 - no mask logged (or unreadable): keep the tag's word for it
        return True, False
    kept = {layer["layer"]: int(layer["kept"]) for layer in report["layers"]}
    emptied = any(kept.get(name, 0) == 0 for name in listed)
    return emptied, any(kept.get(name, 0) > 0 for name in listed)


def _point(run: Run, kind: str, settings: Settings) -> Point:
    tags, metrics = run.data.tags, run.data.metrics
    emptied, floor = _emptied_and_floor(run)
    return Point(
        kind=kind,
        seed=int(tags.get("lth.seed", 0)),
        threshold=float(tags["lth.threshold"]),
        reset_epoch=int(tags["lth.reset_epoch"]),
        status=run.info.status,
        weights_remaining=metrics.get("weights_remaining"),
        test_accuracy=metrics.get("test_accuracy"),
        diverged=bool(tags.get("lth.diverged")),
        empty_layers=emptied,
        run_id=run.info.run_id,
        scope=tags.get("lth.scope", "global"),
        val_accuracy=metrics.get("val_accuracy"),
        cell=tags.get(CELL_TAG),
        level=int(tags["lth.level"]) if "lth.level" in tags else None,
        settings=settings,
        divergence=tags.get("lth.diverged", ""),
        floor_layers=floor,
        dead_channels=metrics.get("dead_channels"),
        **_early_stop(metrics),
    )


def _early_stop(metrics: dict[str, float]) -> dict[str, object]:
    """The early-stop fields of a run's metrics (absent from runs logged before they existed)."""
    epoch = metrics.get("early_stop_epoch")
    return {"early_stop_epoch": None if epoch is None else int(epoch),
            "early_stop_test_accuracy": metrics.get("early_stop_test_accuracy")}


def _dense(run: Run) -> DenseRun:
    metrics = run.data.metrics
    return DenseRun(int(run.data.tags.get("lth.seed", 0)), run.info.status, metrics.get("test_accuracy"),
                    metrics.get("val_accuracy"), run.info.run_id, run.data.tags.get(schema.RUN_NAME, ""),
                    tuple(sorted((k, v) for k, v in run.data.params.items() if k.startswith("data."))),
                    **_early_stop(metrics))


def families_of(experiment_id: str, dense_run_id: str | None = None) -> list[str]:
    """Families in an experiment, or the family of one dense parent."""
    client = MlflowClient()
    if dense_run_id is not None:
        return [client.get_run(dense_run_id).data.tags[schema.FAMILY]]
    runs = client.search_runs([experiment_id], f"tags.`{schema.ROLE}` = 'dense'", max_results=10000)
    return sorted({r.data.tags[schema.FAMILY] for r in runs if schema.FAMILY in r.data.tags})


def collect(experiment_id: str, family: str) -> Family:
    """Every run of a family: dense parents, one-shot tickets and controls, IMP levels."""
    runs = MlflowClient().search_runs(
        [experiment_id], f"tags.`{schema.FAMILY}` = '{family}'", max_results=50000)
    params = {run.info.run_id: run.data.params for run in runs}  # IMP levels log none: their job's run holds them
    result = Family(family)
    for run in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)):
        role = run.data.tags.get(schema.ROLE)
        if role == "dense":
            result.dense.append(_dense(run))
        elif role == "ticket" and run.data.tags.get("lth.method") != "imp":  # IMP jobs (and their controls) via levels
            result.points.append(_point(run, _kind(run), _settings(run.data.params)))
        elif role == "imp_level":  # IMP is drawn level by level; the job run only summarises its last level
            job_params = run.data.params or params.get(run.data.tags.get(schema.PARENT, ""), {})
            kind = "imp" if _kind(run) == "imp" else f"imp_{_kind(run)}"
            result.points.append(_point(run, kind, _settings(job_params)))
    return result
