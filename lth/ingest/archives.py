"""The official ImageNet archives, listed in place: no member is ever extracted to disk.

`ILSVRC2012_img_train.tar` is a tar of 1,000 per-class tars (`n01440764.tar`, ...);
`ILSVRC2012_img_val.tar` is flat. Both are uncompressed, so every image is a byte range of
the outer file: listing reads only the tar headers, and Spark tasks later read each image's
bytes with one seek. A member whose name would land outside an extraction folder
(`../escape.JPEG`, an absolute path) or that is not a regular file is rejected by the
standard library's own `tarfile.data_filter`, the check `extractall(filter="data")` applies.
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath

from lth.config.vocabulary import ConfigError
from lth.ingest.inventory import Inventory, Locator, Rejection, SourceRecord, read_val_labels

_CHECK_ROOT = "/lth-ingest-destination"  # a notional extraction folder; nothing is written there


def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why extracting `member` would be unsafe or meaningless, or None when it is a plain file inside."""
    try:
        tarfile.data_filter(member, _CHECK_ROOT)
    except tarfile.FilterError as error:
        return f"unsafe tar member refused ({type(error).__name__}: {error})"
    return None if member.isfile() else "not a regular file"


def _open_uncompressed(path: Path) -> tarfile.TarFile:
    if not path.is_file():
        raise ConfigError(f"archive not found: {path}")
    try:
        return tarfile.open(path, mode="r:")  # "r:" refuses compressed tars: byte ranges need an uncompressed file
    except tarfile.ReadError as error:
        raise ConfigError(f"{path} is not an uncompressed tar ({error}); the ImageNet archives are plain .tar") from None


def _class_members(archive: Path, outer: tarfile.TarFile, class_tar: tarfile.TarInfo, inventory: Inventory) -> None:
    """Add the images of one per-class tar (a member of the outer train tar)."""
    wnid = PurePosixPath(class_tar.name).name.removesuffix(".tar")
    handle = outer.extractfile(class_tar)
    assert handle is not None  # a regular member always has a file object
    with tarfile.open(fileobj=handle, mode="r:") as inner:
        for member in inner:
            if member.isdir():
                continue
            name = PurePosixPath(member.name).name or member.name
            where = f"{class_tar.name}/{member.name}"
            reason = _unsafe_reason(member)
            if reason is not None:
                inventory.rejected.append(Rejection("train", f"train/{wnid}/{name}", f"{archive}:{where}", reason))
                continue
            offset = class_tar.offset_data + member.offset_data  # the image's bytes inside the outer file
            locator = Locator("member", str(archive), offset, member.size, where)
            inventory.records.append(SourceRecord("train", wnid, name, locator))


def train_archive_inventory(archive: Path) -> Inventory:
    """Records of `ILSVRC2012_img_train.tar` (a tar of per-class tars)."""
    inventory = Inventory()
    with _open_uncompressed(archive) as outer:
        for class_tar in outer:
            if class_tar.isdir():
                continue
            reason = _unsafe_reason(class_tar)
            if reason is None and not class_tar.name.endswith(".tar"):
                reason = "not a per-class tar (expected <wnid>.tar)"
            if reason is not None:
                name = PurePosixPath(class_tar.name).name or class_tar.name
                inventory.rejected.append(Rejection("train", f"train/{name}", f"{archive}:{class_tar.name}", reason))
                continue
            _class_members(archive, outer, class_tar, inventory)
    return inventory


def val_archive_inventory(archive: Path, val_labels: Path, devkit_meta: Path | None) -> Inventory:
    """Records of the flat `ILSVRC2012_img_val.tar`, labelled from the devkit or LOC_val_solution.csv."""
    labels = read_val_labels(val_labels, devkit_meta)
    inventory = Inventory()
    with _open_uncompressed(archive) as tar:
        for member in tar:
            if member.isdir():
                continue
            name = PurePosixPath(member.name).name or member.name
            where = f"{archive}:{member.name}"
            reason = _unsafe_reason(member) or (None if name in labels else "no label in the validation labels file")
            if reason is not None:
                inventory.rejected.append(Rejection("val", f"val/{name}", where, reason))
                continue
            locator = Locator("member", str(archive), member.offset_data, member.size, member.name)
            inventory.records.append(SourceRecord("val", labels[name], name, locator))
    return inventory
