"""What identifies a dataset in a run's identity: its content, never the folder it lies in.

Moving a dataset, or reading it from another mount on another node, must not make every
dense parent look new. So `data.path` is replaced in the hashed config by a fingerprint:
- a shard folder (`manifest.json`, written by `tools/ingest.py`): the checksums the
  manifest records for every shard of every split, with the label list; the files
  themselves are not read (the ingest checked them against these checksums);
- any other folder: the SHA-256 of the files its loader reads (Fashion-MNIST's four IDX
  files; every file of the folder for a loader that names none).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lth.config.vocabulary import ConfigError

MANIFEST = "manifest.json"


def _manifest_content(manifest: dict[str, Any]) -> dict[str, Any]:
    """The parts of a manifest that decide what is trained on: labels and each split's shard checksums."""
    splits = {name: [shard["sha256"] for shard in split["shards"]] for name, split in manifest["splits"].items()}
    return {"labels": manifest.get("labels"), "splits": splits}


@functools.lru_cache(maxsize=64)
def _fingerprint(folder: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    """SHA-256 of a folder's content; `stamp` (names, sizes, mtimes) only keys the cache."""
    path = Path(folder)
    digest = hashlib.sha256()
    if (path / MANIFEST).is_file():
        content = _manifest_content(json.loads((path / MANIFEST).read_text()))
        digest.update(json.dumps(content, sort_keys=True).encode())
        return "shards:" + digest.hexdigest()
    for name, _, _ in stamp:
        digest.update(name.encode() + b"\0")
        with (path / name).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "files:" + digest.hexdigest()


def content_fingerprint(path: str, names: Sequence[str] | None = None) -> str:
    """Fingerprint of the dataset at `path` (a folder, or a single file).

    Args:
        path: The dataset's `data.path`.
        names: The files of the folder that the loader reads; None hashes every file.

    Raises:
        ConfigError: If nothing is there to identify.
    """
    location = Path(path).expanduser().resolve()
    if not location.exists():
        raise ConfigError(f"data.path does not exist: {path} (the dataset is identified by its content)")
    folder = location if location.is_dir() else location.parent
    if (folder / MANIFEST).is_file():
        files = [folder / MANIFEST]
    elif names is not None and location.is_dir():
        files = sorted(folder / name for name in names if (folder / name).is_file())
    else:
        files = sorted(p for p in (folder.iterdir() if location.is_dir() else [location]) if p.is_file())
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _fingerprint(str(folder), stamp)
