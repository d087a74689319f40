"""Array inputs as Keras PyDatasets, for backends other than TensorFlow (no tf.data there).

Same contract as the tf.data path of `lth.data`: uint8 images, int32 labels, full
training batches in an order fixed by (seed, epoch), evaluation in array order.
Batches are gathered by worker threads ahead of the step, and Keras' JAX trainer
copies the next batch to the device while the current one trains.
"""

from __future__ import annotations

import threading

import keras
import numpy as np

from lth.datasets import Arrays

PREFETCH_WORKERS = 4  # threads gathering batches ahead; NumPy's fancy indexing releases the GIL


class EpochCounter:
    """The epoch whose order the training input yields; `fitting.EpochOrder` assigns it."""

    def __init__(self) -> None:
        self.value = 0

    def assign(self, value: int) -> None:
        """Set the 0-based epoch that the next pass over the data belongs to."""
        self.value = int(value)


class EpochOrderedBatches(keras.utils.PyDataset):
    """Full training batches, shuffled by a permutation seeded with (seed, epoch)."""

    def __init__(self, arrays: Arrays, batch_size: int, seed: int, epoch: EpochCounter) -> None:
        super().__init__(workers=PREFETCH_WORKERS, use_multiprocessing=False, max_queue_size=8)
        self.images, self.labels = arrays
        self.batch_size, self.seed, self.epoch = batch_size, seed, epoch
        self._order: tuple[int, np.ndarray] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def order(self) -> np.ndarray:
        """The example order of the current epoch (computed once per epoch, shared by the threads)."""
        with self._lock:
            if self._order is None or self._order[0] != self.epoch.value:
                rng = np.random.default_rng([self.seed, self.epoch.value])
                self._order = (self.epoch.value, rng.permutation(len(self.labels)))
            return self._order[1]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        take = np.sort(self.order()[index * self.batch_size: (index + 1) * self.batch_size])
        return self.images[take], self.labels[take]


class OrderedBatches(keras.utils.PyDataset):
    """Evaluation batches in array order; the last one may be partial."""

    def __init__(self, arrays: Arrays, batch_size: int) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.images, self.labels = arrays
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        window = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.images[window], self.labels[window]
