"""The shard reader (data=imagenet) on tiny shards the tests write: order, augmentation, eval, cache, errors."""

from __future__ import annotations

import io
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from lth.config.cell import DataConfig
from lth.config.pieces import piece
from lth.data import load_data
from lth.data.shard_pipeline import load_shards
from lth.data.splits import DataSplits
from lth.ingest.images import EncodedImage
from lth.ingest.shard_writer import serialize_example

IMAGE_SIZE, BATCH, CLASSES = 32, 8, 3
TRAIN_SIZES = [(40, 48), (48, 40), (36, 36), (44, 52)]  # (height, width): landscape, portrait, square
VAL_SIZES = [(36, 36), (40, 52)]  # every other validation image is square
HOLDOUT_SIZES = [(44, 44), (38, 38)]  # all square: the whole-image crop can be checked against a plain decode


def _jpeg(rng: np.random.Generator, label: int, height: int, width: int) -> bytes:
    """A textured image whose dominant channel is its label, so crops and flips still show the class."""
    pixels = np.full((height, width, 3), 50.0)
    pixels[..., label] = 200.0
    pixels += np.linspace(-30, 30, width)[None, :, None] + np.linspace(-20, 20, height)[:, None, None]
    pixels += rng.normal(0, 4, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """47 images of 3 classes: 30 train in 2 shards, 10 val in 1, 7 holdout in 1, and a stray file the manifest omits."""
    folder, rng = tmp_path_factory.mktemp("shards"), np.random.default_rng(0)
    plan = {"train": [(f"train-0000{i}-of-00002", range(15 * i, 15 * i + 15), TRAIN_SIZES) for i in range(2)],
            "val": [("val-00000-of-00001", range(30, 40), VAL_SIZES)],
            "holdout": [("holdout-00000-of-00001", range(41, 48), HOLDOUT_SIZES)]}  # labels 2, 0, 1, ...: unlike val's
    written: dict[str, list[tuple[bytes, int]]] = {"train": [], "val": [], "holdout": []}
    manifest: dict[str, Any] = {"format": "lth-shards/1", "labels": {f"n{c:08d}": c for c in range(CLASSES)},
                                "splits": {}, "rejected": []}
    for split, files in plan.items():
        entries = []
        for name, indices, sizes in files:
            with tf.io.TFRecordWriter(str(folder / name)) as writer:
                for index in indices:
                    label, (height, width) = index % CLASSES, sizes[index % len(sizes)]
                    jpeg = _jpeg(rng, label, height, width)
                    image = EncodedImage(jpeg, height, width, height, width)
                    writer.write(serialize_example(f"n{label:08d}", f"{index}.JPEG", label, image))
                    written[split].append((jpeg, label))
            entries.append({"file": name, "images": len(indices), "sha256": "-", "bytes": (folder / name).stat().st_size})
        manifest["splits"][split] = {"images": sum(e["images"] for e in entries), "classes": {}, "shards": entries}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "train-00002-of-00003").write_bytes(b"not a TFRecord: never listed, never read")
    return {"folder": folder, **written}


def _cfg(folder: Path, **overrides: Any) -> DataConfig:
    base = {"name": "imagenet", "path": str(folder), "num_classes": CLASSES, "image_size": IMAGE_SIZE,
            "val_split": "val", "test_split": "val", "read_parallelism": 2, "shuffle_buffer": 16, "cache": None,
            "crop_area_range": [0.08, 1.0], "crop_aspect_range": [0.75, 1.3333333], "flip": True,
            "eval_crop_fraction": 0.875, "train_limit": None, "val_limit": None, "test_limit": None}
    return piece(DataConfig, {**base, **overrides}, "data")


