"""Verdicts on a sparse run that make a number not a result: collapsed layers and divergence."""

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


class CollapsedMaskError(RuntimeError):
    """A mask leaves a layer (nearly) empty and `prune.on_collapse=refuse`."""


def collapsed_layers(report: Mapping[str, Any], min_density: float) -> list[str]:
    """Layers the scope emptied: no weight kept, or only the floor's ceil(min_density * size).

    A layer held at the floor still counts: the scope would have emptied it and the
    floor only keeps a token path open, which is worth knowing when reading the result.
    """
    return [layer["layer"] for layer in report["layers"]
            if layer["kept"] == 0 or (min_density > 0 and layer["kept"] <= math.ceil(min_density * layer["weights"]))]


def check_collapse(cfg: DictConfig, report: Mapping[str, Any]) -> list[str]:
    """Tag the active run with its collapsed layers; warn, or refuse before training."""
    collapsed = collapsed_layers(report, float(cfg.prune.min_density))
    if not collapsed:
        return collapsed
    mlflow.set_tag("lth.collapsed_layers", ",".join(collapsed))
    message = (f"mask leaves {len(collapsed)} layer(s) empty or at the floor prune.min_density={cfg.prune.min_density}: "
               f"{collapsed[:6]}{' ...' if len(collapsed) > 6 else ''}; signal cannot pass through them")
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
