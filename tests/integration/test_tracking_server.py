"""`tracking=server`: a job rides out an MLflow server that goes down and comes back, losing nothing."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.helpers import FAST, lth_env


def _start_server(folder: Path, port: int) -> subprocess.Popen:
    mlflow = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--artifacts-destination", str(folder / "art")],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)


def _stop(server: subprocess.Popen) -> None:
    import os
    import signal

    os.killpg(server.pid, signal.SIGTERM)  # the server and its worker processes
    server.wait(timeout=30)


def _runs(client: object) -> list:
    found = client.get_experiment_by_name("lth")
    return [] if found is None else client.search_runs([found.experiment_id])


@pytest.mark.slow
def test_a_job_survives_the_tracking_server_going_down(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    server = _start_server(tmp_path, port)
    job = subprocess.Popen([sys.executable, "-m", "lth.train", "tracking=server", f"tracking.uri={uri}",
                            "tracking.http_backoff_factor=1", "prune.threshold=0.5", "reset.epoch=1", *FAST],
                           cwd=tmp_path, env=lth_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = MlflowClient(uri)
    deadline = time.monotonic() + 300
    while not any(m.step >= 1 for run in _runs(client) for m in client.get_metric_history(run.info.run_id, "loss")):
        assert job.poll() is None and time.monotonic() < deadline, "the dense run never logged an epoch"
        time.sleep(0.5)
    _stop(server)  # the server goes down in the middle of the dense run...
    time.sleep(8)
    server = _start_server(tmp_path, port)  # ...and comes back on the same store
    try:
        output, _ = job.communicate(timeout=600)
        assert job.returncode == 0, output[-3000:]
        runs = _runs(client)
        assert sorted(r.data.tags["lth.role"] for r in runs) == ["dense", "ticket"]
        assert all(r.info.status == "FINISHED" for r in runs)
        dense = next(r for r in runs if r.data.tags["lth.role"] == "dense")
        assert sorted({m.step for m in client.get_metric_history(dense.info.run_id, "loss")}) == [1, 2, 3]  # none lost
    finally:
        _stop(server)
