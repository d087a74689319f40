"""Channel pruning (`prune.structure=channel`): whole channels, ranked by the L2 norm of their filters.

A channel group is one channel space of the network (lth.pruning.graph): the Conv2D and Dense
layers that produce it, the depthwise filters that filter it, and the layers that read it.
Removing channel c of a group zeroes the producers' output slice c, the depthwise filter c and
the readers' input slice c, so the compacted network (lth.export.compact) loses exactly the
weights the mask removed, and a threshold of t leaves about 1 - t of the parameters and MACs.

A channel's score is the L2 norm of its output filters (producers and depthwise). The scopes:

- global: one ranking of the norms over all groups;
- lamp: LAMP scores of the norms within each group (norm² over the sum of the norms² not
  smaller), one ranking: every group's strongest channel scores 1;
- layer: the same fraction of channels from every group;
- erk: each group keeps a fraction of its channels proportional to the ERK score of its
  producers' kernels, sum(shape) / prod(shape), capped at 1 (the rest shared by the others).

Weights are counted exactly, but a channel moves many at once, and a layer between two groups
loses its weights at the product of their fractions, so removal is not additive: the ranking
scopes remove channels in order until the next one would take the total further from
round(t * N) than it is; layer and erk search the common fraction (a scale) that comes
closest. The achieved sparsity is reported as it is. The floor keeps ceil(min_density * C),
and at least one, of every group's C channels when min_density > 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lth.pruning.scopes import Masks, check_arguments, lamp_scores


@dataclass(frozen=True)
class ChannelGroup:
    """The layers one set of channels passes through (kernel slices named by layer)."""

    channels: int
    producers: tuple[str, ...]  # Conv2D/Dense layers whose output channel c this is: kernel[..., c]
    depthwise: tuple[str, ...]  # depthwise layers filtering channel c: kernel[:, :, c, :]
    readers: tuple[str, ...]  # Conv2D/Dense layers reading channel c: kernel[..., c, :]

    @property
    def name(self) -> str:
        """The group's first producer."""
        return self.producers[0]


