"""MLflow bookkeeping: the experiment, finding finished runs by identity, run lifecycle (names: lth.tracking.schema)."""

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
from mlflow.entities import Run, RunData, ViewType
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags

from lth.common import processes
from lth.tracking import schema
from lth.tracking.http import http_environment

T = TypeVar("T")
__all__ = ["Run", "RunData"]  # MLflow's run types, for the stages' signatures (they import no MLflow themselves)


def retry_transient_errors(tracking_cfg: Mapping[str, Any]) -> None:
    """Hand the `tracking` group's retry settings to MLflow's HTTP client (a server that is
    briefly down or overloaded is retried with exponential backoff, not fatal).

    Raises:
        ConfigError: As `lth.tracking.http.http_environment`.
    """
    os.environ.update(http_environment(tracking_cfg))


def runs_page(uri: str, experiment: str, port: int = 5000) -> str:
    """Where `mlflow ui` shows the experiment's training runs (MLflow 3's UI opens on its GenAI view otherwise).

    For a file or SQLite store, the address of `mlflow ui` started beside it on `port`.
    """
    try:
        found = MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    except mlflow.exceptions.MlflowException:  # a server that went away: the page is still worth naming
        found = None
    experiment_id = found.experiment_id if found is not None else "<id>"
    host = uri.rstrip("/") if uri.startswith("http") else f"http://127.0.0.1:{port}"
    return f"{host}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def connect_uri(uri: str) -> None:
    """Point MLflow at `uri` (no experiment needed, e.g. to read runs)."""
    mlflow.set_tracking_uri(uri)


