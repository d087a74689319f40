"""Shared fixtures: composing the real config tree and small models."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.paths import CONFIG_DIR

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# The slow modules that take longest (2-5 minutes of one worker each, measured on 2 cores), collected first:
# `make test-slow` hands modules to its workers in collection order, so the short ones fill in around these
# rather than one of these starting last and running alone while the other workers sit idle.
LONGEST_FIRST = ("test_stability.py", "test_spark_launcher.py", "test_layer_health.py", "test_sqlite_writers.py",
                 "test_backup_kill.py", "test_export.py", "test_data_parallel.py", "test_rewind_equivalence.py",
                 "test_tracking_server.py", "test_claims.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the modules of LONGEST_FIRST to the front, in that order; every other test keeps its place."""
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture
def compose() -> Iterator[Callable[..., object]]:
    """Compose `conf/train.yaml` with overrides, as `python -m lth.train` would."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        yield lambda *overrides: hydra_compose(config_name="train", overrides=list(overrides))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[object, str, str]]:
    """(MLflow client, experiment id, tracking URI) of a fresh SQLite store, set as MLflow's for the test."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from lth import tracking

    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.connect(uri, "lth")
    yield MlflowClient(), experiment_id, uri
    mlflow.set_tracking_uri(previous)
