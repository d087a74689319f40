"""`cluster=slurm` against a real slurmctld/slurmd: one array, GPUs allocated, preemption, cancellation."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tests.support.jobs import lth_env
from tests.support.slurm import FAST, command, npz, runs, sacct

# A sweep queues up to 7 jobs on the one test node (two run at once): the tests' own bounds on it go up to 1500 s.
pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster"), pytest.mark.timeout(1800)]
@contextmanager
def _sweep(cwd: Path, command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A sweep running in the background with its output in `log` (a file never fills and blocks it, as a pipe
    nobody reads can); killed at the end if it is still running, so a failed test leaves no sweep behind."""
    with log.open("wb") as output:
        sweep = subprocess.Popen(command, cwd=cwd, env=lth_env(), stdout=output, stderr=subprocess.STDOUT)
    try:
        yield sweep
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait(timeout=60)


def _wait_for_line(log: Path, pattern: str, sweep: subprocess.Popen[bytes], timeout: float) -> re.Match[str]:
    """The first match of `pattern` in the sweep's output, once it is there; fails if the sweep ends or time runs out."""
    deadline = time.monotonic() + timeout
    while not (found := re.search(pattern, log.read_text(errors="replace"))):  # the last character may be half-written
        assert sweep.poll() is None, f"the sweep ended without printing {pattern!r}:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no {pattern!r} in {timeout} s:\n{log.read_text()[-4000:]}"
        time.sleep(0.5)
    return found


def test_a_sweep_is_one_array_of_4_gpu_jobs_after_its_dense_parent(
    tmp_path: Path, tracking_server: str, experiment: str
) -> None:
    done = subprocess.run(command(tracking_server, experiment, "prune.threshold=0.5,0.8,0.9", "reset.epoch=0,1", *FAST),
                          cwd=tmp_path, env=lth_env(), capture_output=True, text=True, timeout=1500)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    dense_job = re.search(r"dense parent\(s\) first, as SLURM job\(s\) (\d+)", output).group(1)
    arrays = re.findall(r"lth: 6 ticket jobs in SLURM array (\d+)", output)
    assert len(arrays) == 1  # one sbatch --array for the whole sweep
    tasks = sacct(arrays[0])
    assert sorted(task["id"] for task in tasks) == [f"{arrays[0]}_{i}" for i in range(6)]
    assert all(task["state"] == "COMPLETED" and "gres/gpu=4" in task["tres"] for task in tasks), tasks
    assert sacct(dense_job)[0]["state"] == "COMPLETED"

    all_runs = runs(tracking_server, experiment)
    dense = [r for r in all_runs if r.data.tags["lth.role"] == "dense"]
    tickets = [r for r in all_runs if r.data.tags["lth.role"] == "ticket"]
    assert len(dense) == 1 and len(tickets) == 6
    assert all(r.info.status == "FINISHED" for r in all_runs)
    assert dense[0].data.tags["lth.slurm_job_id"] == dense_job
    assert sorted(r.data.tags["lth.slurm_job_id"] for r in tickets) == [f"{arrays[0]}_{i}" for i in range(6)]
    assert all(r.data.tags["mlflow.parentRunId"] == dense[0].info.run_id for r in tickets)
    assert "lth: 6 tickets finished" in output
    # The progress line, off a terminal: printed as the counts change, the last one when every task is back.
    progress = [line for line in output.splitlines() if line.startswith("lth: tickets ")]
    assert progress[-1] == "lth: tickets 6/6 done, 0 running, 0 pending, 0 failed", progress


def _node_gpus() -> int:
    """The GPUs the test node advertises (`Gres=gpu:N`)."""
    node = subprocess.run(["scontrol", "show", "node", "-o"], capture_output=True, text=True, check=True, timeout=60)
    return int(re.search(r"Gres=gpu:(\d+)", node.stdout).group(1))


def _wait_for_epoch(uri: str, experiment: str, epoch: int, timeout: float) -> str:
    """The ticket run's id once it has logged `epoch`."""
    from mlflow.tracking import MlflowClient

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ticket = next((r for r in runs(uri, experiment) if r.data.tags["lth.role"] == "ticket"), None)
        if ticket and any(m.step >= epoch for m in MlflowClient(uri).get_metric_history(ticket.info.run_id, "loss")):
            return ticket.info.run_id
        time.sleep(0.5)
    raise AssertionError(f"the ticket never reached epoch {epoch}")


