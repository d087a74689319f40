"""Sparse training, shared by every sparse run: the mask, the starting weights, masked training.

A one-shot ticket (lth.stages.tickets), a control and an IMP level (lth.stages.imp) differ only in
where their mask and starting weights come from; all of them train epochs k..E of the
dense schedule with the mask held at exactly zero, inside their MLflow run, and come
back as one `SparseRun`. The stages decide which runs to make; this module makes one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from lth import tracking
from lth.config.cell import Cell, PruneConfig
from lth.data.splits import DataSplits
from lth.pruning.channels import (
    channel_floor_layers,
    channel_keeps,
    check_channels_fit,
    kept_channels,
    masks_of_keeps,
    random_keeps,
)
from lth.pruning.collapse import Collapse, CollapsedMaskError, collapsed_layers, judge
from lth.pruning.masks import Masks, prunable_weight_count, random_masks_like, sparsity_report
from lth.pruning.scopes import imp_level_threshold, imp_masks, prune_masks
from lth.pruning.structure import Layout, layout
from lth.stages.dense import DenseParent
from lth.tracking import schema
from lth.tracking.artifacts import log_masks, log_weights
from lth.tracking.client import Run
from lth.training import group
from lth.training.devices import on_this_process
from lth.training.models import Weights, build_model, kernel_path, snapshot
from lth.training.network import network_for
from lth.training.result import FitResult, divergence

log = logging.getLogger("lth")


@dataclass(frozen=True)
class SparseRun:
    """One masked training: what its stage reports, and what the next IMP level prunes from."""

    masks: Masks
    final: Weights  # every variable after training; masked kernel entries are exactly zero
    fit: FitResult
    verdict: str | None  # `nan` or `chance` when it diverged (lth.training.result.divergence)
    metrics: dict[str, float]  # the run's summary metrics, as logged (test_accuracy only if it learned)


def control_seed(train_seed: int, prune: PruneConfig) -> int:
    """Seed of a control's randomness, distinct from the training seed."""
    return int(np.random.SeedSequence([train_seed, prune.control_seed, 1]).generate_state(1)[0])


def _network_layout(cell: Cell, data: DataSplits) -> tuple[keras.Model, Layout]:
    """The cell's network, built once, and the layers its masks cover."""
    model = network_for(cell.model, cell.train, data.steps_per_epoch).model
    return model, layout(model, cell.prune.structure, cell.prune.ignore)


def mask_layout(cell: Cell, data: DataSplits) -> Layout:
    """The layers this cell's masks cover (and, for `prune.structure=channel`, its channel groups)."""
    return _network_layout(cell, data)[1]


def all_prunable_weights(cell: Cell, data: DataSplits) -> int:
    """The weights of every prunable layer of the cell's network: the base of its runs' `weights_remaining`."""
    return prunable_weight_count(_network_layout(cell, data)[0])


def prunable_sizes(cell: Cell, data: DataSplits) -> dict[str, int]:
    """Kernel sizes of the layers this cell prunes, by name in network order (checks `prune.ignore` too)."""
    model, plan = _network_layout(cell, data)
    return {name: int(np.prod(model.get_layer(name).kernel.shape)) for name in plan.names}


def check_structure_fits(cell: Cell, data: DataSplits) -> None:
    """Before training: refuse a channel threshold that whole channels cannot reach (a ValueError)."""
    if cell.prune.structure == "channel":
        model, plan = _network_layout(cell, data)
        shapes = {name: tuple(model.get_layer(name).kernel.shape) for name in plan.names}
        check_channels_fit(shapes, plan.groups, cell.prune.threshold, cell.prune.min_density)


def final_threshold(prune: PruneConfig, sizes: Mapping[str, int]) -> float:
    """The exact fraction of the weights (sizes by layer) a job removes in the end: t, or IMP's last level's."""
    if prune.method == "imp":
        return imp_level_threshold(sizes, prune.rate, prune.levels, prune.layer_rates)
    return prune.threshold


