"""The lottery-ticket search for one cell (threshold t, reset epoch k).

1. Make sure the dense parent exists: find a FINISHED run with the same dense hash,
   or train it while holding a lock, so concurrent jobs train it exactly once.
2. Make sure the ticket exists: mask the dense final weights at sparsity t, rewind
   the survivors to the dense epoch-k weights, train epochs k..E with the mask held
   at zero, and log everything to MLflow as a child of the dense run.

Both steps are idempotent: a rerun reuses finished runs and resumes unfinished ones.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf

from lth import tracking
from lth.data import DataSplits, load_data
from lth.fitting import fit_and_evaluate
from lth.identity import DENSE_KEYS, dense_hash, flatten, ticket_key
from lth.locking import exclusive
from lth.masks import magnitude_masks, prunable_layer_names, save_masks, sparsity_report
from lth.models import kernel_path, load_weights, save_weights
from lth.network import network_for
from lth.validate import ConfigError, validate_config

log = logging.getLogger("lth")


@dataclass(frozen=True)
class DenseParent:
    """A FINISHED dense run whose checkpoints tickets rewind to."""

    run_id: str
    key: str
    epochs: int
    test_accuracy: float
    reused: bool

    def weights_at(self, epoch: int) -> dict[str, np.ndarray]:
        """The dense weights after `epoch` epochs (0 = initialisation)."""
        name = "weights/final.npz" if epoch == self.epochs else f"checkpoints/epoch_{epoch:03d}.npz"
        try:
            return load_weights(tracking.download(self.run_id, name))
        except Exception as error:
            raise ConfigError(
                f"dense parent {self.run_id} has no weights for epoch {epoch} ({name}); "
                f"it kept only the epochs in its lth.keep_epochs"
            ) from error


@dataclass(frozen=True)
class CellResult:
    """The outcome of one ticket, as printed in sweep tables and saved as result.json."""

    threshold: float
    reset_epoch: int
    scope: str
    weights_remaining: float
    test_accuracy: float
    dense_test_accuracy: float
    epochs_trained: int
    reused: bool
    ticket_run_id: str
    dense_run_id: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _device_count() -> tuple[str, int]:
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    return ("gpu", gpus) if gpus else ("cpu", 1)


def _log_hydra_config() -> None:
    """Attach the job's `.hydra/` folder (config, overrides) when running under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        folder = Path(HydraConfig.get().runtime.output_dir) / ".hydra"
        if folder.is_dir():
            mlflow.log_artifacts(str(folder), "hydra")


def _log_weights(weights: dict[str, np.ndarray], artifact: str) -> None:
    with tempfile.TemporaryDirectory(prefix="lth-") as scratch:
        path = save_weights(weights, Path(scratch) / Path(artifact).name)
        mlflow.log_artifact(str(path), str(Path(artifact).parent))


def _train_dense(cfg: DictConfig, run_id: str, data: DataSplits) -> DenseParent:
    epochs = int(cfg.train.epochs)
    keep = set(range(epochs + 1)) if cfg.lth.keep_epochs == "all" else set(cfg.lth.keep_epochs)
    device_kind, devices = _device_count()
    with tracking.active_run(run_id):
        mlflow.log_params(flatten({key: OmegaConf.to_container(cfg[key], resolve=True) for key in DENSE_KEYS}))
        mlflow.set_tags({"lth.device_kind": device_kind, "lth.cluster": str(cfg.cluster.name)})
        _log_hydra_config()
        network = network_for(cfg.model, cfg.train, data.steps_per_epoch)
        network.load(network.initial_weights, masks=None, start_epoch=0)
        if 0 in keep:
            _log_weights(network.initial_weights, "checkpoints/epoch_000.npz")

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            mlflow.log_metrics(metrics, step=epoch)
            if epoch in keep and epoch < epochs:
                _log_weights(network.snapshot(), f"checkpoints/epoch_{epoch:03d}.npz")

        result = fit_and_evaluate(network.model, data, epochs, 0, Path(cfg.lth.state_dir) / "backup" / run_id,
                                  on_epoch_end, cfg.lth.verbose)
        _log_weights(network.snapshot(), "weights/final.npz")
        mlflow.log_metrics({
            "test_accuracy": result.test_accuracy,
            "test_loss": result.test_loss,
            "epochs_trained": epochs,
            "device_epochs": epochs * devices,
            "train_seconds": result.seconds,
        })
    return DenseParent(run_id, dense_hash(cfg), epochs, result.test_accuracy, reused=False)


