"""Shards: which image goes where, and writing one shard so that a killed job loses nothing.

The plan is a pure function of the records and the config: each image goes to the shard
given by a seeded hash of its key (so every shard mixes classes, and an input that is added
or fails moves no other image), in shards named `train-00000-of-01024`. With
`holdout_per_class` > 0, the training images chosen by `lth.ingest.holdout` go to
`holdout-*` shards instead, and every other image keeps the train shard it had.

A shard is written to a temporary file, synced, and renamed into place; only then is its
receipt (`.ingest/<shard>.json`: image count, class counts, sha256, rejected inputs and a
fingerprint of the shard's inputs and settings) renamed into place. A rerun trusts a shard
only when its receipt exists, its fingerprint matches the new plan and the file's size and
sha256 match the receipt, so complete shards are skipped, partial ones are redone, and the
manifest, built from receipts alone, never counts an image twice.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lth.config.vocabulary import ConfigError
from lth.ingest.fetch import DownloadSettings, Fetcher
from lth.ingest.holdout import HOLDOUT, held_out_keys
from lth.ingest.images import EncodedImage, ImageSettings, RejectedInput, normalise_image
from lth.ingest.inventory import SourceRecord

RECEIPTS = ".ingest"  # folder of shard receipts and temporary files inside the output folder
FORMAT = "lth-shards/1"  # bump when the record layout changes, so old shards are redone


@dataclass(frozen=True)
class ShardTask:
    """One Spark task: the records of one shard and how to process them."""

    split: str
    index: int
    count: int
    records: tuple[SourceRecord, ...]
    labels: tuple[int, ...]  # label index of each record
    output_dir: str
    image: ImageSettings
    download: DownloadSettings

    @property
    def file_name(self) -> str:
        """`train-00003-of-01024`: the TFRecord shard's file name."""
        return f"{self.split}-{self.index:05d}-of-{self.count:05d}"

    def fingerprint(self) -> str:
        """A hash of everything that determines the shard's bytes (download settings do not)."""
        content = [FORMAT, dataclasses.asdict(self.image), self.file_name,
                   [[r.key, r.wnid, label, dataclasses.asdict(r.locator)] for r, label in zip(self.records, self.labels)]]
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _place(seed: int, key: str) -> int:
    """A stable pseudo-random number per (seed, key): decides an image's shard and its place in it."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


def plan_shards(records: list[SourceRecord], labels: dict[str, int], shard_counts: dict[str, int], seed: int,
                output_dir: Path, image: ImageSettings, download: DownloadSettings,
                holdout_per_class: int = 0) -> list[ShardTask]:
    """Assign each split's records to shards by a hash of their key.

    Hashing, rather than cutting a sorted list, makes an image's shard depend on its own key
    only: an extra input (a dead URL, a file added later) changes its own shard and no other,
    so sources that list slightly different inputs still write the same shards. Within a
    shard, records are ordered by the same hash, which mixes classes.

    Args:
        records: The checked records of every split.
        labels: wnid -> label index.
        shard_counts: Requested shards per split (`train`, `val`, `holdout`); a split with fewer
            images gets one shard per image.
        seed: Seed of the hash (another seed, another assignment and order).
        output_dir: Where the shards go.
        image: Image normalisation settings.
        download: Download settings (URL sources).
        holdout_per_class: Training images of every class written to the `holdout` split
            instead of `train`; 0 writes no holdout.

    Raises:
        ConfigError: A shard count below 1, or a holdout that `held_out_keys` refuses.
    """
    held = held_out_keys(records, holdout_per_class, seed)
    destinations: dict[str, list[SourceRecord]] = {}
    for record in records:  # a held-out record keeps its `train/...` key: the key, not the split, is hashed
        destinations.setdefault(HOLDOUT if record.key in held else record.split, []).append(record)
    tasks = []
    for split in sorted(destinations):
        chosen = sorted(destinations[split], key=lambda r: (_place(seed, r.key), r.key))
        requested = int(shard_counts.get(split, 1))
        if requested < 1:
            raise ConfigError(f"shards.{split} must be >= 1, got {requested}")
        count = min(requested, len(chosen))
        for index in range(count):
            part = tuple(r for r in chosen if _place(seed, r.key) % count == index)
            tasks.append(ShardTask(split, index, count, part, tuple(labels[r.wnid] for r in part), str(output_dir),
                                   image, download))
    return tasks


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache  # once per process
def _tensorflow() -> Any:
    """TensorFlow, imported in the worker only (once per reused Python worker).

    A reused PySpark worker runs `gc.collect()` after every task; with TensorFlow's object
    graph in the heap that took about 0.5 s a task here. Freezing what exists after the
    import keeps those objects out of every later collection.
    """
    import tensorflow as tf

    gc.freeze()
    return tf


def serialize_example(wnid: str, name: str, label: int, image: EncodedImage) -> bytes:
    """One shard record: a serialized tf.train.Example with the feature names of TensorFlow's ImageNet scripts.

    Args:
        wnid: The image's class (`image/class/synset`).
        name: Its file name (`image/filename`).
        label: Its label index (`image/class/label`).
        image: The normalised JPEG and its sizes.
    """
    tf = _tensorflow()

    def ints(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    def raw(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    features = {
        "image/encoded": raw(image.jpeg), "image/format": raw(b"jpeg"),
        "image/class/label": ints(label), "image/class/synset": raw(wnid.encode()),
        "image/filename": raw(name.encode()),
        "image/height": ints(image.height), "image/width": ints(image.width),
        "image/original/height": ints(image.original_height), "image/original/width": ints(image.original_width),
    }
    # deterministic: protobuf may write map entries (the features) in any order; shards must be byte-stable
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(deterministic=True)


def complete_receipt(task: ShardTask) -> dict[str, Any] | None:
    """The receipt of a shard already written by this plan and intact on disk, else None."""
    output = Path(task.output_dir)
    receipt_path, shard_path = output / RECEIPTS / f"{task.file_name}.json", output / task.file_name
    if not (receipt_path.is_file() and shard_path.is_file()):
        return None
    try:
        receipt = json.loads(receipt_path.read_text())
    except (OSError, ValueError):
        return None
    if receipt.get("fingerprint") != task.fingerprint() or shard_path.stat().st_size != receipt.get("bytes"):
        return None
    return receipt if _sha256(shard_path) == receipt.get("sha256") else None


def _replace_atomically(temporary: Path, final: Path) -> None:
    with temporary.open("rb+") as handle:
        os.fsync(handle.fileno())  # the bytes are on disk before the name says the file is complete
    os.replace(temporary, final)


def write_shard(task: ShardTask) -> dict[str, Any]:
    """Write one shard (or confirm an intact one) and return its receipt.

    Bad inputs never fail the task: each becomes an entry of the receipt's `rejected` list.
    """
    receipt = complete_receipt(task)
    if receipt is not None:
        return receipt | {"skipped": True}
    started = time.monotonic()
    output = Path(task.output_dir)
    (output / RECEIPTS).mkdir(parents=True, exist_ok=True)
    temporary = output / RECEIPTS / f"{task.file_name}.tmp-{os.getpid()}"
    fetcher, classes, rejected = Fetcher(task.download), Counter(), []
    tf = _tensorflow()

    with tf.io.TFRecordWriter(str(temporary)) as writer:
        for record, label in zip(task.records, task.labels):
            try:
                image = normalise_image(fetcher.read(record.locator), task.image)
            except RejectedInput as reason:
                rejected.append({"split": task.split, "key": record.key, "input": record.locator.describe(),
                                 "reason": str(reason)})
                continue
            writer.write(serialize_example(record.wnid, record.name, label, image))
            classes[record.wnid] += 1
    _replace_atomically(temporary, output / task.file_name)
    shard_path = output / task.file_name
    receipt = {"file": task.file_name, "split": task.split, "images": sum(classes.values()),
               "bytes": shard_path.stat().st_size, "sha256": _sha256(shard_path), "classes": dict(sorted(classes.items())),
               "rejected": rejected, "fingerprint": task.fingerprint()}
    receipt_temporary = output / RECEIPTS / f"{task.file_name}.json.tmp-{os.getpid()}"
    receipt_temporary.write_text(json.dumps(receipt, indent=1))
    _replace_atomically(receipt_temporary, output / RECEIPTS / f"{task.file_name}.json")
    return receipt | {"skipped": False, "seconds": round(time.monotonic() - started, 3)}
