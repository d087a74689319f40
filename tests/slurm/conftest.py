"""Fixtures of the SLURM tests: a running cluster (tools/slurm_localhost.sh) and an MLflow server.

Run them alone with `make test-slurm` after `sudo tools/slurm_localhost.sh start`. Without a
cluster they are skipped, unless LTH_REQUIRE_SLURM=1 (as in CI), where that is an error.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mlflow_server import start_mlflow_server


def _cluster_up() -> bool:
    try:
        return subprocess.run(["scontrol", "ping"], capture_output=True, timeout=10).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """Skip (or fail, under LTH_REQUIRE_SLURM=1) when no SLURM controller answers."""
    if not _cluster_up():
        message = "no SLURM cluster: run `tools/slurm_localhost.sh start` as root"
        if os.environ.get("LTH_REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of a real `mlflow server`: $LTH_TEST_TRACKING_URI, or one started here on 127.0.0.1."""
    if uri := os.environ.get("LTH_TEST_TRACKING_URI"):
        assert _healthy(uri), f"LTH_TEST_TRACKING_URI={uri} does not answer /health"
        yield uri
        return
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield server.uri
    server.stop()


@pytest.fixture
def experiment(tmp_path: Path) -> str:
    """A fresh experiment name: the tracking server may be shared by several test sessions."""
    return f"{tmp_path.name}-{uuid.uuid4().hex[:8]}"