def ensure_dense(cfg: DictConfig, experiment_id: str, data: DataSplits) -> DenseParent:
    """Return the FINISHED dense parent of `cfg`, training it first if no job has."""
    key = dense_hash(cfg)
    with exclusive(Path(cfg.lth.state_dir), f"dense-{key}", float(cfg.lth.lock_timeout_min), f"dense parent {key}"):
        runs = tracking.find_runs(experiment_id, "dense", key)
        done = tracking.finished_run(runs)
        if done is not None:
            log.info("reusing finished dense parent %s (hash %s): no retraining", done.info.run_id, key)
            return DenseParent(done.info.run_id, key, int(cfg.train.epochs),
                               float(done.data.metrics["test_accuracy"]), reused=True)
        if runs:
            run_id = runs[-1].info.run_id
            log.info("resuming unfinished dense parent %s (hash %s)", run_id, key)
        else:
            run_id = tracking.create_run(experiment_id, "dense", key, f"dense {key[:8]}",
                                         {tracking.DENSE_HASH_TAG: key})
            log.info("training dense parent %s (hash %s) for %d epochs", run_id, key, cfg.train.epochs)
        return _train_dense(cfg, run_id, data)


def _reused_ticket(cfg: DictConfig, run: Run, dense: DenseParent) -> CellResult:
    metrics = run.data.metrics
    return CellResult(float(cfg.prune.threshold), int(cfg.reset.epoch), str(cfg.prune.scope),
                      float(metrics["weights_remaining"]), float(metrics["test_accuracy"]), dense.test_accuracy,
                      int(metrics["epochs_trained"]), True, run.info.run_id, dense.run_id)


def _train_ticket(cfg: DictConfig, run_id: str, data: DataSplits, dense: DenseParent) -> CellResult:
    threshold, reset_epoch, epochs = float(cfg.prune.threshold), int(cfg.reset.epoch), int(cfg.train.epochs)
    device_kind, devices = _device_count()
    with tracking.active_run(run_id):
        resolved = OmegaConf.to_container(cfg, resolve=True)
        mlflow.log_params(flatten({key: value for key, value in resolved.items() if key != "lth"}))
        mlflow.set_tags({"lth.device_kind": device_kind, "lth.cluster": str(cfg.cluster.name)})
        _log_hydra_config()
        network = network_for(cfg.model, cfg.train, data.steps_per_epoch)
        final_dense = dense.weights_at(epochs)
        names = prunable_layer_names(network.model, list(cfg.prune.ignore))
        kernels = {name: final_dense[kernel_path(name)] for name in names}
        masks = magnitude_masks(kernels, threshold, str(cfg.prune.scope))
        report = sparsity_report(masks)
        with tempfile.TemporaryDirectory(prefix="lth-") as scratch:
            for path in save_masks(masks, Path(scratch)):
                mlflow.log_artifact(str(path))
        mlflow.log_metrics({"sparsity": report["sparsity"], "weights_remaining": report["weights_remaining"]})
        mlflow.log_metrics({f"sparsity.{layer['layer']}": layer["sparsity"] for layer in report["layers"]})
        if report["empty_layers"]:
            log.warning("mask removes every weight of %s: this ticket cannot learn through them",
                        report["empty_layers"])
        network.load(dense.weights_at(reset_epoch), masks, start_epoch=reset_epoch)
        _log_weights(network.snapshot(), "weights/start.npz")

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            mlflow.log_metrics(metrics, step=epoch)

        result = fit_and_evaluate(network.model, data, epochs, reset_epoch,
                                  Path(cfg.lth.state_dir) / "backup" / run_id, on_epoch_end, cfg.lth.verbose)
        if result.diverged:
            mlflow.set_tag("lth.diverged", "true")
            log.warning("ticket %s diverged (loss became NaN/inf): its accuracy is not a result", run_id)
        final = network.snapshot()
        leaked = sum(int(np.count_nonzero(final[kernel_path(name)][~mask])) for name, mask in masks.items())
        if leaked:  # cannot happen while constraints work; refuse to report a ticket that is not one
            raise RuntimeError(f"{leaked} masked weights became non-zero during training")
        _log_weights(final, "weights/final.npz")
        mlflow.log_metrics({
            "test_accuracy": result.test_accuracy,
            "test_loss": result.test_loss,
            "dense_test_accuracy": dense.test_accuracy,
            "epochs_trained": epochs - reset_epoch,
            "device_epochs": (epochs - reset_epoch) * devices,
            "train_seconds": result.seconds,
        })
    return CellResult(threshold, reset_epoch, str(cfg.prune.scope), report["weights_remaining"],
                      result.test_accuracy, dense.test_accuracy, epochs - reset_epoch, False, run_id, dense.run_id)


