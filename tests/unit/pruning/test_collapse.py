"""Verdicts that keep a broken run from reading as an accuracy, and the floor that is only a warning."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from lth.config.cell import PruneConfig
from lth.config.pieces import piece
from lth.pruning.collapse import CollapsedMaskError, collapsed_layers, floor_layers
from lth.pruning.structure import Layout
from lth.stages.sparse import check_collapse as check_prune_collapse
from lth.training.result import FitResult, divergence

# a empty; b held at exactly ceil(0.01 * 1000) = 10; c one above the floor; d far above it
REPORT = {"layers": [{"layer": "a", "kept": 0, "weights": 100}, {"layer": "b", "kept": 10, "weights": 1000},
                     {"layer": "c", "kept": 11, "weights": 1000}, {"layer": "d", "kept": 50, "weights": 100}]}


def _result(accuracy: float, last_loss: float | None, diverged: bool = False) -> FitResult:
    return FitResult(2.3, accuracy, 3, 1.0, diverged, 2 if diverged else None, last_loss)


def test_nan_loss_is_divergence() -> None:
    assert divergence(_result(0.1, float("nan"), diverged=True), dense_accuracy=0.96, num_classes=10) == "nan"


def test_loss_stuck_at_chance_is_divergence_only_if_the_dense_run_learned() -> None:
    stuck = _result(0.1, math.log(10) * 0.999)
    assert divergence(stuck, dense_accuracy=0.96, num_classes=10) == "chance"
    assert divergence(stuck, dense_accuracy=0.11, num_classes=10) is None  # nothing learned anywhere: no verdict
    assert divergence(_result(0.9, 0.3), dense_accuracy=0.96, num_classes=10) is None


def test_collapsed_means_no_weight_left_and_the_floor_is_its_own_list() -> None:
    assert collapsed_layers(REPORT) == ["a"]  # b is held at the floor: alive, not collapsed
    assert floor_layers(REPORT, 0.01) == ["b"]
    assert floor_layers(REPORT, 0.0) == []  # no floor configured: nothing is held at it


@pytest.fixture
def active_run(tmp_path: Path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("health", artifact_location=(tmp_path / "mlruns").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        yield run.info.run_id


def check_collapse(cfg: DictConfig, report: dict[str, object]) -> list[str]:
    """lth.stages.sparse.check_collapse of a config that holds only the prune keys these tests vary."""
    prune = piece(PruneConfig, {"method": "magnitude", "threshold": 0.5, "scope": "global", **cfg.prune}, "prune")
    return check_prune_collapse(prune, report, Layout(tuple(report)), {})  # weight by weight: no channel groups


def _tags(run_id: str) -> dict[str, str]:
    return MlflowClient().get_run(run_id).data.tags


def test_refuse_refuses_an_emptied_layer_and_tags_the_floor_too(active_run: str) -> None:
    cfg = OmegaConf.create({"prune": {"min_density": 0.01, "on_collapse": "refuse"}})
    with pytest.raises(CollapsedMaskError, match=r"1 layer\(s\) with no weight: \['a'\]"):
        check_collapse(cfg, REPORT)
    tags = _tags(active_run)
    assert (tags["lth.collapsed_layers"], tags["lth.floor_layers"]) == ("a", "b")


def test_a_layer_at_the_floor_is_a_warning_even_under_refuse(active_run: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    cfg = OmegaConf.create({"prune": {"min_density": 0.01, "on_collapse": "refuse"}})
    alive = {"layers": REPORT["layers"][1:]}
    with caplog.at_level(logging.WARNING, logger="lth"):
        assert check_collapse(cfg, alive) == []  # trains: nothing is empty
    tags = _tags(active_run)
    assert tags["lth.floor_layers"] == "b" and "lth.collapsed_layers" not in tags
    assert "1 layer(s) at the floor prune.min_density=0.01" in caplog.text


def test_warn_trains_a_collapsed_mask_and_says_so(active_run: str, caplog: pytest.LogCaptureFixture) -> None:
    cfg = OmegaConf.create({"prune": {"min_density": 0.0, "on_collapse": "warn"}})
    with caplog.at_level(logging.WARNING, logger="lth"):
        assert check_collapse(cfg, REPORT) == ["a"]
    assert _tags(active_run)["lth.collapsed_layers"] == "a"
    assert "prune.on_collapse=warn: training anyway" in caplog.text
