"""The layer graph of a functional Keras model, and the channel spaces its layers share.

A *channel space* is a set of tensors whose channel c is one and the same channel: a
convolution's output, the BatchNorm, activation and padding after it, the depthwise
convolution that filters it channel by channel, and every tensor an `Add` joins to it (a
residual stream). Removing channel c means removing it from every tensor of its space at
once, so the space is the unit of both channel pruning (lth.pruning.channels) and
compaction (lth.export.compact). A Conv2D or Dense layer starts a new space; so does any
layer this module does not know, whose channels are then *fixed* (never removed), as are
the model's inputs and outputs.

Nothing here reads weights: the graph is the model's structure only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import keras
import numpy as np

# Layers whose output channel c depends on input channel c alone, through a fixed function.
ELEMENTWISE_TYPES: tuple[type, ...] = (keras.layers.ReLU, keras.layers.Activation, keras.layers.Rescaling,
                                       keras.layers.Dropout, keras.layers.Identity, keras.layers.LeakyReLU)
POOL_TYPES: tuple[type, ...] = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
# Activations whose output channel depends on the other channels too: a layer applying one is `other`.
CHANNEL_MIXING: frozenset[str] = frozenset({"softmax", "log_softmax", "sparsemax"})


def _per_channel(layer: keras.layers.Layer) -> bool:
    """Whether an elementwise-looking layer really maps each channel on its own."""
    if isinstance(layer, keras.layers.Activation):
        return getattr(layer.activation, "__name__", "") not in CHANNEL_MIXING
    if isinstance(layer, keras.layers.Rescaling):  # a per-channel scale or offset would need slicing
        return all(np.ndim(value) == 0 for value in (layer.scale, layer.offset))
    return True

Kind = str  # one of KINDS
KINDS: tuple[str, ...] = ("input", "conv", "depthwise", "dense", "batchnorm", "elementwise", "pad", "add", "pool",
                          "other")


def kind_of(layer: keras.layers.Layer) -> Kind:
    """What a layer does to channels; `other` for anything whose channels cannot be followed."""
    if isinstance(layer, keras.layers.InputLayer):
        return "input"
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise" if layer.depth_multiplier == 1 and layer.data_format == "channels_last" else "other"
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and \
            getattr(layer.activation, "__name__", "") in CHANNEL_MIXING:
        return "other"  # e.g. a softmax classifier: removing one output changes the others
    if isinstance(layer, keras.layers.Conv2D):
        return "conv" if layer.groups == 1 and layer.data_format == "channels_last" else "other"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    if isinstance(layer, keras.layers.BatchNormalization):
        return "batchnorm" if layer.axis in (-1, len(layer.input.shape) - 1) else "other"
    if isinstance(layer, ELEMENTWISE_TYPES):
        return "elementwise" if _per_channel(layer) else "other"
    if isinstance(layer, keras.layers.ZeroPadding2D):
        return "pad" if layer.data_format == "channels_last" else "other"
    if isinstance(layer, keras.layers.Add):
        return "add"
    if isinstance(layer, POOL_TYPES):
        return "pool" if layer.data_format == "channels_last" else "other"
    return "other"


# Kinds whose output lies in their (single) input's space.
SAME_SPACE: frozenset[str] = frozenset({"depthwise", "batchnorm", "elementwise", "pad", "pool"})
KERNEL_KINDS: frozenset[str] = frozenset({"conv", "dense"})  # layers that start a new space of their own


@dataclass(frozen=True)
class Node:
    """One layer of the graph."""

    name: str
    kind: Kind
    inputs: tuple[str, ...]  # the layers whose outputs it reads, in call order


@dataclass
class LayerGraph:
    """A functional model's layers in topological order, with their channel spaces.

    Attributes:
        nodes: Every layer by name, in the model's (topological) order.
        consumers: The layers that read each layer's output.
        outputs: Layers whose output is a model output.
        space: The channel space of each layer's output (an integer id).
        fixed: Spaces whose channels are never removed: inputs, outputs, and what unknown layers touch.
    """

    nodes: dict[str, Node]
    consumers: dict[str, list[str]]
    outputs: frozenset[str]
    space: dict[str, int] = field(default_factory=dict)
    fixed: frozenset[int] = frozenset()

    def members(self, space: int) -> list[str]:
        """The layers whose output lies in `space`, in network order."""
        return [name for name in self.nodes if self.space[name] == space]

    def readers(self, space: int) -> list[str]:
        """The conv and dense layers that read a tensor of `space` (they cross into a space of their own)."""
        return [name for name, node in self.nodes.items()
                if node.kind in KERNEL_KINDS and self.space[node.inputs[0]] == space]

    def input_space(self, name: str) -> int:
        """The space of a single-input layer's input."""
        return self.space[self.nodes[name].inputs[0]]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def add(self, item: int) -> None:
        self.parent.setdefault(item, item)

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, items: Iterable[int]) -> None:
        roots = sorted({self.find(item) for item in items})
        for root in roots[1:]:
            self.parent[root] = roots[0]


def _inputs(layer: keras.layers.Layer, producer: dict[int, str]) -> tuple[str, ...]:
    tensors = keras.tree.flatten(layer.input)
    missing = [tensor for tensor in tensors if id(tensor) not in producer]
    if missing:
        raise ValueError(f"layer {layer.name} reads a tensor no layer of the model produced (a nested model, or a "
                         f"layer called more than once): the graph needs a flat functional model")
    return tuple(producer[id(tensor)] for tensor in tensors)


def layer_graph(model: keras.Model) -> LayerGraph:
    """The graph of a flat functional model (every layer called once), with its channel spaces.

    Raises:
        ValueError: For a model that is not a flat functional graph.
    """
    if not model.layers:
        raise ValueError("the model has no layers")
    producer = {id(layer.output): layer.name for layer in model.layers}
    nodes: dict[str, Node] = {}
    for layer in model.layers:
        kind = kind_of(layer)
        inputs = () if kind == "input" else _inputs(layer, producer)
        if kind in SAME_SPACE | KERNEL_KINDS and len(inputs) != 1:
            kind = "other"
        nodes[layer.name] = Node(layer.name, kind, inputs)
    consumers: dict[str, list[str]] = {name: [] for name in nodes}
    for node in nodes.values():
        for source in node.inputs:
            consumers[source].append(node.name)
    missing = [tensor for tensor in keras.tree.flatten(model.outputs) if id(tensor) not in producer]
    if missing:
        raise ValueError("the model's output is not the output of one of its layers (a layer called more than "
                         "once?): the graph needs a flat functional model")
    outputs = frozenset(producer[id(tensor)] for tensor in keras.tree.flatten(model.outputs))
    graph = LayerGraph(nodes, consumers, outputs)
    _assign_spaces(graph)
    return graph


def _assign_spaces(graph: LayerGraph) -> None:
    """Union tensors that share channels; mark the spaces that must keep every channel."""
    spaces = _UnionFind()
    index = {name: position for position, name in enumerate(graph.nodes)}
    for name, node in graph.nodes.items():
        spaces.add(index[name])
        if node.kind in SAME_SPACE:
            spaces.union([index[name], index[node.inputs[0]]])
        elif node.kind == "add":
            spaces.union([index[name], *(index[source] for source in node.inputs)])
    root = {name: spaces.find(index[name]) for name in graph.nodes}
    graph.space = root
    fixed = {root[name] for name, node in graph.nodes.items() if node.kind in ("input", "other")}
    fixed |= {root[source] for node in graph.nodes.values() if node.kind == "other" for source in node.inputs}
    fixed |= {root[name] for name in graph.outputs}
    graph.fixed = frozenset(fixed)
