"""The manifest of a shard folder (`manifest.json`, written by `tools/ingest.py`): its splits, files and counts.

The manifest is the truth: a shard file it does not list is never read, and a listed one
that is missing, or whose size is not the one listed, is refused before training with one
line naming it and the ingest command that rewrites it (a rerun of the ingest rewrites
exactly the shards that no longer match their receipts). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_FORMAT = "lth-shards/1"
INGEST_HINT = "write the shards with `python tools/ingest.py`"
HOLDOUT_HINT = "ingest with `python tools/ingest.py holdout_per_class=10` (or validate on another split)"
REINGEST = "re-ingest {it} (the ingest rewrites only shards that no longer match their receipts): {command}"
NAMED = 20  # missing files named in the error; a wrong data.path would otherwise print a thousand
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PLAIN = re.compile(r"[\w./:@+-]+")  # values Hydra reads as the same string without quotes
_COUNT = re.compile(r"-of-(\d+)$")


@dataclass(frozen=True)
class ShardSplit:
    """One split's shard files (full paths, in manifest order), image counts, byte sizes and SHA-256s.

    A size or checksum is None where the manifest records none (hand-written test manifests).
    """

    files: tuple[str, ...]
    counts: tuple[int, ...]
    sizes: tuple[int | None, ...]
    checksums: tuple[str | None, ...]


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
    """The shards of split `name` as the manifest lists them (`check_on_disk` checks the files).

    Args:
        manifest: The parsed manifest.
        folder: The shard folder (`data.path`).
        name: Split name in the manifest (`train`, `val`, `holdout`).
        key: The config key that asked for this split, named in errors.

    Raises:
        ValueError: If the split is not in the manifest.
    """
    splits = manifest.get("splits", {})
    if name not in splits:
        hint = f": {HOLDOUT_HINT}" if name == "holdout" else ""
        raise ValueError(f"{key}={name!r} is not a split of {folder / 'manifest.json'} (it has {sorted(splits)}){hint}")
    shards = splits[name]["shards"]
    return ShardSplit(
        files=tuple(str(folder / shard["file"]) for shard in shards),
        counts=tuple(int(shard["images"]) for shard in shards),
        sizes=tuple(None if shard.get("bytes") is None else int(shard["bytes"]) for shard in shards),
        checksums=tuple(shard["sha256"] if _SHA256.fullmatch(str(shard.get("sha256"))) else None for shard in shards))


def _hydra_value(value: Any) -> str:
    """`value` as a Hydra override writes it (strings that would read as something else are quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value)
    if isinstance(value, (int, float)) or (_PLAIN.fullmatch(text) and not _reads_as_other_type(text)):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _reads_as_other_type(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text.lower() in {"null", "true", "false", "nan", "inf"}
    return True


def reingest_command(manifest: dict[str, Any], folder: Path) -> str:
    """The `tools/ingest.py` command that wrote this folder, from the settings its manifest records.

    Shard counts come from the file names (`-of-00008`); a manifest without settings (not
    written by the ingest) gets a sentence instead of a command.
    """
    settings = manifest.get("settings")
    if not isinstance(settings, dict) or "source" not in settings:
        return f"`python tools/ingest.py` with output={folder} and the source and settings that wrote it"
    overrides = [("source", settings["source"])]
    overrides += [(f"source.{key}", value) for key, value in settings.get("source_settings", {}).items()]
    overrides += [("output", folder), ("shuffle_seed", settings.get("shuffle_seed", 0)),
                  ("holdout_per_class", settings.get("holdout_per_class", 0))]
    overrides += [(f"image.{key}", value) for key, value in settings.get("image", {}).items()]
    for name, split in sorted(manifest.get("splits", {}).items()):
        counts = {int(m.group(1)) for shard in split["shards"] if (m := _COUNT.search(shard["file"]))}
        overrides.append((f"shards.{name}", counts.pop() if len(counts) == 1 else len(split["shards"])))
    command = " ".join(["python tools/ingest.py", *(shlex.quote(f"{key}={_hydra_value(v)}") for key, v in overrides)])
    # Manifests of ingests older than source_settings do not record the source's paths.
    return command if "source_settings" in settings else f"{command} plus the source.* paths it was ingested from"


def reingest_hint(manifest: dict[str, Any], folder: Path, it: str = "it") -> str:
    """`re-ingest it (...): <command>`, the end of every error about a shard of this folder."""
    return REINGEST.format(it=it, command=reingest_command(manifest, folder))


def corrupt(path: str, reason: str, hint: str) -> str:
    """The one line that names a damaged shard, why, and how to rewrite it."""
    return f"shard {path} is corrupt ({reason}); {hint}"


def size_problem(expected: int | None, actual: int) -> str:
    """Why a shard of `actual` bytes is corrupt, or "" when that is the manifest's size (or none is listed)."""
    if expected is None or actual == expected:
        return ""
    return f"{actual:,} bytes where manifest.json lists {expected:,}: truncated or overwritten"


def check_on_disk(manifest: dict[str, Any], folder: Path, splits: Iterable[ShardSplit]) -> None:
    """Refuse shards that are missing or not of the size the manifest lists, before any training.

    A stat per file: cheap enough for every job start (content is checked as shards are read).

    Raises:
        ValueError: One line naming every missing file, or the first shard of the wrong size, and the re-ingest.
    """
    entries = {file: size for split in splits for file, size in zip(split.files, split.sizes)}
    missing = [file for file in entries if not os.path.isfile(file)]
    if missing:
        names = ", ".join(Path(file).name for file in missing[:NAMED])
        names += f" and {len(missing) - NAMED} more" if len(missing) > NAMED else ""
        raise ValueError(f"{len(missing)} shard file(s) listed in {folder / 'manifest.json'} are missing, "
                         f"e.g. {missing[0]}: the missing ones are {names}; {reingest_hint(manifest, folder, 'them')}")
    for file, size in entries.items():
        if problem := size_problem(size, os.path.getsize(file)):
            raise ValueError(corrupt(file, problem, reingest_hint(manifest, folder)))


def first_records(counts: tuple[int, ...], limit: int | None) -> list[int]:
    """Records to read from each file so that the files in order hold the first `limit` ones."""
    remaining = sum(counts) if limit is None else int(limit)
    takes = []
    for count in counts:
        takes.append(max(0, min(count, remaining)))
        remaining -= takes[-1]
    return takes
