"""Verdicts on a mask that make a sparse run's number not a result: collapsed layers.

*Collapsed* means a layer kept no weight at all: nothing passes through it but its bias,
so the network computes a constant there. That is what `prune.on_collapse=refuse` refuses.
A layer held *at the floor* (exactly prune.min_density's ceil(min_density * size) weights)
is one the scope would have emptied; the floor keeps a token path open. The run is a
result and is reported as such, with a warning (and the tag `lth.floor_layers`, written
by lth.stages.sparse: this module knows no tracker).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("lth")


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


@dataclass(frozen=True)
class Collapse:
    """What a mask's sparsity report says about its layers."""

    collapsed: list[str]  # layers with no weight left
    floor: list[str]  # layers held at the min_density floor

    def refuse_or_warn(self, on_collapse: str, min_density: float) -> None:
        """Warn about floor and collapsed layers; under `on_collapse=refuse`, refuse a collapsed mask.

        Raises:
            CollapsedMaskError: A layer is empty and `on_collapse` is `refuse`.
        """
        if self.floor:
            log.warning("mask holds %d layer(s) at the floor prune.min_density=%s, which the scope would have "
                        "emptied: %s; the run is a result, read it knowing that", len(self.floor), min_density,
                        _names(self.floor))
        if not self.collapsed:
            return
        message = (f"mask leaves {len(self.collapsed)} layer(s) with no weight: {_names(self.collapsed)}; "
                   f"signal cannot pass through them")
        if on_collapse == "refuse":
            raise CollapsedMaskError(message + " (prune.on_collapse=refuse)")
        log.warning("%s (prune.on_collapse=warn: training anyway)", message)


def judge(report: Mapping[str, Any], min_density: float) -> Collapse:
    """The collapsed and floor layers of a sparsity report (lth.pruning.masks.sparsity_report)."""
    if report.get("dead_channels"):
        log.info("mask leaves %d output channel(s) with no weight (listed per layer in sparsity.json)",
                 report["dead_channels"])
    return Collapse(collapsed_layers(report), floor_layers(report, min_density))
