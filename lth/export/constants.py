"""Which channels of a model carry a constant, and which constant.

A channel whose kernel slice is entirely pruned computes no function of the input: it
passes on its bias, and after BatchNorm and the activation a constant (BatchNorm's β,
shifted by its statistics). This module follows such constants through the graph
(lth.pruning.graph), channel by channel, exactly:

- a Conv2D or Dense output is constant when every input channel it reads with a non-zero
  weight is constant, and the value reaches every output position alike (1x1 kernels,
  `valid` padding, or a constant 0, which zero padding cannot change); the layer's own
  activation (LeNet's Dense layers carry a ReLU) then applies to it;
- a depthwise channel is constant when its kernel is all zero, or its input is constant
  under the same rule;
- BatchNorm and activations map a constant to a constant: the layer itself computes it,
  on a 1x1 tensor, so the arithmetic is the model's own;
- zero padding keeps only a constant 0; an `Add` of constants is their sum; global pooling
  keeps the value.

A spatially padded convolution (`same`, kernel > 1) sees zeros at the border, so a
non-zero constant there is *not* constant at its output: such a channel is never folded.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from lth.pruning.graph import CHANNEL_MIXING, LayerGraph


@dataclass(frozen=True)
class Channels:
    """Per channel of one layer's output: is it constant, and its value where it is."""

    constant: np.ndarray  # bool, one per channel
    value: np.ndarray  # float64; meaningful where `constant`

    @classmethod
    def varying(cls, count: int) -> Channels:
        """No channel is known to be constant."""
        return cls(np.zeros(count, dtype=bool), np.zeros(count))


def channel_count(layer: keras.layers.Layer) -> int:
    """Channels of a layer's output (its last axis)."""
    return int(layer.output.shape[-1])


def spreads_evenly(layer: keras.layers.Layer) -> bool:
    """Whether a constant input reaches every output position of a (depthwise) convolution alike."""
    kernel = tuple(layer.kernel_size) if hasattr(layer, "kernel_size") else (1, 1)
    return kernel == (1, 1) or layer.padding == "valid"


def folds(incoming: Channels, layer: keras.layers.Layer) -> np.ndarray:
    """Input channels of `layer` that are constant in a way its outputs see as one number per channel."""
    if spreads_evenly(layer):
        return incoming.constant
    return incoming.constant & (incoming.value == 0.0)  # zero padding cannot change a constant 0


def kernel_sum(layer: keras.layers.Layer) -> np.ndarray:
    """The kernel summed over its spatial axes: (in, out) for Conv2D and Dense, (channels,) for depthwise."""
    kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return kernel.sum(axis=(0, 1))[:, 0]
    return kernel.reshape(-1, *kernel.shape[-2:]).sum(axis=0) if kernel.ndim > 2 else kernel


def bias_of(layer: keras.layers.Layer, count: int) -> np.ndarray:
    """A layer's bias, or zeros when it has none."""
    bias = getattr(layer, "bias", None)
    return np.zeros(count) if bias is None else np.asarray(bias.numpy(), dtype=np.float64)


def _activated(layer: keras.layers.Layer, constant: np.ndarray, value: np.ndarray) -> Channels:
    """A kernel layer's own `activation` applied to its constant outputs (LeNet's Dense layers carry a ReLU)."""
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", "linear")
    if name == "linear" or not constant.any():
        return Channels(constant, np.where(constant, value, 0.0))
    if name in CHANNEL_MIXING:  # not a function of each channel alone
        return Channels.varying(constant.size)
    shape = (1,) * (len(layer.output.shape) - 1) + (value.size,)
    activated = np.asarray(keras.ops.convert_to_numpy(activation(np.where(constant, value, 0.0).astype("float32")
                                                                 .reshape(shape))), dtype=np.float64).reshape(-1)
    return Channels(constant, np.where(constant, activated, 0.0))


def _kernel_layer(layer: keras.layers.Layer, incoming: Channels) -> Channels:
    kernel = np.asarray(layer.kernel.numpy())
    reads = (kernel.reshape(-1, *kernel.shape[-2:]) != 0).any(axis=0)  # (in, out): a non-zero weight
    foldable = folds(incoming, layer)
    constant = ~(reads & ~foldable[:, None]).any(axis=0)
    value = bias_of(layer, kernel.shape[-1]) + np.where(foldable, incoming.value, 0.0) @ kernel_sum(layer)
    return _activated(layer, constant, value)


def _depthwise(layer: keras.layers.Layer, incoming: Channels) -> Channels:
    sums = kernel_sum(layer)
    dead = ~(np.asarray(layer.kernel.numpy()) != 0).any(axis=(0, 1))[:, 0]
    constant = dead | folds(incoming, layer)
    value = bias_of(layer, sums.size) + np.where(dead, 0.0, incoming.value * sums)
    return _activated(layer, constant, value)


def _mapped(layer: keras.layers.Layer, incoming: Channels) -> Channels:
    """A per-channel layer applied to the constants themselves, in inference mode."""
    if not incoming.constant.any():
        return incoming
    shape = (1,) * (len(layer.output.shape) - 1) + (incoming.value.size,)
    # float32 in: the layer casts to its own compute dtype, as it does in the model
    probe = np.where(incoming.constant, incoming.value, 0.0).astype("float32").reshape(shape)
    mapped = np.asarray(keras.ops.convert_to_numpy(layer(probe, training=False)), dtype=np.float64).reshape(-1)
    return Channels(incoming.constant, np.where(incoming.constant, mapped, 0.0))


def propagate(model: keras.Model, graph: LayerGraph) -> dict[str, Channels]:
    """The constant channels of every layer's output, in network order."""
    found: dict[str, Channels] = {}
    for name, node in graph.nodes.items():
        layer = model.get_layer(name)
        incoming = [found[source] for source in node.inputs]
        if node.kind in ("conv", "dense"):
            found[name] = _kernel_layer(layer, incoming[0])
        elif node.kind == "depthwise":
            found[name] = _depthwise(layer, incoming[0])
        elif node.kind in ("batchnorm", "elementwise"):
            found[name] = _mapped(layer, incoming[0])
        elif node.kind == "pad":
            zero = incoming[0].constant & (incoming[0].value == 0.0)
            found[name] = Channels(zero, np.zeros(zero.size))
        elif node.kind == "pool":
            found[name] = incoming[0]
        elif node.kind == "add":
            constant = np.logical_and.reduce([channels.constant for channels in incoming])
            value = np.sum([channels.value for channels in incoming], axis=0)
            found[name] = Channels(constant, np.where(constant, value, 0.0))
        else:
            found[name] = Channels.varying(channel_count(layer))
    return found
