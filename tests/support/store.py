"""Reading what `python -m lth.train` left in the default MLflow store of a folder (sqlite and ./mlruns)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
