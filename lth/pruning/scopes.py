"""How a global sparsity is spread over layers: global, layer-wise, LAMP and ERK, with a floor.

Every scope removes exactly round(threshold * N) of the N prunable weights. Ties are
broken by network order, then position, so masks are deterministic.

- global: one ranking of |w| over all layers. Large layers start with small weights,
  so at high sparsity they empty first (MobileNetV2's Conv_1 and classifier).
- layer: the same fraction from every layer.
- lamp: LAMP scores (Lee et al., ICLR 2021): w_u^2 divided by the sum of w_v^2 over the
  weights of the same layer that are not smaller; one global ranking of those scores.
  The largest weight of every layer scores 1, so no layer empties before the end.
- erk: Erdős–Rényi-kernel densities (Evci et al. 2020, RigL): density proportional to
  sum(kernel shape) / prod(kernel shape), capped at 1 with the rest redistributed;
  magnitude within each layer.

`min_density` keeps at least ceil(min_density * size) weights in every layer; the
total stays exact because the floor's weights are taken from the other layers, in
proportion to each one's share above its own floor (so every such layer keeps the
same fraction of what its scope gave it beyond the floor).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from lth.config.vocabulary import SCOPE_NAMES

SCOPES: tuple[str, ...] = SCOPE_NAMES  # declared with prune.scope (lth.config.vocabulary)
Masks = dict[str, np.ndarray]


def round_to_total(ideal: Sequence[float], total: int, lower: Sequence[int], upper: Sequence[int]) -> list[int]:
    """Integer counts within [lower, upper] that sum to `total` and stay closest to `ideal`.

    Counts start at floor(ideal) clipped to the bounds; the difference to `total` is then
    settled one unit at a time by the layer furthest from its ideal (ties: earlier layer).
    """
    ideal_arr = np.asarray(ideal, dtype=np.float64)
    low, high = np.asarray(lower, dtype=np.int64), np.asarray(upper, dtype=np.int64)
    if not low.sum() <= total <= high.sum():
        raise ValueError(f"cannot place {total} within per-layer bounds summing to [{low.sum()}, {high.sum()}]")
    counts = np.clip(np.floor(ideal_arr).astype(np.int64), low, high)
    step = 1 if total > counts.sum() else -1
    for _ in range(abs(total - int(counts.sum()))):
        room = counts < high if step > 0 else counts > low
        gap = np.where(room, (ideal_arr - counts) * step, -np.inf)
        counts[int(np.argmax(gap))] += step
    return [int(c) for c in counts]


def fit_to_bounds(ideal: Sequence[float], total: int, lower: Sequence[int], upper: Sequence[int]) -> np.ndarray:
    """Real counts within [lower, upper] that sum to `total`, moved proportionally from `ideal`.

    Layers outside their bounds are pinned at the bound. What pinning added (or removed)
    is taken from (or given to) the other layers in proportion to their distance from
    the bound they move towards: a layer twice as far above its floor gives twice as
    many weights. One pass suffices, because no layer is asked for more than its room.
    """
    low, high = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    counts = np.clip(np.asarray(ideal, dtype=np.float64), low, high)
    excess = counts.sum() - total
    room = counts - low if excess > 0 else high - counts
    if excess != 0 and room.sum() > 0:
        counts -= np.sign(excess) * room * min(1.0, abs(excess) / room.sum())
    return np.clip(counts, low, high)


def lamp_scores(magnitudes: np.ndarray) -> np.ndarray:
    """LAMP score of every weight of one layer; negative entries (already pruned) stay negative."""
    alive = magnitudes >= 0
    squares = np.where(alive, magnitudes, 0.0) ** 2
    order = np.argsort(squares, kind="stable")
    ordered = squares[order]
    suffix = np.cumsum(ordered[::-1])[::-1]  # sum of the weights at or after each sorted position
    first_of_value = np.searchsorted(ordered, ordered, side="left")  # equal weights share a denominator
    denominators = suffix[first_of_value]
    scores = np.empty_like(squares)
    scores[order] = np.divide(ordered, denominators, out=np.zeros_like(ordered), where=denominators > 0)
    return np.where(alive, scores, -1.0)


def erk_densities(shapes: Sequence[tuple[int, ...]], keep_total: int) -> list[float]:
    """ERK densities whose kept weights sum to `keep_total`, each capped at 1."""
    sizes = np.array([math.prod(shape) for shape in shapes], dtype=np.float64)
    raw = np.array([sum(shape) / math.prod(shape) for shape in shapes], dtype=np.float64)
    dense = np.zeros(len(shapes), dtype=bool)
    while True:  # a layer that would exceed density 1 becomes dense; the others share what is left
        budget = keep_total - sizes[dense].sum()
        scale = budget / float((raw * sizes)[~dense].sum()) if (~dense).any() else 0.0
        over = ~dense & (raw * scale > 1.0)
        if not over.any():
            return [1.0 if d else float(r * scale) for d, r in zip(dense, raw)]
        dense |= over


def imp_threshold(rate: float, levels: int) -> float:
    """Fraction of the weights removed after `levels` IMP levels that each prune `rate` of the survivors."""
    return 1.0 - (1.0 - float(rate)) ** int(levels)


def check_floor_fits(sizes: Sequence[int], threshold: float, min_density: float) -> None:
    """Fail if the per-layer floors, ceil(min_density * size) each, need more than the threshold leaves.

    Raises:
        ValueError: Naming `prune.min_density` and the counts.
    """
    keep_total = sum(sizes) - int(round(threshold * sum(sizes)))
    floors = sum(math.ceil(min_density * size) for size in sizes)
    if floors > keep_total:
        raise ValueError(f"prune.min_density={min_density} keeps {floors} weights (at least one in every layer), "
                         f"more than the {keep_total} that threshold {threshold:.6g} leaves; lower prune.min_density")


def check_arguments(threshold: float, scope: str) -> None:
    """Refuse a threshold outside [0, 1) or an unknown scope (a ValueError naming it)."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if scope not in SCOPES:
        raise ValueError(f"prune.scope must be one of {SCOPES}, got {scope!r}")


