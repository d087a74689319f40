"""Every vocabulary of the config, declared once: a `Literal` type for the typed pieces (lth.cell)
and the tuple of its values for the checks (lth.validate, lth.training.devices); and the error
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
IMAGENET_NEEDS_TENSORFLOW = "data=imagenet reads TFRecord shards with tf.data: it needs train.backend=tensorflow"


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the fix."""
