"""`tracking=server`: lth's retry settings decide how MLflow's client rides out a failing server.

MLflow's own defaults (7 retries, backoff factor 2, up to 1 s of jitter) would ride out every
failure these tests make, so each test sets values that differ from them and checks what only
those values explain: the number of attempts of one request, seen by a proxy in front of a real
`mlflow server`, and the waits between them (urllib3: none before the first retry, then
factor * 2^(n-1) seconds before retry n).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lth.validation.validate import ConfigError
from tests.support.flaky_proxy import Exchange, FlakyProxy, log_batch_with_metric
from tests.support.jobs import lth_env
from tests.support.mlflow_server import MlflowServer, start_mlflow_server

JOB = ["prune.threshold=0.5", "reset.epoch=1", "train.epochs=3", "data.train_limit=128", "lth.verbose=0"]
FAILURES = 3  # the proxy answers 503 to this many attempts of the first epoch's metrics
BACKOFF = 1  # seconds; MLflow's default is 2, so a wait of 2 * BACKOFF before the second retry is lth's doing
SLACK_S = 1.5  # a wait may run this much over its backoff (connecting, sending, a busy CPU), never under; < 2 * BACKOFF


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real `mlflow server` on 127.0.0.1 shared by the tests that never stop it (one experiment each)."""
    started = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield started
    started.stop(signal.SIGKILL)  # nothing left to keep, and a graceful stop takes seconds


def _job(cwd: Path, uri: str, experiment: str, retries: int) -> list[str]:
    return [sys.executable, "-m", "lth.train", "tracking=server", f"tracking.uri={uri}",
            f"tracking.experiment={experiment}", f"tracking.http_retries={retries}",
            f"tracking.http_backoff_factor={BACKOFF}", "tracking.http_backoff_jitter_s=0", *JOB]


def _attempts(exchanges: list[Exchange], first: Exchange) -> list[Exchange]:
    """Every attempt of the request `first` is one of: the same method, path and body, one after the other."""
    same = [i for i, e in enumerate(exchanges) if (e.method, e.path, e.body) == (first.method, first.path, first.body)]
    assert same == list(range(same[0], same[0] + len(same))), "another request came between two attempts"
    return [exchanges[i] for i in same]


def _waits(attempts: list[Exchange]) -> list[float]:
    return [later.arrived - earlier.arrived for earlier, later in zip(attempts, attempts[1:])]


def _backoffs(count: int) -> list[float]:
    """urllib3's wait before retry n = 1..count: none before the first, then BACKOFF * 2^(n-1)."""
    return [0.0 if n == 1 else BACKOFF * 2 ** (n - 1) for n in range(1, count + 1)]


def _waited_as_configured(waits: list[float]) -> bool:
    return all(backoff <= wait < backoff + SLACK_S for wait, backoff in zip(waits, _backoffs(len(waits))))


