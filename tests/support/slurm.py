"""The SLURM tests' command line, and what they read back: MLflow runs and artifacts on a server, sacct."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

# One CPU and 1 GB per job so the single test node schedules them; 4 GPUs each, as the seed's jobs.
SLURM = ["cluster=slurm", "tracking=server", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
         "hydra.launcher.partition=low", "lth.verbose=2"]
# What the SLURM tests check is scheduling, arrays and their outcomes, not the network: LeNet-300-100 starts and
# trains in a third of the tiny MobileNetV2's time (the preemption test keeps MobileNetV2: its resume is bit-exact).
FAST = ["model=lenet_300_100", "train.epochs=3", "data.train_limit=256"]


def command(uri: str, experiment: str, *overrides: str) -> list[str]:
    """`python -m lth.train -m` on the test cluster, tracked on the server `uri` in `experiment`."""
    return [sys.executable, "-m", "lth.train", "-m", *SLURM, f"tracking.uri={uri}", f"tracking.experiment={experiment}",
            *overrides]


def runs(uri: str, experiment: str) -> list:
    """Every active run of `experiment` on the tracking server `uri`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id], max_results=1000)


def sacct(job: str) -> list[dict[str, str]]:
    """The accounting of `job` (one row per array task): its id, state and allocated resources."""
    done = subprocess.run(["sacct", "-j", job, "-X", "-n", "-P", "-o", "JobID,State,AllocTRES"],
                          capture_output=True, text=True, check=True, timeout=60)
    return [dict(zip(("id", "state", "tres"), line.split("|"))) for line in done.stdout.splitlines() if line]


def npz(uri: str, run_id: str, path: str) -> dict[str, np.ndarray]:
    """An `.npz` artifact of a run on the tracking server `uri`."""
    from lth import tracking

    tracking.connect_uri(uri)
    return tracking.fetch(run_id, path, lambda file: dict(np.load(file)))
