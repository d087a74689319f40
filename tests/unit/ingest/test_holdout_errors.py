"""A holdout or source that leaves no training image ends the ingest in one `lth: error:` line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from lth.config.vocabulary import ConfigError
from lth.ingest.holdout import held_out_keys
from lth.ingest.inventory import Inventory, Locator, SourceRecord, checked
from tests.support.paths import REPO_ROOT


def _record(split: str, wnid: str, name: str) -> SourceRecord:
    return SourceRecord(split, wnid, name, Locator("file", f"/nowhere/{name}"))


def _image_folder(root: Path, images_per_class: dict[str, int]) -> Path:
    """`root/<class>/<n>.png`: a class-folder source with that many tiny images in each class."""
    for wnid, count in images_per_class.items():
        (root / wnid).mkdir(parents=True)
        for index in range(count):
            Image.new("RGB", (8, 8), (index * 40, 0, 0)).save(root / wnid / f"{index}.png")
    return root


@pytest.fixture
def java_17(tmp_path: Path) -> Path:
    """A JAVA_HOME whose bin/java reports version 17, so the entry point gets past its Java check on any machine.

    Every failure here comes before Spark would start, so the stand-in is never run for real.
    """
    home = tmp_path / "java-home"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text("#!/bin/sh\necho 'openjdk version \"17.0.15\" 2025-04-15' >&2\n")
    java.chmod(0o755)
    return home


def _ingest(tmp_path: Path, java_home: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    """`python tools/ingest.py ...` as a user types it, with its output and Hydra's logs under tmp_path."""
    return subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "ingest.py"), f"output={tmp_path / 'shards'}",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides],
                          cwd=tmp_path, env=os.environ | {"JAVA_HOME": str(java_home)}, capture_output=True, text=True,
                          timeout=120)


def test_holding_out_from_a_split_with_no_training_image_names_the_problem() -> None:
    only_val = [_record("val", "a", "v0.png"), _record("val", "b", "v1.png")]
    with pytest.raises(ConfigError, match=r"^holdout_per_class=1 has no training images to hold out from"):
        held_out_keys(only_val, 1, seed=0)
    assert held_out_keys(only_val, 0, seed=0) == frozenset()  # no holdout asked for: nothing to complain about


@pytest.mark.parametrize("per_class, message", [
    (2, r"^holdout_per_class=2 leaves class a \(2 training images listed\) with none to train on: "
        r"set holdout_per_class to at most 1$"),
    (-1, r"^holdout_per_class must be >= 0 \(0: no holdout\), got -1$"),
])
def test_a_holdout_that_leaves_no_training_image_is_a_config_error(per_class: int, message: str) -> None:
    records = [_record("train", "a", "a0.png"), _record("train", "a", "a1.png"),
               _record("train", "b", "b0.png"), _record("train", "b", "b1.png"), _record("train", "b", "b2.png")]
    with pytest.raises(ConfigError, match=message):
        held_out_keys(records, per_class, seed=0)


def test_a_source_with_no_training_image_is_a_config_error() -> None:
    inventory = Inventory(records=[_record("val", "a", "v0.png")])
    with pytest.raises(ConfigError, match=r"^the source has no training images"):
        checked(inventory)


@pytest.mark.parametrize(("images", "holdout", "message"), [
    ({"a": 2, "b": 3}, 2, "holdout_per_class=2 leaves class a (2 training images listed) with none to train on: "
                          "set holdout_per_class to at most 1"),
    ({"a": 0, "b": 0}, 1, "the source has no training images (0 validation images and 0 rejected inputs listed): the "
                          "source's training folder, archive or URL list must hold images of at least one class"),
], ids=["holdout-of-every-image", "empty-train-split"])  # class folders with no image in any: an empty train split
def test_the_ingest_refuses_a_source_with_no_training_image_left_in_one_line(
        tmp_path: Path, java_17: Path, images: dict[str, int], holdout: int, message: str) -> None:
    train = _image_folder(tmp_path / "train", images)
    done = _ingest(tmp_path, java_17, "source=folder", f"source.train={train}", f"holdout_per_class={holdout}")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == f"lth: error: {message}"
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "shards").exists()  # refused while planning, before a shard or receipt was written