def test_a_preempted_ticket_resumes_in_the_same_run_and_ends_as_if_never_stopped(
    tmp_path: Path, tracking_server: str, experiment: str
) -> None:
    cell = ["prune.threshold=0.5", "reset.epoch=1", "train.epochs=10", "data.train_limit=512"]
    log = tmp_path / "sweep.log"
    with _sweep(tmp_path, command(tracking_server, experiment, *cell), log) as sweep:
        run_id = _wait_for_epoch(tracking_server, experiment, 3, timeout=900)
        # A high-priority job that needs every GPU of the node preempts the ticket (partition low), however many
        # GPUs the node has beside the ticket's 4.
        subprocess.run(["sbatch", "-p", "high", f"--gpus-per-node={_node_gpus()}", "-J", "preemptor", "--wrap",
                        "sleep 1"], check=True, timeout=60)
        assert sweep.wait(timeout=900) == 0, log.read_text()[-4000:]

    tickets = [r for r in runs(tracking_server, experiment) if r.data.tags["lth.role"] == "ticket"]
    assert [r.info.run_id for r in tickets] == [run_id]  # ONE run, continued after the requeue
    ticket = tickets[0]
    assert ticket.info.status == "FINISHED" and ticket.data.tags["lth.slurm_restarts"] == "1"
    logs = "".join(p.read_text() for p in tmp_path.glob("multirun/*/*/.submitit/*/*_log.*"))
    resumed = re.search(r"resumed from the backup of epoch (\d+); training epochs", logs)
    assert resumed and int(resumed.group(1)) >= 3, logs[-3000:]

    # The same ticket, never interrupted (a local run in another experiment, same seed).
    twin = subprocess.run([sys.executable, "-m", "lth.train", "tracking=server", f"tracking.uri={tracking_server}",
                           f"tracking.experiment={experiment}-twin", "lth.state_dir=.lth-twin", *cell],
                          cwd=tmp_path, env=lth_env(), capture_output=True, text=True, timeout=900)
    assert twin.returncode == 0, twin.stderr[-3000:]
    straight = next(r for r in runs(tracking_server, f"{experiment}-twin") if r.data.tags["lth.role"] == "ticket")
    # Tolerance 0: the resumed run is bit-identical (weights, optimizer state, epoch and data order restored).
    assert ticket.data.metrics["test_accuracy"] == straight.data.metrics["test_accuracy"]
    assert ticket.data.metrics["test_loss"] == straight.data.metrics["test_loss"]
    resumed_weights = npz(tracking_server, ticket.info.run_id, "weights/final.npz")
    straight_weights = npz(tracking_server, straight.info.run_id, "weights/final.npz")
    for path, value in straight_weights.items():
        np.testing.assert_array_equal(resumed_weights[path], value, err_msg=path)


def test_a_cancelled_task_is_reported_failed_and_the_others_are_intact(
    tmp_path: Path, tracking_server: str, experiment: str
) -> None:
    log = tmp_path / "sweep.log"
    with _sweep(tmp_path, command(tracking_server, experiment, "prune.threshold=0.5,0.8", "reset.epoch=1", *FAST),
                log) as sweep:
        array = _wait_for_line(log, r"ticket jobs in SLURM array (\d+)", sweep, timeout=900).group(1)
        subprocess.run(["scancel", f"{array}_1"], check=True, timeout=60)
        assert sweep.wait(timeout=900) != 0
    output = log.read_text()
    assert re.search(rf"lth: job 1 FAILED: RuntimeError\('SLURM job {array}_1 ended CANCELLED.*log \S+_log\.err", output)
    assert "1 of 2 jobs did not finish" in output
    assert "lth: tickets 1/2 done, 0 running, 0 pending, 1 failed" in output.splitlines()
    tickets = [r for r in runs(tracking_server, experiment) if r.data.tags["lth.role"] == "ticket"]
    finished = [r for r in tickets if r.info.status == "FINISHED"]
    assert [r.data.tags["lth.threshold"] for r in finished] == ["0.5"]
    assert finished[0].data.tags["lth.slurm_job_id"] == f"{array}_0"
