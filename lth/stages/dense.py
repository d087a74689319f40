"""The dense parent: trained once per identity, with its weights kept at every reset candidate."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from lth import tracking
from lth.config.cell import Cell, StateConfig
from lth.config.vocabulary import ConfigError
from lth.data.splits import DATA_ORDER_VERSION, DataSplits
from lth.tracking import schema
from lth.tracking.artifacts import log_config, log_weights, run_weights
from lth.tracking.claim import claim
from lth.tracking.client import Run
from lth.tracking.identity import DENSE_KEYS, dense_hash, family_hash
from lth.training import group
from lth.training.chance import chance_text, dense_at_chance
from lth.training.devices import check_replica_reuse
from lth.training.fitting import optimizer_state
from lth.training.network import network_for

log = logging.getLogger("lth")


@dataclass(frozen=True)
class DenseParent:
    """A FINISHED dense run whose checkpoints tickets rewind to."""

    run_id: str
    key: str
    epochs: int
    test_accuracy: float
    reused: bool
    kept_epochs: frozenset[int]  # reset candidates whose weights were logged (the final epoch always is)
    steps_per_epoch: int = 0
    iterations: Mapping[int, int] = field(default_factory=dict)  # optimizer step count after each epoch (0 = before)
    loss_scales: Mapping[int, float] = field(default_factory=dict)  # mixed_float16's loss scale after each epoch

    def require_epoch(self, epoch: int) -> None:
        """Fail before any ticket work if this parent did not keep `epoch`."""
        if epoch != self.epochs and epoch not in self.kept_epochs:
            raise ConfigError(f"dense parent {self.run_id} kept only epochs {sorted(self.kept_epochs)}; "
                              f"reset.epoch={epoch} needs a dense run trained with it in lth.keep_epochs")

    def iterations_at(self, epoch: int) -> int:
        """The dense optimizer's step count after `epoch` epochs, where a ticket rewound to it resumes.

        Below epoch * steps_per_epoch when mixed_float16 skipped steps; a dense run logged
        before `optimizer_iterations` existed falls back to epoch * steps_per_epoch.
        """
        return self.iterations.get(epoch, epoch * self.steps_per_epoch)

    def loss_scale_at(self, epoch: int) -> float | None:
        """mixed_float16's dynamic loss scale after `epoch` epochs; None when not logged (e.g. float32)."""
        return self.loss_scales.get(epoch)

    def weights_at(self, epoch: int) -> dict[str, np.ndarray]:
        """The dense weights after `epoch` epochs (0 = initialisation)."""
        name = schema.FINAL_WEIGHTS if epoch == self.epochs else schema.checkpoint(epoch)
        try:
            return run_weights(self.run_id, name)
        except Exception as error:
            raise ConfigError(
                f"dense parent {self.run_id} has no weights for epoch {epoch} ({name}); "
                f"it kept only the epochs in its lth.keep_epochs"
            ) from error


def _kept(state: StateConfig, epochs: int) -> frozenset[int]:
    return frozenset(range(epochs + 1)) if state.keep_epochs == "all" else frozenset(state.keep_epochs)


def _train(cell: Cell, run_id: str, data: DataSplits) -> float:
    """Train the dense network in run `run_id`, logging a checkpoint at every kept epoch."""
    epochs = cell.train.epochs
    keep = _kept(cell.state, epochs)
    with tracking.active_run(run_id):
        log_config(cell, DENSE_KEYS, cell.cluster.name)
        tracking.set_tags({**schema.keep_epochs_tag(keep), schema.DATA_ORDER: DATA_ORDER_VERSION})
        network = network_for(cell.model, cell.train, data.steps_per_epoch)
        resumed_on = tracking.get_run(run_id).data.tags.get(schema.REPLICAS)
        if resumed_on is not None:  # a requeued run: its epochs so far (and checkpoints) used that many replicas
            check_replica_reuse(cell.train, run_id, int(resumed_on), network.replicas)
        tracking.set_tags({schema.REPLICAS: str(network.replicas)})

        def loaded() -> None:
            if 0 in keep:
                log_weights(network.initial_weights, schema.checkpoint(0))
            tracking.log_metrics(optimizer_state(network.model.optimizer), step=0)  # where a k=0 ticket starts

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            tracking.log_metrics(metrics, step=epoch)
            if epoch in keep and epoch < epochs:
                log_weights(network.snapshot(), schema.checkpoint(epoch))

        result = group.train(network, data, group.Start(network.initial_weights, None, 0), epochs,
                             cell.state.state_dir / "backup" / run_id, on_epoch_end, cell.state.verbose, loaded)
        if result.diverged:  # every ticket would inherit NaN weights; fail loudly instead
            tracking.set_tags({schema.DIVERGED: "true"})
            raise RuntimeError(f"dense parent {run_id} diverged (loss became NaN/inf); lower train.learning_rate")
        log_weights(network.snapshot(), schema.FINAL_WEIGHTS)
        tracking.log_metrics(schema.outcome_metrics(result.test_accuracy, result.test_loss, epochs,
                                                  epochs * network.replicas, result.seconds, result.early_stop))
        if dense_at_chance(result.test_accuracy, cell.data.num_classes):  # a status of the parent, not of a ticket
            tracking.set_tags({schema.DENSE_AT_CHANCE: "true"})
    return result.test_accuracy