def level_threshold(prune: PruneConfig, sizes: Mapping[str, int], level: int) -> float:
    """The exact fraction of prunable weights (sizes by layer) removed after `level` IMP levels."""
    return imp_level_threshold(sizes, prune.rate, level, prune.layer_rates)


def one_shot_masks(cell: Cell, plan: Layout, source: Weights) -> Masks:
    """Masks of `source`'s kernels of the layout's layers at `prune.threshold`, moved at random for `random_mask`.

    Weight by weight (lth.pruning.scopes), or whole channels under `prune.structure=channel`
    (lth.pruning.channels), whose random control moves whole channels too.
    """
    prune = cell.prune
    kernels = {n: source[kernel_path(n)] for n in plan.names}
    seed = control_seed(cell.train.seed, prune)
    if prune.structure == "channel":
        keeps = channel_keeps(kernels, plan.groups, prune.threshold, prune.scope, prune.min_density)
        keeps = random_keeps(plan.groups, keeps, seed) if prune.control == "random_mask" else keeps
        return masks_of_keeps(kernels, plan.groups, keeps)
    masks = prune_masks(kernels, prune.threshold, prune.scope, None, prune.min_density)
    return random_masks_like(masks, seed) if prune.control == "random_mask" else masks


def level_masks(prune: PruneConfig, sizes: Mapping[str, int], source: Weights, level: int,
                previous: Masks | None) -> Masks:
    """IMP level `level`'s masks of the layers in `sizes`, by magnitude of `source`, within `previous`."""
    kernels = {name: source[kernel_path(name)] for name in sizes}
    return imp_masks(kernels, prune.rate, level, prune.scope, prune.layer_rates, previous, prune.min_density)


def control_level_masks(cell: Cell, ticket_masks: Masks, level: int) -> Masks:
    """An IMP control's level mask: the ticket's (reinit), or its counts per layer at random positions (random_mask)."""
    if cell.prune.control != "random_mask":
        return ticket_masks
    seed = int(np.random.SeedSequence([control_seed(cell.train.seed, cell.prune), level]).generate_state(1)[0])
    return random_masks_like(ticket_masks, seed)  # a new draw per level


def starting_weights(cell: Cell, dense: DenseParent) -> Weights:
    """Dense epoch-k weights, or a fresh initialisation for the `reinit` control."""
    if cell.prune.control == "reinit":
        with on_this_process():  # only process 0 computes a run's start (lth.training.group)
            return snapshot(build_model(cell.model, control_seed(cell.train.seed, cell.prune)))
    return dense.weights_at(cell.reset_epoch)


def check_collapse(prune: PruneConfig, report: Mapping[str, Any], plan: Layout, masks: Masks) -> list[str]:
    """Tag the active run with its collapsed and floor layers; warn, or refuse a collapsed mask before training.

    A channel mask's floor is in channels: its floor layers are those of `plan`'s groups held there.

    Returns:
        The collapsed (emptied) layers.
    """
    if prune.structure == "channel":
        keeps = [kept_channels(masks, group) for group in plan.groups]
        verdict = Collapse(collapsed_layers(report), channel_floor_layers(plan.groups, keeps, prune.min_density))
    else:
        verdict = judge(report, prune.min_density)
    tracking.set_tags(schema.collapse_tags(verdict.collapsed, verdict.floor))  # tagged even when refused
    verdict.refuse_or_warn(prune.on_collapse, prune.min_density)
    return verdict.collapsed


def refuse_reused_collapse(prune: PruneConfig, finished: Run) -> None:
    """`on_collapse=refuse` also refuses a collapsed run trained earlier under `warn`.

    `on_collapse` is not part of a ticket's identity (both settings train the same run),
    so without this a refuse rerun would quietly return the collapsed result.
    """
    collapsed = schema.collapse_lists(finished.data.tags)[0]
    if collapsed and prune.on_collapse == "refuse":
        raise CollapsedMaskError(f"ticket {finished.info.run_id} (trained earlier with prune.on_collapse=warn) left "
                                 f"layer(s) with no weight: {','.join(collapsed)}; not reused (prune.on_collapse=refuse)")