def _epoch(data: DataSplits, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """All training batches of one epoch, concatenated."""
    data.begin_epoch(epoch)
    batches = list(data.train.as_numpy_iterator())
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def _all(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    batches = list(dataset.as_numpy_iterator())
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def test_train_batches_are_uint8_crops_with_the_labels_of_their_records(shards: dict[str, Any]) -> None:
    data = load_data(_cfg(shards["folder"]), BATCH, seed=0)  # through lth.data's dispatch
    assert data.steps_per_epoch == 30 // BATCH
    assert "30 train / 10 val images, 3 classes, 2 + 1 shards, 32x32" in data.summary
    batches = list(data.train.as_numpy_iterator())
    assert len(batches) == data.steps_per_epoch == int(data.train.cardinality())
    for images, labels in batches:
        assert images.shape == (BATCH, IMAGE_SIZE, IMAGE_SIZE, 3) and images.dtype == np.uint8
        assert labels.dtype == np.int32
        np.testing.assert_array_equal(images.mean(axis=(1, 2)).argmax(axis=-1), labels)  # dominant colour = class


def test_an_epoch_repeats_exactly_and_the_next_epoch_is_reordered(shards: dict[str, Any]) -> None:
    data = load_shards(_cfg(shards["folder"]), BATCH, seed=0)
    first, again = _epoch(data, 1), _epoch(data, 1)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], _epoch(data, 2)[0])
    tf.random.set_seed(12345)  # a resumed job, built afresh under another global seed, sees the same epoch
    resumed = _epoch(load_shards(_cfg(shards["folder"]), BATCH, seed=0), 1)
    np.testing.assert_array_equal(first[0], resumed[0])
    assert not np.array_equal(first[0], _epoch(load_shards(_cfg(shards["folder"]), BATCH, seed=1), 1)[0])


def test_train_limit_keeps_the_first_records_in_shard_order(shards: dict[str, Any]) -> None:
    data = load_shards(_cfg(shards["folder"], train_limit=16), BATCH, seed=0)  # 15 of the first shard, 1 of the second
    assert data.steps_per_epoch == 2 and data.summary.startswith("data imagenet: 16 train")
    _, labels = _epoch(data, 0)
    assert sorted(labels.tolist()) == sorted(label for _, label in shards["train"][:16])


def test_eval_is_deterministic_in_manifest_order_and_keeps_the_remainder(shards: dict[str, Any]) -> None:
    data = load_shards(_cfg(shards["folder"], test_limit=4), BATCH, seed=0)
    images, labels = _all(data.val)
    assert images.shape == (10, IMAGE_SIZE, IMAGE_SIZE, 3) and images.dtype == np.uint8
    assert labels.tolist() == [label for _, label in shards["val"]]
    np.testing.assert_array_equal(images, _all(data.val)[0])
    test_images, test_labels = _all(data.test)  # test reads the same split, up to test_limit
    np.testing.assert_array_equal(test_images, images[:4])
    assert test_labels.tolist() == labels[:4].tolist() and int(data.val.cardinality()) == 2


def test_whole_image_eval_crop_equals_resizing_the_decoded_square_image(shards: dict[str, Any]) -> None:
    images, _ = _all(load_shards(_cfg(shards["folder"], eval_crop_fraction=1.0), BATCH, seed=0).val)
    for index in range(0, 10, 2):  # the square ones
        decoded = tf.io.decode_jpeg(shards["val"][index][0], channels=3)
        expected = tf.cast(tf.round(tf.image.resize(decoded, (IMAGE_SIZE, IMAGE_SIZE))), tf.int32).numpy()
        assert np.abs(images[index].astype(np.int32) - expected).max() <= 1


