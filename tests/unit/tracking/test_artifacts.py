"""What a user meets in `mlflow ui`: a model-training experiment, and each run's dataset filled in."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from lth import tracking
from lth.config.cell import Cell
from lth.tracking import schema
from lth.tracking.artifacts import log_dataset
from lth.tracking.identity import data_digest


@pytest.fixture
def store(tmp_path: Path):
    previous = mlflow.get_tracking_uri()
    yield f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(previous)


def test_the_experiment_is_one_of_model_training(store: str) -> None:
    experiment_id = tracking.connect(store, "lth")
    assert MlflowClient().get_experiment(experiment_id).tags[schema.EXPERIMENT_KIND] == "custom_model_development"
    older = MlflowClient().create_experiment("made-before-the-tag")  # as lth created them until now
    assert tracking.connect(store, "made-before-the-tag") == older
    assert MlflowClient().get_experiment(older).tags[schema.EXPERIMENT_KIND] == "custom_model_development"


def _inputs(run_id: str) -> list[dict[str, str]]:
    run = MlflowClient().get_run(run_id)
    return [{"name": d.dataset.name, "digest": d.dataset.digest, "source_type": d.dataset.source_type,
             "source": d.dataset.source} for d in run.inputs.dataset_inputs]


def test_each_run_logs_its_dataset_once_with_the_datas_identity(store: str, compose: Callable[..., object]) -> None:
    experiment_id = tracking.connect(store, "lth")
    cell = Cell.of(compose())
    with mlflow.start_run(experiment_id=experiment_id) as run:
        log_dataset(cell)
        log_dataset(cell)  # a resumed run logs its config again
    inputs = _inputs(run.info.run_id)
    assert len(inputs) == 1
    assert inputs[0]["name"] == "digits" and inputs[0]["digest"] == data_digest(compose()) != ""
    assert inputs[0]["source_type"] == "code" and "digits" in inputs[0]["source"]
    assert data_digest(compose("prune.threshold=0.3", "train.seed=4")) == inputs[0]["digest"]  # same data
    assert data_digest(compose("data.train_limit=100")) != inputs[0]["digest"]  # other training images


def test_data_in_a_folder_is_logged_with_its_path_and_content_digest(store: str, tmp_path: Path,
                                                                     compose: Callable[..., object]) -> None:
    from lth.data.arrays import FASHION_MNIST_FILES

    folder = tmp_path / "fashion"
    folder.mkdir()
    for name in FASHION_MNIST_FILES:
        (folder / name).write_bytes(name.encode())
    cfg = compose("data=fashion_mnist", f"data.path={folder}")
    experiment_id = tracking.connect(store, "lth")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        log_dataset(Cell.of(cfg))
    (logged,) = _inputs(run.info.run_id)
    assert logged["source_type"] == "local" and json.loads(logged["source"])["uri"] == folder.resolve().as_uri()
    assert logged["name"] == "fashion"  # the folder, not the reader's name
    assert logged["digest"] == data_digest(cfg)
    (folder / FASHION_MNIST_FILES[0]).write_bytes(b"other images")  # the same folder with other content
    assert data_digest(cfg) != logged["digest"]


def test_runs_carry_their_source_and_the_summary_names_the_training_runs_page(store: str) -> None:
    experiment_id = tracking.connect(store, "lth")
    run_id = tracking.create_run(experiment_id, schema.DENSE_ROLE, "key", "dense key", {})
    tags = MlflowClient().get_run(run_id).data.tags
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"] and tags["mlflow.user"]
    assert tracking.runs_page(store, "lth") == (
        f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
