"""Datasets are identified by their content, not by where they lie."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from lth.tracking.identity import dense_hash
from lth.validation.validate import ConfigError

FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _fashion_folder(folder: Path, payload: bytes = b"\x00\x00\x08\x01\x00\x00\x00\x02\x05\x07") -> Path:
    folder.mkdir(parents=True)
    for name in FASHION_FILES:
        (folder / name).write_bytes(gzip.compress(payload, mtime=0))
    return folder


def _shard_folder(folder: Path, digests: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True)
    splits = {split: {"images": 10 * len(shas), "classes": {"a": 10 * len(shas)},
                      "shards": [{"file": f"{split}-{i:05d}-of-{len(shas):05d}", "images": 10, "sha256": sha,
                                  "bytes": 100} for i, sha in enumerate(shas)]}
              for split, shas in digests.items()}
    manifest = {"format": "lth-shards/1", "labels": ["a", "b"], "splits": splits, "rejected": [],
                "source": str(folder), "written": "2026-12-01T00:00:00"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_moving_a_dataset_keeps_the_dense_identity(compose: Callable[..., object], tmp_path: Path) -> None:
    first = _fashion_folder(tmp_path / "a" / "fashion")
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(first, moved)
    assert dense_hash(compose("data=fashion_mnist", f"data.path={first}")) == \
        dense_hash(compose("data=fashion_mnist", f"data.path={moved}"))


def test_other_content_is_another_dense_parent(compose: Callable[..., object], tmp_path: Path) -> None:
    first = _fashion_folder(tmp_path / "a")
    other = _fashion_folder(tmp_path / "b", payload=b"\x00\x00\x08\x01\x00\x00\x00\x02\x05\x08")
    assert dense_hash(compose("data=fashion_mnist", f"data.path={first}")) != \
        dense_hash(compose("data=fashion_mnist", f"data.path={other}"))


def test_shards_are_identified_by_the_manifests_checksums(compose: Callable[..., object], tmp_path: Path) -> None:
    digests = {"train": ["1" * 64, "2" * 64], "val": ["3" * 64]}
    first = _shard_folder(tmp_path / "a", digests)
    moved = _shard_folder(tmp_path / "b", digests)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["written"], manifest["source"] = "2027-01-01T00:00:00", "/another/source/path"  # re-ingested elsewhere
    (moved / "manifest.json").write_text(json.dumps(manifest))
    changed = _shard_folder(tmp_path / "c", {**digests, "val": ["4" * 64]})
    hashes = [dense_hash(compose("data=imagenet", f"data.path={folder}")) for folder in (first, moved, changed)]
    assert hashes[0] == hashes[1] != hashes[2]


def test_a_dataset_that_is_not_there_is_one_clear_error(compose: Callable[..., object], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.path"):
        dense_hash(compose("data=imagenet", f"data.path={tmp_path / 'missing'}"))


def test_a_file_the_loader_does_not_read_does_not_change_the_identity(compose: Callable[..., object],
                                                                        tmp_path: Path) -> None:
    folder = _fashion_folder(tmp_path / "fashion")
    before = dense_hash(compose("data=fashion_mnist", f"data.path={folder}"))
    (folder / "README.txt").write_text("notes someone added next to the data")
    assert dense_hash(compose("data=fashion_mnist", f"data.path={folder}")) == before
