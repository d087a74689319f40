"""Input pipelines for the configured dataset: tf.data on TensorFlow, a Keras PyDataset on JAX.

Every dataset yields uint8 images of the model's input size and int32 labels; the
model normalises on the device. Training batches drop the remainder so every epoch
has the same number of optimizer steps, which is what lets a ticket resume the
learning-rate schedule at epoch k by step count.

The order of training examples is `epoch_order(seed, epoch)`, one NumPy function for
both backends, read from the `epoch` counter when each epoch's iterator starts. So a
ticket rewound to epoch k sees the batches the dense run saw from epoch k on, a job
resumed from a backup after preemption sees exactly the batches it would have seen
uninterrupted, and a JAX run trains on the batches of the TensorFlow run of its seed.

TensorFlow is imported only by the tf.data path, so the JAX backend runs without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras

from lth.config.cell import DataConfig
from lth.config.vocabulary import IMAGENET_NEEDS_TENSORFLOW
from lth.data.arrays import LOADERS, Arrays
from lth.data.splits import WHOLE, DataSplits, EpochCounter, Part, epoch_order

if TYPE_CHECKING:
    import tensorflow as tf

def _epoch_ordered(arrays: Arrays, batch_size: int, seed: int, epoch: tf.Variable) -> tf.data.Dataset:
    """Training batches in an order fixed by (seed, epoch), re-read at every new iterator."""
    import tensorflow as tf

    images, labels = tf.constant(arrays[0]), tf.constant(arrays[1])
    count, steps = len(arrays[0]), len(arrays[0]) // batch_size

    def order(_: tf.Tensor) -> tf.data.Dataset:
        # Runs when an iterator starts (each epoch), so the variable is read then.
        indices = tf.numpy_function(lambda value: epoch_order(seed, int(value), count), [tf.cast(epoch, tf.int64)],
                                    tf.int64, stateful=True, name="epoch_order")
        return tf.data.Dataset.from_tensor_slices(tf.ensure_shape(indices, [count]))

    batches = tf.data.Dataset.range(1).flat_map(order).batch(batch_size, drop_remainder=True)
    batches = batches.map(lambda index: (tf.gather(images, index), tf.gather(labels, index)))
    return batches.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(tf.data.AUTOTUNE)


def _tf_splits(train: Arrays, val: Arrays, test: Arrays, batch_size: int, seed: int) -> tuple[Any, Any, Any, Any]:
    import tensorflow as tf

    def evaluation(arrays: Arrays) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size).prefetch(tf.data.AUTOTUNE)

    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")
    return _epoch_ordered(train, batch_size, seed, epoch), evaluation(val), evaluation(test), EpochCounter(epoch)


def _py_splits(train: Arrays, val: Arrays, test: Arrays, batch_size: int, seed: int, replicas: int,
               part: Part) -> tuple[Any, Any, Any, Any]:
    from lth.data.pydataset import EpochOrderedBatches, OrderedBatches

    epoch = EpochCounter()
    return (EpochOrderedBatches(train, batch_size, seed, epoch, part), OrderedBatches(val, batch_size, replicas, part),
            OrderedBatches(test, batch_size, replicas, part), epoch)


def load_data(data: DataConfig, batch_size: int, seed: int, replicas: int = 1, part: Part = WHOLE) -> DataSplits:
    """Build the train/val/test pipelines for the configured dataset and the active Keras backend.

    Args:
        data: The `data` config group.
        batch_size: Global batch size.
        seed: Shuffling seed (the run's `train.data_seed`, or `train.seed` when that is null).
        replicas: Devices of the run's data parallelism over all its processes (JAX: every
            batch splits evenly over them; TensorFlow's strategies split batches themselves).
        part: This process's share of every batch (JAX; the whole batch on one process).
    """
    if data.name == "imagenet":  # TFRecord shards from tools/ingest.py, streamed rather than held in memory
        if keras.backend.backend() != "tensorflow":
            raise ValueError(IMAGENET_NEEDS_TENSORFLOW)
        from lth.data.shard_pipeline import load_shards  # imported here: it imports TensorFlow

        return load_shards(data, batch_size, seed)
    if data.name not in LOADERS:
        raise ValueError(f"data.name must be one of {sorted([*LOADERS, 'imagenet'])}, got {data.name!r}")
    train, val, test = LOADERS[data.name](data)
    if len(train[0]) < batch_size:
        raise ValueError(f"train.batch_size={batch_size} exceeds the {len(train[0])} training images of {data.name}")
    if keras.backend.backend() == "tensorflow":
        train_input, val_input, test_input, epoch = _tf_splits(train, val, test, batch_size, seed)
        factors = (1.0, 1.0)
    else:
        train_input, val_input, test_input, epoch = _py_splits(train, val, test, batch_size, seed, replicas, part)
        factors = (val_input.loss_factor, test_input.loss_factor)
    summary = (
        f"data {data.name}: {len(train[0])} train / {len(val[0])} val / {len(test[0])} test images, "
        f"{int(data.num_classes)} classes, {train[0].shape[1]}x{train[0].shape[2]}"
    )
    return DataSplits(train=train_input, val=val_input, test=test_input,
                      steps_per_epoch=len(train[0]) // batch_size, summary=summary, epoch=epoch,
                      val_loss_factor=factors[0], test_loss_factor=factors[1], val_images=len(val[0]))
