"""Iterative pruning end to end: divergence ends a job, the reinit control, reuse of levels across jobs.

Every test shares one store and so one dense parent (3 epochs on all digits: test accuracy
about 0.6, well above the 0.2 a `chance` verdict needs); the tests use distinct IMP
configs, so their levels never mix.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.jobs import run_lth
from tests.support.store import artifact, by_role, runs

COMMON = ["train.epochs=3", "reset.epoch=1", "lth.verbose=0", "prune.method=imp"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("imp")


def _imp(store: Path, *args: str) -> str:
    done = run_lth(store, *COMMON, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def _levels(store: Path, rate: float, scope: str = "lamp", control: str = "none") -> dict[int, object]:
    """IMP level runs of one rate (their thresholds 1 - (1 - rate)^l identify it), by level."""
    found = {}
    for run in runs(store):
        tags = run.data.tags
        if tags["lth.role"] != "imp_level" or (tags["lth.scope"], tags["lth.control"]) != (scope, control):
            continue
        level = int(tags["lth.level"])
        if float(tags["lth.threshold"]) == pytest.approx(1 - (1 - rate) ** level, abs=1e-9):
            assert level not in found, f"two runs of level {level} at rate {rate}"
            found[level] = run
    return found


def _job(store: Path, rate: float, levels: int, scope: str = "lamp", control: str = "none"):
    """The IMP job run of one config (its `lth.threshold` tag is the threshold of its last level)."""
    threshold = 1 - (1 - rate) ** levels
    jobs = [r for r in by_role(runs(store))[1] if r.data.tags["lth.method"] == "imp"
            and (r.data.tags["lth.scope"], r.data.tags["lth.control"]) == (scope, control)
            and float(r.data.tags["lth.threshold"]) == pytest.approx(threshold, abs=1e-9)]
    assert len(jobs) == 1, f"{len(jobs)} IMP jobs at rate {rate} with {levels} levels"
    return jobs[0]


def _differing(loaded: dict[str, np.ndarray], logged: dict[str, np.ndarray]) -> list[str]:
    """Variables whose values differ (or that only one side has)."""
    unequal = [name for name in loaded if name in logged and not np.array_equal(loaded[name], logged[name])]
    return sorted(set(loaded) ^ set(logged)) + unequal


def _newest_result(store: Path) -> dict[str, object]:
    return json.loads(max(store.glob("outputs/*/*/result.json"), key=lambda p: p.stat().st_mtime).read_text())


# Global magnitude without a floor empties Conv_1 once about 94% of the weights are gone
# (measured): level 1 (80% pruned) still learns, level 2 (96%) sits at chance, level 3 must never run.
DIVERGING = ("prune.levels=3", "prune.rate=0.8", "prune.scope=global", "prune.min_density=0")


def test_a_diverged_level_ends_the_imp_job_there(store: Path) -> None:
    args = DIVERGING
    output = _imp(store, *args)
    levels = _levels(store, 0.8, scope="global")
    job = _job(store, 0.8, 3, scope="global")
    assert sorted(levels) == [1, 2], f"levels {sorted(levels)} exist; the job must stop at its diverged level 2"
    assert "lth.diverged" not in levels[1].data.tags and "test_accuracy" in levels[1].data.metrics
    assert levels[2].data.tags["lth.diverged"] == "chance" and "test_accuracy" not in levels[2].data.metrics
    assert "IMP level 3 of 3" not in output
    assert job.info.status == "FINISHED"
    assert (job.data.tags["lth.diverged"], job.data.tags["lth.diverged_level"]) == ("level 2", "2")
    assert "test_accuracy" not in job.data.metrics
    assert job.data.metrics["weights_remaining"] == levels[2].data.metrics["weights_remaining"]
    assert job.data.metrics["sparsity"] == levels[2].data.metrics["sparsity"]
    assert job.data.metrics["epochs_trained"] == 4  # two levels of epochs 1..3
    assert _newest_result(store)["test_accuracy"] is None
    assert "DIVERGED (no accuracy)" in output
    count = len(runs(store))
    again = _imp(store, *args)
    assert f"reusing finished ticket {job.info.run_id}" in again and "IMP level" not in again.replace(
        "reusing finished IMP level", "")
    assert len(runs(store)) == count and _newest_result(store)["test_accuracy"] is None


def test_imp_reinit_stops_at_its_own_diverged_level_or_where_its_ticket_stopped(store: Path) -> None:
    _imp(store, *DIVERGING, "prune.control=reinit")
    ticket, reinit = _levels(store, 0.8, scope="global"), _levels(store, 0.8, scope="global", control="reinit")
    assert sorted(ticket) == [1, 2]
    # A fresh initialisation may already sit at chance at level 1 (it did, measured); the control never
    # trains past its own first diverged level, nor past the ticket's last level (no mask exists there).
    diverged = [level for level in sorted(reinit) if "lth.diverged" in reinit[level].data.tags]
    last = diverged[0] if diverged else max(ticket)
    assert sorted(reinit) == list(range(1, last + 1))
    for level in reinit:
        mask, reinit_mask = artifact(store, ticket[level], "mask.npz"), artifact(store, reinit[level], "mask.npz")
        assert all(np.array_equal(reinit_mask[n], mask[n]) for n in mask)
    job = _job(store, 0.8, 3, scope="global", control="reinit")
    assert job.info.status == "FINISHED" and job.data.tags["lth.last_level"] == str(last)
    assert "test_accuracy" not in job.data.metrics and _newest_result(store)["test_accuracy"] is None
    if diverged:
        assert (job.data.tags["lth.diverged"], job.data.tags["lth.diverged_level"]) == (f"level {last}", str(last))
    else:
        assert "lth.diverged" not in job.data.tags and job.data.tags["lth.ticket_diverged_level"] == str(last)


def test_imp_jobs_of_any_length_share_levels_and_load_their_own_last_level(store: Path) -> None:
    import mlflow

    import lth
    from lth.training.models import snapshot

    _imp(store, "prune.levels=1", "prune.rate=0.2")
    first = _levels(store, 0.2)
    longer = _imp(store, "prune.levels=3", "prune.rate=0.2")  # trains only the levels the shorter job lacks
    assert f"reusing finished IMP level {first[1].info.run_id}" in longer
    assert "IMP level 1 of 3" not in longer and "IMP level 2 of 3" in longer and "IMP level 3 of 3" in longer
    levels = _levels(store, 0.2)
    assert sorted(levels) == [1, 2, 3] and levels[1].info.run_id == first[1].info.run_id
    shorter = _imp(store, "prune.levels=2", "prune.rate=0.2")  # a new job whose levels are all the longer one's
    for level in (1, 2):
        assert f"reusing finished IMP level {levels[level].info.run_id}" in shorter
    assert "IMP level 1 of 2" not in shorter and "IMP level 2 of 2" not in shorter  # nothing trained
    assert sorted(_levels(store, 0.2)) == [1, 2, 3]
    job = _job(store, 0.2, 2)
    assert job.info.status == "FINISHED" and levels[2].data.tags["mlflow.parentRunId"] != job.info.run_id
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    final = lth.load_ticket(job.info.run_id)
    assert final.run_id == levels[2].info.run_id
    mask, logged = artifact(store, levels[2], "mask.npz"), artifact(store, levels[2], "weights/final.npz")
    assert sorted(final.masks) == sorted(mask) and all(np.array_equal(final.masks[n], mask[n]) for n in mask)
    assert _differing(snapshot(final.model), logged) == []
    start = lth.load_ticket(job.info.run_id, weights="start")
    assert _differing(snapshot(start.model), artifact(store, levels[2], "weights/start.npz")) == []


def test_imp_reinit_keeps_the_tickets_mask_at_every_level(store: Path) -> None:
    _imp(store, "prune.levels=2", "prune.rate=0.25", "prune.control=reinit")
    ticket, reinit = _levels(store, 0.25), _levels(store, 0.25, control="reinit")
    assert sorted(ticket) == sorted(reinit) == [1, 2]  # the control trained the ticket it needs first
    ticket_job = _job(store, 0.25, 2)
    assert ticket_job.info.status == "FINISHED"
    assert _job(store, 0.25, 2, control="reinit").data.tags["lth.ticket_run_id"] == ticket_job.info.run_id
    dense = by_role(runs(store))[0][0]
    initial, rewound = (artifact(store, dense, f"checkpoints/epoch_00{k}.npz") for k in (0, 1))
    for level in (1, 2):
        mask, reinit_mask = artifact(store, ticket[level], "mask.npz"), artifact(store, reinit[level], "mask.npz")
        assert sorted(reinit_mask) == sorted(mask)
        differing = [n for n in mask if not np.array_equal(reinit_mask[n], mask[n])]
        assert not differing, f"level {level}: the reinit mask differs from the ticket's in {differing[:5]}"
        start = artifact(store, reinit[level], "weights/start.npz")
        for name in mask:
            kernel = start[f"{name}/kernel"]
            assert np.count_nonzero(kernel[~mask[name]]) == 0
            assert not np.array_equal(kernel, initial[f"{name}/kernel"] * mask[name]), f"{name}: dense initialisation"
            assert not np.array_equal(kernel, rewound[f"{name}/kernel"] * mask[name]), f"{name}: dense epoch 1"
