"""One-shot tickets and their controls, and the masked training every sparse run shares.

Ticket(t, k): mask the dense final weights at sparsity t, start from the dense
epoch-k weights times the mask, train epochs k..E with the mask held at zero.
Controls change exactly one ingredient: `reinit` the starting weights (a fresh
initialisation), `random_mask` the positions of the survivors (same count per layer).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.entities import Run
from omegaconf import DictConfig

from lth import tracking
from lth.claim import claim
from lth.dense import DenseParent
from lth.fitting import FitResult, fit_and_evaluate
from lth.health import CollapsedMaskError, check_collapse, divergence
from lth.identity import TICKET_PARAM_GROUPS, cell_key, family_hash, ticket_key
from lth.masks import Masks, prunable_layer_names, random_masks_like
from lth.models import Weights, build_model, kernel_path, snapshot
from lth.network import network_for
from lth.runlog import log_config, log_masks, log_weights
from lth.scopes import imp_level_threshold, prune_masks
from lth.splits import DataSplits

log = logging.getLogger("lth")


@dataclass(frozen=True)
class CellResult:
    """The outcome of one job, as printed in sweep tables and saved as result.json."""

    threshold: float
    reset_epoch: int
    scope: str
    method: str
    control: str
    seed: int
    weights_remaining: float
    test_accuracy: float | None  # None when the run diverged: a status, not a number
    dense_test_accuracy: float
    epochs_trained: int
    reused: bool
    ticket_run_id: str
    dense_run_id: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def control_seed(cfg: DictConfig) -> int:
    """Seed of a control's randomness, distinct from the training seed."""
    return int(np.random.SeedSequence([int(cfg.train.seed), int(cfg.prune.control_seed), 1]).generate_state(1)[0])


def prunable_names(cfg: DictConfig, data: DataSplits) -> list[str]:
    """Layers this config prunes, in network order."""
    return prunable_layer_names(network_for(cfg.model, cfg.train, data.steps_per_epoch).model, list(cfg.prune.ignore))


def prunable_sizes(cfg: DictConfig, data: DataSplits) -> dict[str, int]:
    """Kernel sizes of the layers this config prunes, by name in network order (checks `prune.ignore` too)."""
    model = network_for(cfg.model, cfg.train, data.steps_per_epoch).model
    return {name: int(np.prod(model.get_layer(name).kernel.shape)) for name in prunable_names(cfg, data)}


def layer_rates(prune_cfg: DictConfig) -> dict[str, float]:
    """`prune.layer_rates`: IMP rates of single layers (configs written before the key existed have none)."""
    return {str(name): float(rate) for name, rate in (prune_cfg.get("layer_rates") or {}).items()}


def final_threshold(prune_cfg: DictConfig, sizes: Mapping[str, int]) -> float:
    """The exact fraction of the weights (sizes by layer) a job removes in the end: t, or IMP's last level's."""
    if prune_cfg.method == "imp":
        return imp_level_threshold(sizes, float(prune_cfg.rate), int(prune_cfg.levels), layer_rates(prune_cfg))
    return float(prune_cfg.threshold)


def magnitude_of(cfg: DictConfig, names: list[str], source: Weights, threshold: float,
                 previous: Masks | None = None) -> Masks:
    """Magnitude masks of `source`'s kernels of `names`, with `random_mask` applied if configured."""
    kernels = {n: source[kernel_path(n)] for n in names}
    masks = prune_masks(kernels, threshold, str(cfg.prune.scope), previous, float(cfg.prune.min_density))
    return random_masks_like(masks, control_seed(cfg)) if cfg.prune.control == "random_mask" else masks


def starting_weights(cfg: DictConfig, dense: DenseParent, reset_epoch: int) -> Weights:
    """Dense epoch-k weights, or a fresh initialisation for the `reinit` control."""
    if cfg.prune.control == "reinit":
        return snapshot(build_model(cfg.model, control_seed(cfg)))
    return dense.weights_at(reset_epoch)


def train_masked(cfg: DictConfig, data: DataSplits, dense: DenseParent, masks: Masks, start: Weights,
                 reset_epoch: int, run_id: str) -> tuple[FitResult, dict[str, object], Weights, str | None]:
    """Inside the active run: log the mask, train epochs k..E with it, log the outcome."""
    epochs = int(cfg.train.epochs)
    network = network_for(cfg.model, cfg.train, data.steps_per_epoch)
    depthwise = [name for name in masks if isinstance(network.model.get_layer(name), keras.layers.DepthwiseConv2D)]
    report = log_masks(masks, depthwise)
    check_collapse(cfg, report)  # before any training: refusing must cost nothing
    network.load(start, masks, start_epoch=reset_epoch, start_iteration=dense.iterations_at(reset_epoch),
                 loss_scale=dense.loss_scale_at(reset_epoch))
    log_weights(network.snapshot(), "weights/start.npz")
    result = fit_and_evaluate(network.model, data, epochs, reset_epoch, Path(cfg.lth.state_dir) / "backup" / run_id,
                              lambda epoch, metrics: mlflow.log_metrics(metrics, step=epoch), cfg.lth.verbose)
    verdict = divergence(result, dense.test_accuracy, int(cfg.data.num_classes))
    if verdict is not None:  # a status, not a number: no test_accuracy metric is logged for it
        mlflow.set_tags({"lth.diverged": verdict, "lth.diverged_epoch": str(result.diverged_epoch or epochs)})
        log.warning("run %s diverged (%s): its accuracy is not a result", run_id,
                    "loss became NaN/inf" if verdict == "nan" else "training loss stayed at chance")
    final = network.snapshot()
    leaked = sum(int(np.count_nonzero(final[kernel_path(name)][~mask])) for name, mask in masks.items())
    if leaked:  # cannot happen while constraints work; refuse to report a ticket that is not one
        raise RuntimeError(f"{leaked} masked weights became non-zero during training")
    log_weights(final, "weights/final.npz")
    accuracy_name = "test_accuracy" if verdict is None else "diverged_test_accuracy"
    mlflow.log_metrics({
        accuracy_name: result.test_accuracy,
        "test_loss": result.test_loss,
        "dense_test_accuracy": dense.test_accuracy,
        "epochs_trained": result.epochs_trained if result.diverged else epochs - reset_epoch,
        "device_epochs": (epochs - reset_epoch) * network.replicas,
        "train_seconds": result.seconds,
        **(result.early_stop.metrics() if result.early_stop is not None and verdict is None else {}),
    })
    return result, report, final, verdict


