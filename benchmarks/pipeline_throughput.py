"""Throughput of lth's shard reader (data=imagenet) against a single-process PIL loop doing the same work.

    python benchmarks/pipeline_throughput.py [--images 1000] [--batch-size 64] [--out DIR]

Writes its own shards (photo-like JPEGs with shorter side 256 at quality 90, in the ingest's
record schema and manifest) to --out (default: a temporary folder, removed afterwards), then
measures in one run:

  (a) lth's training pipeline, one epoch of `load_shards(...).train` after a warm-up epoch
      (best of 3 epochs), in images/s and images/s per available core;
  (b) a single-process PIL loop over the same records: parse, decode, random-resized crop,
      resize to 224, flip, to a uint8 array (one core; best of 3 passes);
  (c) the per-core ratio (a)/(b) (the goal is at least 1.5);
  (d) with data.cache=memory: the first epoch (reading and caching) against the second,
      beside the same two epochs without the cache (the first epoch of any fresh pipeline is slower).

It prints figures and ratios only; nothing asserts on speed.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from PIL import Image  # noqa: E402

from lth.config.cell import DataConfig  # noqa: E402
from lth.config.pieces import piece
from lth.data.shard_pipeline import load_shards  # noqa: E402
from lth.ingest.images import EncodedImage  # noqa: E402
from lth.ingest.shard_writer import serialize_example  # noqa: E402

IMAGE_SIZE, SHORTER_SIDE, QUALITY, CLASSES, TRAIN_SHARDS = 224, 256, 90, 10, 4
REPEATS = 3  # (a) and (b) report the best of this many passes: a shared machine's bursts only ever slow a pass down
ASPECTS = (4 / 3, 3 / 4, 1.0, 3 / 2, 2 / 3)  # width / height of typical photos
REPO = Path(__file__).resolve().parent.parent


def photo_like_jpeg(rng: np.random.Generator) -> tuple[bytes, int, int]:
    """A JPEG that compresses like a photo: smooth random structure, gradients and a little grain."""
    aspect = ASPECTS[rng.integers(len(ASPECTS))]
    height, width = (SHORTER_SIDE, round(SHORTER_SIDE * aspect)) if aspect >= 1 else (round(SHORTER_SIDE / aspect),
                                                                                     SHORTER_SIDE)
    coarse = rng.uniform(0, 255, size=(int(rng.integers(4, 24)), int(rng.integers(4, 24)), 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
    gradient = np.linspace(-40, 40, width)[None, :, None] * rng.uniform(-1, 1) + np.linspace(-40, 40, height)[:, None, None]
    pixels = smooth + gradient + rng.normal(0, 6, size=smooth.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue(), height, width


def write_shards(folder: Path, images: int) -> float:
    """`images` training images in TRAIN_SHARDS shards and a small val shard, with the manifest; mean JPEG bytes."""
    rng, sizes = np.random.default_rng(0), []
    plan = {"train": [images * i // TRAIN_SHARDS for i in range(TRAIN_SHARDS + 1)], "val": [0, max(1, images // 20)]}
    splits = {}
    for split, bounds in plan.items():
        shards = []
        for number, (start, stop) in enumerate(zip(bounds, bounds[1:])):
            name = f"{split}-{number:05d}-of-{len(bounds) - 1:05d}"
            with tf.io.TFRecordWriter(str(folder / name)) as writer:
                for index in range(start, stop):
                    jpeg, height, width = photo_like_jpeg(rng)
                    sizes.append(len(jpeg))
                    writer.write(serialize_example(f"n{index % CLASSES:08d}", f"{index:06d}.JPEG", index % CLASSES,
                                                  EncodedImage(jpeg, height, width, height, width)))
            shards.append({"file": name, "images": stop - start, "sha256": "-", "bytes": (folder / name).stat().st_size})
        splits[split] = {"images": bounds[-1] - bounds[0], "classes": {}, "shards": shards}
    manifest = {"format": "lth-shards/1", "labels": {f"n{c:08d}": c for c in range(CLASSES)}, "splits": splits,
                "rejected": []}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return float(np.mean(sizes))


def data_config(folder: Path, cache: str | None) -> DataConfig:
    """conf/data/imagenet.yaml as a run would use it, on the benchmark's shards."""
    cfg = OmegaConf.load(REPO / "conf" / "data" / "imagenet.yaml")
    merged = OmegaConf.merge(cfg, {"path": str(folder), "num_classes": CLASSES, "image_size": IMAGE_SIZE, "cache": cache})
    return piece(DataConfig, merged, "data")


