"""What an input pipeline hands the training loop, and the one order of its training examples.

Both backends' pipelines (lth.data.load for arrays, lth.data.shard_pipeline for TFRecord shards) return
`DataSplits`; the array pipelines of both backends visit the training examples in
`epoch_order(seed, epoch)`. Nothing here imports TensorFlow or Keras.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Version of `epoch_order`, tagged on every dense run as `lth.data_order`: a dense parent
# trained under another order is not reused (its tickets would see other batches).
DATA_ORDER_VERSION = "2"


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    """The order in which epoch `epoch` of a run seeded `seed` visits `count` training examples.

    Batch `i` of the epoch is `order[i * batch_size:(i + 1) * batch_size]` (the remainder is
    dropped). Pure NumPy (PCG64 seeded with the pair), so every backend computes the same order.
    """
    return np.random.default_rng([int(seed), int(epoch)]).permutation(count)


@dataclass(frozen=True)
class Part:
    """Which share of every global batch this process feeds: `index` of `count` equal parts."""

    index: int = 0
    count: int = 1

    def of(self, rows: np.ndarray) -> np.ndarray:
        """This process's contiguous share of a global batch's rows (its length divides by `count`)."""
        share = len(rows) // self.count
        return rows[self.index * share:(self.index + 1) * share]


WHOLE = Part()  # one process feeds whole batches


class EpochCounter:
    """The 0-based epoch whose example order the training input yields.

    The PyDataset path reads `value`; a tf.data graph cannot read Python state when an
    iterator starts, so the tf.data paths hand in a `tf.Variable` that `assign` keeps equal.
    """

    def __init__(self, variable: Any = None) -> None:
        self.value = 0
        self.variable = variable  # a tf.Variable(int64) read by the tf.data graph, or None

    def assign(self, value: int) -> None:
        """Set the epoch that the next pass over the training data belongs to."""
        self.value = int(value)
        if self.variable is not None:
            self.variable.assign(self.value)


@dataclass(frozen=True)
class DataSplits:
    """The three splits of a dataset, ready for `model.fit` and `model.evaluate`.

    `train`, `val` and `test` are tf.data datasets on the TensorFlow backend and
    Keras PyDatasets on JAX; both are what `fit` and `evaluate` take.
    """

    train: Any
    val: Any
    test: Any
    steps_per_epoch: int
    summary: str
    epoch: EpochCounter  # 0-based epoch whose example order `train` yields (begin_epoch sets it)
    val_loss_factor: float = 1.0  # Keras' val_loss times this is the true mean (evaluation padded for devices)
    test_loss_factor: float = 1.0  # the same for the test split
    val_images: int = 0  # images in the validation split: the resolution of a choice made on it
    val_is_test: bool = False  # data.val_split and data.test_split name one split: a choice on val is on test

    def begin_epoch(self, epoch: int) -> None:
        """The training loop calls this before epoch `epoch` (0-based) starts, like a sampler's set_epoch.

        This is the pipeline's one input from the loop: the order of the epoch's batches.
        """
        self.epoch.assign(epoch)
