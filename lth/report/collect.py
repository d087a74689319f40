"""Read a family of runs (one dense config, any seeds) from MLflow into plain records.

A family is every dense parent that differs only in `train.seed` (tag `lth.family`),
with its tickets, controls and IMP levels. Runs that did not finish are kept, so the
report can say which cells are missing and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lth import tracking


@dataclass(frozen=True)
class Point:
    """One sparse run: a one-shot ticket, a control, or one IMP level."""

    kind: str  # ticket, reinit, random_mask or imp
    seed: int
    threshold: float
    reset_epoch: int
    status: str
    weights_remaining: float | None
    test_accuracy: float | None
    diverged: bool
    empty_layers: bool
    run_id: str
    scope: str = "global"

    @property
    def usable(self) -> bool:
        """Finished with an accuracy that means something (not diverged, no collapsed layer)."""
        return (self.status == tracking.FINISHED and self.test_accuracy is not None and not self.diverged
                and not self.empty_layers)


@dataclass
class Family:
    """The runs a report covers."""

    family: str
    dense: list[Run] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)

    @property
    def dense_accuracies(self) -> list[float]:
        return [float(r.data.metrics["test_accuracy"]) for r in self.dense
                if r.info.status == tracking.FINISHED and "test_accuracy" in r.data.metrics]


def _kind(run: Run) -> str:
    tags = run.data.tags
    if tags.get("lth.control", "none") != "none":
        return tags["lth.control"]
    return "imp" if tags.get("lth.method") == "imp" else "ticket"


def _point(run: Run, kind: str) -> Point:
    tags, metrics = run.data.tags, run.data.metrics
    return Point(
        kind=kind,
        seed=int(tags.get("lth.seed", 0)),
        threshold=float(tags["lth.threshold"]),
        reset_epoch=int(tags["lth.reset_epoch"]),
        status=run.info.status,
        weights_remaining=metrics.get("weights_remaining"),
        test_accuracy=metrics.get("test_accuracy"),
        diverged=bool(tags.get("lth.diverged")),
        empty_layers=bool(tags.get("lth.collapsed_layers")),
        run_id=run.info.run_id,
        scope=tags.get("lth.scope", "global"),
    )


def families_of(experiment_id: str, dense_run_id: str | None = None) -> list[str]:
    """Families in an experiment, or the family of one dense parent."""
    client = MlflowClient()
    if dense_run_id is not None:
        return [client.get_run(dense_run_id).data.tags[tracking.FAMILY_TAG]]
    runs = client.search_runs([experiment_id], f"tags.`{tracking.ROLE_TAG}` = 'dense'", max_results=10000)
    return sorted({r.data.tags[tracking.FAMILY_TAG] for r in runs if tracking.FAMILY_TAG in r.data.tags})


def collect(experiment_id: str, family: str) -> Family:
    """Every run of a family: dense parents, one-shot tickets and controls, IMP levels."""
    runs = MlflowClient().search_runs(
        [experiment_id], f"tags.`{tracking.FAMILY_TAG}` = '{family}'", max_results=50000)
    result = Family(family)
    for run in runs:
        role = run.data.tags.get(tracking.ROLE_TAG)
        if role == "dense":
            result.dense.append(run)
        elif role == "ticket" and _kind(run) != "imp":
            result.points.append(_point(run, _kind(run)))
        elif role == "imp_level":  # IMP is drawn level by level; the job run only summarises its last level
            result.points.append(_point(run, "imp" if _kind(run) == "imp" else f"imp_{_kind(run)}"))
    return result
