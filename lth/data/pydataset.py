"""Array inputs as Keras PyDatasets, for backends other than TensorFlow (no tf.data there).

Same contract as the tf.data path of `lth.data.load`: uint8 images, int32 labels, full
training batches in the order `lth.data.splits.epoch_order(seed, epoch)`, with the epoch read
when each epoch's pass starts, and evaluation in array order.

Why the prefetching is not Keras' own: Keras' `OrderedEnqueuer` (PyDataset workers > 1)
keeps the batches its threads fetched ahead when an epoch's pass stops, and hands them
out first in the next pass. The first `fit` of a compiled model stops a pass after one
batch (to build its metrics), so every later epoch began with batches of the epoch
before (measured: 9 of 21) and dropped its own last ones. Here Keras pulls batch `i`
of the running epoch in the step's thread (`workers=1`), and the look-ahead is a pool
of gathers keyed by (epoch, index): a batch's content never depends on thread timing.

Data parallel over several processes: each process yields its `Part` of every global
batch (rows `[i*B/n, (i+1)*B/n)` of it), and Keras joins the parts into the global batch
(`jax.make_array_from_process_local_data`). An evaluation batch must split evenly over
every device, so the last one is padded with rows of sample weight 0 (see OrderedBatches).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import keras
import numpy as np

from lth.data.arrays import Arrays
from lth.data.splits import WHOLE, EpochCounter, Part, epoch_order

PREFETCH_WORKERS = 4  # threads gathering batches ahead; NumPy's fancy indexing releases the GIL
PREFETCH_BATCHES = 8  # batches gathered ahead of the one the step takes (Keras' JAX trainer copies one more to the device)


class EpochOrderedBatches(keras.utils.PyDataset):
    """Full training batches: batch `i` of epoch `e` is `epoch_order(seed, e)[i*B:(i+1)*B]`.

    `fit` must be called with `shuffle=False`: Keras would otherwise permute the batch
    indices with Python's global `random`.
    """

    def __init__(self, arrays: Arrays, batch_size: int, seed: int, epoch: EpochCounter, part: Part = WHOLE) -> None:
        # workers=1: no Keras enqueuer; Keras calls __getitem__ in order from the training loop's thread.
        super().__init__(workers=1, use_multiprocessing=False)
        self.images, self.labels = arrays
        self.batch_size, self.seed, self.epoch, self.part = batch_size, seed, epoch, part
        self._pass_epoch: int | None = None  # the epoch of the pass Keras is iterating, fixed at its start
        self._order: tuple[int, np.ndarray] | None = None  # (epoch, its example order), computed once per epoch
        self._ahead: dict[tuple[int, int], Future[tuple[np.ndarray, np.ndarray]]] = {}
        self._pool = ThreadPoolExecutor(PREFETCH_WORKERS, thread_name_prefix="lth-batches")

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def rows(self, epoch: int, index: int) -> np.ndarray:
        """The example indices of batch `index` of `epoch`."""
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.seed, epoch, len(self.labels)))
        return self._order[1][index * self.batch_size: (index + 1) * self.batch_size]

    def _take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mine = self.part.of(rows)
        return self.images[mine], self.labels[mine]

    def _prefetch(self, epoch: int, first: int) -> None:
        for index in range(first, min(first + PREFETCH_BATCHES, len(self))):
            if (epoch, index) not in self._ahead:
                self._ahead[(epoch, index)] = self._pool.submit(self._take, self.rows(epoch, index))

    def on_epoch_begin(self) -> None:
        """Keras calls this when a pass starts: read the epoch once and start gathering."""
        self._pass_epoch = self.epoch.value
        self._prefetch(self._pass_epoch, 0)

    def on_epoch_end(self) -> None:
        """Drop what was gathered ahead and not taken (a pass Keras stopped early)."""
        for future in self._ahead.values():
            future.cancel()
        self._ahead.clear()
        self._pass_epoch = None

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        epoch = self.epoch.value if self._pass_epoch is None else self._pass_epoch  # plain iteration reads it now
        future = self._ahead.pop((epoch, index), None)
        self._prefetch(epoch, index + 1)
        return future.result() if future is not None else self._take(self.rows(epoch, index))


class OrderedBatches(keras.utils.PyDataset):
    """Evaluation batches in array order; the last one may be partial.

    On several devices the last batch is padded to a multiple of `replicas` with rows of
    sample weight 0, which the weighted accuracy leaves out exactly. Keras' loss divides by
    the padded count instead, so a padded split's loss is `loss_factor` too small.
    """

    def __init__(self, arrays: Arrays, batch_size: int, replicas: int = 1, part: Part = WHOLE) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.images, self.labels = arrays
        self.batch_size, self.replicas, self.part = batch_size, replicas, part

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    @property
    def loss_factor(self) -> float:
        """Padded over real examples: multiply Keras' loss on this input by it to get the true mean."""
        count = len(self.labels)
        return (count + (-(count % self.batch_size or self.batch_size)) % self.replicas) / count

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        window = slice(index * self.batch_size, (index + 1) * self.batch_size)
        images, labels = self.images[window], self.labels[window]
        if self.replicas == 1:
            return images, labels
        weights = np.ones(len(labels), np.float32)
        pad = -len(labels) % self.replicas
        if pad:  # zero rows of weight 0, so the batch splits evenly over the devices
            images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
            labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
            weights = np.concatenate([weights, np.zeros(pad, np.float32)])
        rows = self.part.of(np.arange(len(labels)))
        return images[rows], labels[rows], weights[rows]
