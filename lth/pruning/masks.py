"""Binary pruning masks: magnitude scoring, exact sparsity, and enforcement in Keras.

A mask is a mapping from a prunable layer's name to a boolean array shaped like its
kernel (True = the weight survives). Masks are computed in NumPy from weight arrays
(lth.pruning.scopes), so the same code serves a live model and weights read back from MLflow.

Masks are saved as `.npz` and re-attached with `attach_masks`. A model saved as a `.keras`
file (the report's winning-ticket models) carries them too: `attach_masks` also sets the
layer's constraint argument, and `MaskConstraint` serialises its mask (1 bit per weight).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Mapping, Sequence
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


def prunable_weight_count(model: keras.Model) -> int:
    """Weights of the kernels of every prunable layer: the common base of every run's `weights_remaining`.

    Counted with no ignore list, whatever `prune.structure` and `prune.ignore` mask, so that a run
    of any structure is a fraction of the same number as a `structure=none` run of the network.
    """
    return sum(int(np.prod(model.get_layer(name).kernel.shape)) for name in prunable_layer_names(model))


def random_masks_like(masks: Mapping[str, np.ndarray], seed: int) -> Masks:
    """The random-mask control: each layer keeps as many weights as in `masks`, at random positions."""
    rng = np.random.default_rng(seed)
    shuffled: Masks = {}
    for name, mask in masks.items():
        keep = np.zeros(mask.size, dtype=bool)
        keep[rng.permutation(mask.size)[: int(np.count_nonzero(mask))]] = True
        shuffled[name] = keep.reshape(mask.shape)
    return shuffled


def _channels(mask: np.ndarray, depthwise: bool) -> tuple[int, int]:
    """(output channels, dead ones) of a kernel mask: a channel is dead when its whole kernel slice is pruned.

    Conv2D (h, w, in, out) and Dense (in, out) have `out` channels along the last axis;
    DepthwiseConv2D (h, w, in, mult) has in*mult, each one h*w kernel. A dead channel
    passes only its bias (and BatchNorm shift) on: a constant, whatever the input.
    """
    if mask.ndim < 2:
        return 1, int(not mask.any())
    alive = mask.any(axis=(0, 1)) if depthwise and mask.ndim == 4 else mask.reshape(-1, mask.shape[-1]).any(axis=0)
    return int(alive.size), int(alive.size - np.count_nonzero(alive))


def sparsity_report(masks: Mapping[str, np.ndarray], depthwise_layers: Collection[str] | None = None,
                    all_prunable_weights: int | None = None) -> dict[str, Any]:
    """Global and per-layer counts of a mask set (layers in network order), with dead output channels.

    Two totals: `weights`/`kept` over the masked layers, and `all_prunable_weights`/`all_prunable_kept`
    over every prunable layer of the network, where a layer the mask does not cover (`prune.structure`,
    `prune.ignore`) keeps all its weights. `weights_remaining` and `sparsity` are of the second, the
    common base runs of every structure are compared on; `weights_remaining_of_masked_layers` of the first.

    Args:
        masks: Kernel masks by layer name.
        depthwise_layers: Names of the DepthwiseConv2D layers among them. None infers them: a 4-D
            mask of a layer whose name contains "depthwise" (Keras' own names for such layers, and
            MobileNetV2's).
        all_prunable_weights: The network's `prunable_weight_count`; None when the masks cover every
            prunable layer.

    Raises:
        ValueError: If `all_prunable_weights` is smaller than the masked layers' weights.
    """
    layers = []
    for name, mask in masks.items():
        kept = int(np.count_nonzero(mask))
        depthwise = "depthwise" in name.lower() if depthwise_layers is None else name in set(depthwise_layers)
        channels, dead = _channels(np.asarray(mask, dtype=bool), depthwise)
        layers.append({
            "layer": name,
            "weights": int(mask.size),
            "kept": kept,
            "density": kept / mask.size if mask.size else 1.0,
            "sparsity": 1.0 - kept / mask.size if mask.size else 0.0,
            "channels": channels,
            "dead_channels": dead,
        })
    total = sum(layer["weights"] for layer in layers)
    kept_total = sum(layer["kept"] for layer in layers)
    base = total if all_prunable_weights is None else int(all_prunable_weights)
    if base < total:
        raise ValueError(f"all_prunable_weights={base} is fewer than the {total} weights of the masked layers")
    base_kept = kept_total + base - total  # the layers outside the masks stay dense
    return {
        "weights": total,
        "kept": kept_total,
        "all_prunable_weights": base,
        "all_prunable_kept": base_kept,
        "sparsity": 1.0 - base_kept / base if base else 0.0,
        "weights_remaining": base_kept / base if base else 1.0,
        "weights_remaining_of_masked_layers": kept_total / total if total else 1.0,
        "empty_layers": [layer["layer"] for layer in layers if layer["kept"] == 0],
        "channels": sum(layer["channels"] for layer in layers),
        "dead_channels": sum(layer["dead_channels"] for layer in layers),
        "layers": layers,
    }


def save_masks(masks: Mapping[str, np.ndarray], directory: Path, mask_name: str,
               report_name: str) -> tuple[Path, Path]:
    """Write the masks (`.npz`) and their sparsity report (`.json`) into `directory`; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    mask_path, report_path = directory / mask_name, directory / report_name
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

    def __init__(self, mask: keras.Variable | None = None, *, shape: Sequence[int] = (), packed: str = "") -> None:
        if mask is None:  # from a saved model's config (get_config)
            size = int(np.prod(shape))
            bits = np.unpackbits(np.frombuffer(base64.b64decode(packed), dtype=np.uint8), count=size)
            mask = keras.Variable(bits.reshape(tuple(shape)).astype("float32"), trainable=False, dtype="float32")
        self.mask = mask

    def __call__(self, w: Any) -> Any:
        # `where`, not a product: a diverged weight (NaN) times 0 would stay NaN.
        w = keras.ops.convert_to_tensor(w)  # JAX's optimizer passes the Variable itself
        return keras.ops.where(self.mask > 0, w, keras.ops.zeros_like(w))

    def get_config(self) -> dict[str, Any]:
        # The mask travels with a saved model, packed 8 weights a byte (MobileNetV2 at full width: 0.6 MB).
        bits = keras.ops.convert_to_numpy(self.mask) > 0
        return {"shape": list(bits.shape), "packed": base64.b64encode(np.packbits(bits.ravel())).decode("ascii")}


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
        # What the layer's config saves, so a model saved with `.save()` is rebuilt with its masks.
        argument = "depthwise_constraint" if isinstance(model.get_layer(name), keras.layers.DepthwiseConv2D) \
            else "kernel_constraint"
        setattr(model.get_layer(name), argument, kernel.constraint)
        kernel.assign(kernel.constraint(kernel.value))
        variables[name] = variable
    return variables
