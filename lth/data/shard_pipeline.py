"""Input pipelines over the TFRecord shards written by `tools/ingest.py` (`data=imagenet`).

The manifest is the truth: shard files and image counts come from `manifest.json`, a
file it does not list is never read, and one that is missing, damaged or short fails with
a line naming it and the re-ingest (`lth.data.integrity`). Records are `tf.train.Example`s
holding a JPEG (`image/encoded`) and a 0-based label (`image/class/label`). Which split validates every
epoch (`data.val_split`, which chooses the winners) and which tests once at the end
(`data.test_split`) is configured; the summary line names both.

Training order and augmentation are a function of (seed, epoch) alone, like every
pipeline of `lth.data`: the epoch is read from `DataSplits.epoch` when an epoch's
iterator starts, and every random choice (shard order, shuffle buffer, crop, flip) is
drawn from keys derived from it, so a resumed job sees the batches it would have seen.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import tensorflow as tf

from lth.config.cell import DataConfig
from lth.data.integrity import ShardCheck
from lth.data.manifest import ShardSplit, check_on_disk, first_records, read_manifest, reingest_hint, shard_split
from lth.data.splits import DataSplits, EpochCounter

SAME_SPLIT_WARNING = ("data.val_split and data.test_split are both {split!r}: winners will be chosen on the test split; "
                      "ingest with holdout_per_class>0 and set data.val_split=holdout")
FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}
AUTOTUNE = tf.data.AUTOTUNE
log = logging.getLogger("lth")  # one warning line at load (validating on the test split); nothing else is logged


def _options() -> tf.data.Options:
    """Pipeline options: every AUTOTUNE stage runs at a fixed parallelism of one per core.

    With tf.data's autotuning model on, about one epoch in three ran on one core of two for
    its whole length (benchmarks/pipeline_throughput.py, TF 2.21); with it off, AUTOTUNE means
    `initial_parallelism` (TF's default caps it at 16, too few for a large node). Each image is
    decoded on one thread: ops that split themselves across the intra-op pool would only
    contend with the parallel map.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    options.autotune.initial_parallelism = len(os.sched_getaffinity(0))
    options.threading.max_intra_op_parallelism = 1
    return options


def _to_uint8(image: tf.Tensor, size: int) -> tf.Tensor:
    """Resize to size x size (bilinear, as the reference ImageNet pipelines) and round to uint8."""
    resized = tf.image.resize(image, (size, size), method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def _train_example(record: tf.Tensor, element_key: tf.Tensor, data: DataConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """Random-resized crop (and flip) of one record, all randomness drawn from `element_key`."""
    features = tf.io.parse_single_example(record, FEATURES)
    encoded = features["image/encoded"]
    crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(element_key, 2, alg="philox"))
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.image.extract_jpeg_shape(encoded),
        bounding_boxes=tf.zeros([1, 0, 4]),  # no boxes: the whole image is the object ...
        seed=crop_key,
        min_object_covered=0.0,  # ... so the crop's share of it is area_range alone
        aspect_ratio_range=tuple(float(value) for value in data.crop_aspect_range),
        area_range=tuple(float(value) for value in data.crop_area_range),
        max_attempts=10,  # after 10 misses the whole image is used
        use_image_if_no_bounding_boxes=True,
    )
    # Decoding only the window skips the rows below it: cheaper than decoding the whole JPEG.
    image = tf.image.decode_and_crop_jpeg(encoded, tf.stack([begin[0], begin[1], extent[0], extent[1]]), channels=3)
    image = _to_uint8(image, int(data.image_size))
    if data.flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_key)
    return image, tf.cast(features["image/class/label"], tf.int32)


