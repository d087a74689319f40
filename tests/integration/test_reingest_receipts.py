"""The re-ingest a corrupt-shard error prints rewrites exactly the damaged shards, and the receipts decide which.

The ingest is `run_ingest` on a real local SparkSession (one for the module), its config composed
from the very command the reader's error prints.
"""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf
from hydra import compose, initialize_config_dir

from lth.config.cell import DataConfig
from lth.config.pieces import piece
from lth.data.manifest import reingest_command
from lth.data.shard_pipeline import load_shards
from lth.ingest import run_ingest
from lth.ingest.shard_writer import RECEIPTS
from tests.support.paths import CONFIG_DIR
from tests.support.small_imagenet import make_small_imagenet

pytestmark = pytest.mark.slow  # a SparkSession and two ingests: 30 s, and the default suite is at its 20 minutes

RECEIPT_TEXT = "(the ingest rewrites only shards that no longer match their receipts): "


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A real local SparkSession, one for the module (its JVM start is most of the module's time)."""
    from lth.ingest.run import spark_session

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        spark_cfg = compose(config_name="ingest", overrides=["spark.master='local[1]'",
                                                             "+spark.conf.spark.ui.enabled=false"]).spark
    session = spark_session(spark_cfg)
    yield session
    session.stop()


def _ingest(spark: Any, *overrides: str) -> dict[str, Any]:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="ingest", overrides=list(overrides))
    return run_ingest(cfg, spark=spark)


