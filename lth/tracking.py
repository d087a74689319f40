"""MLflow bookkeeping: the experiment, finding finished runs by identity, run lifecycle.

Runs are found by tags, not params: `lth.role` (dense or ticket) and `lth.key` (the
identity hash of lth.identity). Tickets carry `mlflow.parentRunId` = their dense
parent, which is how the MLflow UI groups them under it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import mlflow
from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient

from lth.validate import ConfigError

ROLE_TAG = "lth.role"
KEY_TAG = "lth.key"
DENSE_HASH_TAG = "lth.dense_hash"
FAMILY_TAG = "lth.family"  # dense identity without the seed: groups replicates in the report
CELL_TAG = "lth.cell"  # ticket identity without seed and control: one cell of the report (lth.identity.cell_key)
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
FINISHED = "FINISHED"
T = TypeVar("T")


# `tracking` key -> (MLflow's environment variable, whether MLflow parses it as an integer, least, most).
# MLflow 3 reads the retries, the backoff factor and the timeout with int(): "0.3" would fail every
# request, and int(0.3) would silently turn the backoff off, so a fraction is refused instead.
# The upper bounds are MLflow's own limits (_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT and
# _MLFLOW_HTTP_REQUEST_MAX_BACKOFF_FACTOR_LIMIT), which it would otherwise report on the first request.
HTTP_SETTINGS: dict[str, tuple[str, bool, float, float]] = {
    "http_retries": ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", True, 0, 10),
    "http_backoff_factor": ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", True, 0, 120),
    "http_backoff_jitter_s": ("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", False, 0, float("inf")),
    "http_timeout_s": ("MLFLOW_HTTP_REQUEST_TIMEOUT", True, 1, float("inf")),
}


def http_environment(tracking_cfg: Mapping[str, Any]) -> dict[str, str]:
    """MLflow's environment variables for the `tracking` group's retry settings.

    Raises:
        ConfigError: A setting MLflow cannot take as given (a fraction where it reads an integer,
            or a value outside its limits).
    """
    environment = {}
    for key, (variable, whole, least, most) in HTTP_SETTINGS.items():
        value = tracking_cfg.get(key)
        if value is None:
            continue
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if number is None or not least <= number <= most or (whole and not number.is_integer()):
            kind = "a whole number of seconds" if key == "http_backoff_factor" else "an integer" if whole else "a number"
            bounds = f">= {least:g}" if most == float("inf") else f"in [{least:g}, {most:g}]"
            raise ConfigError(f"tracking.{key} must be {kind} {bounds}"
                              f"{' (MLflow reads ' + variable + ' as an integer)' if whole else ''}, got {value!r}")
        environment[variable] = str(int(number)) if whole else str(number)
    return environment


def retry_transient_errors(tracking_cfg: Mapping[str, Any]) -> None:
    """Hand the `tracking` group's retry settings to MLflow's HTTP client (a server that is
    briefly down or overloaded is retried with exponential backoff, not fatal).

    Raises:
        ConfigError: As `http_environment`.
    """
    os.environ.update(http_environment(tracking_cfg))


def connect_uri(uri: str) -> None:
    """Point MLflow at `uri` (no experiment needed, e.g. to read runs)."""
    mlflow.set_tracking_uri(uri)


def connect(uri: str, experiment: str, attempts: int = 5) -> str:
    """Point MLflow at `uri` and return the id of `experiment`, creating it if needed.

    Concurrent jobs may race to create the experiment; the loser simply finds it.
    """
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    for attempt in range(attempts):
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(experiment)
        except mlflow.exceptions.MlflowException:
            time.sleep(0.5 * (attempt + 1))  # another job created it meanwhile
    raise RuntimeError(f"could not create or find MLflow experiment {experiment!r} at {uri}")


def find_runs(experiment_id: str, role: str, key: str) -> list[Run]:
    """Active (not deleted) runs with this role and identity, oldest first."""
    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.`{ROLE_TAG}` = '{role}' and tags.`{KEY_TAG}` = '{key}'",
        run_view_type=ViewType.ACTIVE_ONLY,
        order_by=["attributes.start_time ASC"],
    )
    return list(runs)


def finished_run(runs: list[Run]) -> Run | None:
    """The oldest FINISHED run of a list, if any."""
    return next((run for run in runs if run.info.status == FINISHED), None)


def create_run(experiment_id: str, role: str, key: str, name: str, tags: dict[str, str]) -> str:
    """Create a run with the identity tags and return its id (not yet active)."""
    all_tags = {ROLE_TAG: role, KEY_TAG: key, RUN_NAME_TAG: name, **tags}
    return MlflowClient().create_run(experiment_id, tags=all_tags, run_name=name).info.run_id


@contextlib.contextmanager
def active_run(run_id: str, nested: bool = False) -> Iterator[mlflow.ActiveRun]:
    """Make `run_id` the active run; an exception ends it FAILED with the error logged.

    Args:
        run_id: An existing run (it is resumed if it ended unfinished).
        nested: True to open it while another run (its parent) stays active.
    """
    with mlflow.start_run(run_id=run_id, nested=nested) as run:
        try:
            yield run
        except BaseException as error:
            mlflow.set_tag("lth.error", f"{type(error).__name__}: {error}"[:4000])
            mlflow.log_text(traceback.format_exc(), "error.txt")
            raise


def fetch(run_id: str, artifact_path: str, loader: Callable[[Path], T]) -> T:
    """Download one artifact of a run, read it with `loader`, and remove the download."""
    with tempfile.TemporaryDirectory(prefix="lth-artifact-") as destination:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=destination)
        return loader(Path(path))


def resume_cleanly(run_id: str) -> None:
    """Drop the error a resumed run carried from its failed attempt."""
    client = MlflowClient()
    if "lth.error" in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, "lth.error")


def cluster_job_tags() -> dict[str, str]:
    """The SLURM job this process runs in (`123_4` for an array task), and how often it was requeued."""
    if "SLURM_JOB_ID" not in os.environ:
        return {}
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array}_{task}" if array and task else os.environ["SLURM_JOB_ID"]
    return {"lth.slurm_job_id": job, "lth.slurm_restarts": os.environ.get("SLURM_RESTART_COUNT", "0")}
