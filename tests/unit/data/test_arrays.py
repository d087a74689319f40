"""Datasets: the fixed digits split, and the Fashion-MNIST IDX reader on files the test writes."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from lth.config.cell import DataConfig
from lth.config.pieces import piece
from lth.data.arrays import LOADERS, read_idx


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _fashion_cfg(path: Path) -> DataConfig:
    return piece(DataConfig, {"name": "fashion_mnist", "path": str(path), "num_classes": 10, "image_size": 32,
                              "val_fraction": 0.1, "split_seed": 0, "train_limit": None, "test_limit": None}, "data")


def test_fashion_mnist_reads_idx_pads_to_32_and_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images, labels = rng.integers(1, 256, size=(100, 28, 28)), np.repeat(np.arange(10), 10)
    for split, count in (("train", 100), ("t10k", 20)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images[:count])
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels[:count])
    np.testing.assert_array_equal(read_idx(tmp_path / "train-labels-idx1-ubyte.gz"), labels)
    train, val, test = LOADERS["fashion_mnist"](_fashion_cfg(tmp_path))
    assert train[0].shape == (90, 32, 32, 3) and val[0].shape == (10, 32, 32, 3) and test[0].shape == (20, 32, 32, 3)
    assert sorted(val[1].tolist()) == list(range(10))  # stratified: one of each class
    assert train[0][:, :2].max() == 0 and train[0][:, :, -2:].max() == 0  # zero padding around 28x28
    assert np.array_equal(train[0][..., 0], train[0][..., 2])  # grey copied to RGB


def test_missing_fashion_mnist_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="apt-get install dataset-fashion-mnist"):
        LOADERS["fashion_mnist"](_fashion_cfg(tmp_path))


def test_digits_split_is_fixed_stratified_and_independent_of_the_training_seed() -> None:
    cfg = piece(DataConfig, {"name": "digits", "num_classes": 10, "image_size": 32, "test_fraction": 0.2,
                             "val_fraction": 0.1, "split_seed": 0, "train_limit": None}, "data")
    first, second = LOADERS["digits"](cfg), LOADERS["digits"](cfg)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, second))
    (train, _), (val, _), (test, test_labels) = first
    assert (len(train), len(val), len(test)) == (1293, 144, 360)
    assert train.shape[1:] == (32, 32, 3) and train.dtype == np.uint8
    assert np.bincount(test_labels).min() >= 35  # about 36 of each digit
