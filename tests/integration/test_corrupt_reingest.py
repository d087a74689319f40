"""A shard damaged after a real Spark ingest: the run fails FAILED naming it, and the printed command repairs it.

The whole loop a user goes through: `python -m lth.train` stops in its first epoch with the
line naming the shard and the command, the dense run is FAILED in MLflow with that line, and
the command itself (run as printed, from the repository root) rewrites that shard and no other.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.jobs import lth_env, run_lth
from tests.support.paths import REPO_ROOT
from tests.support.small_imagenet import make_small_imagenet
from tests.support.store import runs

pytestmark = pytest.mark.slow  # a SparkSession, two lth and ingest processes: about a minute and a half on 2 cores

RECEIPT_TEXT = "(the ingest rewrites only shards that no longer match their receipts): "


def _ingest_config(*overrides: str) -> Any:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose(config_name="ingest", overrides=list(overrides))


def _shards(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {path.name: (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(folder.iterdir()) if path.name.startswith(("train-", "val-"))}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lth.ingest import run_ingest
    from lth.ingest.run import spark_session

    imagenet = make_small_imagenet(tmp_path_factory.mktemp("imagenet"))
    output = tmp_path_factory.mktemp("ingest") / "shards"
    spark = spark_session(_ingest_config("spark.master='local[2]'", "+spark.conf.spark.ui.enabled=false").spark)
    try:
        run_ingest(_ingest_config("source=tree", f"source.root={imagenet.tree}", f"source.val_labels={imagenet.val_labels}",
                                  f"output={output}", "shards.train=3", "shards.val=2"), spark=spark)
    finally:
        spark.stop()
    return output


def test_a_damaged_shard_fails_the_run_and_the_printed_command_rewrites_only_it(ingested: Path, tmp_path: Path) -> None:
    manifest = json.loads((ingested / "manifest.json").read_text())
    before = _shards(ingested)
    damaged = ingested / "train-00002-of-00003"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 3] ^= 0x01  # one bit inside a record: same size, so only its checksum (or CRC) can tell
    damaged.write_bytes(bytes(data))

    done = run_lth(tmp_path, "data=imagenet", f"data.path={ingested}", "data.num_classes=3", "model=mobilenet_v2_tiny",
                   "train.epochs=1", "train.batch_size=8", "prune.threshold=0.5", "reset.epoch=0", "lth.verbose=2")
    printed = done.stdout + done.stderr
    assert done.returncode != 0, printed[-3000:]
    line = printed.split("assertion failed: [", 1)[1].split("]\n", 1)[0]
    assert line.startswith(f"shard {damaged} is corrupt (its SHA-256 is not the one manifest.json lists: "
                           f"a damaged or replaced file); re-ingest it {RECEIPT_TEXT}python tools/ingest.py source=tree ")
    (dense,) = runs(tmp_path)
    assert dense.info.status == "FAILED" and line in dense.data.tags["lth.error"]

    command = shlex.split(line.split(RECEIPT_TEXT, 1)[1])
    assert command[:2] == ["python", "tools/ingest.py"]
    repaired = subprocess.run([sys.executable, *command[1:], f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=REPO_ROOT,
                              env=lth_env(), capture_output=True, text=True, timeout=600, check=False)
    assert repaired.returncode == 0, (repaired.stdout + repaired.stderr)[-3000:]
    assert "4 of 5 shards already complete" in repaired.stdout + repaired.stderr
    assert json.loads((ingested / "manifest.json").read_text()) == manifest
    after = _shards(ingested)
    assert after[damaged.name][0] == before[damaged.name][0]  # the same bytes as the first ingest wrote
    assert {n: s for n, s in after.items() if n != damaged.name} == {n: s for n, s in before.items() if n != damaged.name}
