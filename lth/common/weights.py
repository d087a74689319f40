"""Weight snapshots as plain NumPy: the key of a layer's kernel, and the `.npz` files they travel in.

No Keras here, so the report can read stored weights and masks without loading a backend
(lth.training.models builds and snapshots the networks themselves).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

Weights = dict[str, np.ndarray]  # every variable of a model, keyed by its Keras path


def kernel_path(layer_name: str) -> str:
    """Snapshot key of a layer's kernel."""
    return f"{layer_name}/kernel"


def save_weights(weights: Mapping[str, np.ndarray], path: Path) -> Path:
    """Write a snapshot as an uncompressed `.npz` (fast to read back for rewinding)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **weights)
    return path


def load_weights(path: Path) -> Weights:
    """Read a snapshot written by `save_weights` (or any `.npz` of named arrays, such as `mask.npz`)."""
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}
