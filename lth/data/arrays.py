"""The array datasets: digits, Fashion-MNIST and synthetic images, as NumPy arrays.

Each loader returns (train, val, test) pairs of uint8 images at the model's input size
and channels (`data.channels`: 3 copies of the grey image for MobileNetV2, 1 for LeNet)
and int32 labels. Nothing here imports TensorFlow at module level, so the JAX backend
can train on these without it (digits alone still resizes with TensorFlow).
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lth.config.cell import DataConfig

Arrays = tuple[np.ndarray, np.ndarray]
FASHION_MNIST_FILES: tuple[str, ...] = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# The files each folder-based loader reads: a dataset's identity is their content, nothing else in the folder.
FILES_READ: dict[str, tuple[str, ...]] = {"fashion_mnist": FASHION_MNIST_FILES}


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held_out) with `fraction` of each class held out, fixed by `seed`."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    if fraction <= 0:
        return indices, indices[:0]
    rest, held_out = train_test_split(indices, test_size=fraction, stratify=labels, random_state=seed)
    return np.sort(rest), np.sort(held_out)


def channels_of(cfg: DataConfig) -> int:
    """`data.channels`: 1 (grey) or 3 (grey copied to RGB; configs written before the key existed)."""
    channels = cfg.channels
    if channels not in (1, 3):
        raise ValueError(f"data.channels must be 1 or 3, got {channels}")
    return channels


def _digits(cfg: DataConfig) -> tuple[Arrays, Arrays, Arrays]:
    """scikit-learn's bundled digits, upscaled to RGB at the model's input size."""
    import tensorflow as tf  # its bilinear resize defines the digits images that earlier runs were trained on
    from sklearn.datasets import load_digits

    bunch = load_digits()
    grey = (bunch.images / 16.0 * 255.0).astype(np.float32)[..., None]
    size = int(cfg.image_size)
    resized = tf.image.resize(grey, (size, size), method="bilinear").numpy()
    images = np.repeat(np.clip(np.round(resized), 0, 255).astype(np.uint8), channels_of(cfg), axis=-1)
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


def _fashion_mnist(cfg: DataConfig) -> tuple[Arrays, Arrays, Arrays]:
    """Fashion-MNIST from Debian's IDX files, padded from 28x28 to the model's input, grey to `data.channels`."""
    folder = Path(cfg.path)
    names = {"train": FASHION_MNIST_FILES[:2], "t10k": FASHION_MNIST_FILES[2:]}
    missing = [name for pair in names.values() for name in pair if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"Fashion-MNIST files not found in data.path={folder} ({', '.join(missing)}): "
                         f"install them with `apt-get install dataset-fashion-mnist` or point data.path at them")

    def load(split: str) -> Arrays:
        images, labels = (read_idx(folder / name) for name in names[split])
        pad = (int(cfg.image_size) - images.shape[1]) // 2
        padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
        return np.repeat(padded[..., None], channels_of(cfg), axis=-1), labels.astype(np.int32)

    (images, labels), test = load("train"), load("t10k")
    train, val = _stratified_split(labels, float(cfg.val_fraction), int(cfg.split_seed))
    if cfg.train_limit is not None:
        train = train[: int(cfg.train_limit)]
    limit = int(cfg.test_limit) if cfg.test_limit is not None else len(test[1])
    return (images[train], labels[train]), (images[val], labels[val]), (test[0][:limit], test[1][:limit])


def _synthetic(cfg: DataConfig) -> tuple[Arrays, Arrays, Arrays]:
    """Seeded random images and labels (for throughput measurements only)."""
    rng = np.random.default_rng(int(cfg.split_seed))
    size, classes = int(cfg.image_size), int(cfg.num_classes)

    def make(count: int) -> Arrays:
        images = rng.integers(0, 256, size=(count, size, size, channels_of(cfg)), dtype=np.uint8)
        return images, rng.integers(0, classes, size=count, dtype=np.int32)

    return make(int(cfg.train_size)), make(int(cfg.val_size)), make(int(cfg.test_size))


LOADERS: dict[str, Callable[[DataConfig], tuple[Arrays, Arrays, Arrays]]] = {
    "digits": _digits,
    "fashion_mnist": _fashion_mnist,
    "synthetic": _synthetic,
}