def _printed_overrides(error: str) -> list[str]:
    """The overrides of the `python tools/ingest.py ...` command at the end of an error line."""
    words = shlex.split(error.split(RECEIPT_TEXT, 1)[1])
    assert words[:2] == ["python", "tools/ingest.py"]
    return words[2:]


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Each shard's bytes and mtime."""
    return {path.name: (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(folder.iterdir()) if path.name.startswith(("train-", "val-"))}


def _data(folder: Path) -> DataConfig:
    return piece(DataConfig, {"name": "imagenet", "path": str(folder), "num_classes": 3, "image_size": 32,
                              "val_split": "val", "test_split": "val", "read_parallelism": 2, "shuffle_buffer": 8,
                              "cache": None, "crop_area_range": [0.5, 1.0], "crop_aspect_range": [0.75, 1.3333333],
                              "flip": True, "eval_crop_fraction": 0.875, "train_limit": None, "val_limit": None,
                              "test_limit": None}, "data")


def _epoch_error(folder: Path) -> str:
    """The error line that reading one epoch of every split ends in, or "" if they read cleanly."""
    data, errors = load_shards(_data(folder), 4, seed=0), []

    def read() -> None:
        try:
            for dataset in (data.train, data.val):
                for _ in dataset:
                    pass
        except tf.errors.InvalidArgumentError as error:
            errors.append(str(error).split("assertion failed: [", 1)[1].split("]\n", 1)[0])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(60)
    assert not reader.is_alive(), "reading the shards hung"
    return errors[0] if errors else ""


@pytest.fixture(scope="module")
def ingested(spark: Any,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict[str, tuple[bytes, int]]]:
    """An ingest of the small ImageNet (3 train + 2 val shards): its folder, manifest and shards."""
    imagenet = make_small_imagenet(tmp_path_factory.mktemp("imagenet"))
    output = tmp_path_factory.mktemp("ingest") / "shards"
    manifest = _ingest(spark, "source=tree", f"source.root={imagenet.tree}", f"source.val_labels={imagenet.val_labels}",
                       f"output={output}", "shards.train=3", "shards.val=2", "download.per_host_interval_s=0")
    return output, manifest, _snapshot(output)


def test_the_manifest_records_the_source_settings_the_command_needs(ingested: tuple[Path, dict, dict]) -> None:
    output, manifest, _ = ingested
    assert set(manifest["settings"]["source_settings"]) == {"root", "val_labels", "devkit_meta"}
    assert manifest["settings"]["source"] == "tree" and manifest["settings"]["source_settings"]["devkit_meta"] is None


def test_the_printed_command_rewrites_exactly_the_damaged_shard(
        ingested: tuple[Path, dict[str, Any], dict[str, tuple[bytes, int]]], spark: Any, tmp_path: Path) -> None:
    import shutil

    source, manifest, _ = ingested
    folder = Path(shutil.copytree(source, tmp_path / "shards"))
    before = _snapshot(folder)
    damaged = folder / "train-00001-of-00003"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside a record's payload: the size is unchanged
    damaged.write_bytes(bytes(data))
    error = _epoch_error(folder)
    assert error.startswith(f"shard {damaged} is corrupt (its SHA-256 is not the one manifest.json lists")
    assert f"output={folder} " in error  # the copy is re-ingested, not the folder it was copied from

    assert _ingest(spark, *_printed_overrides(error)) == manifest  # the same plan: the manifest is unchanged
    after = _snapshot(folder)
    assert after[damaged.name][0] == before[damaged.name][0]  # rewritten byte for byte
    assert {name: state for name, state in after.items() if name != damaged.name} == \
        {name: state for name, state in before.items() if name != damaged.name}  # every other shard untouched
    assert _epoch_error(folder) == ""


@pytest.mark.parametrize("damage", ["truncated", "deleted", "receipt removed"])
def test_receipts_redo_exactly_the_shard_that_no_longer_matches(
        ingested: tuple[Path, dict[str, Any], dict[str, tuple[bytes, int]]], spark: Any, tmp_path: Path,
        damage: str) -> None:
    import shutil

    source, manifest, _ = ingested
    folder = Path(shutil.copytree(source, tmp_path / "shards"))
    before = _snapshot(folder)
    name = "val-00001-of-00002"
    if damage == "truncated":
        (folder / name).write_bytes((folder / name).read_bytes()[:-50])
    elif damage == "deleted":
        (folder / name).unlink()
    else:
        (folder / RECEIPTS / f"{name}.json").unlink()
    if damage == "receipt removed":  # nothing for the reader to see: the same command as for a damaged shard
        overrides = shlex.split(reingest_command(json.loads((folder / "manifest.json").read_text()), folder))[2:]
    else:
        with pytest.raises(ValueError) as refused:  # before training
            load_shards(_data(folder), 4, seed=0)
        overrides = _printed_overrides(str(refused.value))
    assert _ingest(spark, *overrides) == manifest
    after = _snapshot(folder)
    assert after[name][0] == before[name][0] and after[name][1] != before[name][1]  # redone, byte for byte
    assert {n: s for n, s in after.items() if n != name} == {n: s for n, s in before.items() if n != name}
    assert json.loads((folder / RECEIPTS / f"{name}.json").read_text())["sha256"] == \
        next(s["sha256"] for s in manifest["splits"]["val"]["shards"] if s["file"] == name)


def test_the_command_quotes_paths_so_that_the_shell_and_hydra_read_them_back(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    awkward = {"root": "/data/my images/it's [v2]", "val_labels": "1234", "devkit_meta": None}
    manifest = {"settings": {"source": "tree", "source_settings": awkward, "image": {"allow_upscale": True},
                             "shuffle_seed": 7, "holdout_per_class": 2},
                "splits": {"train": {"shards": [{"file": "train-00000-of-00004"}]}}}
    words = shlex.split(reingest_command(manifest, tmp_path / "out put"))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="ingest", overrides=words[2:])
    assert (cfg.source.kind, cfg.source.root, cfg.source.val_labels, cfg.source.devkit_meta) == \
        ("tree", awkward["root"], "1234", None)
    assert (cfg.output, cfg.shuffle_seed, cfg.holdout_per_class, cfg.image.allow_upscale, cfg.shards.train) == \
        (str(tmp_path / "out put"), 7, 2, True, 4)
