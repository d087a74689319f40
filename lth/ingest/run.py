"""An ingest from start to end: list the source, plan shards, write them with Spark, write the manifest.

Spark does the distribution: one task per shard (`parallelize(tasks, len(tasks))`), with its
scheduling, task retries and console progress bar. `spark.master` is `local[*]` by default and
may name a standalone, YARN or Kubernetes master; the shard writer only needs the output folder
to be shared by the driver and the executors.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lth.ingest.fetch import DownloadSettings
from lth.ingest.images import ImageSettings
from lth.ingest.inventory import Rejection, checked
from lth.ingest.java import require_java
from lth.ingest.shard_writer import FORMAT, RECEIPTS, ShardTask, plan_shards, write_shard
from lth.ingest.sources import source_inventory

log = logging.getLogger(__name__)
_SHARD_NAME = re.compile(r"^(train|val|holdout)-\d{5}-of-\d{5}$")


def spark_session(spark_cfg: DictConfig) -> Any:
    """A SparkSession for the configured master (`pyspark.sql.SparkSession`, imported lazily).

    Raises:
        ConfigError: If there is no Java runtime Spark can start (before Py4J tries and fails).
    """
    require_java()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers must import lth from this environment
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # inherited by the workers: no TensorFlow start-up chatter per worker
    if str(spark_cfg.master).startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no network: never bind a public interface
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master(str(spark_cfg.master)).appName(str(spark_cfg.app_name))
               .config("spark.driver.memory", str(spark_cfg.driver_memory))
               .config("spark.python.worker.reuse", "true")  # TensorFlow is imported once per worker, not per task
               .config("spark.ui.showConsoleProgress", "true"))
    for key, value in _dotted(OmegaConf.to_container(spark_cfg.conf) if spark_cfg.conf is not None else {}).items():
        builder = builder.config(key, str(value).lower() if isinstance(value, bool) else str(value))
    return builder.getOrCreate()


def _dotted(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{spark: {ui: {enabled: false}}}` (how `+spark.conf.spark.ui.enabled=false` arrives) as Spark's dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        flat.update(_dotted(value, name + ".") if isinstance(value, dict) else {name: value})
    return flat


def _remove_leftovers(output: Path, tasks: list[ShardTask]) -> None:
    """Delete temporary files of killed writers and shards of an earlier, different plan."""
    planned = {task.file_name for task in tasks}
    for path in sorted((output / RECEIPTS).glob("*.tmp-*")):
        path.unlink()
    for path in sorted(output.iterdir()):
        if _SHARD_NAME.match(path.name) and path.name not in planned:
            log.info("ingest: removing %s (not part of this plan)", path.name)
            path.unlink()
            (output / RECEIPTS / f"{path.name}.json").unlink(missing_ok=True)


def build_manifest(receipts: list[dict[str, Any]], early: list[Rejection], labels: dict[str, int],
                   settings: dict[str, Any]) -> dict[str, Any]:
    """manifest.json: counts per split and class, the label map, shards with checksums, every rejected input."""
    splits: dict[str, Any] = {}
    for receipt in sorted(receipts, key=lambda r: (r["split"], r["file"])):
        split = splits.setdefault(receipt["split"], {"images": 0, "classes": Counter(), "shards": []})
        split["images"] += receipt["images"]
        split["classes"].update(receipt["classes"])
        split["shards"].append({key: receipt[key] for key in ("file", "images", "sha256", "bytes")})
    for split in splits.values():
        split["classes"] = dict(sorted(split["classes"].items()))
    rejected = [vars(rejection) for rejection in early] + [item for r in receipts for item in r["rejected"]]
    return {"format": FORMAT, "labels": labels, "splits": splits,
            "rejected": sorted(rejected, key=lambda item: (item["split"], item["key"], item["input"])),
            "settings": settings}


def _write_json(path: Path, content: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(content, indent=1) + "\n")
    os.replace(temporary, path)


def run_ingest(cfg: DictConfig, spark: Any = None) -> dict[str, Any]:
    """Ingest the configured source into TFRecord shards and a manifest; safe to rerun after a kill.

    Args:
        cfg: The composed conf/ingest.yaml.
        spark: An existing SparkSession to use (and leave running); by default one is started and stopped.

    Returns:
        The manifest that was written to `<output>/manifest.json`.

    Raises:
        ConfigError: If a SparkSession is to be started here and there is no Java runtime for it.
    """
    if spark is None:
        require_java()  # before the listing, which takes minutes on ImageNet, not only once the session starts
    output = Path(str(cfg.output)).resolve()
    image = ImageSettings(**OmegaConf.to_container(cfg.image))
    download = DownloadSettings(**OmegaConf.to_container(cfg.download))
    started = time.monotonic()
    records, early_rejected, labels = checked(source_inventory(cfg.source))
    tasks = plan_shards(records, labels, dict(cfg.shards), int(cfg.shuffle_seed), output, image, download,
                        holdout_per_class=int(cfg.holdout_per_class))
    counts = Counter(task.split for task in tasks)
    log.info("ingest: %d images of %d classes from source %s -> %s in %s (%d rejected while listing)",
             len(records), len(labels), cfg.source.kind, " + ".join(f"{n} {s} shards" for s, n in sorted(counts.items())),
             output, len(early_rejected))
    (output / RECEIPTS).mkdir(parents=True, exist_ok=True)
    _remove_leftovers(output, tasks)
    session = spark if spark is not None else spark_session(cfg.spark)
    try:
        receipts = session.sparkContext.parallelize(tasks, len(tasks)).map(write_shard).collect()
    finally:
        if spark is None:
            session.stop()
    # The source's own keys too, so that a reader finding a damaged shard can print the exact command that rewrites it.
    source_settings = {key: value for key, value in OmegaConf.to_container(cfg.source, resolve=True).items()
                       if key not in ("name", "kind")}
    settings = {"source": cfg.source.kind, "source_settings": source_settings, "image": OmegaConf.to_container(cfg.image),
                "shuffle_seed": int(cfg.shuffle_seed), "holdout_per_class": int(cfg.holdout_per_class)}
    manifest = build_manifest(receipts, early_rejected, labels, settings)
    _write_json(output / "manifest.json", manifest)
    skipped = sum(bool(receipt.get("skipped")) for receipt in receipts)
    written = {name: split["images"] for name, split in manifest["splits"].items()}
    log.info("ingest: %s images written, %d rejected, %d of %d shards already complete, %.1f s; manifest %s",
             " + ".join(f"{n:,} {s}" for s, n in written.items()), len(manifest["rejected"]), skipped, len(tasks),
             time.monotonic() - started, output / "manifest.json")
    return manifest
