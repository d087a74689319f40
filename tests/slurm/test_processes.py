"""One ticket trained by a real 2-task SLURM job (`hydra.launcher.tasks_per_node=2`), one fake GPU per task.

The tasks form one JAX run (`jax.distributed` reads SLURM's variables; the collectives run
on the CPU through gloo). LeNet-300-100 has no BatchNorm, so the 2-process run must equal a
1-process run of the same cell to float rounding (the bound of the 4-device test).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.jobs import lth_env
from tests.support.slurm import SLURM, npz, runs, sacct

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster"), pytest.mark.timeout(1500)]
CELL = ["train.backend=jax", "model=lenet_300_100", "train.epochs=2", "reset.epoch=1", "prune.threshold=0.8",
        "prune.scope=layer"]
TWO_TASKS = ["hydra.launcher.tasks_per_node=2", "hydra.launcher.gpus_per_node=2", "hydra.launcher.gpus_per_task=1"]


def test_a_two_task_job_trains_one_ticket_equal_to_one_process(tmp_path: Path, tracking_server: str,
                                                               experiment: str) -> None:  # noqa: F811
    command = [sys.executable, "-m", "lth.train", "-m", *SLURM, *TWO_TASKS, f"tracking.uri={tracking_server}",
               f"tracking.experiment={experiment}", *CELL]
    done = subprocess.run(command, cwd=tmp_path, env=lth_env(), capture_output=True, text=True, timeout=1200)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]

    all_runs = runs(tracking_server, experiment)
    dense = [r for r in all_runs if r.data.tags["lth.role"] == "dense"]
    tickets = [r for r in all_runs if r.data.tags["lth.role"] == "ticket"]
    assert len(dense) == 1 and len(tickets) == 1  # process 1 logged nothing of its own
    assert all(r.info.status == "FINISHED" and r.data.tags["lth.processes"] == "2" for r in all_runs)
    assert dense[0].data.tags["lth.replicas"] == "2"  # devices of both processes
    from mlflow.tracking import MlflowClient

    history = MlflowClient(tracking_server).get_metric_history(tickets[0].info.run_id, "val_loss")
    assert [m.step for m in history] == [2]  # one set of metrics: epoch 2 once, not once per process

    # Both jobs ran their step as 2 tasks, each task with its own fake GPU.
    job = tickets[0].data.tags["lth.slurm_job_id"]
    steps = subprocess.run(["sacct", "-j", job, "-n", "-P", "-o", "JobID,NTasks"], capture_output=True, text=True,
                           check=True, timeout=60).stdout
    assert f"{job}.0|2" in steps, steps
    assert "gres/gpu=2" in sacct(job)[0]["tres"]
    logs = "".join(p.read_text() for p in tmp_path.glob("multirun/*/*/.submitit/*/*_log.err"))
    visible = set(re.findall(r"process (\d) of 2 joined its run: .*CUDA_VISIBLE_DEVICES=(\S+)\)", logs))
    assert {index for index, _ in visible} == {"0", "1"}, logs[-3000:]
    assert all("," not in devices for _, devices in visible)  # one GPU per task

    # The same cell in one process (another experiment, its own state).
    twin = subprocess.run([sys.executable, "-m", "lth.train", "tracking=server", f"tracking.uri={tracking_server}",
                           f"tracking.experiment={experiment}-one", "lth.state_dir=.lth-one", "lth.verbose=0", *CELL],
                          cwd=tmp_path, env=lth_env(), capture_output=True, text=True, timeout=900)
    assert twin.returncode == 0, twin.stderr[-3000:]
    one = next(r for r in runs(tracking_server, f"{experiment}-one") if r.data.tags["lth.role"] == "ticket")
    two_weights = npz(tracking_server, tickets[0].info.run_id, "weights/final.npz")
    one_weights = npz(tracking_server, one.info.run_id, "weights/final.npz")
    masks = npz(tracking_server, tickets[0].info.run_id, "mask.npz")
    assert max(float(np.max(np.abs(two_weights[path] - value))) for path, value in one_weights.items()) <= 2e-7
    assert sum(int(np.count_nonzero(two_weights[f"{name}/kernel"][~mask])) for name, mask in masks.items()) == 0
    assert abs(tickets[0].data.metrics["test_accuracy"] - one.data.metrics["test_accuracy"]) <= 1e-6