class Rate:
    """Images per wall-clock second and per CPU-second of this process (the latter is blind to other load)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self, images: int) -> tuple[float, float]:
        return images / (time.perf_counter() - self.wall), images / (time.process_time() - self.cpu)


def epoch_rates(folder: Path, cache: str | None, batch_size: int, epochs: list[int]) -> list[tuple[float, float]]:
    """(images/s, images per CPU-second) of each listed epoch of a freshly built training pipeline."""
    data, rates = load_shards(data_config(folder, cache), batch_size, seed=0), []
    for epoch in epochs:
        data.begin_epoch(epoch)
        rate, count = Rate(), 0
        for images, _ in data.train:
            count += int(images.shape[0])
        rates.append(rate.stop(count))
    return rates


def pil_rate(folder: Path, cfg: DataConfig) -> tuple[float, float]:
    """(images/s, images per CPU-second) of one process doing the training pipeline's per-image work with PIL and NumPy."""
    records = [bytes(record.numpy()) for record in tf.data.TFRecordDataset(sorted(map(str, folder.glob("train-*"))))]
    area_range, aspect_range = tuple(cfg.crop_area_range), tuple(cfg.crop_aspect_range)
    rng = random.Random(0)

    def crop_box(width: int, height: int) -> tuple[int, int, int, int]:
        for _ in range(10):  # as sample_distorted_bounding_box: 10 tries, then the whole image
            area = width * height * rng.uniform(*area_range)
            aspect = math.exp(rng.uniform(math.log(aspect_range[0]), math.log(aspect_range[1])))
            crop_width, crop_height = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < crop_width <= width and 0 < crop_height <= height:
                left, top = rng.randint(0, width - crop_width), rng.randint(0, height - crop_height)
                return left, top, left + crop_width, top + crop_height
        return 0, 0, width, height

    def one(record: bytes) -> np.ndarray:
        features = tf.train.Example.FromString(record).features.feature
        image = Image.open(io.BytesIO(features["image/encoded"].bytes_list.value[0]))
        image.load()
        # resize with a box crops and resizes in one pass, PIL's fastest way to do both
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR, box=crop_box(*image.size))
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return np.asarray(image, dtype=np.uint8)

    for record in records[:20]:  # warm-up
        one(record)
    rates = []
    for _ in range(REPEATS):
        rate = Rate()
        for record in records:
            one(record)
        rates.append(rate.stop(len(records)))
    return max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="training images to write and read")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size")
    parser.add_argument("--out", type=Path, default=None, help="folder for the shards (default: temporary, removed)")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="lth-pipeline-"))
    folder.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    try:
        mean_bytes = write_shards(folder, args.images)
        print(f"shards: {args.images:,} train images, mean JPEG {mean_bytes / 1024:.1f} KiB, shorter side {SHORTER_SIDE}, "
              f"q{QUALITY}, in {folder}; crops {IMAGE_SIZE}x{IMAGE_SIZE}, batch {args.batch_size}, {cores} cores")
        (cold, _), *timed = epoch_rates(folder, None, args.batch_size, list(range(REPEATS + 1)))  # epoch 0: warm-up
        lth_wall, lth_cpu = max(timed)
        pil_wall, pil_cpu = pil_rate(folder, data_config(folder, None))
        print(f"(a) lth train pipeline:     {lth_wall:8.1f} images/s, {lth_wall / cores:7.1f} per core "
              f"({lth_cpu:.1f} per CPU-second)")
        print(f"(b) PIL loop, 1 process:    {pil_wall:8.1f} images/s (1 core; {pil_cpu:.1f} per CPU-second)")
        print(f"(c) per-core ratio (a)/(b): {lth_wall / cores / pil_wall:8.2f} (goal >= 1.5; per CPU-second "
              f"{lth_cpu / pil_cpu:.2f})")
        (first, _), (second, _) = epoch_rates(folder, "memory", args.batch_size, [0, 1])
        print(f"(d) cache=memory: epoch 1 {first:.1f} images/s, epoch 2 {second:.1f} images/s, ratio {second / first:.2f} "
              f"(without the cache: {cold:.1f} and {timed[0][0]:.1f}, ratio {timed[0][0] / cold:.2f}: a fresh pipeline "
              f"warms up)")
    finally:
        if args.out is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
