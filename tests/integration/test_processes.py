"""One run over several processes on this machine (JAX, gloo on the CPU), as SLURM or Spark start them.

The processes are started the way the Spark launcher starts its barrier tasks: with
LTH_PROCESS_COUNT, LTH_PROCESS_ID and LTH_COORDINATOR in their environment. LeNet-300-100
has no BatchNorm, so 2 processes must equal 1 at the same global batch and seed. The val
and test splits (63 and 65 images) do not split evenly over 2 devices: the last evaluation
batch is padded with rows of weight 0, and accuracy and loss must still be those of 1 device.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.jobs import lth_env, run_lth
from tests.support.store import artifact, by_role, runs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
CELL = ["train.backend=jax", "model=lenet_300_100", "data=synthetic", "data.num_classes=10", "data.train_size=256",
        "data.val_size=63", "data.test_size=65", "train.epochs=2", "reset.epoch=1", "prune.threshold=0.8",
        "prune.scope=layer", "lth.verbose=0"]


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _in_processes(cwd: Path, count: int, *overrides: str) -> list[subprocess.CompletedProcess[str]]:
    """`python -m lth.train` as `count` processes of one run; every process's outcome."""
    coordinator = f"127.0.0.1:{_port()}"
    started = []
    for index in range(count):
        env = {**lth_env(), "LTH_PROCESS_COUNT": str(count), "LTH_PROCESS_ID": str(index),
               "LTH_COORDINATOR": coordinator}
        started.append(subprocess.Popen([sys.executable, "-m", "lth.train", f"hydra.run.dir=outputs/process{index}",
                                         *overrides], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True))
    finished = []
    for process in started:
        stdout, stderr = process.communicate(timeout=900)
        finished.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return finished


def _compare(left: Path, right: Path) -> tuple[float, dict[str, float], dict[str, float]]:
    """(max weight difference of the tickets, left's ticket metrics, right's)."""
    (_, [one]), (_, [two]) = by_role(runs(left)), by_role(runs(right))
    a, b = artifact(left, one, "weights/final.npz"), artifact(right, two, "weights/final.npz")
    return max(float(np.max(np.abs(a[path] - b[path]))) for path in a), one.data.metrics, two.data.metrics


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("one")
    done = run_lth(store, *CELL)
    assert done.returncode == 0, done.stderr[-3000:]
    return store


def test_two_processes_train_one_ticket_equal_to_one_process(one_process: Path, tmp_path: Path) -> None:
    outcomes = _in_processes(tmp_path, 2, *CELL)
    assert all(done.returncode == 0 for done in outcomes), "\n".join(d.stderr[-3000:] for d in outcomes)
    dense, tickets = by_role(runs(tmp_path))
    assert len(dense) == 1 and len(tickets) == 1  # process 1 claimed and logged nothing
    assert tickets[0].data.tags["lth.processes"] == "2"
    difference, one, two = _compare(one_process, tmp_path)
    assert difference <= 2e-7  # same global batch and seed; only the summation order differs
    assert two["test_accuracy"] == pytest.approx(one["test_accuracy"], abs=1e-6)  # padding rows do not count
    assert two["test_loss"] == pytest.approx(one["test_loss"], rel=1e-5)  # the loss is the true mean again
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-5)
    masks = artifact(tmp_path, tickets[0], "mask.npz")
    final = artifact(tmp_path, tickets[0], "weights/final.npz")
    assert sum(int(np.count_nonzero(final[f"{name}/kernel"][~mask])) for name, mask in masks.items()) == 0
    # Each process fed its half of every batch: feeding whole batches (duplicated rows) gives the same mean
    # gradient to a BatchNorm-free model, so the weights above cannot tell.
    for index, done in enumerate(outcomes):
        output = done.stdout + done.stderr
        assert f"process {index} of 2 feeds 32 of every 64 training images" in output, output[-2000:]
    # Both processes print process 0's result; only process 0 writes result.json.
    assert all("test accuracy" in done.stdout for done in outcomes)
    assert (tmp_path / "outputs/process0/result.json").is_file()
    assert not (tmp_path / "outputs/process1/result.json").exists()


def test_jax_data_parallel_evaluates_splits_that_do_not_divide_over_its_devices(one_process: Path,
                                                                                tmp_path: Path) -> None:
    # One process, 2 host devices: before padding, evaluating 63 images failed (IndivisibleError).
    env = {**lth_env(), "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, "-m", "lth.train", *CELL, "train.devices=2"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (dense,), _ = by_role(runs(tmp_path))
    assert dense.data.tags["lth.replicas"] == "2"  # train.devices=2 was heeded: the padding path ran
    difference, one, two = _compare(one_process, tmp_path)
    assert difference <= 2e-7
    assert two["test_accuracy"] == pytest.approx(one["test_accuracy"], abs=1e-6)
    assert two["test_loss"] == pytest.approx(one["test_loss"], rel=1e-5)


def test_a_batch_that_does_not_split_over_the_processes_is_refused_in_one_line(tmp_path: Path) -> None:
    outcomes = _in_processes(tmp_path, 2, *CELL, "train.batch_size=63")
    assert all(done.returncode != 0 for done in outcomes)
    last = outcomes[0].stderr.strip().splitlines()[-1]
    assert last == ("lth: error: train.batch_size=63 must split evenly over the run's 2 devices (JAX data parallel): "
                    "use a multiple of 2")
    assert not (tmp_path / "mlflow.db").exists() or not runs(tmp_path)
    assert os.environ.get("LTH_PROCESS_COUNT") is None  # the test's own process is not part of a group