def _eval_example(record: tf.Tensor, data: DataConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """Central square crop of `eval_crop_fraction` of the shorter side, resized to image_size."""
    features = tf.io.parse_single_example(record, FEATURES)
    encoded = features["image/encoded"]
    shape = tf.image.extract_jpeg_shape(encoded)
    height, width = shape[0], shape[1]
    shorter = tf.cast(tf.minimum(height, width), tf.float64)
    side = tf.maximum(1, tf.cast(float(data.eval_crop_fraction) * shorter, tf.int32))
    window = tf.stack([(height - side + 1) // 2, (width - side + 1) // 2, side, side])
    image = _to_uint8(tf.image.decode_and_crop_jpeg(encoded, window, channels=3), int(data.image_size))
    return image, tf.cast(features["image/class/label"], tf.int32)


def _train_dataset(split: ShardSplit, data: DataConfig, batch_size: int, seed: int, epoch: tf.Variable,
                   check: ShardCheck) -> tuple[tf.data.Dataset, int]:
    """Training batches in an order fixed by (seed, epoch); returns (dataset, steps per epoch)."""
    takes = first_records(split.counts, data.train_limit)
    kept = [index for index, take in enumerate(takes) if take > 0]
    files = tf.constant([split.files[index] for index in kept])
    counts = tf.constant([takes[index] for index in kept], tf.int64)
    images = sum(takes)
    steps = images // batch_size

    def interleaved(shards: tf.data.Dataset) -> tf.data.Dataset:
        return shards.interleave(check.records,
                                 cycle_length=int(data.read_parallelism), num_parallel_calls=AUTOTUNE,
                                 deterministic=True)

    cached = None
    if data.cache is not None:
        # One cache of the raw records in canonical order, built outside the per-epoch function so
        # that every epoch's iterator shares it. The shuffle buffer alone then mixes, which is
        # enough because the ingest shuffled the training images across shards once.
        prefix = "" if data.cache == "memory" else str(data.cache)
        if prefix:
            Path(prefix).parent.mkdir(parents=True, exist_ok=True)
        cached = interleaved(tf.data.Dataset.from_tensor_slices((files, counts))).cache(prefix)

    def epoch_records(_: tf.Tensor) -> tf.data.Dataset:
        # Dataset.shuffle mixes the graph-level seed (tf.random.set_seed at trace time) into its
        # own; without it the order is a function of (seed, epoch) alone, as the contract says.
        tf.compat.v1.get_default_graph().seed = None
        key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
        order_key, shuffle_key, augment_key = tf.unstack(
            tf.random.experimental.stateless_split(key, 3, alg="philox"))
        if cached is None:
            order = tf.random.experimental.stateless_shuffle(tf.range(tf.size(files)), seed=order_key)
            records = interleaved(tf.data.Dataset.from_tensor_slices((tf.gather(files, order), tf.gather(counts, order))))
        else:
            records = cached
        records = records.shuffle(int(data.shuffle_buffer), seed=shuffle_key[0])
        # Each record travels with its index and the epoch's augmentation key, zipped rather than
        # mapped: a map per record cost about 10% of the pipeline's CPU (benchmarks/pipeline_throughput.py).
        return tf.data.Dataset.zip(records.enumerate(), tf.data.Dataset.from_tensors(augment_key).repeat())

    def example(indexed: tuple[tf.Tensor, tf.Tensor], augment_key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        index, record = indexed  # the element index makes per-image keys: an epoch crops and flips alike each time
        return _train_example(record, tf.random.experimental.stateless_fold_in(augment_key, index, alg="philox"), data)

    examples = tf.data.Dataset.range(1).flat_map(epoch_records).map(example, num_parallel_calls=AUTOTUNE,
                                                                     deterministic=True)
    batches = examples.batch(batch_size, drop_remainder=True)
    return batches.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(AUTOTUNE).with_options(_options()), steps


def _eval_dataset(split: ShardSplit, limit: int | None, data: DataConfig, batch_size: int,
                  check: ShardCheck) -> tuple[tf.data.Dataset, int]:
    """Eval batches in manifest order (remainder kept); returns (dataset, images)."""
    takes = first_records(split.counts, limit)
    kept = [index for index, take in enumerate(takes) if take > 0]
    images = sum(takes)
    # One file after the other (not interleaved), so the order is the manifest's; decoding,
    # not reading, is the cost, and that runs in parallel below.
    files = tf.constant([split.files[index] for index in kept], tf.string)
    records = tf.data.Dataset.from_tensor_slices((files, tf.constant([takes[i] for i in kept], tf.int64)))
    records = records.flat_map(check.records)
    examples = records.map(lambda record: _eval_example(record, data), num_parallel_calls=AUTOTUNE,
                           deterministic=True)
    batches = examples.batch(batch_size).apply(tf.data.experimental.assert_cardinality(math.ceil(images / batch_size)))
    return batches.prefetch(AUTOTUNE).with_options(_options()), images


def load_shards(data: DataConfig, batch_size: int, seed: int) -> DataSplits:
    """Build the train/val/test pipelines over the shards in `data.path`.

    `val` (every epoch, and through val_accuracy the choice of winners) reads the split
    named by `data.val_split`, `test` (once at the end) the one named by
    `data.test_split`, each up to its own limit. ImageNet has no public test labels, so
    the official `val` is the test, and validation needs the ingest's `holdout`; when both
    keys name one split, one warning line says that winners are chosen on the test split.

    Args:
        data: The `data` config group (`conf/data/imagenet.yaml`).
        batch_size: Global batch size.
        seed: Shuffling and augmentation seed (the run's `train.data_seed`, or `train.seed` when that is null).

    Raises:
        ValueError: One line naming the problem and the fix (missing shards or shards of the
            wrong size, wrong `data.num_classes`, too few training images, unknown val or test split).
            A shard found damaged while it is read fails that epoch (`lth.data.integrity`).
    """
    folder = Path(data.path)
    manifest = read_manifest(folder)
    classes = len(manifest["labels"])
    if int(data.num_classes) != classes:
        raise ValueError(f"data.num_classes={data.num_classes} but the manifest in {folder} has {classes} labels: "
                         f"pass data.num_classes={classes}")
    val_name, test_name = str(data.val_split), str(data.test_split)
    train_split = shard_split(manifest, folder, "train", "the training split")
    val_split = shard_split(manifest, folder, val_name, "data.val_split")
    test_split = shard_split(manifest, folder, test_name, "data.test_split")
    check_on_disk(manifest, folder, (train_split, val_split, test_split))
    check = ShardCheck((train_split, val_split, test_split), reingest_hint(manifest, folder))
    train_images = sum(first_records(train_split.counts, data.train_limit))
    if train_images < batch_size:
        raise ValueError(f"train.batch_size={batch_size} exceeds the {train_images} training images in {folder}")
    if data.cache is not None and int(data.shuffle_buffer) <= batch_size:
        # A cache is only kept once an epoch reads its input to the end; the buffer must reach
        # past the dropped remainder or every epoch would read the shards again.
        raise ValueError(f"data.shuffle_buffer={data.shuffle_buffer} must exceed train.batch_size={batch_size} "
                         f"when data.cache is set")
    if val_name == test_name:
        log.warning(SAME_SPLIT_WARNING.format(split=val_name))

    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")
    train, steps = _train_dataset(train_split, data, batch_size, seed, epoch, check)
    val, val_images = _eval_dataset(val_split, data.val_limit, data, batch_size, check)
    test, test_images = _eval_dataset(test_split, data.test_limit, data, batch_size, check)
    size = int(data.image_size)
    if val_name == test_name:
        tested = "" if test_images == val_images else f" ({test_images:,} for test)"
        counts = f"{train_images:,} train / {val_images:,} {val_name} images{tested}"
        shards, roles = f"{len(train_split.files)} + {len(val_split.files)}", f"validates and tests on {val_name}"
    else:
        counts = f"{train_images:,} train / {val_images:,} {val_name} / {test_images:,} {test_name} images"
        shards = f"{len(train_split.files)} + {len(val_split.files)} + {len(test_split.files)}"
        roles = f"validates on {val_name}, tests on {test_name}"
    summary = (f"data {data.name}: {counts}, {classes} classes, {shards} shards, {size}x{size}; {roles} "
               f"(from {folder})")
    return DataSplits(train=train, val=val, test=test, steps_per_epoch=steps, summary=summary,
                      epoch=EpochCounter(epoch), val_images=val_images, val_is_test=val_name == test_name)
