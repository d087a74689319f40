"""Every vocabulary of the config, declared once: a `Literal` type for the typed pieces (lth.config.cell)
and the tuple of its values for the checks (lth.validation.validate, lth.training.devices); and the error
a value outside them raises. Nothing here imports more than the standard library.
"""

from __future__ import annotations

import typing
from typing import Literal

Backend = Literal["tensorflow", "jax"]
Precision = Literal["float32", "mixed_bfloat16", "mixed_float16"]
Optimizer = Literal["sgd", "adamw", "adam"]
Schedule = Literal["cosine", "step", "constant"]
LrScaling = Literal["none", "linear"]
WeightDecayMode = Literal["decoupled", "l2"]
Method = Literal["magnitude", "imp"]
Control = Literal["none", "reinit", "random_mask"]
OnCollapse = Literal["warn", "refuse"]
Structure = Literal["none", "xnnpack_1x1", "channel"]
Scope = Literal["global", "layer", "lamp", "erk"]  # lth.pruning.scopes.SCOPES implements each
BACKENDS: tuple[str, ...] = typing.get_args(Backend)
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
OPTIMIZERS: tuple[str, ...] = typing.get_args(Optimizer)
SCHEDULES: tuple[str, ...] = typing.get_args(Schedule)
LR_SCALINGS: tuple[str, ...] = typing.get_args(LrScaling)
WEIGHT_DECAY_MODES: tuple[str, ...] = typing.get_args(WeightDecayMode)
METHODS: tuple[str, ...] = typing.get_args(Method)
CONTROLS: tuple[str, ...] = typing.get_args(Control)
ON_COLLAPSE: tuple[str, ...] = typing.get_args(OnCollapse)
STRUCTURES: tuple[str, ...] = typing.get_args(Structure)
SCOPE_NAMES: tuple[str, ...] = typing.get_args(Scope)
DEFAULT_SCOPE, CHANNEL_DEFAULT_SCOPE = "lamp", "layer"
IMAGENET_NEEDS_TENSORFLOW = "data=imagenet reads TFRecord shards with tf.data: it needs train.backend=tensorflow"


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the fix."""


def default_scope(structure: str) -> str:
    """`prune.scope` where the config leaves it: lamp, or layer when whole channels go.

    A channel ticket is pruned for speed. LAMP (or one global ranking) spends a channel budget in the late,
    parameter-heavy, low-resolution layers, so half the weights gone removes a fifth of the MACs on
    MobileNetV2; the same fraction of every channel group makes the MACs fall with the weights, as
    Torch-Pruning's default uniform ratio does. Registered as the `lth.default_scope` resolver (lth/__init__.py).
    """
    return CHANNEL_DEFAULT_SCOPE if structure == "channel" else DEFAULT_SCOPE
