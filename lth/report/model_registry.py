"""Winning tickets as MLflow models: logged once per winner by the report, registered on request.

Each winner (the sparsest eligible ticket of a reset epoch) is loaded from its lowest seed's
run with `lth.load_ticket`, and logged to that run as an MLflow model of the Keras flavour,
with a signature and an input example. The masks travel inside the `.keras` file (each pruned
kernel's `MaskConstraint` serialises its mask), so `mlflow.keras.load_model` gives back a model
whose pruned weights stay zero when it is trained further. The report runs after training, so
none of this is in a training job's hot path; a winner already logged is not logged again.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import keras
import mlflow
import numpy as np
from mlflow.models import Model, infer_signature
from mlflow.tracking import MlflowClient

from lth.export import load_ticket
from lth.report.cells import Row
from lth.tracking import schema

log = logging.getLogger("lth")

MODEL_NAME = "winning_ticket"  # the name of each winner's logged model


@dataclass(frozen=True)
class WinnerModel:
    """The MLflow model of one winning ticket."""

    reset_epoch: int
    run_id: str  # the ticket run (its lowest seed) the model is logged to
    model_uri: str  # models:/<model id>
    registered: str | None  # "<registered name>/<version>", None when not registered


class _KerasFlavour:
    """MLflow's Keras flavour, with the model folder made first.

    `mlflow.keras.save_model` writes the input example before it creates the folder it writes
    into, so `log_model(..., input_example=...)` fails (mlflow/mlflow#16183, open).
    """

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(path: str, **kwargs: object) -> None:
        os.makedirs(path, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)


def registered_name(name: str, family: str) -> str:
    """The Model Registry name of a family's winners, e.g. `lth-digits-shards-3f2a9c1d`.

    What the family trained on, cut to what MLflow accepts in a name, and the head of the
    family's identity, so two families on the same data never share versions.
    """
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.-") if name != family else ""
    return "-".join(part for part in ("lth", cleaned, family[:8]) if part)


def _requirements() -> list[str]:
    # Given, not inferred: MLflow infers them by loading the model in a subprocess (seconds, and
    # it fails on the custom mask constraint). Loading also needs lth itself importable.
    backend = importlib.import_module(keras.backend.backend())  # tensorflow or jax, already imported
    return [f"keras=={keras.__version__}", f"{backend.__name__}=={backend.__version__}"]


def _log_model(row: Row, run_id: str) -> str:
    """Log one winner's model to its run; returns the model URI."""
    ticket = load_ticket(run_id)
    # A logged model belongs to the active experiment, not its source run's: without this the winners
    # land in MLflow's Default experiment, out of the UI's Models page and column.
    mlflow.set_experiment(experiment_id=MlflowClient().get_run(run_id).info.experiment_id)
    # Built, so the saved optimizer holds a slot per weight: loading an unbuilt one warns that it skips its variables.
    ticket.model.optimizer.build(ticket.model.trainable_variables)
    example = np.zeros((1, *ticket.model.input_shape[1:]), dtype=ticket.model.inputs[0].dtype)  # uint8 images
    signature = infer_signature(example, ticket.model.predict(example, verbose=0))
    info = Model.log(artifact_path=None, name=MODEL_NAME, flavor=_KerasFlavour(), model=ticket.model,
                     signature=signature, input_example=example, run_id=run_id, pip_requirements=_requirements(),
                     tags={schema.CELL: row.cell, schema.RESET_EPOCH: str(row.reset_epoch),
                           schema.WEIGHTS_REMAINING: f"{row.weights_remaining:.6g}"})
    MlflowClient().set_tag(run_id, schema.WINNER_MODEL, info.model_uri)
    return info.model_uri


def log_winners(winners: Mapping[int, Row | None], register_as: str | None) -> list[WinnerModel]:
    """Log every winner as an MLflow model (once), and register it under `register_as` if given (once).

    Args:
        winners: Each reset epoch's winning ticket (None: none is eligible), from `mark_winners`.
        register_as: The Model Registry name (`registered_name`); None registers nothing.
    """
    client = MlflowClient()
    logged = []
    for reset_epoch, row in sorted(winners.items()):
        if row is None or not row.run_ids:
            continue
        run_id = row.run_ids[0]
        tags = client.get_run(run_id).data.tags
        model_uri = tags.get(schema.WINNER_MODEL) or _log_model(row, run_id)
        registered = tags.get(schema.REGISTERED_AS)
        if register_as and not registered:
            version = mlflow.register_model(model_uri, register_as, tags={
                schema.RESET_EPOCH: str(reset_epoch), schema.CELL: row.cell, "lth.run_id": run_id})
            registered = f"{register_as}/{version.version}"
            client.set_tag(run_id, schema.REGISTERED_AS, registered)
        log.info("winner of reset epoch %d: %s%s", reset_epoch, model_uri,
                 f", registered as {registered}" if registered else "")
        logged.append(WinnerModel(reset_epoch, run_id, model_uri, registered))
    return logged
