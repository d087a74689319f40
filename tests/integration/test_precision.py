"""Mixed precision and synchronized BatchNorm at construction: masks act on float32 master weights."""

from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np
import pytest

from lth.config.cell import ModelConfig
from lth.config.pieces import piece
from lth.data import load_data
from lth.pruning.scopes import prune_masks
from lth.training.models import build_model, kernel_path
from lth.training.network import MaskedNetwork
from tests.support.pieces import pieces

TINY = {"name": "mobilenet_v2", "alpha": 0.35, "input_size": 32, "num_classes": 10, "bn_momentum": 0.9}


def _cfg(precision: str) -> SimpleNamespace:
    return pieces({
        "model": TINY,
        "train": {"seed": 0, "epochs": 2, "batch_size": 32, "optimizer": "sgd", "learning_rate": 0.05,
                  "momentum": 0.9, "weight_decay": 0.0005, "lr_schedule": "constant", "warmup_epochs": 0,
                  "step_milestones": [], "step_gamma": 0.1, "devices": "auto", "precision": precision,
                  "sync_bn": False, "lr_scaling": "none", "lr_reference_batch": 256, "steps_per_execution": 2},
        "data": {"name": "synthetic", "num_classes": 10, "image_size": 32, "train_size": 128, "val_size": 32,
                 "test_size": 32, "split_seed": 0},
    })


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_float32_masked_weights_to_exact_zeros(precision: str) -> None:
    cfg = _cfg(precision)
    data = load_data(cfg.data, 32, 0)
    network = MaskedNetwork(cfg.model, cfg.train, data.steps_per_epoch)
    compute = precision.removeprefix("mixed_")
    assert network.model.get_layer("Conv1").compute_dtype == compute
    assert all(variable.dtype == "float32" for variable in network.model.weights)  # master weights
    assert network.model.output.dtype == "float32"  # logits and loss in float32
    names = list(network.mask_variables)
    masks = prune_masks({n: network.initial_weights[kernel_path(n)] for n in names}, 0.8, "layer")
    network.load(network.initial_weights, masks, start_epoch=0)
    network.model.fit(data.train, epochs=1, verbose=0, shuffle=False)
    after = network.snapshot()
    assert sum(int(np.count_nonzero(after[kernel_path(n)][~masks[n]])) for n in names) == 0
    moved = sum(int(np.count_nonzero(after[kernel_path(n)] != network.initial_weights[kernel_path(n)])) for n in names)
    assert moved > 0.1 * sum(int(m.sum()) for m in masks.values())  # the survivors did train
    optimizer = network.model.optimizer
    if precision == "mixed_float16":  # dynamic loss scaling, reset for each new run
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        optimizer.dynamic_scale.assign(3.0)
        network.load(network.initial_weights, None, start_epoch=0)
        assert float(optimizer.dynamic_scale.numpy()) == optimizer.initial_scale
    else:
        assert not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def test_sync_bn_is_set_at_construction_with_the_same_initial_weights() -> None:
    model_cfg = piece(ModelConfig, TINY, "model")
    plain, synced = build_model(model_cfg, 0), build_model(model_cfg, 0, sync_bn=True)
    batch_norms = [layer for layer in synced.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert batch_norms and all(layer.synchronized for layer in batch_norms)
    assert all(layer.momentum == 0.9 for layer in batch_norms)
    for left, right in zip(plain.weights, synced.weights, strict=True):
        np.testing.assert_array_equal(left.numpy(), right.numpy(), err_msg=left.path)