def _require_data_order(run: Run, finished: bool) -> None:
    """Refuse a dense run trained under another data order: its tickets would see other batches."""
    found = run.data.tags.get(schema.DATA_ORDER)
    started = finished or schema.KEEP_EPOCHS in run.data.tags  # an unfinished run that never trained has no order
    if started and found != DATA_ORDER_VERSION:
        trained = f"data order {found}" if found else "the data order of before lth.data_order existed"
        raise ConfigError(
            f"dense parent {run.info.run_id} was trained with {trained}, but this version orders batches by "
            f"{schema.DATA_ORDER}={DATA_ORDER_VERSION}, so its tickets would not see its batches: delete that run "
            f"(mlflow runs delete --run-id {run.info.run_id}) or use another tracking.experiment")


def _trained_replicas(run: Run) -> int:
    """Devices a dense run trained on: its tag, or (runs from before the tag) device_epochs / epochs_trained."""
    if schema.REPLICAS in run.data.tags:
        return int(run.data.tags[schema.REPLICAS])
    metrics = run.data.metrics
    return int(round(metrics.get(schema.DEVICE_EPOCHS, 1.0) / max(metrics.get(schema.EPOCHS_TRAINED, 1.0), 1.0)))


def _optimizer_history(run_id: str) -> tuple[dict[int, int], dict[int, float]]:
    """The logged `optimizer_iterations` and `loss_scale` of a dense run, by epoch."""
    iterations = {step: int(value) for step, value in tracking.metric_history(run_id, schema.OPTIMIZER_ITERATIONS).items()}
    return iterations, tracking.metric_history(run_id, schema.LOSS_SCALE)


def ensure_dense(cell: Cell, experiment_id: str, data: DataSplits) -> DenseParent:
    """Return the FINISHED dense parent of `cell`, training it first if no job has."""
    key = dense_hash(cell)
    tags = schema.dense_tags(key, family_hash(cell), cell.train.seed, DATA_ORDER_VERSION)
    epochs = cell.train.epochs
    with claim(cell.state, experiment_id, schema.DENSE_ROLE, key, f"dense {key[:8]}", tags) as stage:
        run = stage.finished or tracking.get_run(stage.run_id)
        _require_data_order(run, stage.finished is not None)
        if stage.finished is not None:
            replicas = network_for(cell.model, cell.train, data.steps_per_epoch).replicas
            check_replica_reuse(cell.train, stage.run_id, _trained_replicas(stage.finished), replicas)
            accuracy = float(stage.finished.data.metrics[schema.TEST_ACCURACY])
            kept = schema.kept_epochs(stage.finished.data.tags)
        else:
            accuracy, kept = _train(cell, stage.run_id, data), _kept(cell.state, epochs)
        if dense_at_chance(accuracy, cell.data.num_classes):
            if stage.finished is not None:  # a parent trained before the tag existed gets it when reused
                tracking.log_to_run(stage.run_id, tags={schema.DENSE_AT_CHANCE: "true"})
            log.warning("dense parent %s is at chance (%s): its tickets mean nothing; train it longer or fix what "
                        "keeps it from learning", stage.run_id, chance_text(accuracy, cell.data.num_classes))
        iterations, loss_scales = _optimizer_history(stage.run_id)
        return DenseParent(stage.run_id, key, epochs, accuracy, stage.finished is not None, kept,
                           data.steps_per_epoch, iterations, loss_scales)
