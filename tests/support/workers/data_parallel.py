"""Trains with masks on 1 and on 4 logical CPU devices and prints what the test compares (JSON).

Run as `python -m tests.support.workers.data_parallel {toy|mobilenet|jax}`: a BN-free
toy model or lth's MobileNetV2 on TensorFlow, or lth's MobileNetV2 on JAX. A process of
its own: the CPU must be split into devices before the backend starts.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np

if sys.argv[1:2] == ["jax"]:  # JAX: 4 host devices; must be set before JAX starts
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
else:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 4)

import keras  # noqa: E402  (after the device split, on purpose)
from omegaconf import OmegaConf  # noqa: E402

from lth.data import load_data  # noqa: E402
from lth.pruning.masks import attach_masks, prunable_layer_names  # noqa: E402
from lth.pruning.scopes import prune_masks  # noqa: E402
from lth.training.devices import data_parallel  # noqa: E402
from lth.training.models import kernel_path  # noqa: E402
from lth.training.network import MaskedNetwork  # noqa: E402

GLOBAL_BATCH = 32
STEPS = 16  # for the BN-free model
BN_STEPS = 1  # for MobileNetV2: after one step, per-replica BatchNorm statistics show plainly, and
# nothing else has had time to amplify float rounding (masked-out channels have zero variance)


def _leaked(weights: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> int:
    return sum(int(np.count_nonzero(weights[kernel_path(name)][~mask])) for name, mask in masks.items())


def _batches(size: int, classes: int) -> Any:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (GLOBAL_BATCH * STEPS, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, classes, GLOBAL_BATCH * STEPS, dtype=np.int32)
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(GLOBAL_BATCH, drop_remainder=True)


def toy(devices: int) -> dict[str, np.ndarray | int]:
    """A BN-free Conv2D -> DepthwiseConv2D -> Dense model, half of each kernel masked, 16 SGD steps."""
    from lth.config.cell import TrainConfig
    from lth.config.pieces import piece

    train = piece(TrainConfig, {"epochs": 1, "batch_size": GLOBAL_BATCH, "learning_rate": 0.1, "seed": 0,
                                "devices": devices}, "train")
    with data_parallel(train) as replicas:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((8, 8, 3), dtype="uint8"),
            keras.layers.Rescaling(1 / 127.5, offset=-1),
            keras.layers.Conv2D(8, 3, name="conv"),
            keras.layers.DepthwiseConv2D(3, name="depthwise"),
            keras.layers.Flatten(),
            keras.layers.Dense(4, name="dense"),
        ])
        names = prunable_layer_names(model)
        kernels = {name: model.get_layer(name).kernel.numpy() for name in names}
        masks = prune_masks(kernels, 0.5, "layer")
        attach_masks(model, masks)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(_batches(8, 4), epochs=1, verbose=0)
    # keyed by layer/variable name: variable paths differ between the two models
    weights = {f"{layer.name}/{v.name}": v.numpy() for layer in model.layers for v in layer.weights}
    return {"replicas": replicas, "leaked": _leaked(weights, masks), **weights}


def mobilenet(devices: int, sync_bn: bool = False) -> dict[str, np.ndarray | int]:
    """lth's own network (MobileNetV2 alpha 0.35, 32x32) at 80% sparsity, one step."""
    cfg = OmegaConf.create({
        "model": {"name": "mobilenet_v2", "alpha": 0.35, "input_size": 32, "num_classes": 10, "bn_momentum": 0.9},
        "train": {"seed": 0, "epochs": 1, "batch_size": GLOBAL_BATCH, "optimizer": "sgd", "learning_rate": 0.05,
                  "momentum": 0.9, "weight_decay": 0.0005, "lr_schedule": "constant", "warmup_epochs": 0,
                  "step_milestones": [], "step_gamma": 0.1, "devices": devices, "precision": "float32",
                  "sync_bn": sync_bn, "lr_scaling": "none", "lr_reference_batch": 256, "steps_per_execution": 1},
        "data": {"name": "synthetic", "num_classes": 10, "image_size": 32, "train_size": GLOBAL_BATCH * BN_STEPS,
                 "val_size": 32, "test_size": 32, "split_seed": 0},
    })
    from lth.config.cell import DataConfig, ModelConfig, TrainConfig
    from lth.config.pieces import piece

    model, train = piece(ModelConfig, cfg.model, "model"), piece(TrainConfig, cfg.train, "train")
    data = load_data(piece(DataConfig, cfg.data, "data"), GLOBAL_BATCH, 0)
    network = MaskedNetwork(model, train, data.steps_per_epoch)
    names = list(network.mask_variables)
    masks = prune_masks({name: network.initial_weights[kernel_path(name)] for name in names}, 0.8, "layer")
    network.load(network.initial_weights, masks, start_epoch=0)
    network.model.fit(data.train, epochs=1, verbose=0)
    weights = network.snapshot()
    return {"replicas": network.replicas, "leaked": _leaked(weights, masks), "initial": network.initial_weights,
            **weights}


NOT_WEIGHTS = ("replicas", "leaked", "initial")


def _max_difference(left: dict, right: dict) -> float:
    return max(float(np.max(np.abs(left[path] - right[path]))) for path in left if path not in NOT_WEIGHTS)


def _relative_update_difference(one: dict, four: dict) -> float:
    """|update(4) - update(1)| / |update(1)| over every trained variable (BN statistics excluded).

    One step of a masked MobileNetV2 on noise has channels of almost zero variance, where
    BatchNorm's 1/sqrt(var + eps) amplifies any change in summation order; single weights
    then move apart by ~1e-2 while the update as a whole agrees to ~2e-3.
    """
    paths = [path for path in one if path not in NOT_WEIGHTS and "moving_" not in str(path)]
    updates = [(one[path] - one["initial"][path], four[path] - one["initial"][path]) for path in paths]
    apart = sum(float(np.sum((update4 - update1) ** 2)) for update1, update4 in updates)
    return (apart / sum(float(np.sum(update1 ** 2)) for update1, _ in updates)) ** 0.5


if __name__ == "__main__":
    if sys.argv[1] == "toy":
        one, four = toy(1), toy(4)
    else:  # lth's MobileNetV2 on TensorFlow (`mobilenet`) or JAX (`jax`)
        one, four = mobilenet(1), mobilenet(4)
    statistics = [path for path in one if "moving_" in str(path)]
    print(json.dumps({"replicas": [one["replicas"], four["replicas"]], "leaked": [one["leaked"], four["leaked"]],
                      "max_difference": _max_difference(one, four),
                      "relative_update_difference": _relative_update_difference(one, four) if "initial" in one else None,
                      "max_difference_bn_statistics": max((float(np.max(np.abs(one[p] - four[p]))) for p in statistics),
                                                          default=0.0)}))
