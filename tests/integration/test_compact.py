"""Compaction: the compacted model computes the masked model's logits, and removes exactly what is exact to remove."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from lth.config.cell import ModelConfig
from lth.export.compact import compact_model
from lth.export.cost import model_cost
from lth.pruning.graph import layer_graph
from lth.training.models import build_model


def _random_batchnorm(model: keras.Model, rng: np.random.Generator) -> None:
    """Statistics and shifts far from their initial values, so a dead channel carries a real constant."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            size = layer.gamma.shape
            layer.set_weights([rng.uniform(0.5, 1.5, size), rng.normal(0, 0.5, size), rng.normal(0, 0.3, size),
                               rng.uniform(0.5, 2.0, size)])


def _kill_channels(model: keras.Model, rng: np.random.Generator, fraction: float) -> None:
    """Zero the whole kernel slice of a random `fraction` of each conv's and depthwise's output channels."""
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            kernel = np.array(layer.kernel.numpy())
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
            dead = rng.random(kernel.shape[-2] if depthwise else kernel.shape[-1]) < fraction
            if depthwise:
                kernel[:, :, dead, :] = 0.0
            else:
                kernel[..., dead] = 0.0
            layer.kernel.assign(kernel)


def _tiny_mobilenet() -> keras.Model:
    return build_model(ModelConfig("mobilenet_v2", 32, 10, alpha=0.35, bn_momentum=0.9), 0)


def _images(count: int = 48, size: int = 32, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (count, size, size, channels)).astype("uint8")


def test_channel_spaces_of_mobilenet_v2_follow_depthwise_and_residual_adds() -> None:
    model = _tiny_mobilenet()
    graph = layer_graph(model)
    space = graph.space
    pooling = next(layer.name for layer in model.layers  # its name depends on the models built before it
                   if isinstance(layer, keras.layers.GlobalAveragePooling2D))
    assert space["Conv1"] == space["expanded_conv_depthwise"] == space["Conv1_relu"]  # depthwise filters its input
    assert space["block_1_expand"] == space["block_1_pad"] == space["block_1_depthwise_relu"]
    assert space["block_1_project_BN"] == space["block_2_project_BN"] == space["block_2_add"]  # one residual stream
    assert space["block_2_expand"] != space["block_1_expand"]
    assert space["Conv_1"] == space[pooling]
    assert {space["image"], space["normalize"], space["predictions"]} <= graph.fixed
    assert space["Conv_1"] not in graph.fixed


@pytest.mark.parametrize("fraction", [0.3, 0.6])
def test_compacted_mobilenet_gives_the_masked_logits(fraction: float) -> None:
    rng = np.random.default_rng(0)
    model = _tiny_mobilenet()
    _random_batchnorm(model, rng)
    _kill_channels(model, rng, fraction)
    images = _images()
    compaction = compact_model(model)
    expected = model.predict(images, verbose=0)
    got = compaction.model.predict(images, verbose=0)
    assert np.abs(got - expected).max() < 1e-4
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    assert compaction.removed_channels > 0 and compaction.folded_layers  # constants really were folded
    assert model_cost(compaction.model).params < model_cost(model).params
    assert compaction.model.output_shape == model.output_shape


def _chain(beta: float, padding: str) -> keras.Model:
    """Conv 1x1 (channel 1 dead) -> BN (shift `beta`) -> ReLU -> Conv 3x3 `padding` -> logits."""
    inputs = keras.Input((6, 6, 2))
    hidden = keras.layers.Conv2D(3, 1, use_bias=False, name="first")(inputs)
    hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    hidden = keras.layers.ReLU(name="relu")(hidden)
    hidden = keras.layers.Conv2D(4, 3, padding=padding, use_bias=False, name="second")(hidden)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D(name="pool")(hidden))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(1, 1, 2, 3))
    kernel[..., 1] = 0.0
    model.get_layer("first").kernel.assign(kernel)
    model.get_layer("bn").set_weights([np.ones(3), np.full(3, beta), np.zeros(3), np.ones(3)])
    return model


@pytest.mark.parametrize(("beta", "padding", "removed"), [
    (0.7, "same", False),   # a non-zero constant meets zero padding at the border: not a constant there, kept
    (-0.5, "same", True),   # ReLU makes it exactly 0, which padding cannot change: removed
    (0.7, "valid", True),   # no padding: the constant reaches every position alike, folded into a new bias
])
def test_a_dead_channel_is_removed_only_where_that_is_exact(beta: float, padding: str, removed: bool) -> None:
    model = _chain(beta, padding)
    compaction = compact_model(model)
    images = np.random.default_rng(2).normal(size=(8, 6, 6, 2)).astype("float32")
    assert np.abs(compaction.model.predict(images, verbose=0) - model.predict(images, verbose=0)).max() < 1e-5
    assert compaction.model.get_layer("first").filters == (2 if removed else 3)
    assert ("second" in compaction.folded_layers) == (removed and beta > 0)


def _inverted_residual() -> keras.Model:
    """Stream (4) -> expand 1x1 (6) -> depthwise 3x3 same -> project 1x1 (4) -> Add with the stream -> head."""
    inputs = keras.Input((5, 5, 3))
    stream = keras.layers.Conv2D(4, 1, use_bias=False, name="stem")(inputs)
    hidden = keras.layers.ReLU(name="expand_relu")(
        keras.layers.BatchNormalization(name="expand_bn")(keras.layers.Conv2D(6, 1, use_bias=False, name="expand")(stream)))
    hidden = keras.layers.ReLU(name="dw_relu")(keras.layers.BatchNormalization(name="dw_bn")(
        keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(hidden)))
    project = keras.layers.BatchNormalization(name="project_bn")(
        keras.layers.Conv2D(4, 1, use_bias=False, name="project")(hidden))
    joined = keras.layers.Add(name="add")([stream, project])
    outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D(name="pool")(joined))
    model = keras.Model(inputs, outputs)
    _random_batchnorm(model, np.random.default_rng(3))
    return model


