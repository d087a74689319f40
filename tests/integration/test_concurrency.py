"""The dense parent is trained exactly once when several jobs start at the same time."""

from __future__ import annotations

from pathlib import Path

from tests.support.jobs import start_lth
from tests.support.store import by_role, runs

THRESHOLDS = (0.3, 0.5, 0.7, 0.9)


def test_four_concurrent_jobs_train_one_dense_parent(tmp_path: Path) -> None:
    args = ("reset.epoch=1", "train.epochs=2", "data.train_limit=128", "lth.verbose=0")
    logs = [tmp_path / f"job{i}.log" for i in range(len(THRESHOLDS))]
    processes = [start_lth(tmp_path, f"prune.threshold={t}", *args, log=log) for t, log in zip(THRESHOLDS, logs)]
    codes = [process.wait(timeout=900) for process in processes]
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0, 0, 0], "\n\n".join(out[-2000:] for out in outputs)
    assert sum("starting dense parent" in out for out in outputs) == 1
    assert any("waiting for dense parent" in out for out in outputs)  # the jobs really overlapped
    assert sum("reusing finished dense parent" in out for out in outputs) == 3
    all_runs = runs(tmp_path)
    dense, tickets = by_role(all_runs)
    assert len(dense) == 1 and len(tickets) == 4
    assert {r.info.status for r in all_runs} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in tickets} == {dense[0].info.run_id}