def test_memory_cache_serves_later_epochs_after_the_shards_are_gone(shards: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    shutil.copytree(shards["folder"], folder)
    expected = _epoch(load_shards(_cfg(folder, cache="memory"), BATCH, seed=0), 1)
    data = load_shards(_cfg(folder, cache="memory"), BATCH, seed=0)
    iterator = iter(data.train)  # as Keras does: exactly steps_per_epoch batches, never the end of the dataset
    for _ in range(data.steps_per_epoch):
        next(iterator)
    del iterator
    for shard in folder.glob("train-*"):
        shard.unlink()
    second = _epoch(data, 1)
    np.testing.assert_array_equal(second[0], expected[0])  # the order does not depend on whether the cache was full
    np.testing.assert_array_equal(second[1], expected[1])


def test_val_reads_the_holdout_and_test_reads_val_record_for_record(shards: dict[str, Any],
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lth"):
        data = load_shards(_cfg(shards["folder"], val_split="holdout", test_split="val", val_limit=5,
                                eval_crop_fraction=1.0), BATCH, seed=0)
    assert not caplog.records  # validation and test are different splits: nothing to warn about
    assert data.summary.startswith("data imagenet: 30 train / 5 holdout / 10 val images, 3 classes, 2 + 1 + 1 shards")
    assert "validates on holdout, tests on val" in data.summary
    images, labels = _all(data.val)
    assert labels.tolist() == [label for _, label in shards["holdout"][:5]]  # val_limit: the first 5 holdout records
    for image, (jpeg, _) in zip(images, shards["holdout"]):  # the holdout's own pixels, not another split's
        decoded = tf.io.decode_jpeg(jpeg, channels=3)
        expected = tf.cast(tf.round(tf.image.resize(decoded, (IMAGE_SIZE, IMAGE_SIZE))), tf.int32).numpy()
        assert np.abs(image.astype(np.int32) - expected).max() <= 1
    test_images, test_labels = _all(data.test)
    assert test_labels.tolist() == [label for _, label in shards["val"]]
    np.testing.assert_array_equal(test_images, _all(load_shards(_cfg(shards["folder"], eval_crop_fraction=1.0),
                                                                BATCH, seed=0).val)[0])


def test_validating_on_the_test_split_logs_one_warning_line(shards: dict[str, Any],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lth"):
        data = load_shards(_cfg(shards["folder"]), BATCH, seed=0)  # the defaults: val and val
    assert [record.getMessage() for record in caplog.records] == [
        "data.val_split and data.test_split are both 'val': winners will be chosen on the test split; "
        "ingest with holdout_per_class>0 and set data.val_split=holdout"]
    assert "validates and tests on val" in data.summary


@pytest.mark.parametrize(("overrides", "batch", "message"), [
    ({"num_classes": 1000}, BATCH, r"pass data.num_classes=3$"),
    ({"val_split": "test"}, BATCH, r"data.val_split='test' is not a split"),
    ({"val_split": "holdout", "test_split": "tst"}, BATCH, r"data.test_split='tst' is not a split"),
    ({}, 64, "train.batch_size=64 exceeds the 30 training images"),
    ({"cache": "memory", "shuffle_buffer": BATCH}, BATCH, "data.shuffle_buffer=8 must exceed train.batch_size=8"),
])
def test_config_errors_are_one_clear_line(shards: dict[str, Any], overrides: dict[str, Any], batch: int,
                                          message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_shards(_cfg(shards["folder"], **overrides), batch, seed=0)


def test_missing_manifest_or_shard_says_to_run_the_ingest(shards: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no shard manifest at .*manifest.json.*`python tools/ingest.py`"):
        load_shards(_cfg(tmp_path), BATCH, seed=0)
    shutil.copy(shards["folder"] / "manifest.json", tmp_path / "manifest.json")
    with pytest.raises(ValueError, match=r"missing, e.g. .*train-00000-of-00002: .*`python tools/ingest.py`"):
        load_shards(_cfg(tmp_path), BATCH, seed=0)


def test_digits_shards_composes_as_the_shard_reader_without_flips(compose: Callable[..., Any]) -> None:
    from lth.validation.validate import ConfigError, validate_config

    cfg = compose("data=digits_shards")
    assert cfg.data.name == "imagenet" and cfg.data.path == "data/digits-shards" and cfg.data.num_classes == 10
    assert cfg.data.flip is False and cfg.data.cache == "memory" and list(cfg.data.crop_area_range) == [0.6, 1.0]
    assert cfg.data.image_size == cfg.model.input_size == 32
    assert (cfg.data.val_split, cfg.data.test_split) == ("holdout", "val")  # the digits ingest holds out 10 per class
    assert (compose("data=imagenet").data.val_split, compose("data=imagenet").data.test_split) == ("val", "val")
    assert compose("data=imagenet").data.crop_area_range[0] == 0.08
    with pytest.raises(ConfigError, match=r"data.path does not exist: /no/such.*`python tools/ingest.py`"):
        validate_config(compose("data=digits_shards", "data.path=/no/such"))
