"""Controls, iterative pruning, replicates and load_ticket, end to end via subprocess."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tests.support.jobs import kill_lth_at, run_lth
from tests.support.store import artifact, by_role, runs

TINY = ["train.epochs=2", "data.train_limit=128", "lth.verbose=0"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ticket at t=0.8, k=1 with both controls, and a 3-level IMP job, on one dense parent."""
    cwd = tmp_path_factory.mktemp("science")
    sweep = run_lth(cwd, "-m", "prune.threshold=0.8", "reset.epoch=1", "prune.control=none,reinit,random_mask", *TINY)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    imp = run_lth(cwd, "prune.method=imp", "prune.levels=3", "prune.rate=0.2", "reset.epoch=1", *TINY)
    assert imp.returncode == 0, imp.stderr[-3000:]
    return cwd


def _tickets(cwd: Path, **tags: str) -> list:
    _, tickets = by_role(runs(cwd))
    return [r for r in tickets if all(r.data.tags.get(f"lth.{k}") == v for k, v in tags.items())]


def _differing(loaded: dict[str, np.ndarray], logged: dict[str, np.ndarray]) -> list[str]:
    """Variables whose values differ, or that only one side has."""
    unequal = [name for name in loaded if name in logged and not np.array_equal(loaded[name], logged[name])]
    return sorted(set(loaded) ^ set(logged)) + unequal


def test_controls_change_exactly_one_ingredient(searched: Path) -> None:
    cwd = searched
    dense = by_role(runs(cwd))[0][0]
    ticket = _tickets(cwd, control="none", threshold="0.8", reset_epoch="1")[0]
    reinit = _tickets(cwd, control="reinit", threshold="0.8", reset_epoch="1")[0]
    shuffled = _tickets(cwd, control="random_mask", threshold="0.8", reset_epoch="1")[0]
    mask, checkpoint = artifact(cwd, ticket, "mask.npz"), artifact(cwd, dense, "checkpoints/epoch_001.npz")
    initial = artifact(cwd, dense, "checkpoints/epoch_000.npz")
    reinit_mask, reinit_start = artifact(cwd, reinit, "mask.npz"), artifact(cwd, reinit, "weights/start.npz")
    assert all(np.array_equal(reinit_mask[n], mask[n]) for n in mask)  # same mask
    for name in mask:  # new weights: neither the rewound ticket's nor the dense run's own initialisation
        kernel = reinit_start[f"{name}/kernel"]
        assert np.count_nonzero(kernel[~mask[name]]) == 0
        assert not np.array_equal(kernel, checkpoint[f"{name}/kernel"] * mask[name]), f"{name}: dense epoch 1"
        assert not np.array_equal(kernel, initial[f"{name}/kernel"] * mask[name]), f"{name}: dense initialisation"
    random_mask, random_start = artifact(cwd, shuffled, "mask.npz"), artifact(cwd, shuffled, "weights/start.npz")
    assert all(int(random_mask[n].sum()) == int(mask[n].sum()) for n in mask)  # same count per layer
    assert not all(np.array_equal(random_mask[n], mask[n]) for n in mask)  # other positions
    np.testing.assert_array_equal(random_start["Conv_1/kernel"], checkpoint["Conv_1/kernel"] * random_mask["Conv_1"])


def test_imp_nests_masks_and_ends_at_exactly_0512_kept(searched: Path) -> None:
    cwd = searched
    job = _tickets(cwd, method="imp")[0]
    levels = sorted((r for r in runs(cwd) if r.data.tags["lth.role"] == "imp_level"),
                    key=lambda r: int(r.data.tags["lth.level"]))
    assert [int(r.data.tags["lth.level"]) for r in levels] == [1, 2, 3]
    assert {r.data.tags["mlflow.parentRunId"] for r in levels} == {job.info.run_id}
    masks = [artifact(cwd, level, "mask.npz") for level in levels]
    total = sum(m.size for m in masks[0].values())
    for level, mask in enumerate(masks, start=1):
        assert sum(int(m.sum()) for m in mask.values()) == total - round((1 - 0.8**level) * total)
    for earlier, later in zip(masks, masks[1:]):
        assert all(not np.any(later[n] & ~earlier[n]) for n in later)
    assert job.data.metrics["weights_remaining"] == pytest.approx(0.512, abs=1 / total)


