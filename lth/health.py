"""Verdicts on a sparse run that make a number not a result: collapsed layers and divergence.

*Collapsed* means a layer kept no weight at all: nothing passes through it but its bias,
so the network computes a constant there. That is what `prune.on_collapse=refuse` refuses.
A layer held *at the floor* (exactly prune.min_density's ceil(min_density * size) weights)
is one the scope would have emptied; the floor keeps a token path open. The run is a
result and is reported as such, with a warning and the tag `lth.floor_layers`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import mlflow
from omegaconf import DictConfig

from lth.fitting import FitResult

log = logging.getLogger("lth")
CHANCE_LOSS_FRACTION = 0.98  # a final training loss above this share of ln(classes) has learned nothing
COLLAPSED_TAG = "lth.collapsed_layers"  # layers with no weight left
FLOOR_TAG = "lth.floor_layers"  # layers held at the min_density floor


class CollapsedMaskError(RuntimeError):
    """A mask leaves a layer empty and `prune.on_collapse=refuse`."""


def collapsed_layers(report: Mapping[str, Any]) -> list[str]:
    """Layers the mask emptied: no weight kept."""
    return [layer["layer"] for layer in report["layers"] if layer["kept"] == 0]


def floor_layers(report: Mapping[str, Any], min_density: float) -> list[str]:
    """Layers held at the floor: some weights kept, but no more than ceil(min_density * size)."""
    if min_density <= 0:
        return []
    return [layer["layer"] for layer in report["layers"]
            if 0 < layer["kept"] <= math.ceil(min_density * layer["weights"])]


def _names(layers: list[str]) -> str:
    return f"{layers[:6]}{' ...' if len(layers) > 6 else ''}"


def check_collapse(cfg: DictConfig, report: Mapping[str, Any]) -> list[str]:
    """Tag the active run with its collapsed and floor layers; warn, or refuse a collapsed mask before training.

    Returns:
        The collapsed (emptied) layers.
    """
    floor = floor_layers(report, float(cfg.prune.min_density))
    if floor:
        mlflow.set_tag(FLOOR_TAG, ",".join(floor))
        log.warning("mask holds %d layer(s) at the floor prune.min_density=%s, which the scope would have emptied: "
                    "%s; the run is a result, read it knowing that", len(floor), cfg.prune.min_density, _names(floor))
    if report.get("dead_channels"):
        log.info("mask leaves %d output channel(s) with no weight (listed per layer in sparsity.json)",
                 report["dead_channels"])
    collapsed = collapsed_layers(report)
    if not collapsed:
        return collapsed
    mlflow.set_tag(COLLAPSED_TAG, ",".join(collapsed))
    message = (f"mask leaves {len(collapsed)} layer(s) with no weight: {_names(collapsed)}; "
               f"signal cannot pass through them")
    if cfg.prune.on_collapse == "refuse":
        raise CollapsedMaskError(message + " (prune.on_collapse=refuse)")
    log.warning("%s (prune.on_collapse=warn: training anyway)", message)
    return collapsed


def divergence(result: FitResult, dense_accuracy: float, num_classes: int) -> str | None:
    """`nan` if the loss became NaN/inf, `chance` if it never left chance level, else None.

    Chance is judged only when the dense parent itself learned (accuracy above twice
    chance): otherwise every run of that config sits at chance and the verdict means nothing.
    """
    if result.diverged:
        return "nan"
    chance_loss = math.log(num_classes)
    learned = dense_accuracy > 2.0 / num_classes
    stuck = result.last_train_loss is not None and result.last_train_loss >= CHANCE_LOSS_FRACTION * chance_loss
    if learned and stuck and result.test_accuracy <= 1.5 / num_classes:
        return "chance"
    return None
