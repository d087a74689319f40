"""Masks that keep layers alive, and runs whose numbers are not results (slow ones train on full data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.jobs import run_lth
from tests.support.store import by_role, runs

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_a_diverging_dense_run_ends_failed_and_tagged(tmp_path: Path) -> None:
    done = run_lth(tmp_path, "train.learning_rate=1e12", "train.epochs=2", "data.train_limit=128", "lth.verbose=0")
    assert done.returncode != 0
    assert "diverged (loss became NaN/inf)" in done.stderr
    dense, tickets = by_role(runs(tmp_path))
    assert len(dense) == 1 and tickets == []
    assert dense[0].info.status == "FAILED" and dense[0].data.tags["lth.diverged"] == "true"


@pytest.mark.slow
def test_digits_at_95_percent_lamp_learns_where_global_collapses(tmp_path: Path) -> None:
    done = run_lth(tmp_path, "-m", "prune.threshold=0.95", "reset.epoch=1", "prune.scope=lamp,global", "lth.verbose=0")
    assert done.returncode == 0, done.stderr[-3000:]
    _, tickets = by_role(runs(tmp_path))
    by_scope = {r.data.tags["lth.scope"]: r for r in tickets}
    assert by_scope["lamp"].data.metrics["test_accuracy"] > 0.5  # chance is 0.1
    assert "lth.collapsed_layers" not in by_scope["lamp"].data.tags
    # Global would empty Conv_1; the default floor (min_density 0.002) holds it: a warning, not a collapse.
    assert "Conv_1" in by_scope["global"].data.tags["lth.floor_layers"].split(",")
    assert "lth.collapsed_layers" not in by_scope["global"].data.tags


@pytest.mark.slow  # two runs and a dense parent: about 85 s on 2 cores
def test_refuse_refuses_only_an_emptied_layer_and_the_floor_trains(tmp_path: Path) -> None:
    tiny = ("prune.scope=global", "prune.threshold=0.95", "prune.on_collapse=refuse", "reset.epoch=1",
            "train.epochs=2", "data.train_limit=128", "lth.verbose=0")
    floored = run_lth(tmp_path, *tiny)  # the default floor keeps every layer alive
    assert floored.returncode == 0, floored.stderr[-3000:]
    assert "at the floor prune.min_density=0.002" in floored.stdout + floored.stderr  # Hydra logs to stdout
    emptied = run_lth(tmp_path, *tiny, "prune.min_density=0")
    assert emptied.returncode != 0 and "prune.on_collapse=refuse" in emptied.stdout + emptied.stderr
    _, tickets = by_role(runs(tmp_path))
    by_floor = {float(r.data.params["prune.min_density"]): r for r in tickets}  # logged as declared: a float
    assert by_floor[0.002].info.status == "FINISHED" and "lth.collapsed_layers" not in by_floor[0.002].data.tags
    assert "Conv_1" in by_floor[0.002].data.tags["lth.floor_layers"].split(",")
    assert by_floor[0.002].data.metrics["dead_channels"] > 0  # at 95% global, whole channels go
    assert by_floor[0.0].info.status == "FAILED"
    assert "Conv_1" in by_floor[0.0].data.tags["lth.collapsed_layers"].split(",")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_90_percent_ticket_learns_and_reports_no_nan(tmp_path: Path) -> None:
    done = run_lth(tmp_path, "data=fashion_mnist", "data.train_limit=4000", "data.test_limit=2000", "train.epochs=6",
                   "prune.threshold=0.9", "reset.epoch=1", "lth.verbose=0")
    assert done.returncode == 0, done.stderr[-3000:]
    _, tickets = by_role(runs(tmp_path))
    ticket = tickets[0]
    assert "lth.diverged" not in ticket.data.tags
    assert ticket.data.metrics["test_accuracy"] > 0.5  # chance is 0.1
