"""Spark ingest throughput against a single-process PIL loop doing the same work, measured in one run.

    python benchmarks/ingest_throughput.py [--images 2000] [--out /tmp/lth-ingest-bench]

Both paths read the same photo-like JPEGs (ImageNet-like sizes), decode, orient, convert,
resize to a 256 shorter side, re-encode at quality 90 and write TFRecord shards. The Spark
figure is given cold (session start and TensorFlow imports in its workers included) and warm
(a session whose Python workers already ran an ingest, as for a long ImageNet job). Prints
figures and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
SIZES = ((500, 375), (375, 500), (500, 333), (640, 480), (500, 400), (450, 450))


def _photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [128 + 90 * np.sin(rng.uniform(0.002, 0.03) * x + rng.uniform(0, 6)) * np.cos(rng.uniform(0.002, 0.03) * y)
                for _ in range(3)]
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 8, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def make_folder(root: Path, images: int, classes: int = 10) -> None:
    """`root/<class>/<n>.JPEG` photo-like JPEGs at quality 92."""
    rng = np.random.default_rng(0)
    for index in range(images):
        path = root / f"class{index % classes:02d}" / f"{index:06d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        _photo(rng, *SIZES[index % len(SIZES)]).save(path, quality=92)


def _config(source: Path, output: Path, shards: int) -> object:
    overrides = ["source=folder", f"source.train={source}", f"output={output}", f"shards.train={shards}",
                 "+spark.conf.spark.ui.enabled=false"]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose(config_name="ingest", overrides=overrides)


def baseline(source: Path, output: Path, shards: int) -> float:
    """One process: the same per-image work and TFRecord writing, shard after shard; returns seconds."""
    from omegaconf import OmegaConf

    from lth.ingest.fetch import DownloadSettings
    from lth.ingest.images import ImageSettings
    from lth.ingest.inventory import checked
    from lth.ingest.shard_writer import plan_shards, write_shard
    from lth.ingest.sources import source_inventory

    cfg = _config(source, output, shards)
    started = time.perf_counter()
    records, _, labels = checked(source_inventory(cfg.source))
    tasks = plan_shards(records, labels, dict(cfg.shards), 0, output, ImageSettings(**OmegaConf.to_container(cfg.image)),
                        DownloadSettings(**OmegaConf.to_container(cfg.download)))
    for task in tasks:
        write_shard(task)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="number of JPEGs to ingest")
    parser.add_argument("--shards", type=int, default=16, help="training shards (Spark tasks)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = args.out or Path(tempfile.mkdtemp(prefix="lth-ingest-bench-"))
    source = work / "images"
    if not source.exists():
        make_folder(source, args.images)
    import tensorflow as tf  # the baseline pays its TensorFlow import outside the timing, as warm Spark workers do

    del tf
    from lth.ingest.run import run_ingest, spark_session

    base_s = baseline(source, work / "baseline", args.shards)
    cold_started = time.perf_counter()
    spark = spark_session(_config(source, work / "cold", args.shards).spark)
    run_ingest(_config(source, work / "cold", args.shards), spark=spark)
    cold_s = time.perf_counter() - cold_started
    shutil.rmtree(work / "cold")
    warm_started = time.perf_counter()
    run_ingest(_config(source, work / "warm", args.shards), spark=spark)
    warm_s = time.perf_counter() - warm_started
    cores = spark.sparkContext.defaultParallelism
    spark.stop()
    same = list(p.read_bytes() == (work / "warm" / p.name).read_bytes() for p in (work / "baseline").glob("train-*"))
    print(f"images: {args.images} JPEGs ({', '.join(f'{w}x{h}' for w, h in SIZES)}), {args.shards} shards, "
          f"Spark local with {cores} cores; shards identical to the baseline's: {all(same)}")
    print(f"baseline, 1 process (PIL + TFRecordWriter): {args.images / base_s:8.1f} img/s  ({base_s:.1f} s)")
    print(f"Spark ingest, cold (session + worker start): {args.images / cold_s:8.1f} img/s  ({cold_s:.1f} s)  "
          f"ratio {base_s / cold_s:.2f}x")
    print(f"Spark ingest, warm workers:                  {args.images / warm_s:8.1f} img/s  ({warm_s:.1f} s)  "
          f"ratio {base_s / warm_s:.2f}x  (goal >= 1.8x on 2 cores)")
    if args.out is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