def _runs(client: object, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def test_a_fractional_backoff_factor_is_refused_not_truncated(monkeypatch: pytest.MonkeyPatch) -> None:
    from lth import tracking

    for variable in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                     "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(variable, "unset")  # recorded, so whatever the call sets is undone after the test
        monkeypatch.delenv(variable)
    # MLflow reads the factor as an integer: 0.3 must not silently become 0 (no backoff at all).
    with pytest.raises(ConfigError, match=r"tracking\.http_backoff_factor must be a whole number of seconds"):
        tracking.retry_transient_errors({"http_retries": 3, "http_backoff_factor": 0.3})
    with pytest.raises(ConfigError, match=r"tracking\.http_retries must be an integer in \[0, 10\]"):
        tracking.retry_transient_errors({"http_retries": 11, "http_backoff_factor": 1})
    tracking.retry_transient_errors({"http_retries": 3, "http_backoff_factor": 1.0, "http_backoff_jitter_s": 0.25,
                                     "http_timeout_s": 30})
    assert {name: os.environ[f"MLFLOW_HTTP_REQUEST_{name}"] for name in ("MAX_RETRIES", "BACKOFF_FACTOR",
                                                                          "BACKOFF_JITTER", "TIMEOUT")} == {
        "MAX_RETRIES": "3", "BACKOFF_FACTOR": "1", "BACKOFF_JITTER": "0.25", "TIMEOUT": "30"}


def test_a_request_is_retried_as_configured_and_the_job_finishes(server: MlflowServer, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    with FlakyProxy(server.port, log_batch_with_metric("loss"), failures=FAILURES, answer=503, lifetime_s=600) as proxy:
        done = subprocess.run(_job(tmp_path, proxy.url, "retried", retries=FAILURES), cwd=tmp_path, env=lth_env(),
                              capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    exchanges = proxy.exchanges
    attempts = _attempts(exchanges, next(e for e in exchanges if e.status == 503))
    assert [a.status for a in attempts] == [503] * FAILURES + [200]  # one request, retried until it passed
    waits = _waits(attempts)
    assert _waited_as_configured(waits), f"waits {waits}, configured {_backoffs(len(waits))}"
    client = MlflowClient(server.uri)
    runs = _runs(client, "retried")
    assert sorted((r.data.tags["lth.role"], r.info.status) for r in runs) == [("dense", "FINISHED"),
                                                                               ("ticket", "FINISHED")]
    dense = next(r for r in runs if r.data.tags["lth.role"] == "dense")
    assert [m.step for m in client.get_metric_history(dense.info.run_id, "loss")] == [1, 2, 3]  # each epoch once


def test_fewer_retries_than_failures_fail_the_job_on_that_request(server: MlflowServer, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    retries = FAILURES - 1  # MLflow's default of 7 would ride the failures out
    with FlakyProxy(server.port, log_batch_with_metric("loss"), failures=FAILURES, answer=503, lifetime_s=600) as proxy:
        done = subprocess.run(_job(tmp_path, proxy.url, "given_up", retries=retries), cwd=tmp_path, env=lth_env(),
                              capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode != 0
    assert "runs/log-batch" in done.stderr and "too many 503 error responses" in done.stderr, done.stderr[-3000:]
    exchanges = proxy.exchanges
    attempts = _attempts(exchanges, next(e for e in exchanges if e.status == 503))
    assert [a.status for a in attempts] == [503] * (retries + 1)  # the first try and `retries` retries, then it gave up
    waits = _waits(attempts)
    assert _waited_as_configured(waits), f"waits {waits}, configured {_backoffs(len(waits))}"
    client = MlflowClient(server.uri)
    [dense] = _runs(client, "given_up")
    assert dense.info.status == "FAILED" and "too many 503 error responses" in dense.data.tags["lth.error"]
    assert client.get_metric_history(dense.info.run_id, "loss") == []


@pytest.mark.slow
def test_a_job_survives_the_tracking_server_going_down(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    server = start_mlflow_server(tmp_path / "server")
    # No scripted failure: while the server is down the proxy drops every connection, as a dying server does.
    with FlakyProxy(server.port, lifetime_s=900) as proxy:
        job = subprocess.Popen(_job(tmp_path, proxy.url, "outage", retries=8), cwd=tmp_path, env=lth_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            epoch_logged = log_batch_with_metric("loss")
            deadline = time.monotonic() + 300
            while not any(e.status == 200 and epoch_logged(e.method, e.path, e.body) for e in proxy.exchanges):
                assert job.poll() is None and time.monotonic() < deadline, "the dense run never logged an epoch"
                time.sleep(0.2)
            server.stop()  # the server goes down in the middle of the dense run...
            deadline = time.monotonic() + 120
            while sum(e.status is None for e in proxy.exchanges) < 3:  # ...long enough for 3 attempts to be dropped
                assert job.poll() is None and time.monotonic() < deadline, "no request met the outage"
                time.sleep(0.2)
            # ...and comes back on the same store; its old port may have been taken meanwhile, the job sees the proxy's
            server = start_mlflow_server(server.folder)
            proxy.forward_to(server.port)
            output, _ = job.communicate(timeout=600)
        finally:
            if job.poll() is None:
                job.kill()
                job.wait(timeout=60)
            server.stop()
    assert job.returncode == 0, output[-3000:]
    exchanges = proxy.exchanges
    attempts = _attempts(exchanges, next(e for e in exchanges if e.status is None))
    statuses = [a.status for a in attempts]
    assert statuses[-1] == 200 and set(statuses[:-1]) == {None} and len(statuses) >= 4, statuses
    waits = _waits(attempts)
    assert _waited_as_configured(waits), f"waits {waits}, configured {_backoffs(len(waits))}"
    client = MlflowClient(server.store_uri)  # the server is stopped: read its store directly
    runs = _runs(client, "outage")
    assert sorted((r.data.tags["lth.role"], r.info.status) for r in runs) == [("dense", "FINISHED"),
                                                                               ("ticket", "FINISHED")]
    dense = next(r for r in runs if r.data.tags["lth.role"] == "dense")
    assert [m.step for m in client.get_metric_history(dense.info.run_id, "loss")] == [1, 2, 3]  # none lost, none twice
