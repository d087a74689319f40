"""The dense parent: trained once per identity, with its weights kept at every reset candidate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from omegaconf import DictConfig

from lth import tracking
from lth.claim import claim
from lth.data import DataSplits
from lth.fitting import fit_and_evaluate
from lth.identity import DENSE_KEYS, dense_hash, family_hash
from lth.network import network_for
from lth.runlog import log_config, log_weights, run_weights
from lth.validate import ConfigError


@dataclass(frozen=True)
class DenseParent:
    """A FINISHED dense run whose checkpoints tickets rewind to."""

    run_id: str
    key: str
    epochs: int
    test_accuracy: float
    reused: bool
    kept_epochs: frozenset[int]  # reset candidates whose weights were logged (the final epoch always is)

    def require_epoch(self, epoch: int) -> None:
        """Fail before any ticket work if this parent did not keep `epoch`."""
        if epoch != self.epochs and epoch not in self.kept_epochs:
            raise ConfigError(f"dense parent {self.run_id} kept only epochs {sorted(self.kept_epochs)}; "
                              f"reset.epoch={epoch} needs a dense run trained with it in lth.keep_epochs")

    def weights_at(self, epoch: int) -> dict[str, np.ndarray]:
        """The dense weights after `epoch` epochs (0 = initialisation)."""
        name = "weights/final.npz" if epoch == self.epochs else f"checkpoints/epoch_{epoch:03d}.npz"
        try:
            return run_weights(self.run_id, name)
        except Exception as error:
            raise ConfigError(
                f"dense parent {self.run_id} has no weights for epoch {epoch} ({name}); "
                f"it kept only the epochs in its lth.keep_epochs"
            ) from error


def _kept(cfg: DictConfig) -> frozenset[int]:
    epochs = int(cfg.train.epochs)
    return frozenset(range(epochs + 1)) if cfg.lth.keep_epochs == "all" else frozenset(cfg.lth.keep_epochs)


def _train(cfg: DictConfig, run_id: str, data: DataSplits) -> float:
    """Train the dense network in run `run_id`, logging a checkpoint at every kept epoch."""
    epochs = int(cfg.train.epochs)
    keep = _kept(cfg)
    with tracking.active_run(run_id):
        log_config(cfg, DENSE_KEYS)
        mlflow.set_tag("lth.keep_epochs", " ".join(str(epoch) for epoch in sorted(keep)))
        network = network_for(cfg.model, cfg.train, data.steps_per_epoch)
        network.load(network.initial_weights, masks=None, start_epoch=0)
        if 0 in keep:
            log_weights(network.initial_weights, "checkpoints/epoch_000.npz")

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            mlflow.log_metrics(metrics, step=epoch)
            if epoch in keep and epoch < epochs:
                log_weights(network.snapshot(), f"checkpoints/epoch_{epoch:03d}.npz")

        result = fit_and_evaluate(network.model, data, epochs, 0, Path(cfg.lth.state_dir) / "backup" / run_id,
                                  on_epoch_end, cfg.lth.verbose)
        if result.diverged:  # every ticket would inherit NaN weights; fail loudly instead
            mlflow.set_tag("lth.diverged", "true")
            raise RuntimeError(f"dense parent {run_id} diverged (loss became NaN/inf); lower train.learning_rate")
        log_weights(network.snapshot(), "weights/final.npz")
        mlflow.log_metrics({
            "test_accuracy": result.test_accuracy,
            "test_loss": result.test_loss,
            "epochs_trained": epochs,
            "device_epochs": epochs * network.replicas,
            "train_seconds": result.seconds,
        })
    return result.test_accuracy


def ensure_dense(cfg: DictConfig, experiment_id: str, data: DataSplits) -> DenseParent:
    """Return the FINISHED dense parent of `cfg`, training it first if no job has."""
    key = dense_hash(cfg)
    tags = {tracking.DENSE_HASH_TAG: key, tracking.FAMILY_TAG: family_hash(cfg), "lth.seed": str(cfg.train.seed)}
    with claim(cfg, experiment_id, "dense", key, f"dense {key[:8]}", tags) as stage:
        if stage.finished is not None:
            accuracy = float(stage.finished.data.metrics["test_accuracy"])
            kept = frozenset(int(epoch) for epoch in stage.finished.data.tags.get("lth.keep_epochs", "").split())
            return DenseParent(stage.run_id, key, int(cfg.train.epochs), accuracy, True, kept)
        accuracy = _train(cfg, stage.run_id, data)
        return DenseParent(stage.run_id, key, int(cfg.train.epochs), accuracy, False, _kept(cfg))
