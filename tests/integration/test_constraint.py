"""Masks enforced by Keras constraints stay exactly zero through real optimizer updates."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from lth.pruning.masks import attach_masks, prunable_layer_names
from lth.pruning.scopes import prune_masks as magnitude_masks


def _toy_model() -> keras.Model:
    """Conv2D -> DepthwiseConv2D -> Dense, the three prunable layer types, without BN."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, name="dense")(x)
    return keras.Model(inputs, outputs)


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 8, 8, 3)).astype("float32"), rng.integers(0, 4, 64)


@pytest.mark.parametrize("optimizer", ["sgd_momentum_decay", "adamw"])
def test_masked_weights_stay_exactly_zero_through_training(optimizer: str) -> None:
    model = _toy_model()
    names = prunable_layer_names(model)
    assert names == ["conv", "depthwise", "dense"]
    masks = magnitude_masks({n: model.get_layer(n).kernel.numpy() for n in names}, 0.7, "global")
    before = {n: model.get_layer(n).kernel.numpy().copy() for n in names}
    attach_masks(model, masks)
    opt = (keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.01) if optimizer == "sgd_momentum_decay"
           else keras.optimizers.AdamW(0.01, weight_decay=0.01))
    model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=3, verbose=0)  # 12 steps, momentum built up
    for name in names:
        kernel = model.get_layer(name).kernel.numpy()
        assert np.count_nonzero(kernel[~masks[name]]) == 0, name
        assert not np.allclose(kernel[masks[name]], before[name][masks[name]]), f"{name} did not train"


def test_attaching_after_compile_is_refused() -> None:
    model = _toy_model()
    model.compile("sgd", "mse")
    masks = {"dense": np.ones(model.get_layer("dense").kernel.shape, dtype=bool)}
    with pytest.raises(RuntimeError, match="before model.compile"):
        attach_masks(model, masks)


def test_mask_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        attach_masks(_toy_model(), {"dense": np.ones((2, 2), dtype=bool)})


def test_unknown_ignore_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not_a_layer"):
        prunable_layer_names(_toy_model(), ["not_a_layer"])
    assert prunable_layer_names(_toy_model(), ["dense"]) == ["conv", "depthwise"]
