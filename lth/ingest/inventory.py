"""What an ingest reads: one record per input image, named the same whatever the source.

Every source (an extracted tree, the official tars, a URL list, any image folder) is turned
into `SourceRecord`s keyed `train/<wnid>/<file name>` or `val/<file name>`. The key, not the
source, decides where an image lands in the shards, so the same images give the same
shards whether they were read from a folder, from inside a tar or over HTTP.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lth.config.vocabulary import ConfigError

SPLITS = ("train", "val")


@dataclass(frozen=True)
class Locator:
    """Where the bytes of one input are.

    `kind` is "file" (a path), "member" (bytes `offset`..`offset+size` of an uncompressed tar,
    read in place without extracting) or "url".
    """

    kind: str
    path: str
    offset: int = 0
    size: int = 0
    member: str = ""  # the tar member's name, for messages only

    def describe(self) -> str:
        """How the manifest names this input."""
        return f"{self.path}:{self.member}" if self.kind == "member" else self.path


@dataclass(frozen=True)
class SourceRecord:
    """One input image: its split, class (wnid or folder name), file name and where to read it."""

    split: str
    wnid: str
    name: str
    locator: Locator

    @property
    def key(self) -> str:
        """The source-independent name; train keys include the class folder as ImageNet's tree does."""
        return f"train/{self.wnid}/{self.name}" if self.split == "train" else f"{self.split}/{self.name}"


@dataclass(frozen=True)
class Rejection:
    """An input left out of the shards, and why (listed in manifest.json)."""

    split: str
    key: str
    input: str
    reason: str


@dataclass
class Inventory:
    """The records of a source and the inputs already rejected while listing them."""

    records: list[SourceRecord] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def extend(self, other: Inventory) -> None:
        """Append another inventory's records and rejections."""
        self.records.extend(other.records)
        self.rejected.extend(other.rejected)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")  # .DS_Store, ._AppleDouble and editor files are not inputs


def _files_under(folder: Path) -> Iterable[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file() and _visible(path))


def class_folder_inventory(split: str, root: Path) -> Inventory:
    """Records of a folder with one sub-folder per class (`root/<class>/**/<file>`).

    Args:
        split: "train" or "val".
        root: The folder holding the class folders; files directly in it are not inputs.
    """
    if not root.is_dir():
        raise ConfigError(f"{split} folder not found: {root}")
    classes = sorted(path for path in root.iterdir() if path.is_dir() and _visible(path))
    if not classes:
        raise ConfigError(f"{root} has no class sub-folders (expected {root}/<class>/<image files>)")
    inventory = Inventory()
    for folder in classes:
        for path in _files_under(folder):
            name = path.relative_to(folder).as_posix()
            inventory.records.append(SourceRecord(split, folder.name, name, Locator("file", str(path))))
    return inventory


def read_val_labels(labels_path: Path, devkit_meta: Path | None = None) -> dict[str, str]:
    """Validation file name -> wnid, from either label format ImageNet ships.

    Args:
        labels_path: `LOC_val_solution.csv` (ImageId,PredictionString with the wnid first) or the
            devkit's `ILSVRC2012_validation_ground_truth.txt` (one ILSVRC2012 id per line, in file order).
        devkit_meta: The devkit's `data/meta.mat`, which maps ILSVRC2012 ids to wnids; needed for the .txt.
    """
    if not labels_path.is_file():
        raise ConfigError(f"validation labels not found: {labels_path}")
    if labels_path.suffix == ".csv":
        with labels_path.open(newline="") as handle:
            rows = csv.DictReader(handle)
            if rows.fieldnames is None or not {"ImageId", "PredictionString"} <= set(rows.fieldnames):
                raise ConfigError(f"{labels_path}: expected LOC_val_solution.csv columns ImageId,PredictionString")
            return {f"{row['ImageId']}.JPEG": row["PredictionString"].split()[0] for row in rows}
    if devkit_meta is None or not devkit_meta.is_file():
        raise ConfigError(f"{labels_path} holds ILSVRC2012 ids; set source.devkit_meta to the devkit's data/meta.mat "
                          f"(got {devkit_meta}) or use LOC_val_solution.csv")
    from scipy.io import loadmat

    synsets = loadmat(str(devkit_meta), squeeze_me=True)["synsets"]
    wnid_of_id = {int(synset["ILSVRC2012_ID"]): str(synset["WNID"]) for synset in synsets}
    ids = [int(line) for line in labels_path.read_text().split()]
    return {f"ILSVRC2012_val_{index:08d}.JPEG": wnid_of_id[ilsvrc_id] for index, ilsvrc_id in enumerate(ids, start=1)}


def flat_val_inventory(root: Path, labels: dict[str, str]) -> Inventory:
    """Records of a flat validation folder, labelled by file name."""
    inventory = Inventory()
    for path in _files_under(root):
        name = path.relative_to(root).as_posix()
        if name in labels:
            inventory.records.append(SourceRecord("val", labels[name], name, Locator("file", str(path))))
        else:
            inventory.rejected.append(Rejection("val", f"val/{name}", str(path), "no label in the validation labels file"))
    return inventory


def tree_inventory(root: Path, val_labels: Path | None, devkit_meta: Path | None) -> Inventory:
    """An extracted ImageNet: `root/train/<wnid>/*.JPEG` and `root/val` (flat with a labels file, or per class)."""
    inventory = class_folder_inventory("train", root / "train")
    val = root / "val"
    if val.is_dir():
        if any(path.is_dir() for path in val.iterdir()):
            inventory.extend(class_folder_inventory("val", val))
        elif val_labels is None:
            raise ConfigError(f"{val} is flat: set source.val_labels to LOC_val_solution.csv or the devkit ground truth")
        else:
            inventory.extend(flat_val_inventory(val, read_val_labels(val_labels, devkit_meta)))
    return inventory


def label_map(records: Iterable[SourceRecord]) -> dict[str, int]:
    """wnid -> index over the training classes, in sorted order (ImageNet's standard label order)."""
    return {wnid: index for index, wnid in enumerate(sorted({r.wnid for r in records if r.split == "train"}))}


def checked(inventory: Inventory) -> tuple[list[SourceRecord], list[Rejection], dict[str, int]]:
    """Drop duplicate keys and validation classes unknown to training; return records, rejections, labels.

    Raises:
        ConfigError: If the source lists no training image (e.g. class folders with no files in
            them): there would be nothing to train on, no label map and no holdout to carve out.
    """
    labels = label_map(inventory.records)
    if not labels:
        listed = sum(record.split == "val" for record in inventory.records)
        raise ConfigError(f"the source has no training images ({listed} validation images and "
                          f"{len(inventory.rejected)} rejected inputs listed): the source's "
                          f"training folder, archive or URL list must hold images of at least one class")
    records: dict[str, SourceRecord] = {}
    rejected = list(inventory.rejected)
    for record in inventory.records:
        if record.key in records:
            first = records[record.key].locator.describe()
            rejected.append(Rejection(record.split, record.key, record.locator.describe(), f"duplicate of {first}"))
        elif record.wnid not in labels:
            rejected.append(Rejection(record.split, record.key, record.locator.describe(),
                                      f"class {record.wnid} has no training images"))
        else:
            records[record.key] = record
    return list(records.values()), rejected, labels
