"""Input pipelines (tf.data) for the configured dataset.

Every dataset yields uint8 images of the model's input size and int32 labels; the
model normalises on the device. Training batches drop the remainder so every epoch
has the same number of optimizer steps, which is what lets a ticket resume the
learning-rate schedule at epoch k by step count.

The order of training examples is a function of (seed, epoch) alone, read from the
`epoch` variable when each epoch's iterator starts. So a ticket rewound to epoch k
sees the batches the dense run saw from epoch k on, and a job resumed from a backup
after preemption sees exactly the batches it would have seen uninterrupted.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from omegaconf import DictConfig

Arrays = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class DataSplits:
    """The three splits of a dataset, ready for `model.fit` and `model.evaluate`."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    steps_per_epoch: int
    summary: str
    epoch: tf.Variable  # 0-based epoch whose example order `train` yields; set by fitting.EpochOrder


def _epoch_ordered(arrays: Arrays, batch_size: int, seed: int, epoch: tf.Variable) -> tf.data.Dataset:
    """Training batches in an order fixed by (seed, epoch), re-read at every new iterator."""
    images, labels = tf.constant(arrays[0]), tf.constant(arrays[1])
    count, steps = len(arrays[0]), len(arrays[0]) // batch_size

    def order(_: tf.Tensor) -> tf.data.Dataset:
        key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
        return tf.data.Dataset.from_tensor_slices(
            tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), seed=key))

    batches = tf.data.Dataset.range(1).flat_map(order).batch(batch_size, drop_remainder=True)
    batches = batches.map(lambda index: (tf.gather(images, index), tf.gather(labels, index)))
    return batches.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(tf.data.AUTOTUNE)


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held_out) with `fraction` of each class held out, fixed by `seed`."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    if fraction <= 0:
        return indices, indices[:0]
    rest, held_out = train_test_split(indices, test_size=fraction, stratify=labels, random_state=seed)
    return np.sort(rest), np.sort(held_out)


def _digits(cfg: DictConfig) -> tuple[Arrays, Arrays, Arrays]:
    """scikit-learn's bundled digits, upscaled to RGB at the model's input size."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    grey = (bunch.images / 16.0 * 255.0).astype(np.float32)[..., None]
    size = int(cfg.image_size)
    resized = tf.image.resize(grey, (size, size), method="bilinear").numpy()
    images = np.repeat(np.clip(np.round(resized), 0, 255).astype(np.uint8), 3, axis=-1)
    labels = bunch.target.astype(np.int32)
    train_val, test = _stratified_split(labels, float(cfg.test_fraction), int(cfg.split_seed))
    train_rel, val_rel = _stratified_split(labels[train_val], float(cfg.val_fraction), int(cfg.split_seed))
    train, val = train_val[train_rel], train_val[val_rel]
    if cfg.train_limit is not None:
        train = train[: int(cfg.train_limit)]
    return (images[train], labels[train]), (images[val], labels[val]), (images[test], labels[test])


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (the MNIST file format: magic, dims, big-endian sizes, data), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    _, _, dtype_code, ndim = struct.unpack(">BBBB", raw[:4])
    if dtype_code != 0x08:
        raise ValueError(f"{path}: only unsigned-byte IDX files are supported, found type 0x{dtype_code:02x}")
    shape = struct.unpack(f">{ndim}I", raw[4: 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion_mnist(cfg: DictConfig) -> tuple[Arrays, Arrays, Arrays]:
    """Fashion-MNIST from Debian's IDX files, padded from 28x28 to the model's input, grey to RGB."""
    folder = Path(cfg.path)
    names = {split: (f"{split}-images-idx3-ubyte.gz", f"{split}-labels-idx1-ubyte.gz") for split in ("train", "t10k")}
    missing = [name for pair in names.values() for name in pair if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"Fashion-MNIST files not found in data.path={folder} ({', '.join(missing)}): "
                         f"install them with `apt-get install dataset-fashion-mnist` or point data.path at them")

    def load(split: str) -> Arrays:
        images, labels = (read_idx(folder / name) for name in names[split])
        pad = (int(cfg.image_size) - images.shape[1]) // 2
        padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
        return np.repeat(padded[..., None], 3, axis=-1), labels.astype(np.int32)

    (images, labels), test = load("train"), load("t10k")
    train, val = _stratified_split(labels, float(cfg.val_fraction), int(cfg.split_seed))
    if cfg.train_limit is not None:
        train = train[: int(cfg.train_limit)]
    limit = int(cfg.test_limit) if cfg.test_limit is not None else len(test[1])
    return (images[train], labels[train]), (images[val], labels[val]), (test[0][:limit], test[1][:limit])


def _synthetic(cfg: DictConfig) -> tuple[Arrays, Arrays, Arrays]:
    """Seeded random images and labels (for throughput measurements only)."""
    rng = np.random.default_rng(int(cfg.split_seed))
    size, classes = int(cfg.image_size), int(cfg.num_classes)

    def make(count: int) -> Arrays:
        images = rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)
        return images, rng.integers(0, classes, size=count, dtype=np.int32)

    return make(int(cfg.train_size)), make(int(cfg.val_size)), make(int(cfg.test_size))


LOADERS: dict[str, Callable[[DictConfig], tuple[Arrays, Arrays, Arrays]]] = {
    "digits": _digits,
    "fashion_mnist": _fashion_mnist,
    "synthetic": _synthetic,
}


def load_data(data_cfg: DictConfig, batch_size: int, seed: int) -> DataSplits:
    """Build the train/val/test pipelines for the configured dataset.

    Args:
        data_cfg: The `data` config group.
        batch_size: Global batch size.
        seed: Shuffling seed (the run's `train.seed`).
    """
    if data_cfg.name == "imagenet":  # TFRecord shards from tools/ingest.py, streamed rather than held in memory
        from lth.shard_input import load_shards  # imported here: it imports DataSplits from this module

        return load_shards(data_cfg, batch_size, seed)
    if data_cfg.name not in LOADERS:
        raise ValueError(f"data.name must be one of {sorted([*LOADERS, 'imagenet'])}, got {data_cfg.name!r}")
    train, val, test = LOADERS[data_cfg.name](data_cfg)
    if len(train[0]) < batch_size:
        raise ValueError(f"train.batch_size={batch_size} exceeds the {len(train[0])} training images of {data_cfg.name}")

    def evaluation(arrays: Arrays) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size).prefetch(tf.data.AUTOTUNE)

    summary = (
        f"data {data_cfg.name}: {len(train[0])} train / {len(val[0])} val / {len(test[0])} test images, "
        f"{int(data_cfg.num_classes)} classes, {train[0].shape[1]}x{train[0].shape[2]}"
    )
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")
    return DataSplits(
        train=_epoch_ordered(train, batch_size, seed, epoch),
        val=evaluation(val),
        test=evaluation(test),
        steps_per_epoch=len(train[0]) // batch_size,
        summary=summary,
        epoch=epoch,
    )
