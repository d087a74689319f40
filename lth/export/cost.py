"""What a model costs: parameters and multiply-accumulates, as stored and as non-zero.

MACs count the Conv2D, DepthwiseConv2D and Dense layers at batch 1 (BatchNorm, activations
and additions fold into them or are negligible). `macs` is what a dense engine computes;
`nonzero_macs` counts only the products with a non-zero weight, what an ideal sparse
kernel would compute.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import keras
import numpy as np

KERNEL_LAYERS: tuple[type, ...] = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


@dataclass(frozen=True)
class Cost:
    """A model's size and work at batch 1."""

    params: int  # every weight it stores (BatchNorm statistics included)
    nonzero_params: int  # of those, the non-zero ones
    macs: int  # multiply-accumulates of its Conv2D, depthwise and Dense layers
    nonzero_macs: int  # of those, the ones with a non-zero weight

    def as_dict(self) -> dict[str, int]:
        """The figures by name."""
        return asdict(self)


def _positions(layer: keras.layers.Layer) -> int:
    """Output positions each kernel weight is applied at: H x W for a convolution, the leading dims for Dense."""
    shape = layer.output.shape[1:-1]
    return math.prod(int(size) for size in shape) if shape else 1


def model_cost(model: keras.Model) -> Cost:
    """Parameters and MACs of a built model, stored and non-zero."""
    values = [np.asarray(weight.numpy()) for weight in model.weights]
    macs = nonzero_macs = 0
    for layer in model.layers:
        if isinstance(layer, KERNEL_LAYERS):
            # Every kernel weight (a grouped or depthwise kernel holds only its own group's) is used once per position.
            kernel = np.asarray(layer.kernel.numpy())
            macs += _positions(layer) * kernel.size
            nonzero_macs += _positions(layer) * int(np.count_nonzero(kernel))
    return Cost(params=sum(value.size for value in values),
                nonzero_params=sum(int(np.count_nonzero(value)) for value in values),
                macs=int(macs), nonzero_macs=int(nonzero_macs))