def existing_experiment(uri: str, experiment: str) -> str | None:
    """The id of `experiment` at `uri` if both exist; creates nothing (a missing SQLite file stays missing)."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    mlflow.set_tracking_uri(uri)
    found = MlflowClient().get_experiment_by_name(experiment)
    return None if found is None else found.experiment_id


def connect(uri: str, experiment: str, attempts: int = 5) -> str:
    """Point MLflow at `uri` and return the id of `experiment`, creating it if needed.

    Concurrent jobs may race to create the experiment; the loser simply finds it. The
    experiment is tagged as one of model training, so `mlflow ui` opens on its runs.
    """
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    for attempt in range(attempts):
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            if schema.EXPERIMENT_KIND not in found.tags:  # an experiment lth created before it tagged its kind
                client.set_experiment_tag(found.experiment_id, schema.EXPERIMENT_KIND, schema.MODEL_TRAINING)
            return found.experiment_id
        try:
            return client.create_experiment(experiment, tags={schema.EXPERIMENT_KIND: schema.MODEL_TRAINING})
        except mlflow.exceptions.MlflowException:
            time.sleep(0.5 * (attempt + 1))  # another job created it meanwhile
    raise RuntimeError(f"could not create or find MLflow experiment {experiment!r} at {uri}")


def find_runs(experiment_id: str, role: str, key: str, dense_run_id: str | None = None) -> list[Run]:
    """Active (not deleted) runs with this role and identity, oldest first.

    Args:
        dense_run_id: For sparse runs, the dense run they must have been rewound from. A ticket's
            identity names its dense parent's config, not its run: after that run is deleted and
            trained again, the tickets of the old one are not this parent's and are left alone.
    """
    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.`{schema.ROLE}` = '{role}' and tags.`{schema.KEY}` = '{key}'",
        run_view_type=ViewType.ACTIVE_ONLY,
        order_by=["attributes.start_time ASC"],
    )
    return rewound_from(list(runs), dense_run_id)


def rewound_from(runs: list[Run], dense_run_id: str | None) -> list[Run]:
    """The runs tagged as rewound from `dense_run_id` (all of them when it is None)."""
    return [run for run in runs if dense_run_id is None or run.data.tags.get(schema.DENSE_RUN) == dense_run_id]


def finished_run(runs: list[Run]) -> Run | None:
    """The oldest FINISHED run of a list, if any."""
    return next((run for run in runs if run.info.status == schema.FINISHED), None)


def create_run(experiment_id: str, role: str, key: str, name: str, tags: dict[str, str]) -> str:
    """Create a run with the identity tags and return its id (not yet active)."""
    # MLflow's own context tags (source, user, git commit) fill the UI's Source and User columns,
    # which only fluent start_run sets by itself.
    all_tags = resolve_tags({schema.ROLE: role, schema.KEY: key, schema.RUN_NAME: name, **tags})
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
            mlflow.set_tag(schema.ERROR, f"{type(error).__name__}: {error}"[:4000])
            mlflow.log_text(traceback.format_exc(), schema.ERROR_TEXT)
            raise


def fetch(run_id: str, artifact_path: str, loader: Callable[[Path], T]) -> T:
    """Download one artifact of a run, read it with `loader`, and remove the download."""
    with tempfile.TemporaryDirectory(prefix="lth-artifact-") as destination:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=destination)
        return loader(Path(path))


def resume_cleanly(run_id: str) -> None:
    """Drop the error a resumed run carried from its failed attempt."""
    client = MlflowClient()
    if schema.ERROR in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, schema.ERROR)


def cluster_job_tags() -> dict[str, str]:
    """The processes that train the run (lth.common.processes), the SLURM job they run in (`123_4` for
    an array task), and how often it was requeued."""
    tags = {schema.PROCESSES: str(processes.current().count)}
    if "SLURM_JOB_ID" not in os.environ:
        return tags
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array}_{task}" if array and task else os.environ["SLURM_JOB_ID"]
    return {**tags, schema.SLURM_JOB: job, schema.SLURM_RESTARTS: os.environ.get("SLURM_RESTART_COUNT", "0")}


def get_run(run_id: str) -> Run:
    """A run as the store has it now (tags, params, metrics' last values)."""
    return MlflowClient().get_run(run_id)


def set_tags(tags: Mapping[str, str]) -> None:
    """Tag the active run (nothing to do for no tags)."""
    if tags:
        mlflow.set_tags(dict(tags))


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log metrics of the active run, at `step` (epochs completed, or an IMP level) if given."""
    mlflow.log_metrics(dict(metrics), step=step)


def log_params(params: Mapping[str, object]) -> None:
    """Log params of the active run."""
    mlflow.log_params(dict(params))


def log_to_run(run_id: str, tags: Mapping[str, str] | None = None,
               series: Mapping[str, Mapping[int, float]] | None = None, files: Mapping[str, Path] | None = None) -> None:
    """Tag, log metric series ({key: {step: value}}) and files ({folder: file}) to a run that is not active.

    An analysis records its findings on the run it analysed (lth.stability.analysis) this way.
    """
    client = MlflowClient()
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, value)
    for key, by_step in (series or {}).items():
        for step, value in by_step.items():
            client.log_metric(run_id, key, float(value), step=step)
    for folder, path in (files or {}).items():
        client.log_artifact(run_id, str(path), folder or None)


def log_folder(run_id: str, folder: Path, artifact_path: str) -> None:
    """Log every file of `folder` under `artifact_path` of a run that is not active."""
    MlflowClient().log_artifacts(run_id, str(folder), artifact_path)


def download_folder(run_id: str, artifact_path: str, destination: Path) -> Path:
    """Download a run's artifact folder into `destination`; returns the local folder."""
    destination.mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path,
                                                    dst_path=str(destination)))


def metric_history(run_id: str, key: str) -> dict[int, float]:
    """Every logged value of one metric of a run, by step."""
    return {metric.step: metric.value for metric in MlflowClient().get_metric_history(run_id, key)}


def finished_children(experiment_id: str, parent_run_id: str) -> list[Run]:
    """The FINISHED runs nested under `parent_run_id` (an IMP job's levels)."""
    return list(MlflowClient().search_runs(
        [experiment_id], f"tags.`{schema.PARENT}` = '{parent_run_id}' and attributes.status = '{schema.FINISHED}'"))