def log_mask_report(model: keras.Model, masks: Masks) -> dict[str, Any]:
    """Log the masks of the active run and their sparsity, on the common base of `model`; returns the report.

    `weights_remaining` is the kept fraction of every prunable weight of the network, whatever
    `prune.structure` and `prune.ignore` leave out of the masks (lth.pruning.masks.sparsity_report).
    """
    depthwise = [name for name in masks if isinstance(model.get_layer(name), keras.layers.DepthwiseConv2D)]
    return log_masks(masks, depthwise, prunable_weight_count(model))


def rebased_metrics(metrics: Mapping[str, float], masks: Masks, all_prunable: int) -> dict[str, float]:
    """A finished run's metrics, with its sparsity on the common base if it was logged before it.

    Such a run logged the share of its masked layers as `weights_remaining`; its masks and the
    network's `all_prunable` weights give the common fraction again.
    """
    if schema.WEIGHTS_REMAINING_OF_MASKED_LAYERS in metrics:
        return dict(metrics)
    return {**metrics, **schema.base_metrics(sparsity_report(masks, all_prunable_weights=all_prunable))}


def _summary(report: Mapping[str, Any], fit: FitResult, verdict: str | None, epochs_trained: int) -> dict[str, float]:
    """The metrics a stage reports of a sparse run: as logged, test_accuracy only when it learned."""
    metrics = {**schema.base_metrics(report), schema.EPOCHS_TRAINED: float(epochs_trained)}
    return metrics if verdict is not None else {**metrics, schema.TEST_ACCURACY: fit.test_accuracy}


def train_masked(cell: Cell, data: DataSplits, dense: DenseParent, masks: Masks, start: Weights,
                 run_id: str) -> SparseRun:
    """Inside the active run `run_id`: log the mask, train epochs k..E with it held at zero, log the outcome.

    The optimizer resumes the dense run's step count (and loss scale) after epoch k, so the
    learning-rate schedule continues where the dense run was. A run that diverges is tagged
    and keeps no test_accuracy: a status, not a number.
    """
    epochs, reset_epoch = cell.train.epochs, cell.reset_epoch
    network = network_for(cell.model, cell.train, data.steps_per_epoch)
    report = log_mask_report(network.model, masks)
    plan = layout(network.model, cell.prune.structure, cell.prune.ignore)
    check_collapse(cell.prune, report, plan, masks)  # before any training: refusing must cost nothing
    begin = group.Start(start, masks, reset_epoch, dense.iterations_at(reset_epoch), dense.loss_scale_at(reset_epoch))
    result = group.train(network, data, begin, epochs, cell.state.state_dir / "backup" / run_id,
                         lambda epoch, metrics: tracking.log_metrics(metrics, step=epoch), cell.state.verbose,
                         loaded=lambda: log_weights(network.snapshot(), schema.START_WEIGHTS))
    verdict = divergence(result, dense.test_accuracy, cell.data.num_classes)
    if verdict is not None:
        tracking.set_tags(schema.divergence_tags(verdict, result.diverged_epoch or epochs))
        log.warning("run %s diverged (%s): its accuracy is not a result", run_id,
                    "loss became NaN/inf" if verdict == "nan" else "training loss stayed at chance")
    final = network.snapshot()
    leaked = sum(int(np.count_nonzero(final[kernel_path(name)][~mask])) for name, mask in masks.items())
    if leaked:  # cannot happen while constraints work; refuse to report a ticket that is not one
        raise RuntimeError(f"{leaked} masked weights became non-zero during training")
    log_weights(final, schema.FINAL_WEIGHTS)
    epochs_trained = result.epochs_trained if result.diverged else epochs - reset_epoch
    tracking.log_metrics({
        **schema.outcome_metrics(result.test_accuracy, result.test_loss, epochs_trained,
                                 (epochs - reset_epoch) * network.replicas, result.seconds, result.early_stop,
                                 diverged=verdict is not None),
        schema.DENSE_TEST_ACCURACY: dense.test_accuracy,
    })
    return SparseRun(masks, final, result, verdict, _summary(report, result, verdict, epochs_trained))
