"""A small ImageNet made by the tests: an extracted tree, the same content as the official tars, URL lists.

Three wnid classes of photo-like JPEGs at realistic sizes, plus ImageNet's real-world quirks
(a CMYK JPEG, a greyscale one, a PNG named .JPEG, an EXIF-rotated one) and bad inputs (a
truncated JPEG, a zero-byte file, a text file named .JPEG). The train tar also holds a member
named `../escape.JPEG`, which must be refused, never extracted.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("n01440764", "n01443537", "n01484850")
SIZES = ((500, 375), (375, 500), (640, 480), (333, 500), (500, 333), (400, 400))
BAD_TRAIN = {  # key -> a word its rejection reason contains
    "train/n01443537/n01443537_truncated.JPEG": "truncated",
    "train/n01484850/n01484850_empty.JPEG": "empty",
    "train/n01440764/n01440764_text.JPEG": "not an image",
}
ESCAPE_KEY = "train/n01440764/escape.JPEG"


@dataclass(frozen=True)
class SmallImagenet:
    """Paths of the generated dataset."""

    tree: Path  # tree/train/<wnid>/*.JPEG and tree/val/*.JPEG
    val_labels: Path  # LOC_val_solution.csv
    train_archive: Path  # ILSVRC2012_img_train.tar (a tar of per-class tars)
    val_archive: Path  # ILSVRC2012_img_val.tar
    good_train: int  # training images that must reach the shards
    good_val: int


def photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A photo-like RGB image: smooth colour gradients and blobs with mild noise (compresses like a photo)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.002, 0.02, 2).tolist() + [rng.uniform(0, 6.28)]
        channels.append(128 + 90 * np.sin(fx * x + phase) * np.cos(fy * y))
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, **options)
    return buffer.getvalue()


def _train_files(rng: np.random.Generator) -> dict[str, bytes]:
    """Relative path under train/ -> bytes."""
    files: dict[str, bytes] = {}
    for number, wnid in enumerate(CLASSES):
        for index in range(8):
            width, height = SIZES[(index + number) % len(SIZES)]
            files[f"{wnid}/{wnid}_{index}.JPEG"] = _jpeg(photo(rng, width, height))
    first, second, third = CLASSES
    files[f"{first}/{first}_cmyk.JPEG"] = _jpeg(photo(rng, 500, 375).convert("CMYK"))
    files[f"{second}/{second}_grey.JPEG"] = _jpeg(photo(rng, 375, 500).convert("L"))
    png = io.BytesIO()
    photo(rng, 480, 360).save(png, format="PNG")
    files[f"{third}/{third}_png.JPEG"] = png.getvalue()  # ImageNet's n02105855_2933.JPEG is such a PNG
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    files[f"{first}/{first}_exif.JPEG"] = _jpeg(photo(rng, 500, 300), exif=exif.tobytes())
    whole = _jpeg(photo(rng, 500, 375))
    files[f"{second}/{second}_truncated.JPEG"] = whole[: len(whole) // 2]
    files[f"{third}/{third}_empty.JPEG"] = b""
    files[f"{first}/{first}_text.JPEG"] = b"<html><body>This photo is no longer available</body></html>\n"
    return files


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_small_imagenet(root: Path, seed: int = 0) -> SmallImagenet:
    """Write the tree, the labels file and the official-style tars under `root`."""
    rng = np.random.default_rng(seed)
    train = _train_files(rng)
    val = {f"ILSVRC2012_val_{i:08d}.JPEG": (CLASSES[i % 3], _jpeg(photo(rng, *SIZES[i % len(SIZES)])))
           for i in range(1, 10)}
    tree = root / "tree"
    for relative, data in train.items():
        (tree / "train" / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / "train" / relative).write_bytes(data)
    (tree / "val").mkdir(parents=True)
    for name, (_, data) in val.items():
        (tree / "val" / name).write_bytes(data)
    labels = root / "LOC_val_solution.csv"
    rows = [f"{name.removesuffix('.JPEG')},{wnid} 10 20 200 300" for name, (wnid, _) in val.items()]
    labels.write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")

    archives = root / "archives"
    archives.mkdir()
    with tarfile.open(archives / "ILSVRC2012_img_train.tar", "w", format=tarfile.GNU_FORMAT) as outer:
        for wnid in CLASSES:
            inner_bytes = io.BytesIO()
            with tarfile.open(fileobj=inner_bytes, mode="w", format=tarfile.GNU_FORMAT) as inner:
                for relative, data in sorted(train.items()):
                    if relative.startswith(wnid + "/"):
                        _add(inner, relative.split("/", 1)[1], data)
                if wnid == CLASSES[0]:
                    _add(inner, "../escape.JPEG", train[f"{wnid}/{wnid}_0.JPEG"])  # a path-traversal member
            _add(outer, f"{wnid}.tar", inner_bytes.getvalue())
    with tarfile.open(archives / "ILSVRC2012_img_val.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        for name, (_, data) in sorted(val.items()):
            _add(tar, name, data)
    return SmallImagenet(tree, labels, archives / "ILSVRC2012_img_train.tar", archives / "ILSVRC2012_img_val.tar",
                         good_train=len(train) - len(BAD_TRAIN), good_val=len(val))
