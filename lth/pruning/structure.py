"""`prune.structure`: which weights a mask may remove, so that sparsity can become speed.

- none: any weight of every prunable layer (Conv2D, DepthwiseConv2D, Dense), as the scopes rank them;
- xnnpack_1x1: only the 1x1, stride-1 convolutions, the layers XNNPACK can run with sparse
  kernels (Elsen et al. 2020, "Fast Sparse ConvNets"); the first convolution, the depthwise
  layers and the classifier stay dense, as under tfmot's `PruneForLatencyOnXNNPack` policy.
  The threshold is then the fraction of those 1x1 weights removed;
- channel: whole channels (lth.pruning.channels), so the compacted network
  (lth.export.compact) is smaller and faster on any engine. The channels of the input image,
  of the logits, and of any layer in `prune.ignore` or unknown to lth.pruning.graph stay.

Either way a `Layout` says which layers the mask covers (their weights are what the sparsity
counts), and for `channel` which channel groups may lose channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from lth.pruning.channels import ChannelGroup
from lth.pruning.graph import KERNEL_KINDS, layer_graph
from lth.pruning.masks import prunable_layer_names


@dataclass(frozen=True)
class Layout:
    """What a structure prunes in one network."""

    names: tuple[str, ...]  # the layers the mask covers, in network order
    groups: tuple[ChannelGroup, ...] = ()  # structure=channel: the groups that may lose channels


def is_sparse_1x1(layer: keras.layers.Layer) -> bool:
    """A convolution XNNPACK's sparse inference runs as a sparse matrix product: 1x1, stride 1, ungrouped."""
    return (isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D)
            and tuple(layer.kernel_size) == (1, 1) and tuple(layer.strides) == (1, 1)
            and tuple(layer.dilation_rate) == (1, 1) and layer.groups == 1)


def channel_groups(model: keras.Model, names: tuple[str, ...]) -> tuple[ChannelGroup, ...]:
    """Every channel space whose producers, depthwise filters and readers are all among `names`.

    A space that holds the input, feeds the output, or touches a layer the graph does not know
    (lth.pruning.graph) is fixed and never a group.
    """
    graph = layer_graph(model)
    allowed = set(names)
    groups = []
    for space in dict.fromkeys(graph.space[name] for name in graph.nodes):
        if space in graph.fixed:
            continue
        members = graph.members(space)
        producers = tuple(n for n in members if graph.nodes[n].kind in KERNEL_KINDS)
        depthwise = tuple(n for n in members if graph.nodes[n].kind == "depthwise")
        readers = tuple(graph.readers(space))
        if producers and allowed.issuperset((*producers, *depthwise, *readers)):
            channels = int(model.get_layer(producers[0]).kernel.shape[-1])
            groups.append(ChannelGroup(channels, producers, depthwise, readers))
    return tuple(groups)


def layout(model: keras.Model, structure: str, ignore: tuple[str, ...] = ()) -> Layout:
    """The layers (and channel groups) a structure prunes in `model`.

    Raises:
        ValueError: On an unknown structure, a bad `ignore` name, or a model `xnnpack_1x1` finds no layer in.
    """
    names = tuple(prunable_layer_names(model, ignore))
    if structure == "none":
        return Layout(names)
    if structure == "xnnpack_1x1":
        chosen = tuple(name for name in names if is_sparse_1x1(model.get_layer(name)))
        if not chosen:
            raise ValueError(f"prune.structure=xnnpack_1x1 prunes 1x1 stride-1 convolutions; {model.name} has none")
        return Layout(chosen)
    if structure == "channel":
        groups = channel_groups(model, names)
        if not groups:
            raise ValueError(f"prune.structure=channel found no channel that can be removed in {model.name}")
        return Layout(names, groups)
    raise ValueError(f"prune.structure must be one of none, xnnpack_1x1, channel; got {structure!r}")