def ticket_tags(cfg: DictConfig, parent_run_id: str, dense: DenseParent, threshold: float) -> dict[str, str]:
    """Tags that let searches and the report find and compare tickets numerically."""
    return {
        tracking.PARENT_TAG: parent_run_id,
        tracking.DENSE_HASH_TAG: dense.key,
        tracking.DENSE_RUN_TAG: dense.run_id,  # claims reuse only runs rewound from this very dense run
        tracking.FAMILY_TAG: family_hash(cfg),
        tracking.CELL_TAG: cell_key(cfg),  # the report averages seeds and pairs controls within a cell
        "lth.threshold": f"{threshold}",
        "lth.reset_epoch": str(int(cfg.reset.epoch)),
        "lth.scope": str(cfg.prune.scope),
        "lth.method": str(cfg.prune.method),
        "lth.control": str(cfg.prune.control),
        "lth.seed": str(int(cfg.train.seed)),
    }


def run_name(cfg: DictConfig) -> str:
    """`t=0.80 k=1`, with the control and a non-zero seed appended."""
    name = f"t={float(cfg.prune.threshold):.2f} k={int(cfg.reset.epoch)}"
    name += f" {cfg.prune.control}" if cfg.prune.control != "none" else ""
    return name + (f" seed={cfg.train.seed}" if int(cfg.train.seed) != 0 else "")


def cell_result(cfg: DictConfig, dense: DenseParent, run_id: str, metrics: dict[str, float], reused: bool,
                threshold: float | None = None) -> CellResult:
    """The job's outcome from its run's metrics."""
    return CellResult(
        float(cfg.prune.threshold if threshold is None else threshold), int(cfg.reset.epoch), str(cfg.prune.scope),
        str(cfg.prune.method), str(cfg.prune.control), int(cfg.train.seed), float(metrics["weights_remaining"]),
        metrics.get("test_accuracy"), dense.test_accuracy, int(metrics["epochs_trained"]), reused, run_id,
        dense.run_id)


def refuse_reused_collapse(cfg: DictConfig, finished: Run) -> None:
    """`on_collapse=refuse` also refuses a collapsed ticket trained earlier under `warn`.

    `on_collapse` is not part of a ticket's identity (both settings train the same run),
    so without this a refuse rerun would quietly return the collapsed result.
    """
    collapsed = finished.data.tags.get("lth.collapsed_layers")
    if collapsed and cfg.prune.on_collapse == "refuse":
        raise CollapsedMaskError(f"ticket {finished.info.run_id} (trained earlier with prune.on_collapse=warn) left "
                                 f"layer(s) with no weight: {collapsed}; not reused (prune.on_collapse=refuse)")


def ensure_ticket(cfg: DictConfig, experiment_id: str, data: DataSplits, dense: DenseParent) -> CellResult:
    """Return the FINISHED one-shot ticket (or control) of `cfg`, training it first if no job has."""
    threshold, reset_epoch = float(cfg.prune.threshold), int(cfg.reset.epoch)
    tags = ticket_tags(cfg, dense.run_id, dense, threshold)
    with claim(cfg, experiment_id, "ticket", ticket_key(cfg), run_name(cfg), tags, dense.run_id) as stage:
        if stage.finished is not None:
            refuse_reused_collapse(cfg, stage.finished)
            return cell_result(cfg, dense, stage.run_id, stage.finished.data.metrics, reused=True)
        with tracking.active_run(stage.run_id):
            log_config(cfg, TICKET_PARAM_GROUPS)
            final_dense = dense.weights_at(int(cfg.train.epochs))
            masks = magnitude_of(cfg, prunable_names(cfg, data), final_dense, threshold)
            start = starting_weights(cfg, dense, reset_epoch)
            result, report, _, verdict = train_masked(cfg, data, dense, masks, start, reset_epoch, stage.run_id)
        metrics = {"weights_remaining": report["weights_remaining"], "epochs_trained": int(cfg.train.epochs) - reset_epoch,
                   **({"test_accuracy": result.test_accuracy} if verdict is None else {})}
        return cell_result(cfg, dense, stage.run_id, metrics, reused=False)
