"""Model construction and whole-model weight snapshots.

Snapshots cover `model.weights`, not just the trainable variables: rewinding a ticket
must restore BatchNorm moving statistics together with the kernels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
from omegaconf import DictConfig

Weights = dict[str, np.ndarray]


def build_model(model_cfg: DictConfig, seed: int) -> keras.Model:
    """Build the configured network with seeded initial weights.

    The model takes uint8 images and normalises them to [-1, 1] itself, so the input
    pipeline can stay in uint8 (4x less host-to-device traffic). It returns logits.

    Args:
        model_cfg: The `model` config group.
        seed: Seed for the initial weights (and Python/NumPy/backend RNGs).
    """
    if model_cfg.name != "mobilenet_v2":
        raise ValueError(f"model.name must be 'mobilenet_v2', got {model_cfg.name!r}")
    keras.utils.set_random_seed(seed)
    size = int(model_cfg.input_size)
    inputs = keras.Input((size, size, 3), dtype="uint8", name="image")
    scaled = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(inputs)
    backbone = keras.applications.MobileNetV2(
        input_tensor=scaled,
        alpha=float(model_cfg.alpha),
        include_top=True,
        weights=None,  # never download: every network starts from its own seeded init
        classes=int(model_cfg.num_classes),
        classifier_activation=None,
    )
    model = keras.Model(inputs, backbone.output, name=backbone.name)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # Read at trace time, so setting it before compile() is enough.
            layer.momentum = float(model_cfg.bn_momentum)
    return model


def snapshot(model: keras.Model) -> Weights:
    """Copy every model variable (trainable or not), keyed by its unique path."""
    return {variable.path: np.array(variable.numpy()) for variable in model.weights}


def restore(model: keras.Model, weights: Mapping[str, np.ndarray]) -> None:
    """Assign a snapshot back to the model; the variable sets must match exactly."""
    paths = {variable.path for variable in model.weights}
    missing, extra = sorted(paths - set(weights)), sorted(set(weights) - paths)
    if missing or extra:
        raise ValueError(f"weights do not fit the model: missing {missing[:5]}, unexpected {extra[:5]}")
    for variable in model.weights:
        variable.assign(weights[variable.path])


def save_weights(weights: Mapping[str, np.ndarray], path: Path) -> Path:
    """Write a snapshot as an uncompressed `.npz` (fast to read back for rewinding)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **weights)
    return path


def load_weights(path: Path) -> Weights:
    """Read a snapshot written by `save_weights`."""
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


def kernel_path(layer_name: str) -> str:
    """Snapshot key of a layer's kernel."""
    return f"{layer_name}/kernel"