def _prune_smallest(scores: np.ndarray, count: int) -> np.ndarray:
    """Keep-mask over a flat array removing the `count` lowest scores (stable: earlier first)."""
    keep = np.ones(scores.shape, dtype=bool)
    keep[np.argsort(scores, kind="stable")[:count]] = False
    return keep


def prune_masks(
    kernels: Mapping[str, np.ndarray],
    threshold: float,
    scope: str,
    previous: Mapping[str, np.ndarray] | None = None,
    min_density: float = 0.0,
) -> Masks:
    """Masks removing exactly round(threshold * N) weights, spread over layers by `scope`.

    Args:
        kernels: Kernel arrays in network order.
        threshold: Fraction of the given weights removed in total, in [0, 1).
        scope: One of SCOPES.
        previous: Masks of an earlier IMP level; what they removed stays removed.
        min_density: Per-layer floor on the kept fraction, in [0, 1].

    Raises:
        ValueError: On a bad threshold or scope, or a floor the total cannot honour.
    """
    check_arguments(threshold, scope)
    names = list(kernels)
    flats = [np.abs(np.asarray(kernels[n], dtype=np.float64)).ravel() for n in names]
    if previous is not None:  # already-pruned weights rank below every live one (magnitudes are >= 0)
        flats = [np.where(np.asarray(previous[n]).ravel(), flat, -1.0) for n, flat in zip(names, flats)]
    sizes = [flat.size for flat in flats]
    alive = [int((flat >= 0).sum()) for flat in flats]
    keep_total = sum(sizes) - int(round(threshold * sum(sizes)))
    floors = [min(a, math.ceil(min_density * s)) for a, s in zip(alive, sizes)]
    if sum(floors) > keep_total:
        raise ValueError(f"prune.min_density={min_density} keeps {sum(floors)} weights, more than the "
                         f"{keep_total} that threshold {threshold} leaves; lower prune.min_density")
    if scope in ("global", "lamp"):
        scores = [lamp_scores(flat) if scope == "lamp" else flat.copy() for flat in flats]
        for score, floor in zip(scores, floors):  # the floor: each layer's best weights are never ranked
            score[np.argsort(-score, kind="stable")[:floor]] = np.inf
        keep = _prune_smallest(np.concatenate(scores), sum(sizes) - keep_total)
        pieces = np.split(keep, np.cumsum(sizes)[:-1])
    else:
        if scope == "layer":
            ideal = [s * keep_total / sum(sizes) for s in sizes]
        else:
            ideal = [d * s for d, s in zip(erk_densities([np.shape(kernels[n]) for n in names], keep_total), sizes)]
        kept = round_to_total(fit_to_bounds(ideal, keep_total, floors, alive), keep_total, floors, alive)
        pieces = [_prune_smallest(flat, s - k) for flat, s, k in zip(flats, sizes, kept)]
    return {n: piece.reshape(np.shape(kernels[n])) for n, piece in zip(names, pieces)}


