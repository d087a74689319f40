"""Compaction: the same function as a masked model, with the channels that carry nothing removed.

A channel of a space (lth.pruning.graph) is *needed* when some layer that is kept reads it
with a non-zero weight and cannot fold it, i.e. it is not a constant that layer sees as one
number (lth.export.constants). Needed-ness starts at the model's outputs (and every fixed
space) and flows backwards through the Conv2D and Dense layers until nothing changes. Every
other channel is removed from every layer of its space: the producing kernels' output
slices, the BatchNorm entries, the depthwise filters, and the input slices of the layers
that read it, whose biases take the constant it carried (a bias is added where a layer had
none). The result computes the masked model's logits, to float rounding.

A space that would lose every channel keeps its first one: Keras has no zero-width layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np

from lth.export.constants import Channels, bias_of, channel_count, folds, kernel_sum, propagate
from lth.pruning.graph import LayerGraph, layer_graph

CONSTRAINT_KEYS: tuple[str, ...] = ("kernel_constraint", "depthwise_constraint", "bias_constraint")


@dataclass(frozen=True)
class Compaction:
    """A compacted model and what was removed.

    Attributes:
        model: The compacted Keras model (no masks: every weight it has is a weight it uses).
        kept: The channels each space keeps, by the name of the space's first layer.
        removed_channels: Channels removed, summed over spaces.
        folded_layers: Layers whose bias took a removed channel's constant.
    """

    model: keras.Model
    kept: dict[str, np.ndarray]
    removed_channels: int
    folded_layers: list[str]


def _reads(layer: keras.layers.Layer) -> np.ndarray:
    """(in, out): where a Conv2D or Dense layer has a non-zero weight."""
    kernel = np.asarray(layer.kernel.numpy())
    return (kernel.reshape(-1, *kernel.shape[-2:]) != 0).any(axis=0)


def needed_channels(model: keras.Model, graph: LayerGraph, constants: Mapping[str, Channels]) -> dict[int, np.ndarray]:
    """The channels of every space that the compacted model must still compute."""
    width = {graph.space[name]: channel_count(model.get_layer(name)) for name in graph.nodes}
    needed = {space: np.full(count, space in graph.fixed) for space, count in width.items()}
    kernels = [name for name, node in graph.nodes.items() if node.kind in ("conv", "dense")]
    reads = {name: _reads(model.get_layer(name)) for name in kernels}
    changed = True
    while changed:  # a least fixpoint: channels only ever become needed
        changed = False
        for name in kernels:
            source = graph.nodes[name].inputs[0]
            wanted = reads[name][:, needed[graph.space[name]]].any(axis=1)
            wanted &= ~folds(constants[source], model.get_layer(name))
            space = graph.space[source]
            if (wanted & ~needed[space]).any():
                needed[space] = needed[space] | wanted
                changed = True
    for keep in needed.values():
        if not keep.any():
            keep[0] = True
    return needed


def _weights(layer: keras.layers.Layer, kind: str, keep_in: np.ndarray | None, keep_out: np.ndarray,
             incoming: Channels | None) -> tuple[list[np.ndarray], bool]:
    """The compacted layer's weights, and whether a removed channel's constant was folded into its bias."""
    values = [np.asarray(weight.numpy()) for weight in layer.weights]
    if kind in ("conv", "dense"):
        assert keep_in is not None and incoming is not None  # given for every conv and dense layer
        kernel = values[0]
        removed = ~keep_in
        fold = np.where(removed & folds(incoming, layer), incoming.value, 0.0) @ kernel_sum(layer)
        bias = (bias_of(layer, kernel.shape[-1]) + fold)[keep_out].astype(kernel.dtype)
        sliced = kernel[..., keep_in, :][..., keep_out]
        return [sliced, bias], bool(fold[keep_out].any())
    if kind == "depthwise":
        return [values[0][:, :, keep_out, :], *(value[keep_out] for value in values[1:])], False
    if kind == "batchnorm":
        return [value[keep_out] for value in values], False
    return values, False


def compact_model(model: keras.Model) -> Compaction:
    """Remove every channel the model's outputs do not need, folding constants into the next biases.

    Works on any flat functional model; channels are found dead by their exact zeros, so a
    masked model needs no mask to be compacted. Layers this does not know keep every
    channel they touch.
    """
    graph = layer_graph(model)
    constants = propagate(model, graph)
    needed = needed_channels(model, graph, constants)
    new_weights: dict[str, list[np.ndarray]] = {}
    folded: list[str] = []
    needs_bias: set[str] = set()
    for name, node in graph.nodes.items():
        layer = model.get_layer(name)
        keep_out = needed[graph.space[name]]
        keep_in = needed[graph.input_space(name)] if node.kind in ("conv", "dense") else None
        incoming = constants[node.inputs[0]] if node.kind in ("conv", "dense") else None
        weights, took_constant = _weights(layer, node.kind, keep_in, keep_out, incoming)
        has_bias = getattr(layer, "bias", None) is not None
        if took_constant:
            folded.append(name)
            if not has_bias:
                needs_bias.add(name)
        elif node.kind in ("conv", "dense") and not has_bias:
            weights = weights[:1]
        new_weights[name] = weights

    def rebuilt(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        for key in CONSTRAINT_KEYS:  # the masks: a compacted model keeps only weights it uses
            if key in config:
                config[key] = None
        kind = graph.nodes[layer.name].kind
        if kind == "conv":
            config["filters"] = int(needed[graph.space[layer.name]].sum())
        elif kind == "dense":
            config["units"] = int(needed[graph.space[layer.name]].sum())
        if layer.name in needs_bias:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    cloned = keras.models.clone_model(model, clone_function=rebuilt)
    # clone_model compiles the clone like the original; a deployable model carries no optimizer state.
    compacted = keras.Model(cloned.inputs, cloned.outputs, name=model.name)
    for name, weights in new_weights.items():
        if weights:
            compacted.get_layer(name).set_weights(weights)
    first = {}
    for name in graph.nodes:
        first.setdefault(graph.space[name], name)
    kept = {first[space]: np.flatnonzero(keep) for space, keep in needed.items()}
    removed = sum(int((~keep).sum()) for keep in needed.values())
    return Compaction(compacted, kept, removed, folded)