class _Counter:
    """Kept weights of every layer, given how many channels each group keeps."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], groups: Sequence[ChannelGroup]) -> None:
        self.shapes = {name: tuple(shape) for name, shape in shapes.items()}
        self.total = sum(math.prod(shape) for shape in self.shapes.values())
        self.role: dict[str, dict[str, int]] = {name: {} for name in shapes}  # layer -> {"in"/"out"/"dw": group}
        for index, group in enumerate(groups):
            for name in group.producers:
                self.role[name]["out"] = index
            for name in group.depthwise:
                self.role[name]["dw"] = index
            for name in group.readers:
                self.role[name]["in"] = index

        self.touches: list[list[str]] = [sorted({*g.producers, *g.depthwise, *g.readers}) for g in groups]

    def layer_kept(self, name: str, alive: Sequence[int]) -> int:
        """Kept weights of one layer when group g keeps alive[g] channels."""
        shape, role = self.shapes[name], self.role[name]
        if "dw" in role:
            return math.prod(shape) // shape[-2] * alive[role["dw"]]
        fan_in = alive[role["in"]] if "in" in role else shape[-2]
        fan_out = alive[role["out"]] if "out" in role else shape[-1]
        return math.prod(shape[:-2]) * fan_in * fan_out

    def kept(self, alive: Sequence[int]) -> int:
        """Kept weights of all layers when group g keeps alive[g] channels."""
        return sum(self.layer_kept(name, alive) for name in self.shapes)

    def loss(self, alive: list[int], group: int) -> int:
        """Weights that removing one more channel of `group` removes (a layer may sit on both its sides)."""
        before = sum(self.layer_kept(name, alive) for name in self.touches[group])
        alive[group] -= 1
        after = sum(self.layer_kept(name, alive) for name in self.touches[group])
        alive[group] += 1
        return before - after


def channel_norms(kernels: Mapping[str, np.ndarray], group: ChannelGroup) -> np.ndarray:
    """The L2 norm of each channel's output filters: the producers' output slices and the depthwise filters."""
    squares = np.zeros(group.channels)
    for name in group.producers:
        kernel = np.asarray(kernels[name], dtype=np.float64)
        squares += (kernel.reshape(-1, kernel.shape[-1]) ** 2).sum(axis=0)
    for name in group.depthwise:
        squares += (np.asarray(kernels[name], dtype=np.float64) ** 2).sum(axis=(0, 1, 3))
    return np.sqrt(squares)


def _floors(groups: Sequence[ChannelGroup], min_density: float) -> list[int]:
    return [min(g.channels, max(1, math.ceil(min_density * g.channels))) if min_density > 0 else 0 for g in groups]


def _ranked(kernels: Mapping[str, np.ndarray], groups: Sequence[ChannelGroup], scope: str,
            target: int, floors: Sequence[int], counter: _Counter) -> list[int]:
    """global/lamp: remove channels weakest first while that brings the removed total closer to `target`."""
    scores, owners = [], []
    for index, group in enumerate(groups):
        norms = channel_norms(kernels, group)
        scores.append(lamp_scores(norms) if scope == "lamp" else norms)
        owners.append(np.full(group.channels, index))
    order = np.argsort(np.concatenate(scores), kind="stable")  # ties: network order, then channel
    owner = np.concatenate(owners)
    alive = [group.channels for group in groups]
    removed = 0
    for position in order:
        g = int(owner[position])
        if alive[g] <= floors[g]:
            continue
        after = removed + counter.loss(alive, g)
        if abs(after - target) > abs(removed - target):
            break
        alive[g] -= 1
        removed = after
    return alive


def _scaled(groups: Sequence[ChannelGroup], kernels: Mapping[str, np.ndarray], scope: str, target: int,
            floors: Sequence[int], counter: _Counter) -> list[int]:
    """layer/erk: group g keeps min(1, w_g / u) of its channels; the u whose counts come closest to `target`.

    w_g is 1 for `layer`, and for `erk` the ERK score of the group's producer kernels: the sum of
    their shapes' sums over the sum of their sizes (so a group keeps a fraction proportional to it).
    """
    if scope == "layer":
        weights = np.ones(len(groups))
    else:
        shapes = [[np.shape(kernels[name]) for name in group.producers] for group in groups]
        weights = np.array([sum(sum(s) for s in group) / sum(math.prod(s) for s in group) for group in shapes])
        weights = weights / weights.max()

    def alive_at(u: float) -> list[int]:
        return [max(floor, min(g.channels, round(g.channels * min(1.0, w / u)))) if u > 0 else g.channels
                for g, floor, w in zip(groups, floors, weights)]

    def removed(u: float) -> int:
        return counter.total - counter.kept(alive_at(u))

    low, high = 0.0, float(max(w * g.channels for w, g in zip(weights, groups))) * 2.0 + 1.0
    for _ in range(60):  # removed(u) grows with u: bisect for the first u that reaches the target
        middle = (low + high) / 2
        low, high = (middle, high) if removed(middle) < target else (low, middle)
    best = min((low, high), key=lambda u: (abs(removed(u) - target), u))
    return alive_at(best)


def check_channels_fit(shapes: Mapping[str, tuple[int, ...]], groups: Sequence[ChannelGroup], threshold: float,
                       min_density: float) -> None:
    """Fail if removing whole channels cannot reach `threshold` (kernel shapes by layer, in network order).

    Raises:
        ValueError: Naming the largest threshold this network allows.
    """
    counter = _Counter(shapes, groups)
    most = counter.total - counter.kept(_floors(groups, min_density))
    if int(round(threshold * counter.total)) > most:
        raise ValueError(f"prune.structure=channel can remove at most {most / counter.total:.4f} of the weights of "
                         f"this network (every prunable channel down to its floor; the channels of the input, the "
                         f"logits and ignored layers stay), not prune.threshold={threshold}; lower the threshold or "
                         f"prune.min_density")


def channel_keeps(kernels: Mapping[str, np.ndarray], groups: Sequence[ChannelGroup], threshold: float, scope: str,
                  min_density: float = 0.0) -> list[np.ndarray]:
    """Which channels of each group a channel mask keeps (masks_of_keeps turns them into kernel masks).

    Args:
        kernels: Kernel arrays of the layers the sparsity counts (every pruned layer, in network order).
        groups: The channel groups that may lose channels (lth.pruning.structure.channel_groups).
        threshold: Fraction of the weights of `kernels` to remove, in [0, 1).
        scope: One of SCOPES.
        min_density: Each group keeps at least ceil(min_density * channels), and one, when > 0.

    Raises:
        ValueError: On a bad threshold or scope, or a threshold whole channels cannot reach.
    """
    check_arguments(threshold, scope)
    shapes = {name: np.shape(kernel) for name, kernel in kernels.items()}
    check_channels_fit(shapes, groups, threshold, min_density)
    counter = _Counter(shapes, groups)
    target = int(round(threshold * counter.total))
    floors = _floors(groups, min_density)
    alive = _ranked(kernels, groups, scope, target, floors, counter) if scope in ("global", "lamp") \
        else _scaled(groups, kernels, scope, target, floors, counter)
    return [_strongest(kernels, g, n) for g, n in zip(groups, alive)]


def channel_masks(kernels: Mapping[str, np.ndarray], groups: Sequence[ChannelGroup], threshold: float, scope: str,
                  min_density: float = 0.0) -> Masks:
    """Masks over `kernels` removing whole channels of `groups` (the arguments of `channel_keeps`)."""
    return masks_of_keeps(kernels, groups, channel_keeps(kernels, groups, threshold, scope, min_density))


def _strongest(kernels: Mapping[str, np.ndarray], group: ChannelGroup, count: int) -> np.ndarray:
    """Keep-flags of a group's `count` channels with the largest norms (ties: the earlier channel)."""
    keep = np.zeros(group.channels, dtype=bool)
    keep[np.argsort(-channel_norms(kernels, group), kind="stable")[:count]] = True
    return keep


