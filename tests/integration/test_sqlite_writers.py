"""Twelve jobs at once against the default SQLite store: one dense parent, twelve tickets, nothing lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.support.jobs import run_lth, start_lth
from tests.support.store import by_role, runs

pytestmark = pytest.mark.slow  # twelve TensorFlow processes (about 1.2 GB each): a few minutes on 2 cores

CELLS = [(threshold, reset) for threshold in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7) for reset in (0, 1)]
EPOCHS = 2


def test_twelve_concurrent_cells_on_sqlite_lose_no_run_and_no_metric(tmp_path: Path) -> None:
    args = (f"train.epochs={EPOCHS}", "data.train_limit=128", "lth.verbose=2")
    logs = [tmp_path / f"job{i}.log" for i in range(len(CELLS))]
    jobs = [start_lth(tmp_path, f"prune.threshold={t}", f"reset.epoch={k}", *args, log=log)
            for (t, k), log in zip(CELLS, logs)]
    codes = [job.wait(timeout=1800) for job in jobs]
    outputs = [log.read_text() for log in logs]
    assert codes == [0] * len(CELLS), "\n\n".join(out[-2000:] for out in outputs if "Traceback" in out)
    assert not [i for i, out in enumerate(outputs) if "database is locked" in out]
    dense, tickets = by_role(runs(tmp_path))
    assert len(dense) == 1 and len(tickets) == len(CELLS)
    assert {r.info.status for r in dense + tickets} == {"FINISHED"}
    assert sorted((float(r.data.tags["lth.threshold"]), int(r.data.tags["lth.reset_epoch"])) for r in tickets) == CELLS
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for ticket in tickets:  # every epoch's metrics of every ticket reached the store
        reset = int(ticket.data.tags["lth.reset_epoch"])
        for metric in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
            steps = [point.step for point in client.get_metric_history(ticket.info.run_id, metric)]
            assert steps == list(range(reset + 1, EPOCHS + 1)), (ticket.info.run_name, metric, steps)
        assert {"test_accuracy", "weights_remaining", "sparsity"} <= set(ticket.data.metrics)


def test_a_store_locked_past_mlflows_busy_timeout_fails_saying_to_use_a_server(tmp_path: Path) -> None:
    first = run_lth(tmp_path, "lth.verbose=0", "train.epochs=1", "data.train_limit=64", "prune.threshold=0.5",
                    "reset.epoch=0")  # creates the store, as the first job of a sweep does
    assert first.returncode == 0, first.stderr[-3000:]
    holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a writer that never lets go: no other connection can read or write
    try:
        done = run_lth(tmp_path, "lth.verbose=0", "train.epochs=1", "data.train_limit=64", "prune.threshold=0.6",
                       "reset.epoch=0", timeout=600)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert done.returncode != 0
    assert "database is locked); for many jobs at once log to an MLflow server instead: tracking=server" in done.stderr