def imp_masks(
    kernels: Mapping[str, np.ndarray],
    rate: float,
    level: int,
    scope: str,
    layer_rates: Mapping[str, float] | None = None,
    previous: Mapping[str, np.ndarray] | None = None,
    min_density: float = 0.0,
) -> Masks:
    """IMP level `level`'s masks, with per-layer rates (Frankle & Carbin prune the output layer at 10%).

    A layer named in `layer_rates` keeps exactly size - round(imp_threshold(its rate, level) * size)
    weights, chosen by magnitude within the layer; the other layers together lose exactly
    round(imp_threshold(rate, level) * their total), spread over them by `scope`.

    Args:
        kernels: Kernel arrays in network order.
        rate: Fraction of the surviving weights each level removes from the layers not in `layer_rates`.
        level: The IMP level (1 = the first pruning).
        scope: How the common rate is spread over the other layers (one of SCOPES).
        layer_rates: Layer name -> that layer's own rate.
        previous: The masks of level - 1; what they removed stays removed.
        min_density: Per-layer floor on the kept fraction.
    """
    own = dict(layer_rates or {})
    unknown = sorted(set(own) - set(kernels))
    if unknown:
        raise ValueError(f"prune.layer_rates names layers that are not pruned: {unknown} "
                         f"(pruned layers are e.g. {list(kernels)[:3]} ... {list(kernels)[-2:]})")

    def part(names: Sequence[str], part_rate: float, part_scope: str) -> Masks:
        subset = {name: kernels[name] for name in names}
        before = None if previous is None else {name: previous[name] for name in names}
        return prune_masks(subset, imp_threshold(part_rate, level), part_scope, before, min_density)

    masks = part([name for name in kernels if name not in own], rate, scope) if len(own) < len(kernels) else {}
    for name, layer_rate in own.items():
        masks.update(part([name], float(layer_rate), "layer"))
    return {name: masks[name] for name in kernels}


def imp_level_threshold(sizes: Mapping[str, int], rate: float, level: int,
                        layer_rates: Mapping[str, float] | None = None) -> float:
    """The fraction of all prunable weights `imp_masks` removes at `level` (sizes by layer name).

    With layer rates it is the exact removed fraction, the only single number that describes
    such a mask. Without them it is 1 - (1 - rate)^level, as IMP levels have always been tagged;
    the masks remove round() of it, within one weight.

    Raises:
        ValueError: If `layer_rates` names a layer that `sizes` lacks (not prunable, or ignored).
    """
    own = dict(layer_rates or {})
    unknown = sorted(set(own) - set(sizes))
    if unknown:
        raise ValueError(f"prune.layer_rates names layers that are not pruned: {unknown} "
                         f"(pruned layers are e.g. {list(sizes)[:3]} ... {list(sizes)[-2:]})")
    if not own:
        return imp_threshold(rate, level)
    common = sum(size for name, size in sizes.items() if name not in own)
    removed = int(round(imp_threshold(rate, level) * common))
    removed += sum(int(round(imp_threshold(float(r), level) * sizes[name])) for name, r in own.items())
    return removed / sum(sizes.values())
