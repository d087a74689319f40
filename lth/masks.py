"""Binary pruning masks: magnitude scoring, exact sparsity, and enforcement in Keras.

A mask is a mapping from a prunable layer's name to a boolean array shaped like its
kernel (True = the weight survives). Masks are computed in NumPy from weight arrays,
so the same function serves a live model and weights read back from MLflow.

Keras never saves constraints in `.keras` files, so masks are saved separately as
`.npz` and re-attached with `attach_masks`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

# Kernels of these layers are prunable; biases and BatchNorm never are.
PRUNABLE_LAYER_TYPES: tuple[type, ...] = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Dense,
)
SCOPES: tuple[str, ...] = ("global", "layer")

Masks = dict[str, np.ndarray]


def prunable_layer_names(model: keras.Model, ignore: Sequence[str] = ()) -> list[str]:
    """Names of the layers whose kernels are pruned, in network order.

    Args:
        model: A built Keras model.
        ignore: Layer names to leave dense.

    Raises:
        ValueError: If a name in `ignore` is not a prunable layer of the model.
    """
    prunable = [layer.name for layer in model.layers if isinstance(layer, PRUNABLE_LAYER_TYPES)]
    unknown = sorted(set(ignore) - set(prunable))
    if unknown:
        raise ValueError(
            f"prune.ignore names layers that are not prunable layers of the model: {unknown} "
            f"(prunable layers are e.g. {prunable[:3]} ... {prunable[-2:]})"
        )
    return [name for name in prunable if name not in set(ignore)]


def kernel_arrays(model: keras.Model, layer_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Current kernel values of the given layers, keyed by layer name."""
    return {name: np.asarray(model.get_layer(name).kernel.numpy()) for name in layer_names}


def allocate_exact(sizes: Sequence[int], fraction: float, minimum: Sequence[int] | None = None) -> list[int]:
    """Per-layer prune counts with every layer at `fraction` and an exact total.

    Each layer gets floor(fraction * size), raised to `minimum` where given (IMP: a
    layer never regrows what an earlier level pruned). The difference to
    round(fraction * total) is settled one weight at a time by the layers furthest
    from their ideal share (ties: earlier layer first), so the global count is exact
    and no layer is off by more than one weight beyond its minimum.
    """
    sizes_arr = np.asarray(sizes, dtype=np.int64)
    floor_counts = np.asarray(minimum if minimum is not None else np.zeros_like(sizes_arr), dtype=np.int64)
    ideal = fraction * sizes_arr
    counts = np.maximum(np.floor(ideal).astype(np.int64), floor_counts)
    leftover = int(round(fraction * int(sizes_arr.sum()))) - int(counts.sum())
    step = 1 if leftover > 0 else -1
    for _ in range(abs(leftover)):  # one weight at a time: a layer may need several when minimums bind
        room = counts < sizes_arr if step > 0 else counts > floor_counts
        gap = np.where(room, (ideal - counts) * step, -np.inf)  # how far below (or above) its ideal share
        counts[int(np.argmax(gap))] += step  # argmax takes the first of equals: earlier layer first
    return [int(c) for c in counts]


def _prune_smallest(magnitudes: np.ndarray, count: int) -> np.ndarray:
    """Boolean keep-mask over a flat array that removes the `count` smallest entries.

    Ties are broken by position (a stable sort), so the result is deterministic and
    removes exactly `count` entries whatever the values.
    """
    keep = np.ones(magnitudes.shape, dtype=bool)
    keep[np.argsort(magnitudes, kind="stable")[:count]] = False
    return keep