def test_load_ticket_loads_exactly_the_logged_mask_and_weights(searched: Path) -> None:
    import mlflow

    import lth
    from lth.config.cell import DataConfig
    from lth.config.pieces import piece
    from lth.data import load_data
    from lth.training.models import snapshot

    cwd = searched
    mlflow.set_tracking_uri(f"sqlite:///{cwd / 'mlflow.db'}")
    imp_levels = [r for r in runs(cwd) if r.data.tags["lth.role"] == "imp_level"]
    last_level = max(imp_levels, key=lambda r: int(r.data.tags["lth.level"]))
    one_shot = _tickets(cwd, control="none", threshold="0.8", reset_epoch="1")[0]
    for run, files in ((one_shot, one_shot), (_tickets(cwd, method="imp")[0], last_level)):
        ticket = lth.load_ticket(run.info.run_id)
        assert ticket.run_id == files.info.run_id
        mask = artifact(cwd, files, "mask.npz")
        assert sorted(ticket.masks) == sorted(mask)
        assert [n for n in mask if not np.array_equal(ticket.masks[n], mask[n])] == []
        assert _differing(snapshot(ticket.model), artifact(cwd, files, "weights/final.npz")) == []
        data = load_data(piece(DataConfig, ticket.config.data, "data", known_only=True), int(ticket.config.train.batch_size),
                         int(ticket.config.train.seed))
        _, accuracy = ticket.model.evaluate(data.test, verbose=0)
        assert accuracy == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)
        start = lth.load_ticket(run.info.run_id, weights="start")
        assert _differing(snapshot(start.model), artifact(cwd, files, "weights/start.npz")) == []


def test_killed_imp_job_resumes_at_the_first_unfinished_level(tmp_path: Path) -> None:
    args = ("prune.method=imp", "prune.levels=3", "prune.rate=0.3", "reset.epoch=1", *TINY)
    # Killed where level 2 announces itself: level 1 is FINISHED in MLflow by then, level 2 has not trained.
    killed = kill_lth_at(tmp_path, *args, text="IMP level 2 of 3", log=tmp_path / "first.log")
    assert "IMP level 1 of 3" in killed and "IMP level 3 of 3" not in killed
    at_kill = {r.data.tags["lth.level"]: r for r in runs(tmp_path) if r.data.tags.get("lth.role") == "imp_level"}
    assert {level: r.info.status for level, r in at_kill.items()} == {"1": "FINISHED", "2": "RUNNING"}
    first_level = at_kill["1"]
    again = run_lth(tmp_path, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    output = again.stdout + again.stderr
    assert f"reusing finished IMP level {first_level.info.run_id}" in output
    assert "IMP level 1 of 3" not in output and "IMP level 3 of 3" in output
    levels = [r for r in runs(tmp_path) if r.data.tags.get("lth.role") == "imp_level"]
    assert sorted(r.data.tags["lth.level"] for r in levels) == ["1", "2", "3"]
    assert {r.info.status for r in levels} == {"FINISHED"}


def test_seed_replicates_are_aggregated(tmp_path: Path) -> None:
    done = run_lth(tmp_path, "-m", "train.seed=0,1", "prune.threshold=0.5", "reset.epoch=1", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    dense, tickets = by_role(runs(tmp_path))
    assert len(dense) == 2 and len(tickets) == 2
    assert len({r.data.tags["lth.family"] for r in dense}) == 1
    folder = next((tmp_path / "reports").iterdir())
    with (folder / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["kind"], r["scope"], r["seeds"]) for r in rows] == [("ticket", "lamp", "2")]  # one cell, two seeds
    assert "2 seeds" in (folder / "report.md").read_text()
