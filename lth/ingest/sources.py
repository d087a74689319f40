"""The `source` config group: from its config to an `Inventory` of input records.

Kinds: `tree` (extracted ImageNet), `archives` (the official tars), `urls` (wnid<TAB>url
lists), `folder` (any folder with class sub-folders) and `digits` (scikit-learn's bundled
digits, exported as PNG files into a class-folder tree and then read as a `folder`, so the
embedded default exercises the same path as a real image folder).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import numpy as np
from omegaconf import DictConfig

from lth.config.vocabulary import ConfigError
from lth.ingest.archives import train_archive_inventory, val_archive_inventory
from lth.ingest.inventory import (
    Inventory,
    Locator,
    Rejection,
    SourceRecord,
    class_folder_inventory,
    tree_inventory,
)

_WNID = re.compile(r"^(n\d{8})(?:_\d+)?$")  # `n01440764` or an image id `n01440764_10026`


def _optional_path(value: object) -> Path | None:
    return None if value in (None, "") else Path(str(value))


def url_list_inventory(split: str, list_path: Path) -> Inventory:
    """Records of a URL list: `wnid<TAB>url` per line (the first column may be an image id `wnid_N`).

    The file name is the last segment of the URL's path, so a URL list of a tree's files
    yields the same keys, hence the same shards, as the tree itself.
    """
    if not list_path.is_file():
        raise ConfigError(f"URL list not found: {list_path}")
    inventory = Inventory()
    for number, line in enumerate(list_path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t") if "\t" in line else line.split(None, 1)
        where = f"{list_path}:{number}"
        if len(fields) != 2 or not fields[1].strip():
            inventory.rejected.append(Rejection(split, f"{split}/?{number}", where, "not a `wnid<TAB>url` line"))
            continue
        label, url = fields[0].strip(), fields[1].strip()
        match = _WNID.match(label)
        wnid = match.group(1) if match else label  # any class name is accepted; wnids are ImageNet's
        name = unquote(PurePosixPath(urlsplit(url).path).name) or label
        if urlsplit(url).scheme not in ("http", "https"):
            inventory.rejected.append(Rejection(split, f"{split}/{name}", url, "not an http(s) URL"))
            continue
        inventory.records.append(SourceRecord(split, wnid, name, Locator("url", url)))
    return inventory


def export_digits(folder: Path, val_fraction: float, split_seed: int) -> None:
    """Write scikit-learn's digits as 8x8 greyscale PNGs into `folder/{train,val}/<digit>/`.

    Rewriting an existing export gives identical files, so this is safe to repeat.
    """
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    pixels = np.round(bunch.images / 16.0 * 255.0).astype(np.uint8)
    indices = np.arange(len(bunch.target))
    train, val = train_test_split(indices, test_size=val_fraction, stratify=bunch.target, random_state=split_seed)
    for split, chosen in (("train", train), ("val", val)):
        for index in sorted(chosen):
            path = folder / split / str(bunch.target[index]) / f"digit-{index:04d}.png"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels[index], mode="L").save(path)


def source_inventory(source: DictConfig) -> Inventory:
    """All records and early rejections of the configured source.

    Args:
        source: The `source` config group (its `kind` selects the reader).
    """
    kind = source.kind
    if kind == "tree":
        return tree_inventory(Path(source.root), _optional_path(source.val_labels), _optional_path(source.devkit_meta))
    if kind == "folder":
        inventory = class_folder_inventory("train", Path(source.train))
        if _optional_path(source.val) is not None:
            inventory.extend(class_folder_inventory("val", Path(source.val)))
        return inventory
    if kind == "digits":
        folder = Path(source.export_dir)
        export_digits(folder, float(source.val_fraction), int(source.split_seed))
        inventory = class_folder_inventory("train", folder / "train")
        inventory.extend(class_folder_inventory("val", folder / "val"))
        return inventory
    if kind == "archives":
        inventory = train_archive_inventory(Path(source.train_archive))
        if _optional_path(source.val_archive) is not None:
            if _optional_path(source.val_labels) is None:
                raise ConfigError("source.val_archive needs source.val_labels (LOC_val_solution.csv or the ground truth)")
            inventory.extend(val_archive_inventory(Path(source.val_archive), Path(source.val_labels),
                                                   _optional_path(source.devkit_meta)))
        return inventory
    if kind == "urls":
        inventory = url_list_inventory("train", Path(source.train_urls))
        if _optional_path(source.val_urls) is not None:
            inventory.extend(url_list_inventory("val", Path(source.val_urls)))
        return inventory
    raise ConfigError(f"source.kind must be one of tree, archives, urls, folder, digits; got {kind!r}")
