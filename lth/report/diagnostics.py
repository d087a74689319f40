"""Two mask diagnostics from what a family already stored: early-bird distances and mask overlaps.

- Early-bird distance (You et al., ICLR 2020, "Drawing early-bird tickets"): the mask each kept
  epoch's dense weights would give at a ticket's sparsity, and the normalised Hamming distance
  between the masks of consecutive kept epochs. A distance that falls towards 0 early says the
  mask was found long before the dense run ended.
- Overlap: the Jaccard index |A∩B| / |A∪B| of the kept weights of two masks at the same sparsity
  that differ in exactly one of seed, scope or reset epoch. A one-shot mask does not depend on
  the reset epoch (it prunes the final weights), so that comparison is 1.0 by construction; an
  IMP mask does, since every level after the first prunes retrained weights.

Nothing is trained: the masks come from `mask.npz` artifacts and the dense checkpoints.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from mlflow.tracking import MlflowClient

from lth import tracking
from lth.common.weights import kernel_path, load_weights
from lth.pruning.scopes import Masks, prune_masks
from lth.report.collect import Family, Point
from lth.tracking import schema

COMPARISONS: dict[str, str] = {"seeds": "seed", "scopes": "scope", "reset epochs": "reset_epoch"}  # -> Point field
OVERLAP_KINDS = ("ticket", "imp")  # controls are excluded: their masks are the ticket's, or random by design
# Settings that cannot change a mask at a given sparsity, or are the compared axes themselves.
NOT_IDENTITY = ("prune.scope", "reset.epoch", "prune.threshold", "prune.levels", "prune.on_collapse")
SPARSITY_DIGITS = 4  # runs whose weights_remaining agree to this many digits have the same sparsity
EarlyBird = dict[float, list[tuple[int, float]]]  # threshold -> (later epoch, distance from the previous kept epoch)
Overlaps = dict[str, list[tuple[float, float, int]]]  # overlap_key -> (sparsity, mean Jaccard, pairs)


def overlap_key(kind: str, comparison: str) -> str:
    """`seeds` for one-shot tickets, `IMP seeds` for IMP levels: kept apart, since only IMP masks move with k."""
    return comparison if kind == "ticket" else f"IMP {comparison}"


OVERLAP_KEYS = tuple(overlap_key(kind, name) for kind in OVERLAP_KINDS for name in COMPARISONS)  # in drawing order


@dataclass(frozen=True)
class Diagnostics:
    """Both diagnostics of one family; empty mappings where nothing applies."""

    early_bird: Mapping[str, EarlyBird] = field(default_factory=dict)  # scope label (e.g. `lamp`) -> distances
    overlaps: Overlaps = field(default_factory=dict)  # only comparisons with at least one pair
    dense_seed: int | None = None  # the dense parent whose checkpoints the early-bird distances read
    epochs: tuple[int, ...] = ()  # its kept epochs, the last one included

    @property
    def empty(self) -> bool:
        """Nothing to draw or say."""
        return not any(self.early_bird.values()) and not self.overlaps


def _same_layout(a: Masks, b: Masks) -> None:
    """Raise ValueError unless `a` and `b` cover the same layers with the same shapes."""
    if set(a) != set(b):
        raise ValueError(f"masks cover different layers: {sorted(set(a) ^ set(b))}")
    shapes = {name: (np.shape(a[name]), np.shape(b[name])) for name in a if np.shape(a[name]) != np.shape(b[name])}
    if shapes:
        raise ValueError(f"mask shapes differ: {shapes}")


def hamming_distance(a: Masks, b: Masks) -> float:
    """Fraction of all weights (every layer together) whose keep/prune decision differs.

    Raises:
        ValueError: If the masks cover different layers or shapes.
    """
    _same_layout(a, b)
    total = sum(np.size(a[name]) for name in a)
    differ = sum(int(np.count_nonzero(np.asarray(a[n], bool) != np.asarray(b[n], bool))) for n in a)
    return differ / total if total else 0.0


def jaccard(a: Masks, b: Masks) -> float:
    """|A∩B| / |A∪B| of the kept weights (True) over every layer together; 1.0 when both keep nothing.

    Raises:
        ValueError: If the masks cover different layers or shapes.
    """
    _same_layout(a, b)
    both = sum(int(np.count_nonzero(np.asarray(a[n], bool) & np.asarray(b[n], bool))) for n in a)
    either = sum(int(np.count_nonzero(np.asarray(a[n], bool) | np.asarray(b[n], bool))) for n in a)
    return both / either if either else 1.0


def early_bird_distances(checkpoints: Mapping[int, Mapping[str, np.ndarray]], thresholds: Sequence[float],
                         scope: str, min_density: float) -> EarlyBird:
    """Hamming distance between the masks of consecutive kept epochs, at each threshold.

    Args:
        checkpoints: Epoch -> the prunable kernels by layer name, in network order (the order
            breaks ties, as in `prune_masks`).
        thresholds: Fractions of the weights removed.
        scope: A `lth.pruning.scopes.SCOPES` name, as the tickets were pruned.
        min_density: The tickets' per-layer floor.

    Returns:
        Threshold -> (epoch, distance from the mask of the kept epoch before it), by epoch;
        empty lists when fewer than two epochs are given.
    """
    epochs = sorted(checkpoints)
    distances: EarlyBird = {}
    for threshold in sorted(set(thresholds)):
        masks = [prune_masks(checkpoints[e], threshold, scope, min_density=min_density) for e in epochs]
        distances[threshold] = [(later, hamming_distance(before, after))
                                for later, before, after in zip(epochs[1:], masks, masks[1:])]
    return distances


def _sparsity(point: Point) -> float:
    return round(1.0 - float(point.weights_remaining), SPARSITY_DIGITS)


def _others(point: Point) -> tuple[tuple[str, str], ...]:
    """The settings that must agree for two runs to differ only in a compared axis."""
    return tuple((k, v) for k, v in point.settings if k not in NOT_IDENTITY)


def mask_overlaps(points: Iterable[Point], masks_of: Callable[[str], Masks]) -> Overlaps:
    """Mean Jaccard overlap of masks at the same sparsity that differ in exactly one of seed, scope, reset epoch.

    Only finished tickets and IMP levels with a logged weights_remaining take part, each compared
    with its own kind only; a rerun of the same run (same kind, seed, scope, reset epoch, settings
    and sparsity) counts once, the first.

    Args:
        points: Sparse runs of one family (`Family.points`).
        masks_of: Run id -> its masks; each run is asked for once.

    Returns:
        `overlap_key` (`seeds`, `scopes`, `reset epochs` for one-shot tickets; `IMP seeds` ...
        for IMP levels) -> (sparsity, mean Jaccard, pairs) by sparsity, the sparsity being the
        fraction removed; keys without a pair are left out.
    """
    runs: dict[tuple, Point] = {}
    for p in points:
        if p.kind in OVERLAP_KINDS and p.finished and p.weights_remaining is not None:
            runs.setdefault((p.kind, p.seed, p.scope, p.reset_epoch, _others(p), _sparsity(p)), p)
    cache: dict[str, Masks] = {}

    def masks(point: Point) -> Masks:
        if point.run_id not in cache:
            cache[point.run_id] = masks_of(point.run_id)
        return cache[point.run_id]

    found: dict[str, dict[float, list[float]]] = {}
    for a, b in combinations(runs.values(), 2):
        if (a.kind, _others(a), _sparsity(a)) != (b.kind, _others(b), _sparsity(b)):
            continue
        differ = [name for name, attribute in COMPARISONS.items() if getattr(a, attribute) != getattr(b, attribute)]
        if len(differ) == 1:
            by_sparsity = found.setdefault(overlap_key(a.kind, differ[0]), {})
            by_sparsity.setdefault(_sparsity(a), []).append(jaccard(masks(a), masks(b)))
    return {key: [(s, float(np.mean(values)), len(values)) for s, values in sorted(found[key].items())]
            for key in OVERLAP_KEYS if key in found}


def _min_density(point: Point) -> float:
    return float(dict(point.settings).get("prune.min_density", 0.0))


def _structure(point: Point) -> str:
    return dict(point.settings).get("prune.structure", "none")


def scope_label(scope: str, min_density: float) -> str:
    """`lamp`, or `lamp, min_density 0.002` when a floor was set."""
    return scope + (f", min_density {min_density:g}" if min_density else "")


def _dense_checkpoints(run_id: str, layers: Sequence[str]) -> dict[int, dict[str, np.ndarray]]:
    """The prunable kernels of every kept epoch of a dense parent (the last epoch's from its final weights)."""
    run = MlflowClient().get_run(run_id)
    last = int(run.data.metrics.get(schema.EPOCHS_TRAINED, run.data.params.get("train.epochs", 0)))
    checkpoints: dict[int, dict[str, np.ndarray]] = {}
    for epoch in sorted({e for e in schema.kept_epochs(run.data.tags) if e <= last} | {last}):
        weights = tracking.fetch(run_id, schema.FINAL_WEIGHTS if epoch == last else schema.checkpoint(epoch), load_weights)
        checkpoints[epoch] = {name: weights[kernel_path(name)] for name in layers}  # keep only kernels in memory
    return checkpoints


def _load_masks(run_id: str) -> Masks:
    return {name: mask.astype(bool) for name, mask in tracking.fetch(run_id, schema.MASK, load_weights).items()}


def family_diagnostics(family: Family) -> Diagnostics:
    """Early-bird distances of the lowest-seed finished dense parent, and the family's mask overlaps.

    The early-bird masks use the thresholds of the family's finished one-shot tickets, grouped
    by scope and min_density, over the layers named in the mask of the group's lowest-seed ticket.
    Needs MLflow pointed at the family's store.
    """
    # Weight-by-weight masks only: these are rebuilt here from the dense checkpoints without the network,
    # which channel masks need (its graph); xnnpack_1x1's masks cover only the 1x1 layers, as here.
    tickets = sorted((p for p in family.points if p.kind == "ticket" and p.finished and _structure(p) != "channel"),
                     key=lambda p: (p.seed, p.threshold, p.reset_epoch))
    groups: dict[tuple[str, float], list[Point]] = {}
    for ticket in tickets:
        scope = ticket.scope if _structure(ticket) == "none" else f"{ticket.scope}, {_structure(ticket)}"
        groups.setdefault((scope, _min_density(ticket)), []).append(ticket)
    dense = family.finished_dense[0] if family.finished_dense else None
    masks_of = functools.cache(_load_masks)  # a group's first ticket is compared in the overlaps too
    early_bird: dict[str, EarlyBird] = {}
    epochs: tuple[int, ...] = ()
    if dense is not None and groups:
        loaded: dict[tuple[str, ...], dict[int, dict[str, np.ndarray]]] = {}
        for (scope, min_density), members in sorted(groups.items()):
            layers = tuple(masks_of(members[0].run_id))
            if layers not in loaded:  # every group prunes the same layers unless prune.ignore differs
                loaded[layers] = _dense_checkpoints(dense.run_id, layers)
            epochs = tuple(sorted(loaded[layers]))
            if len(epochs) > 1:
                early_bird[scope_label(scope, min_density)] = early_bird_distances(
                    loaded[layers], [p.threshold for p in members], members[0].scope, min_density)
    overlaps = mask_overlaps(family.points, masks_of)
    return Diagnostics(early_bird, overlaps, dense.seed, epochs) if early_bird and dense is not None \
        else Diagnostics({}, overlaps)
