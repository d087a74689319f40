"""The report logs each winning ticket as an MLflow Keras model, once, and registers it on request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from lth import tracking
from lth.config.cell import Cell
from lth.pruning.masks import prunable_layer_names
from lth.report.cells import Row
from lth.tracking import schema
from lth.tracking.artifacts import log_config, log_masks, log_weights
from lth.training.models import build_model, snapshot


@pytest.fixture
def ticket(tmp_path: Path, compose: Callable[..., object]):
    """A ticket run as lth logs one: params, mask, start and final weights (half of every kernel pruned).

    Yields its run id, its masks and its final weights.
    """
    previous = mlflow.get_tracking_uri()
    experiment_id = tracking.connect(f"sqlite:///{tmp_path / 'mlflow.db'}", "lth")
    cell = Cell.of(compose())
    model = build_model(cell.model, cell.train.seed)
    rng = np.random.default_rng(0)
    masks = {name: rng.random(tuple(model.get_layer(name).kernel.shape)) < 0.5 for name in prunable_layer_names(model)}
    start = snapshot(model)
    kept = {next(p for p in start if p.startswith(f"{name}/") and p.endswith("kernel")): mask
            for name, mask in masks.items()}
    for path, mask in kept.items():
        start[path] = start[path] * mask
    # Trained: every variable moved (pruned weights stay 0), so a model that was never given the final weights, or
    # was given the start ones, differs from final everywhere.
    final = {path: (value + rng.uniform(0.5, 1.0, value.shape).astype(value.dtype)) * kept.get(path, 1)
             for path, value in start.items()}
    with mlflow.start_run(experiment_id=experiment_id, tags={schema.ROLE: schema.TICKET_ROLE}) as run:
        log_config(cell, ("model", "data", "train"), "local")
        log_masks(masks)
        log_weights(start, schema.START_WEIGHTS)
        log_weights(final, schema.FINAL_WEIGHTS)
    yield run.info.run_id, masks, final
    mlflow.set_tracking_uri(previous)


def _winner(run_id: str) -> Row:
    return Row("ticket", "global", 1, 0.5, None, "cell0123", 0.5, 0.9, 0.9, 0.9, 0.9, 0.9, 1, 1, 0,
               run_ids=(run_id,), eligible=True, winner=True)


def test_a_winner_is_a_keras_model_of_its_run_whose_masks_hold_after_loading(ticket) -> None:
    from lth.report.model_registry import MODEL_NAME, log_winners

    run_id, masks, final = ticket
    [logged] = log_winners({1: _winner(run_id), 2: None}, None)
    client = MlflowClient()
    run = client.get_run(run_id)
    assert [o.model_id for o in run.outputs.model_outputs] == [logged.model_uri.removeprefix("models:/")]
    assert run.data.tags[schema.WINNER_MODEL] == logged.model_uri and logged.registered is None
    # In the ticket's experiment, where the UI's Models page and column look (not MLflow's active one).
    assert mlflow.get_logged_model(logged.model_uri.removeprefix("models:/")).experiment_id == run.info.experiment_id
    model_info = mlflow.models.get_model_info(logged.model_uri)
    assert model_info.name == MODEL_NAME and "keras" in model_info.flavors
    assert tuple(model_info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 32, 32, 3)
    assert model_info.saved_input_example_info is not None

    loaded = mlflow.keras.load_model(logged.model_uri)
    weights = snapshot(loaded)
    assert sorted(weights) == sorted(final)
    for path, value in final.items():  # the ticket's final weights, every variable (BatchNorm statistics too)
        np.testing.assert_array_equal(weights[path], value, err_msg=path)
    for name, mask in masks.items():
        kernel = loaded.get_layer(name).kernel
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(kernel.constraint.mask) > 0, mask, err_msg=name)
        assert not np.any(keras.ops.convert_to_numpy(kernel)[~mask]), name
    loaded.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    loaded.fit(images, np.arange(8) % 10, epochs=2, verbose=0)  # trained further, the pruned weights stay zero
    for name, mask in masks.items():
        kernel = keras.ops.convert_to_numpy(loaded.get_layer(name).kernel)
        assert not np.any(kernel[~mask]) and np.any(kernel[mask]), name


def test_a_winner_is_logged_and_registered_once(ticket) -> None:
    from lth.report.model_registry import log_winners, registered_name

    run_id, _, _ = ticket
    name = registered_name("digits mobilenet_v2 (a=0.35)", "0123456789abcdef")
    assert name == "lth-digits_mobilenet_v2_a_0.35-01234567"
    first = log_winners({1: _winner(run_id)}, None)
    registered = log_winners({1: _winner(run_id)}, name)  # a later report, with report.register=true
    again = log_winners({1: _winner(run_id)}, name)
    assert first[0].model_uri == registered[0].model_uri == again[0].model_uri
    assert registered[0].registered == again[0].registered == f"{name}/1"
    client = MlflowClient()
    assert len(client.get_run(run_id).outputs.model_outputs) == 1
    [version] = client.search_model_versions(f"name='{name}'")
    assert (version.source, version.run_id, version.tags[schema.RESET_EPOCH]) == (first[0].model_uri, run_id, "1")
