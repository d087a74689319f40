"""Model construction and whole-model weight snapshots.

Snapshots cover `model.weights`, not just the trainable variables: rewinding a ticket
must restore BatchNorm moving statistics together with the kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import keras
import numpy as np

from lth.common.weights import Weights, kernel_path, load_weights, save_weights
from lth.config.cell import ModelConfig

__all__ = ["ARCHITECTURES", "Weights", "build_model", "kernel_path", "load_weights", "restore", "save_weights",
           "snapshot"]


def build_model(model: ModelConfig, seed: int, precision: str = "float32", sync_bn: bool = False) -> keras.Model:
    """Build the configured network with seeded initial weights.

    The model takes uint8 images and normalises them to [-1, 1] itself, so the input
    pipeline can stay in uint8 (4x less host-to-device traffic). It returns float32
    logits whatever the precision.

    Args:
        model: The `model` config group.
        seed: Seed for the initial weights (and Python/NumPy/backend RNGs).
        precision: Keras dtype policy of the layers (`float32`, `mixed_bfloat16`, `mixed_float16`).
        sync_bn: BatchNormalization statistics over the global batch instead of each replica's
            (TensorFlow backend; JAX's DataParallel computes them globally anyway).
    """
    from lth.training.devices import precision_policy, seed_everything

    if model.name not in ARCHITECTURES:
        raise ValueError(f"model.name must be one of {sorted(ARCHITECTURES)}, got {model.name!r}")
    with precision_policy(precision):
        network = ARCHITECTURES[model.name](model, seed)
    if sync_bn and keras.backend.backend() == "tensorflow":
        # Keras reads `synchronized` when the layer is built: set on a built model it only half works
        # (measured: 4 replicas vs 1 still differed by 3.4 in a weight, against 8.9 unsynchronised),
        # so the model is rebuilt from its config with the flag on.
        config = network.get_config()
        for layer in config["layers"]:
            if layer["class_name"] == "BatchNormalization":
                layer["config"]["synchronized"] = True
        seed_everything(seed)  # the same draws as the unsynchronised build
        network = keras.Model.from_config(config)
    return network


def _mobilenet_v2(config: ModelConfig, seed: int) -> keras.Model:
    """MobileNetV2 with uint8 input, float32 logits and the configured BatchNorm momentum."""
    from lth.training.devices import seed_everything

    seed_everything(seed)
    size = config.input_size
    inputs = keras.Input((size, size, 3), dtype="uint8", name="image")
    scaled = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(inputs)
    backbone = keras.applications.MobileNetV2(
        input_tensor=scaled,
        alpha=config.alpha,
        include_top=True,
        weights=None,  # never download: every network starts from its own seeded init
        classes=config.num_classes,
        classifier_activation=None,
    )
    logits = backbone.output
    if keras.config.dtype_policy().name != "float32":  # softmax and loss in float32, the standard mixed recipe
        logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(logits)
    model = keras.Model(inputs, logits, name=backbone.name)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # Read at trace time, so setting it before compile() is enough.
            layer.momentum = config.bn_momentum
    return model


def _lenet_300_100(config: ModelConfig, seed: int) -> keras.Model:
    """LeNet-300-100 of Frankle & Carbin (2019): 784-300-100-10, ReLU, Gaussian Glorot init, zero biases.

    Grey uint8 images of `input_size` x `input_size` x `input_channels` are scaled to [0, 1]
    and flattened; the layers are named fc1, fc2 and predictions (like MobileNetV2's head,
    so `prune.layer_rates: {predictions: 0.1}` means the output layer in both).
    """
    from lth.training.devices import seed_everything

    seed_everything(seed)
    size, channels = config.input_size, config.input_channels
    init = keras.initializers.GlorotNormal(seed=seed)  # the paper's Gaussian Glorot (Glorot & Bengio 2010)
    inputs = keras.Input((size, size, channels), dtype="uint8", name="image")
    hidden = keras.layers.Flatten(name="flatten")(keras.layers.Rescaling(1.0 / 255.0, name="normalize")(inputs))
    for index, width in enumerate(config.hidden_units, start=1):
        hidden = keras.layers.Dense(int(width), activation="relu", kernel_initializer=init, name=f"fc{index}")(hidden)
    logits = keras.layers.Dense(config.num_classes, kernel_initializer=init, name="predictions",
                                dtype="float32")(hidden)  # float32 logits whatever the precision
    return keras.Model(inputs, logits, name="lenet_300_100")


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


# model.name -> builder of the seeded network (uint8 images in, float32 logits out).
ARCHITECTURES: dict[str, Callable[[ModelConfig, int], keras.Model]] = {
    "mobilenet_v2": _mobilenet_v2,
    "lenet_300_100": _lenet_300_100,
}
