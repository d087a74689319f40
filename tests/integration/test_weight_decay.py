"""`train.weight_decay_mode`: `l2` is TF-slim's L2 loss on kernels only, `decoupled` the optimizer's decay of everything."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from lth.config.cell import DataConfig, ModelConfig, TrainConfig
from lth.config.pieces import piece
from lth.config.vocabulary import ConfigError
from lth.data import load_data
from lth.pruning.scopes import prune_masks
from lth.training.fitting import build_optimizer
from lth.training.models import kernel_path
from lth.training.network import MaskedNetwork, attach_kernel_l2

DECAY, RATE = 0.01, 0.1  # large enough that one step's decay stands far above float32 rounding
KERNEL_LAYERS = ("conv", "depthwise", "dense")


def _train_cfg(mode: str, decay: float = DECAY, optimizer: str = "sgd", momentum: float = 0.0) -> TrainConfig:
    return piece(TrainConfig, {"seed": 0, "epochs": 1, "batch_size": 8, "optimizer": optimizer, "learning_rate": RATE,
                             "momentum": momentum, "weight_decay": decay, "weight_decay_mode": mode,
                             "lr_schedule": "constant", "warmup_epochs": 0, "step_milestones": [], "step_gamma": 0.1,
                             "lr_scaling": "none", "lr_reference_batch": 256}, "train")


def _toy(mode: str | None) -> keras.Model:
    """Conv (with bias) -> BatchNorm -> depthwise (with bias) -> dense, seeded alike for every mode.

    mode None: no weight decay at all, the reference the decayed steps are compared with.
    """
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="dense")(x))
    cfg = _train_cfg(mode or "decoupled", DECAY if mode else 0.0)
    if mode == "l2":
        attach_kernel_l2(model, DECAY)
    model.compile(optimizer=build_optimizer(cfg, 1, 0), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _one_step(model: keras.Model) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    model.train_on_batch(rng.normal(size=(8, 6, 6, 2)).astype("float32"), rng.integers(0, 3, 8))
    return {variable.path: variable.numpy() for variable in model.trainable_weights}


def test_l2_loss_term_is_half_decay_times_the_squared_kernels_only() -> None:
    model = _toy("l2")
    regularised = {variable.path for variable in model.trainable_weights if variable.regularizer is not None}
    assert regularised == {f"{name}/kernel" for name in KERNEL_LAYERS}  # no bias, no BatchNorm gamma/beta
    expected = DECAY / 2 * sum(float(np.sum(model.get_layer(name).kernel.numpy().astype(np.float64) ** 2))
                               for name in KERNEL_LAYERS)
    assert float(keras.ops.sum(model.losses)) == pytest.approx(expected, rel=1e-6)


def test_l2_decays_kernels_by_rate_times_decay_and_leaves_batchnorm_and_biases_alone() -> None:
    start = {variable.path: variable.numpy() for variable in _toy(None).trainable_weights}
    plain, l2, decoupled = _one_step(_toy(None)), _one_step(_toy("l2")), _one_step(_toy("decoupled"))
    for path, before in start.items():
        decayed = -RATE * DECAY * before  # one SGD step of gradient decay * w, momentum 0
        if path.endswith("/kernel"):
            np.testing.assert_allclose(l2[path] - plain[path], decayed, rtol=2e-3, atol=1e-9, err_msg=path)
        else:  # BatchNorm gamma/beta and biases: not one bit of decay under l2
            np.testing.assert_array_equal(l2[path], plain[path], err_msg=path)
        # decoupled, the old behaviour: the optimizer shrinks every variable, BatchNorm and biases too
        np.testing.assert_allclose(decoupled[path] - plain[path], decayed, rtol=2e-3, atol=1e-9, err_msg=path)
    assert any(np.any(start[path] != 0) for path in start if not path.endswith("/kernel"))  # something to decay


def test_the_optimizer_decays_nothing_under_l2() -> None:
    assert build_optimizer(_train_cfg("l2"), 1, 0).weight_decay is None
    assert build_optimizer(_train_cfg("decoupled"), 1, 0).weight_decay == pytest.approx(DECAY)
    adam = build_optimizer(_train_cfg("l2", optimizer="adamw"), 1, 0)
    assert adam.weight_decay is None and not isinstance(adam, keras.optimizers.AdamW)
    assert build_optimizer(_train_cfg("decoupled", optimizer="adamw"), 1, 0).weight_decay == pytest.approx(DECAY)


def test_an_unknown_mode_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^train.weight_decay_mode must be decoupled or l2, got 'L2'$"):
        _train_cfg("L2")
    before_the_key = {"seed": 0, "epochs": 1, "batch_size": 8, "learning_rate": RATE, "weight_decay": 0.1}
    assert piece(TrainConfig, before_the_key, "train").weight_decay_mode == "decoupled"  # configs from before the key


def test_masked_network_under_l2_keeps_masked_weights_at_exact_zero() -> None:
    model_cfg = piece(ModelConfig, {"name": "mobilenet_v2", "alpha": 0.35, "input_size": 32, "num_classes": 10,
                                    "bn_momentum": 0.9}, "model")
    train_cfg = dataclasses.replace(_train_cfg("l2", 4e-5, momentum=0.9), batch_size=32, devices="auto",
                                    precision="float32", sync_bn=False, steps_per_execution=1)
    data_cfg = piece(DataConfig, {"name": "synthetic", "num_classes": 10, "image_size": 32, "train_size": 96,
                                  "val_size": 32, "test_size": 32, "split_seed": 0}, "data")
    data = load_data(data_cfg, 32, 0)
    network = MaskedNetwork(model_cfg, train_cfg, data.steps_per_epoch)
    assert network.model.optimizer.weight_decay is None
    kernels = {layer.name for layer in network.model.layers if getattr(layer, "kernel", None) is not None
               and layer.kernel.regularizer is not None}
    assert kernels == set(network.mask_variables)  # every conv, depthwise and dense kernel, nothing else
    names = list(network.mask_variables)
    masks = prune_masks({n: network.initial_weights[kernel_path(n)] for n in names}, 0.8, "layer")
    network.load(network.initial_weights, masks, start_epoch=0)
    network.model.fit(data.train, epochs=1, verbose=0, shuffle=False)
    after = network.snapshot()
    assert sum(int(np.count_nonzero(after[kernel_path(n)][~masks[n]])) for n in names) == 0
    expected = 4e-5 / 2 * sum(float(np.sum(after[kernel_path(n)].astype(np.float64) ** 2)) for n in names)
    assert float(keras.ops.sum(network.model.losses)) == pytest.approx(expected, rel=1e-5)
