"""The manifest of a shard folder (`manifest.json`, written by `tools/ingest.py`): its splits, files and counts.

The manifest is the truth: a shard file it does not list is never read, and a listed one
that is missing is an error naming the fix. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_FORMAT = "lth-shards/1"
INGEST_HINT = "write the shards with `python tools/ingest.py`"
HOLDOUT_HINT = "ingest with `python tools/ingest.py holdout_per_class=10` (or validate on another split)"


@dataclass(frozen=True)
class ShardSplit:
    """One split's shard files (full paths, in manifest order) and their image counts."""

    files: tuple[str, ...]
    counts: tuple[int, ...]


def read_manifest(folder: Path) -> dict[str, Any]:
    """The parsed `manifest.json` of a shard folder.

    Raises:
        ValueError: If the manifest is missing or not an lth shard manifest.
    """
    path = folder / "manifest.json"
    if not path.is_file():
        raise ValueError(f"no shard manifest at {path} (data.path={folder}): {INGEST_HINT}")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} has format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}: {INGEST_HINT}")
    return manifest


def shard_split(manifest: dict[str, Any], folder: Path, name: str, key: str) -> ShardSplit:
    """The shards of split `name`, checked to exist on disk.

    Args:
        manifest: The parsed manifest.
        folder: The shard folder (`data.path`).
        name: Split name in the manifest (`train`, `val`, `holdout`).
        key: The config key that asked for this split, named in errors.

    Raises:
        ValueError: If the split is not in the manifest or one of its shard files is missing.
    """
    splits = manifest.get("splits", {})
    if name not in splits:
        hint = f": {HOLDOUT_HINT}" if name == "holdout" else ""
        raise ValueError(f"{key}={name!r} is not a split of {folder / 'manifest.json'} (it has {sorted(splits)}){hint}")
    shards = splits[name]["shards"]
    files = tuple(str(folder / shard["file"]) for shard in shards)
    missing = [file for file in files if not Path(file).is_file()]
    if missing:
        raise ValueError(f"{len(missing)} shard file(s) of the manifest are missing, e.g. {missing[0]}: {INGEST_HINT}")
    return ShardSplit(files, tuple(int(shard["images"]) for shard in shards))


def first_records(counts: tuple[int, ...], limit: int | None) -> list[int]:
    """Records to read from each file so that the files in order hold the first `limit` ones."""
    remaining = sum(counts) if limit is None else int(limit)
    takes = []
    for count in counts:
        takes.append(max(0, min(count, remaining)))
        remaining -= takes[-1]
    return takes