def masks_of_keeps(kernels: Mapping[str, np.ndarray], groups: Sequence[ChannelGroup],
                   keeps: Sequence[np.ndarray]) -> Masks:
    """Kernel masks removing each group's channels that `keeps` does not keep, from every member."""
    masks = {name: np.ones(np.shape(kernel), dtype=bool) for name, kernel in kernels.items()}
    for group, keep in zip(groups, keeps):
        for name in group.producers:
            masks[name][..., ~keep] = False
        for name in group.depthwise:
            masks[name][:, :, ~keep, :] = False
        for name in group.readers:
            masks[name][..., ~keep, :] = False
    return masks


def kept_channels(masks: Mapping[str, np.ndarray], group: ChannelGroup) -> np.ndarray:
    """Which channels of a group a mask keeps: any weight left in a member's slice of the channel.

    A kept channel can still show no weight when every input of every member is gone (a group
    emptied upstream, with min_density 0); where the keep-flags are at hand, use them instead.
    """
    slices = [np.asarray(masks[name], bool).reshape(-1, group.channels).any(axis=0) for name in group.producers]
    slices += [np.asarray(masks[name], bool).any(axis=(0, 1, 3)) for name in group.depthwise]
    slices += [np.moveaxis(np.asarray(masks[name], bool), -2, 0).reshape(group.channels, -1).any(axis=1)
               for name in group.readers]
    return np.logical_or.reduce(slices)


def random_keeps(groups: Sequence[ChannelGroup], keeps: Sequence[np.ndarray], seed: int) -> list[np.ndarray]:
    """The random-mask control of a channel mask: each group keeps as many channels, chosen at random."""
    rng = np.random.default_rng(seed)
    moved = []
    for group, keep in zip(groups, keeps):
        chosen = np.zeros(group.channels, dtype=bool)
        chosen[rng.permutation(group.channels)[: int(np.count_nonzero(keep))]] = True
        moved.append(chosen)
    return moved


def channel_floor_layers(groups: Sequence[ChannelGroup], keeps: Sequence[np.ndarray], min_density: float) -> list[str]:
    """The producers and depthwise filters of the groups held at their channel floor.

    lth.pruning.collapse's weight rule would also flag every layer between two thinned groups,
    which keeps about f^2 of its weights without any group being at its floor.
    """
    return [name for group, keep, floor in zip(groups, keeps, _floors(groups, min_density))
            if 0 < np.count_nonzero(keep) <= floor for name in (*group.producers, *group.depthwise)]