def ensure_ticket(cfg: DictConfig, experiment_id: str, data: DataSplits, dense: DenseParent) -> CellResult:
    """Return the FINISHED ticket of `cfg`, training it first if no job has."""
    key = ticket_key(cfg)
    threshold, reset_epoch = float(cfg.prune.threshold), int(cfg.reset.epoch)
    name = f"t={threshold:.2f} k={reset_epoch}"
    with exclusive(Path(cfg.lth.state_dir), f"ticket-{key}", float(cfg.lth.lock_timeout_min), f"ticket {name}"):
        runs = tracking.find_runs(experiment_id, "ticket", key)
        done = tracking.finished_run(runs)
        if done is not None:
            log.info("reusing finished ticket %s (%s): no retraining", done.info.run_id, name)
            return _reused_ticket(cfg, done, dense)
        if runs:
            run_id = runs[-1].info.run_id
            log.info("resuming unfinished ticket %s (%s)", run_id, name)
        else:
            run_id = tracking.create_run(experiment_id, "ticket", key, name, {
                tracking.PARENT_TAG: dense.run_id,
                tracking.DENSE_HASH_TAG: dense.key,
                "lth.threshold": f"{threshold}",
                "lth.reset_epoch": str(reset_epoch),
                "lth.scope": str(cfg.prune.scope),
                "lth.method": str(cfg.prune.method),
                "lth.control": str(cfg.prune.control),
            })
        return _train_ticket(cfg, run_id, data, dense)


def run_cell(cfg: DictConfig) -> CellResult:
    """Validate, then make sure the dense parent and this cell's ticket exist."""
    validate_config(cfg)
    try:  # data sizes and layer names can only be checked once loaded and built; still before any training
        data = load_data(cfg.data, int(cfg.train.batch_size), int(cfg.train.seed))
        log.info(data.summary)
        prunable_layer_names(network_for(cfg.model, cfg.train, data.steps_per_epoch).model, list(cfg.prune.ignore))
    except ValueError as error:
        raise ConfigError(str(error)) from error
    with exclusive(Path(cfg.lth.state_dir), "tracking", float(cfg.lth.lock_timeout_min), "the tracking store"):
        # A new SQLite store is created by its first writer; concurrent first writers corrupt the migration.
        experiment_id = tracking.connect(str(cfg.tracking.uri), str(cfg.tracking.experiment))
    dense = ensure_dense(cfg, experiment_id, data)
    return ensure_ticket(cfg, experiment_id, data, dense)
