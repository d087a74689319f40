"""`cluster=spark` on `local-cluster[2,1,2048]`: two real executor JVMs, one barrier task each, one JAX run.

LeNet-300-100 has no BatchNorm, so the run over 2 barrier tasks must equal one process's
run of the same cell to float rounding (the bound of the 4-device test).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.jobs import run_lth, start_lth
from tests.support.store import artifact, by_role, runs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
CELL = ["model=lenet_300_100", "reset.epoch=1", "prune.threshold=0.8", "prune.scope=layer", "lth.verbose=2"]
SPARK = ["cluster=spark", "spark.master=local-cluster[2,1,2048]", "spark.workers=2"]


def _leaked(weights: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> int:
    return sum(int(np.count_nonzero(weights[f"{name}/kernel"][~mask])) for name, mask in masks.items())


def test_two_barrier_tasks_train_one_ticket_equal_to_one_process_and_a_rerun_reuses_it(tmp_path: Path) -> None:
    spark_dir, one_dir = tmp_path / "spark", tmp_path / "one"
    spark_dir.mkdir(), one_dir.mkdir()
    done = run_lth(spark_dir, *SPARK, "train.epochs=2", *CELL)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    dense, tickets = by_role(runs(spark_dir))
    assert len(dense) == 1 and len(tickets) == 1  # task 1 logged nothing of its own
    assert all(r.info.status == "FINISHED" and r.data.tags["lth.processes"] == "2" for r in dense + tickets)
    assert tickets[0].data.tags["lth.cluster"] == "spark" and dense[0].data.tags["lth.replicas"] == "2"

    alone = run_lth(one_dir, "train.backend=jax", "train.epochs=2", *CELL)
    assert alone.returncode == 0, alone.stderr[-3000:]
    one = by_role(runs(one_dir))[1][0]
    two_weights = artifact(spark_dir, tickets[0], "weights/final.npz")
    one_weights = artifact(one_dir, one, "weights/final.npz")
    assert max(float(np.max(np.abs(two_weights[p] - v))) for p, v in one_weights.items()) <= 2e-7
    assert _leaked(two_weights, artifact(spark_dir, tickets[0], "mask.npz")) == 0
    assert abs(tickets[0].data.metrics["test_accuracy"] - one.data.metrics["test_accuracy"]) <= 1e-6

    again = run_lth(spark_dir, *SPARK, "train.epochs=2", *CELL)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert f"reused {tickets[0].info.run_id[:12]}" in again.stdout
    assert len(runs(spark_dir)) == 2


def _executors(root: int) -> list[int]:
    """Pids of the Spark executor JVMs under process `root` (local-cluster starts them as its children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            try:
                if b"CoarseGrainedExecutorBackend" in (Path("/proc") / str(child) / "cmdline").read_bytes():
                    found.append(child)
            except OSError:
                continue
            todo.append(child)
    return found


def _ticket_epoch(store: Path) -> int:
    """The last epoch the ticket run logged, 0 before it has one."""
    from mlflow.tracking import MlflowClient

    if not (store / ".lth" / "backup").is_dir():  # until a run trains, the job may still be creating the store
        return 0
    ticket = next(iter(by_role(runs(store))[1]), None)
    if ticket is None:
        return 0
    return max((m.step for m in MlflowClient(f"sqlite:///{store / 'mlflow.db'}").get_metric_history(
        ticket.info.run_id, "loss")), default=0)


def test_a_lost_executor_fails_the_stage_in_one_line_and_a_rerun_resumes_from_the_last_epoch(tmp_path: Path) -> None:
    cell = [*SPARK, "train.epochs=40", *CELL]
    sweep = start_lth(tmp_path, *cell, log=tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 600
        while _ticket_epoch(tmp_path) < 3:
            assert sweep.poll() is None, (tmp_path / "first.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "the ticket never reached epoch 3"
            time.sleep(0.5)
        executors = _executors(sweep.pid)
        assert len(executors) == 2, executors
        os.kill(executors[0], signal.SIGKILL)  # as a node that dies
        assert sweep.wait(timeout=600) != 0
    finally:
        if sweep.poll() is None:
            sweep.kill()
    output = (tmp_path / "first.log").read_text()
    failed = [line for line in output.splitlines() if line.startswith("lth: job 0 failed: ")]
    assert len(failed) == 1 and "the Spark barrier stage of 2 tasks failed" in failed[0], output[-4000:]
    assert "run the same command again: it resumes from the last finished epoch" in failed[0]
    stopped_at = _ticket_epoch(tmp_path)

    again = run_lth(tmp_path, *cell)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    dense, tickets = by_role(runs(tmp_path))
    assert len(dense) == 1 and len(tickets) == 1 and tickets[0].info.status == "FINISHED"  # the same run, resumed
    from mlflow.tracking import MlflowClient

    history = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(tickets[0].info.run_id, "loss")
    assert {m.step for m in history} == set(range(2, 41))  # every epoch of the ticket, in one run
    assert stopped_at >= 3
    # Resumed, not trained again from the start (that would log epochs 2..3 at least twice): at most the epoch the
    # kill interrupted, logged before its backup was written, appears twice.
    assert len(history) <= len(range(2, 41)) + 1, sorted(m.step for m in history)
    assert _leaked(artifact(tmp_path, tickets[0], "weights/final.npz"), artifact(tmp_path, tickets[0], "mask.npz")) == 0
