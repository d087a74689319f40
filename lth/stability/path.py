"""The linear path between two trained copies of a network, and its error barrier.

Frankle, Dziugaite, Roy & Carbin (ICML 2020): copies W1 and W2 trained from the same weights
under different SGD noise are *stable* when test error stays flat along W(α) = α·W1 + (1−α)·W2.
The barrier is max over α of error(W(α)) minus the mean of the two ends' errors.

The path is walked on the validation split and on the test split at once (one BatchNorm
recompute per α serves both). Validation decides (`reset.epoch=auto`, `lth.stable`): a
training decision must not be taken on test images. The test barrier is reported, as the paper does.

Contract:
- W(α) is computed as W2 + α·(W1 − W2), so α = 0 is W2 exactly, α = 1 is W1 up to rounding,
  a weight that is zero in both copies (a pruned one) is exactly zero at every α, and two
  identical copies give the same weights at every α (a barrier of exactly 0).
- BatchNorm moving statistics are either interpolated like every other variable
  (`interpolate`) or recomputed at each α from the same training batches in training mode
  (`recompute`, as mode-connectivity work does for BatchNorm networks): each layer's moving
  mean and variance become the average over those batches of its batch mean and (biased) variance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import keras
import numpy as np

from lth.common.weights import Weights, kernel_path
from lth.data.splits import DataSplits
from lth.training.models import restore

log = logging.getLogger("lth")


@dataclass(frozen=True)
class PathErrors:
    """Error on one split along the path, from W2 (α = 0) to W1 (α = 1)."""

    alphas: tuple[float, ...]
    errors: tuple[float, ...]
    masked_nonzero: int  # pruned weights that were not exactly zero at some α (0 unless something is broken)

    @property
    def barrier(self) -> float:
        """max error(α) minus the mean of the two ends' errors (never below 0: the ends are on the path)."""
        return float(max(self.errors) - (self.errors[0] + self.errors[-1]) / 2.0)


def alphas(points: int) -> np.ndarray:
    """`points` evenly spaced α in [0, 1], both ends included."""
    return np.linspace(0.0, 1.0, points)


def interpolate(first: Weights, second: Weights, alpha: float) -> Weights:
    """W2 + α·(W1 − W2) for every floating variable (others, e.g. counters, are taken from `first`)."""
    if set(first) != set(second):
        raise ValueError(f"the copies have different variables: {sorted(set(first) ^ set(second))[:5]}")
    mixed = {}
    for path, value in first.items():
        if np.issubdtype(value.dtype, np.floating):
            other = second[path]
            mixed[path] = (other + value.dtype.type(alpha) * (value - other)).astype(value.dtype)
        else:
            mixed[path] = value
    return mixed


def masked_nonzero(weights: Weights, masks: Mapping[str, np.ndarray] | None) -> int:
    """Entries of the masked kernels that are not exactly zero where their mask is 0."""
    if not masks:
        return 0
    return sum(int(np.count_nonzero(weights[kernel_path(name)][~np.asarray(mask, bool)])) for name, mask in masks.items())


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The model's BatchNormalization layers, in network order."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


class _BatchMoments(keras.Model):
    """Per-channel batch mean and variance of every BatchNorm layer's input, in training mode."""

    def __init__(self, model: keras.Model) -> None:
        super().__init__(name="batch_moments")
        self.layers_of = batch_norm_layers(model)
        self.taps = keras.Model(model.inputs, [layer.input for layer in self.layers_of])

    def call(self, images: object) -> list[object]:
        # training=True: each layer normalises with its batch's statistics, so what reaches a
        # layer does not depend on the moving statistics being recomputed.
        inputs = self.taps(images, training=True)
        inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        moments = []
        for tensor in inputs:
            values = keras.ops.cast(tensor, "float32")
            axes = tuple(range(len(values.shape) - 1))
            mean = keras.ops.mean(values, axis=axes)
            moments += [mean, keras.ops.mean(keras.ops.square(values - mean), axis=axes)]
        return moments


def recompute_batch_norm(model: keras.Model, batches: Sequence[np.ndarray],
                         moments: keras.Model | None = None) -> keras.Model | None:
    """Set every BatchNorm layer's moving statistics to their average over `batches` (training mode).

    Returns:
        The compiled moments model, to pass back for the next α (None: the model has no BatchNorm).
    """
    layers = batch_norm_layers(model)
    if not layers:
        return None
    if moments is None:
        moments = _BatchMoments(model)
    sums: list[np.ndarray] | None = None
    for images in batches:
        found = [np.asarray(value, np.float64) for value in moments.predict_on_batch(images)]
        sums = found if sums is None else [total + value for total, value in zip(sums, found)]
    assert sums is not None, "no training batch to recompute BatchNorm statistics from"
    for index, layer in enumerate(layers):
        layer.moving_mean.assign((sums[2 * index] / len(batches)).astype("float32"))
        layer.moving_variance.assign((sums[2 * index + 1] / len(batches)).astype("float32"))
    return moments


def training_batches(data: DataSplits, count: int) -> list[np.ndarray]:
    """The images of the first `count` training batches of epoch 0 (fewer if the epoch is shorter)."""
    data.begin_epoch(0)
    train = data.train
    if hasattr(train, "take"):  # tf.data
        return [np.asarray(batch[0]) for batch in train.take(count).as_numpy_iterator()]
    return [np.asarray(train[index][0]) for index in range(min(count, len(train)))]


SPLITS = ("val", "test")  # what a path is walked on: validation decides, test is reported


def split_error(model: keras.Model, data: DataSplits, split: str) -> float:
    """1 − accuracy on `split` (`val` or `test`; sample-weighted: padded evaluation rows do not count)."""
    _, accuracy = model.evaluate(getattr(data, split), verbose=0)
    return 1.0 - float(accuracy)


def path_errors(model: keras.Model, data: DataSplits, first: Weights, second: Weights, points: int, bn: str,
                bn_batches: int, masks: Mapping[str, np.ndarray] | None = None,
                progress: Callable[[int, float, dict[str, float]], None] = lambda index, alpha, errors: None,
                splits: Sequence[str] = SPLITS) -> dict[str, PathErrors]:
    """Evaluate the error of `model` on each split at `points` α between `second` (α = 0) and `first` (α = 1).

    Args:
        model: The compiled network the copies were trained as (its weights are overwritten).
        bn: `recompute` or `interpolate` (see the module docstring).
        bn_batches: Training batches the BatchNorm statistics are recomputed from.
        masks: The copies' masks: every pruned weight is checked to be exactly zero at every α.
        progress: Called after each α with (index, α, error by split).
        splits: The splits to walk on (default both; an analysis logged before validation walks `val` only).

    Returns:
        The path of each split, keyed by split.
    """
    batches = training_batches(data, bn_batches) if bn == "recompute" else []
    moments, leaked, values = None, 0, alphas(points)
    errors: dict[str, list[float]] = {split: [] for split in splits}
    for index, alpha in enumerate(values):
        weights = interpolate(first, second, float(alpha))
        leaked = max(leaked, masked_nonzero(weights, masks))
        restore(model, weights)
        if bn == "recompute":
            moments = recompute_batch_norm(model, batches, moments)
        for split in splits:
            errors[split].append(split_error(model, data, split))
        progress(index, float(alpha), {split: found[-1] for split, found in errors.items()})
    return {split: PathErrors(tuple(float(a) for a in values), tuple(found), leaked) for split, found in errors.items()}
