"""Corrupt shards at training time: a damaged, short or missing shard fails naming itself and the re-ingest.

The shards are tiny real ones (the ingest's record writer, a manifest with real sizes and
checksums); each test damages a copy the way disks and copies do: bytes cut off the end, a
byte flipped inside a record, a file deleted, a manifest that promises more records than
a file holds.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import struct
import threading
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from lth.config.cell import DataConfig
from lth.config.pieces import piece
from lth.data.shard_pipeline import load_shards
from lth.ingest.images import EncodedImage
from lth.ingest.shard_writer import serialize_example

SIZE, BATCH, CLASSES, PER_SHARD = 16, 4, 2, 12
TRAIN = [f"train-0000{i}-of-00003" for i in range(3)]
VAL = "val-00000-of-00001"
SETTINGS = {"source": "tree", "image": {"shorter_side": 256, "allow_upscale": False, "quality": 90},
            "shuffle_seed": 0, "holdout_per_class": 0,
            "source_settings": {"root": "/data/imagenet", "val_labels": "/data/LOC_val_solution.csv",
                                "devkit_meta": None}}
HANG_S = 60  # every read here takes well under a second; this long means it hung
MARK_STEP = 5  # grey levels between two records' marks: JPEG moves a flat grey by 1 at most


def _mark_value(mark: int) -> int:
    return 10 + MARK_STEP * mark


def _marks(images: np.ndarray) -> list[int]:
    """The record mark of each image in a batch (its mean grey, rounded to the nearest mark)."""
    return [round((float(value) - 10) / MARK_STEP) for value in images.reshape(len(images), -1).mean(axis=1)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _jpeg(mark: int) -> bytes:
    """A JPEG of one flat grey, the record's own `mark` (crops, flips and resizing keep a flat image flat)."""
    pixels = np.full((SIZE, SIZE, 3), _mark_value(mark), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 train shards and 1 val shard of 12 records, with the manifest an ingest writes."""
    folder = tmp_path_factory.mktemp("pristine")
    splits: dict[str, Any] = {}
    mark = 0  # every record its own, so a reader that returns one record twice is caught
    for split, names in (("train", TRAIN), ("val", [VAL])):
        entries = []
        for name in names:
            with tf.io.TFRecordWriter(str(folder / name)) as writer:
                for index in range(PER_SHARD):
                    label = index % CLASSES
                    writer.write(serialize_example(f"n{label:08d}", f"{name}-{index}.JPEG", label,
                                                   EncodedImage(_jpeg(mark), SIZE, SIZE, SIZE, SIZE)))
                    mark += 1
            entries.append({"file": name, "images": PER_SHARD, "sha256": _sha256(folder / name),
                            "bytes": (folder / name).stat().st_size})
        splits[split] = {"images": PER_SHARD * len(names), "classes": {}, "shards": entries}
    manifest = {"format": "lth-shards/1", "labels": {f"n{c:08d}": c for c in range(CLASSES)}, "splits": splits,
                "rejected": [], "settings": SETTINGS}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def shards(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the pristine shards for one test to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "shards"))


def _cfg(folder: Path, **overrides: Any) -> DataConfig:
    base = {"name": "imagenet", "path": str(folder), "num_classes": CLASSES, "image_size": SIZE,
            "val_split": "val", "test_split": "val", "read_parallelism": 2, "shuffle_buffer": 8, "cache": None,
            "crop_area_range": [0.5, 1.0], "crop_aspect_range": [0.75, 1.3333333], "flip": True,
            "eval_crop_fraction": 0.875, "train_limit": None, "val_limit": None, "test_limit": None}
    return piece(DataConfig, {**base, **overrides}, "data")


def _command(folder: Path) -> str:
    """The re-ingest command the errors must print for the fixture's manifest."""
    return (f"python tools/ingest.py source=tree source.root=/data/imagenet "
            f"source.val_labels=/data/LOC_val_solution.csv source.devkit_meta=null output={folder} shuffle_seed=0 "
            f"holdout_per_class=0 image.shorter_side=256 image.allow_upscale=false image.quality=90 "
            f"shards.train=3 shards.val=1")


def _reingest(folder: Path) -> str:
    return f"re-ingest it (the ingest rewrites only shards that no longer match their receipts): {_command(folder)}"


def _records(path: Path) -> list[tuple[int, int]]:
    """(start, end) byte offsets of each record's payload: TFRecord is length, length CRC, payload, payload CRC."""
    data, spans, offset = path.read_bytes(), [], 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        spans.append((offset + 12, offset + 12 + length))
        offset += 12 + length + 4
    return spans


def _flip_byte(path: Path, record: int) -> None:
    start, end = _records(path)[record]
    data = bytearray(path.read_bytes())
    data[(start + end) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _read_marks(dataset: tf.data.Dataset) -> list[int]:
    """The marks of every image one pass over `dataset` yields, sorted: the multiset of records read."""
    return sorted(mark for images, _ in dataset for mark in _marks(np.asarray(images)))


def _drain(dataset: tf.data.Dataset) -> tuple[int, BaseException | None]:
    """(elements read, the error that ended the reading or None), failing the test if reading hangs."""
    outcome: dict[str, Any] = {"count": 0, "error": None}

    def read() -> None:
        try:
            for _ in dataset:
                outcome["count"] += 1
        except Exception as error:  # what the training loop would receive
            outcome["error"] = error

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(HANG_S)
    assert not reader.is_alive(), f"reading the shards hung for {HANG_S} s"
    return outcome["count"], outcome["error"]


def _one_line(error: BaseException | None) -> str:
    """The error's own line: TensorFlow prints an Assert's message as `assertion failed: [<line>]`."""
    assert isinstance(error, tf.errors.InvalidArgumentError), repr(error)
    return str(error).split("assertion failed: [", 1)[1].split("]\n", 1)[0]


def test_tensorflow_reports_bad_crcs_and_cut_records_but_not_a_cut_at_a_record_boundary(shards: Path) -> None:
    """What the checks build on (TF 2.21): the reader checks CRCs, but never names the file, and a clean cut is silent."""
    path = shards / TRAIN[0]
    _flip_byte(path, 3)
    count, error = _drain(tf.data.TFRecordDataset(str(path)))
    assert count == 3 and isinstance(error, tf.errors.DataLossError) and "corrupted record at" in str(error)
    assert TRAIN[0] not in str(error)
    data = (shards / TRAIN[1]).read_bytes()
    (shards / TRAIN[1]).write_bytes(data[:-10])
    count, error = _drain(tf.data.TFRecordDataset(str(shards / TRAIN[1])))
    assert count == PER_SHARD - 1 and isinstance(error, tf.errors.DataLossError) and "truncated record" in str(error)
    (shards / TRAIN[2]).write_bytes(data[:_records(shards / TRAIN[1])[7][1] + 4])  # after record 8 of 12
    assert _drain(tf.data.TFRecordDataset(str(shards / TRAIN[2]))) == (8, None)  # 4 records gone, no error


def test_a_truncated_shard_is_refused_before_training(shards: Path) -> None:
    path = shards / TRAIN[1]
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError) as raised:
        load_shards(_cfg(shards), BATCH, seed=0)
    assert str(raised.value) == (f"shard {path} is corrupt ({size - 100:,} bytes where manifest.json lists {size:,}: "
                                 f"truncated or overwritten); {_reingest(shards)}")


def test_missing_shards_are_refused_before_training_naming_each_one(shards: Path) -> None:
    (shards / TRAIN[0]).unlink()
    (shards / TRAIN[2]).unlink()
    with pytest.raises(ValueError) as raised:
        load_shards(_cfg(shards), BATCH, seed=0)
    assert str(raised.value) == (
        f"2 shard file(s) listed in {shards / 'manifest.json'} are missing, e.g. {shards / TRAIN[0]}: the missing ones "
        f"are {TRAIN[0]}, {TRAIN[2]}; re-ingest them (the ingest rewrites only shards that no longer match their "
        f"receipts): {_command(shards)}")


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_flipped_byte_fails_the_epoch_naming_the_shard(shards: Path, split: str) -> None:
    data = load_shards(_cfg(shards), BATCH, seed=0)  # the size is unchanged: loading cannot see it
    path = shards / (TRAIN[2] if split == "train" else VAL)
    _flip_byte(path, 5)
    count, error = _drain(data.train if split == "train" else data.val)
    assert _one_line(error) == (f"shard {path} is corrupt (its SHA-256 is not the one manifest.json lists: "
                                f"a damaged or replaced file); {_reingest(shards)}")
    assert count < (data.steps_per_epoch if split == "train" else 3)  # no silent short epoch: it ended in an error


@pytest.mark.parametrize("cut", ["mid-record", "record boundary"])
def test_a_shard_truncated_during_training_fails_the_epoch_naming_the_shard(shards: Path, cut: str) -> None:
    data = load_shards(_cfg(shards), BATCH, seed=0)
    path = shards / TRAIN[0]
    size = path.stat().st_size
    end = size - 10 if cut == "mid-record" else _records(path)[8][1] + 4
    path.write_bytes(path.read_bytes()[:end])
    _, error = _drain(data.train)
    assert _one_line(error) == (f"shard {path} is corrupt ({end:,} bytes where manifest.json lists {size:,}: "
                                f"truncated or overwritten); {_reingest(shards)}")


def test_a_shard_deleted_during_training_fails_instead_of_hanging(shards: Path) -> None:
    data = load_shards(_cfg(shards), BATCH, seed=0)
    (shards / TRAIN[1]).unlink()
    _, error = _drain(data.train)
    assert _one_line(error) == (f"shard {shards / TRAIN[1]} cannot be read (No such file or directory); "
                                f"{_reingest(shards)}")


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_shard_with_fewer_records_than_the_manifest_lists_is_never_a_short_epoch(shards: Path, split: str) -> None:
    """Without a checksum or size to compare (a hand-written manifest), the record count still catches it."""
    manifest = json.loads((shards / "manifest.json").read_text())
    for entry in manifest["splits"][split]["shards"]:
        del entry["sha256"], entry["bytes"]
    manifest["splits"][split]["shards"][0]["images"] = PER_SHARD + 1
    (shards / "manifest.json").write_text(json.dumps(manifest))
    data = load_shards(_cfg(shards), BATCH, seed=0)
    name = TRAIN[0] if split == "train" else VAL
    _, error = _drain(data.train if split == "train" else data.val)
    assert _one_line(error) == (f"shard {shards / name} is corrupt (it holds fewer records than the "
                                f"{PER_SHARD + 1} manifest.json lists: truncated or damaged); {_reingest(shards)}")


def test_without_checksums_a_flipped_byte_still_fails_rather_than_shortening_the_epoch(shards: Path) -> None:
    manifest = json.loads((shards / "manifest.json").read_text())
    for entry in manifest["splits"]["train"]["shards"]:
        entry["sha256"] = "-"  # as hand-made test manifests write it: nothing to compare
    (shards / "manifest.json").write_text(json.dumps(manifest))
    data = load_shards(_cfg(shards), BATCH, seed=0)
    _flip_byte(shards / TRAIN[1], 0)
    _, error = _drain(data.train)
    assert isinstance(error, tf.errors.DataLossError) and "corrupted record at" in str(error)  # TF's CRC: unnamed


def test_the_error_propagates_out_of_keras_fit(shards: Path) -> None:
    """What makes the MLflow run FAILED: the exception leaves `fit` (tracking.active_run tags it and re-raises)."""
    data = load_shards(_cfg(shards, read_parallelism=3), BATCH, seed=0)
    _flip_byte(shards / TRAIN[0], 11)
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(CLASSES)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        model.fit(data.train, validation_data=data.val, epochs=2, verbose=0, shuffle=False)
    assert f"shard {shards / TRAIN[0]} is corrupt (its SHA-256" in _one_line(raised.value)


def test_intact_shards_read_every_record_once_per_epoch_and_a_memory_cache_still_works(shards: Path) -> None:
    data = load_shards(_cfg(shards, shuffle_buffer=32, cache="memory"), BATCH, seed=0)
    train_marks, val_marks = list(range(3 * PER_SHARD)), list(range(3 * PER_SHARD, 4 * PER_SHARD))
    assert _drain(data.train) == (3 * PER_SHARD // BATCH, None)
    assert _read_marks(data.train) == train_marks  # each record once: no shard twice, none left out
    assert _drain(data.val) == (3, None) and _drain(data.test) == (3, None)
    assert _read_marks(data.val) == _read_marks(data.test) == val_marks
    for name in TRAIN:
        (shards / name).unlink()  # the cache serves later epochs: nothing opens the shards again
    data.begin_epoch(1)
    assert _drain(data.train) == (3 * PER_SHARD // BATCH, None)
    assert _read_marks(data.train) == train_marks