def magnitude_masks(
    kernels: Mapping[str, np.ndarray],
    threshold: float,
    scope: str,
    previous: Mapping[str, np.ndarray] | None = None,
) -> Masks:
    """Masks that remove the fraction `threshold` of weights with the smallest magnitude.

    Args:
        kernels: Kernel arrays in network order (the order breaks ties in global scope).
        threshold: Fraction of the given weights removed in total, in [0, 1).
        scope: `global` ranks all weights together; `layer` removes the same fraction
            from every layer (the total is still exact, see `allocate_exact`).
        previous: Masks of an earlier pruning level (IMP). Weights they removed are
            removed again, so the new mask is a subset of the previous one.

    Returns:
        Boolean masks, True where a weight survives.
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    names = list(kernels)
    flats = [np.abs(np.asarray(kernels[name], dtype=np.float64)).ravel() for name in names]
    if previous is not None:  # already-pruned weights rank below every live one (magnitudes are >= 0)
        flats = [np.where(np.asarray(previous[name]).ravel(), flat, -1.0) for name, flat in zip(names, flats)]
    sizes = [flat.size for flat in flats]
    if scope == "global":
        keep = _prune_smallest(np.concatenate(flats), int(round(threshold * sum(sizes))))
        pieces = np.split(keep, np.cumsum(sizes)[:-1])
    elif scope == "layer":
        already = [int((flat < 0).sum()) for flat in flats]
        counts = allocate_exact(sizes, threshold, already)
        pieces = [_prune_smallest(flat, count) for flat, count in zip(flats, counts)]
    else:
        raise ValueError(f"prune.scope must be one of {SCOPES}, got {scope!r}")
    return {name: piece.reshape(np.shape(kernels[name])) for name, piece in zip(names, pieces)}


def random_masks_like(masks: Mapping[str, np.ndarray], seed: int) -> Masks:
    """The random-mask control: each layer keeps as many weights as in `masks`, at random positions."""
    rng = np.random.default_rng(seed)
    shuffled: Masks = {}
    for name, mask in masks.items():
        keep = np.zeros(mask.size, dtype=bool)
        keep[rng.permutation(mask.size)[: int(np.count_nonzero(mask))]] = True
        shuffled[name] = keep.reshape(mask.shape)
    return shuffled


def sparsity_report(masks: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Global and per-layer counts of a mask set (layers in network order)."""
    layers = []
    for name, mask in masks.items():
        kept = int(np.count_nonzero(mask))
        layers.append({
            "layer": name,
            "weights": int(mask.size),
            "kept": kept,
            "density": kept / mask.size if mask.size else 1.0,
            "sparsity": 1.0 - kept / mask.size if mask.size else 0.0,
        })
    total = sum(layer["weights"] for layer in layers)
    kept_total = sum(layer["kept"] for layer in layers)
    return {
        "weights": total,
        "kept": kept_total,
        "sparsity": 1.0 - kept_total / total if total else 0.0,
        "weights_remaining": kept_total / total if total else 1.0,
        "empty_layers": [layer["layer"] for layer in layers if layer["kept"] == 0],
        "layers": layers,
    }


def save_masks(masks: Mapping[str, np.ndarray], directory: Path) -> tuple[Path, Path]:
    """Write `mask.npz` and `sparsity.json` into `directory`; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    mask_path, report_path = directory / "mask.npz", directory / "sparsity.json"
    np.savez_compressed(mask_path, **{name: np.asarray(m, dtype=bool) for name, m in masks.items()})
    report_path.write_text(json.dumps(sparsity_report(masks), indent=2))
    return mask_path, report_path


def load_masks(path: Path) -> Masks:
    """Read masks written by `save_masks`, in their saved (network) order."""
    with np.load(path) as archive:
        return {name: archive[name].astype(bool) for name in archive.files}


@keras.saving.register_keras_serializable(package="lth")
class MaskConstraint(keras.constraints.Constraint):
    """Multiplies a kernel by a fixed 0/1 mask after every optimizer update.

    Keras applies `variable.constraint` right after each update inside the compiled
    train step, so masked weights stay exactly zero through momentum and weight
    decay. The constraint must be attached before `compile()`: one attached later is
    ignored by the already traced step.
    """

    def __init__(self, mask: keras.Variable) -> None:
        self.mask = mask

    def __call__(self, w: Any) -> Any:
        # `where`, not a product: a diverged weight (NaN) times 0 would stay NaN.
        return keras.ops.where(self.mask > 0, w, keras.ops.zeros_like(w))

    def get_config(self) -> dict[str, Any]:
        # The mask itself lives in mask.npz; constraints are never saved in .keras files.
        return {}


def attach_masks(model: keras.Model, masks: Mapping[str, np.ndarray]) -> dict[str, keras.Variable]:
    """Zero the masked kernel entries and keep them zero during training.

    Call before `model.compile()`. The masks become non-trainable variables, so later
    assignments to them need no re-compile.

    Returns:
        The mask variables, keyed by layer name.
    """
    if getattr(model, "compiled", False) or getattr(model, "train_function", None) is not None:
        raise RuntimeError("attach_masks must run before model.compile(); a traced step ignores new constraints")
    variables: dict[str, keras.Variable] = {}
    for name, mask in masks.items():
        kernel = model.get_layer(name).kernel
        if tuple(kernel.shape) != tuple(mask.shape):
            raise ValueError(f"mask for {name} has shape {mask.shape}, kernel has {tuple(kernel.shape)}")
        variable = keras.Variable(
            np.asarray(mask, dtype="float32"), trainable=False, name=f"{name}_mask", dtype="float32"
        )
        kernel.constraint = MaskConstraint(variable)
        kernel.assign(kernel.constraint(kernel.value))
        variables[name] = variable
    return variables
