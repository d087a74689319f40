"""Running `python -m lth.train` as a user would, and reading what it left in MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

# Small enough for 2 CPU cores: 4 steps per epoch, 3 epochs.
FAST = ["train.epochs=3", "data.train_limit=256", "lth.verbose=2"]


def lth_env() -> dict[str, str]:
    """The caller's environment without MLflow settings, so the default store is used."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", PYTHONUNBUFFERED="1")
    return env


def run_lth(cwd: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run `python -m lth.train ARGS` in `cwd` and capture its output."""
    return subprocess.run([sys.executable, "-m", "lth.train", *args], cwd=cwd, env=lth_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def start_lth(cwd: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """Start `python -m lth.train ARGS` in the background, output to `log`."""
    handle = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "lth.train", *args], cwd=cwd, env=lth_env(),
                            stdout=handle, stderr=subprocess.STDOUT)


def runs(store_dir: Path) -> list:
    """Every active run of the `lth` experiment in the default store of `store_dir`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lth")
    return [] if experiment is None else client.search_runs([experiment.experiment_id], max_results=1000)


def artifact(store_dir: Path, run, path: str) -> dict[str, np.ndarray]:
    """Load an `.npz` artifact of a run straight from the default ./mlruns artifact store."""
    uri = run.info.artifact_uri
    root = Path(uri.removeprefix("file://")) if uri.startswith("file://") else store_dir / uri
    with np.load(root / path) as archive:
        return {name: archive[name] for name in archive.files}


def by_role(all_runs: list) -> tuple[list, list]:
    """Split runs into (dense parents, tickets) by their `lth.role` tag."""
    dense = [r for r in all_runs if r.data.tags["lth.role"] == "dense"]
    tickets = [r for r in all_runs if r.data.tags["lth.role"] == "ticket"]
    return dense, tickets