def test_a_dead_depthwise_filter_removes_its_channel_from_the_expansion_too() -> None:
    model = _inverted_residual()
    kernel = np.array(model.get_layer("dw").kernel.numpy())
    kernel[:, :, [1, 4], :] = 0.0
    model.get_layer("dw").kernel.assign(kernel)
    gamma, beta, mean, variance = model.get_layer("dw_bn").get_weights()
    beta[[1, 4]] = [0.8, 1.3]  # what the dead filters pass on: ReLU(beta - gamma * mean / std) > 0
    model.get_layer("dw_bn").set_weights([gamma, beta, np.zeros_like(mean), variance])
    compaction = compact_model(model)
    assert compaction.model.get_layer("expand").filters == 4  # expand's channels 1 and 4 feed only dead filters
    assert compaction.model.get_layer("dw").kernel.shape[2] == 4
    assert "project" in compaction.folded_layers  # the dead filters' BatchNorm constants, now a bias
    images = np.random.default_rng(4).normal(size=(8, 5, 5, 3)).astype("float32")
    assert np.abs(compaction.model.predict(images, verbose=0) - model.predict(images, verbose=0)).max() < 1e-5


def test_a_residual_channel_goes_only_when_every_writer_of_the_stream_is_dead() -> None:
    model = _inverted_residual()
    kernel = np.array(model.get_layer("project").kernel.numpy())
    kernel[..., 2] = 0.0  # the block writes a constant into stream channel 2, but the stem still writes into it
    model.get_layer("project").kernel.assign(kernel)
    assert compact_model(model).model.get_layer("project").filters == 4
    stem = np.array(model.get_layer("stem").kernel.numpy())
    stem[..., 2] = 0.0  # now both writers are dead: the stream's channel 2 is a constant the head folds
    model.get_layer("stem").kernel.assign(stem)
    compaction = compact_model(model)
    assert compaction.model.get_layer("project").filters == 3
    assert compaction.model.get_layer("stem").filters == 3
    assert "head" in compaction.folded_layers
    images = np.random.default_rng(5).normal(size=(8, 5, 5, 3)).astype("float32")
    assert np.abs(compaction.model.predict(images, verbose=0) - model.predict(images, verbose=0)).max() < 1e-5


def test_macs_and_params_are_counted_per_output_position() -> None:
    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False, name="conv")(inputs)  # 4x4 out
    hidden = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(hidden)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(hidden))
    model = keras.Model(inputs, outputs)
    kernel = np.array(model.get_layer("conv").kernel.numpy())
    kernel[..., :2] = 0.0
    model.get_layer("conv").kernel.assign(kernel)
    cost = model_cost(model)
    assert cost.macs == 16 * 3 * 3 * 3 * 4 + 16 * 3 * 3 * 4 + 4 * 2
    assert cost.nonzero_macs == 16 * 3 * 3 * 3 * 2 + 16 * 3 * 3 * 4 + int(np.count_nonzero(
        model.get_layer("head").kernel.numpy()))
    assert cost.params == 3 * 3 * 3 * 4 + 3 * 3 * 4 + 4 * 2 + 2


def test_a_constant_passes_through_the_kernel_layers_own_activation() -> None:
    # LeNet's hidden layers are Dense(activation="relu"): a unit whose inputs are all pruned passes relu(bias).
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(4, activation="relu", name="fc1")(inputs)
    outputs = keras.layers.Dense(3, name="head")(hidden)
    model = keras.Model(inputs, outputs)
    kernel = np.array(model.get_layer("fc1").kernel.numpy())
    kernel[:, [1, 2]] = 0.0
    model.get_layer("fc1").kernel.assign(kernel)
    model.get_layer("fc1").bias.assign(np.array([0.1, -0.8, 0.6, 0.2]))  # relu: 0 for unit 1, 0.6 for unit 2
    compaction = compact_model(model)
    images = np.random.default_rng(6).normal(size=(8, 6)).astype("float32")
    assert compaction.model.get_layer("fc1").units == 2
    assert np.abs(compaction.model.predict(images, verbose=0) - model.predict(images, verbose=0)).max() < 1e-5


def test_an_activation_that_mixes_channels_keeps_them_all() -> None:
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(4, name="fc1")(inputs)
    hidden = keras.layers.Activation("softmax", name="mix")(hidden)
    outputs = keras.layers.Dense(3, name="head")(hidden)
    model = keras.Model(inputs, outputs)
    kernel = np.array(model.get_layer("fc1").kernel.numpy())
    kernel[:, 1] = 0.0
    model.get_layer("fc1").kernel.assign(kernel)
    compaction = compact_model(model)
    images = np.random.default_rng(7).normal(size=(8, 6)).astype("float32")
    assert compaction.model.get_layer("fc1").units == 4  # softmax normalises over every channel
    assert np.abs(compaction.model.predict(images, verbose=0) - model.predict(images, verbose=0)).max() < 1e-5


def test_a_layer_called_twice_is_refused_with_a_value_error() -> None:
    inputs = keras.Input((4,))
    shared = keras.layers.Dense(4, name="shared")
    model = keras.Model(inputs, shared(shared(inputs)))
    with pytest.raises(ValueError, match="flat functional"):
        layer_graph(model)
