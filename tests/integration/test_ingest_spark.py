"""The Spark ingest end to end, on a real local SparkSession: sources agree, URLs, a killed ingest resumed."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import CONFIG_DIR, REPO_ROOT
from tests.support.small_imagenet import BAD_TRAIN, CLASSES, ESCAPE_KEY, SmallImagenet, make_small_imagenet

pytestmark = pytest.mark.slow  # a SparkSession and TensorFlow in its workers: about a minute for the module

SMALL_SHARDS = ["shards.train=3", "shards.val=2", "download.per_host_interval_s=0"]


def ingest_config(*overrides: str) -> Any:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="ingest", overrides=list(overrides))


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from lth.ingest.run import spark_session

    session = spark_session(ingest_config("spark.master='local[2]'", "+spark.conf.spark.ui.enabled=false").spark)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory: pytest.TempPathFactory) -> SmallImagenet:
    return make_small_imagenet(tmp_path_factory.mktemp("imagenet"))


def _files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*")}


def _shards(manifest: dict[str, Any]) -> dict[str, str]:
    return {shard["file"]: shard["sha256"] for split in manifest["splits"].values() for shard in split["shards"]}


@pytest.fixture(scope="module")
def tree_shards(spark: Any, imagenet: SmallImagenet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lth.ingest import run_ingest

    output = tmp_path_factory.mktemp("from-tree") / "shards"
    cfg = ingest_config("source=tree", f"source.root={imagenet.tree}", f"source.val_labels={imagenet.val_labels}",
                        f"output={output}", *SMALL_SHARDS)
    run_ingest(cfg, spark=spark)
    return output


@pytest.fixture(scope="module")
def tree_manifest(tree_shards: Path) -> dict[str, Any]:
    return json.loads((tree_shards / "manifest.json").read_text())


HOLDOUT = ["holdout_per_class=2", "shards.holdout=2"]


@pytest.fixture(scope="module")
def holdout_shards(spark: Any, imagenet: SmallImagenet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lth.ingest import run_ingest

    output = tmp_path_factory.mktemp("holdout") / "shards"
    cfg = ingest_config("source=tree", f"source.root={imagenet.tree}", f"source.val_labels={imagenet.val_labels}",
                        f"output={output}", *SMALL_SHARDS, *HOLDOUT)
    run_ingest(cfg, spark=spark)
    return output


def _keys_and_labels(folder: Path, split: str) -> list[tuple[str, int]]:
    """(key, label) of every record of a split, read back from its shard files in manifest order."""
    import tensorflow as tf

    features = {name: tf.io.FixedLenFeature([], dtype) for name, dtype in (
        ("image/class/synset", tf.string), ("image/filename", tf.string), ("image/class/label", tf.int64))}
    files = [str(folder / shard["file"])
             for shard in json.loads((folder / "manifest.json").read_text())["splits"][split]["shards"]]
    pairs = []
    for record in tf.data.TFRecordDataset(files):
        example = tf.io.parse_single_example(record, features)
        synset, name = example["image/class/synset"].numpy().decode(), example["image/filename"].numpy().decode()
        pairs.append((f"train/{synset}/{name}" if split != "val" else f"val/{name}", int(example["image/class/label"])))
    return pairs


def test_holdout_has_n_per_class_is_disjoint_from_train_and_the_counts_add_up(
        holdout_shards: Path, tree_shards: Path, tree_manifest: dict[str, Any]) -> None:
    manifest = json.loads((holdout_shards / "manifest.json").read_text())
    train, holdout = manifest["splits"]["train"], manifest["splits"]["holdout"]
    assert holdout["classes"] == dict.fromkeys(CLASSES, 2) and holdout["images"] == 6
    assert [shard["file"] for shard in holdout["shards"]] == ["holdout-00000-of-00002", "holdout-00001-of-00002"]
    assert all(set(shard) == {"file", "images", "sha256", "bytes"} for shard in holdout["shards"])
    assert {wnid: train["classes"][wnid] + holdout["classes"][wnid] for wnid in CLASSES} == \
        tree_manifest["splits"]["train"]["classes"]  # train + holdout == every class's total
    assert train["images"] + holdout["images"] == tree_manifest["splits"]["train"]["images"]
    assert manifest["splits"]["val"] == tree_manifest["splits"]["val"]  # the official val is untouched
    assert manifest["settings"]["holdout_per_class"] == 2 and manifest["rejected"] == tree_manifest["rejected"]
    held, trained = _keys_and_labels(holdout_shards, "holdout"), _keys_and_labels(holdout_shards, "train")
    assert len(held) == 6 and not {key for key, _ in held} & {key for key, _ in trained}  # disjoint by key
    assert sorted(held + trained) == sorted(_keys_and_labels(tree_shards, "train"))  # the same images and labels


def test_holdout_switched_on_and_off_an_existing_output_gives_a_fresh_ingests_shards(
        spark: Any, imagenet: SmallImagenet, tree_shards: Path, holdout_shards: Path, tmp_path: Path) -> None:
    import shutil

    from lth.ingest import run_ingest

    output = tmp_path / "shards"
    shutil.copytree(tree_shards, output)  # an ingest without holdout, then the option changes
    tree = ("source=tree", f"source.root={imagenet.tree}", f"source.val_labels={imagenet.val_labels}", f"output={output}")
    with_holdout = run_ingest(ingest_config(*tree, *SMALL_SHARDS, *HOLDOUT), spark=spark)
    assert with_holdout == json.loads((holdout_shards / "manifest.json").read_text())  # identical to a fresh ingest
    assert _files(output) == _files(holdout_shards)  # no stale shard or receipt is left
    without = run_ingest(ingest_config(*tree, *SMALL_SHARDS), spark=spark)
    assert without == json.loads((tree_shards / "manifest.json").read_text()) and _files(output) == _files(tree_shards)


def test_tree_ingest_counts_labels_and_rejects_exactly_the_bad_files(tree_manifest: dict[str, Any],
                                                                     imagenet: SmallImagenet) -> None:
    assert tree_manifest["labels"] == {wnid: index for index, wnid in enumerate(CLASSES)}
    train, val = tree_manifest["splits"]["train"], tree_manifest["splits"]["val"]
    assert (train["images"], val["images"]) == (imagenet.good_train, imagenet.good_val)
    assert train["classes"] == {CLASSES[0]: 10, CLASSES[1]: 9, CLASSES[2]: 9} and val["classes"] == dict.fromkeys(CLASSES, 3)
    assert [shard["file"] for shard in train["shards"]] == [f"train-{i:05d}-of-00003" for i in range(3)]
    assert sum(shard["images"] for shard in train["shards"]) == imagenet.good_train
    rejected = {item["key"]: item["reason"] for item in tree_manifest["rejected"]}
    assert sorted(rejected) == sorted(BAD_TRAIN)
    assert all(word in rejected[key] for key, word in BAD_TRAIN.items())


def test_official_tars_give_identical_shards_and_write_nothing_else(
        spark: Any, imagenet: SmallImagenet, tree_manifest: dict[str, Any], tmp_path: Path) -> None:
    from lth.ingest import run_ingest

    before = _files(imagenet.tree.parent)
    output = tmp_path / "shards"
    cfg = ingest_config("source=archives", f"source.train_archive={imagenet.train_archive}",
                        f"source.val_archive={imagenet.val_archive}", f"source.val_labels={imagenet.val_labels}",
                        f"output={output}", *SMALL_SHARDS)
    manifest = run_ingest(cfg, spark=spark)
    assert _shards(manifest) == _shards(tree_manifest)  # byte-identical shards whatever the source
    assert manifest["splits"] == tree_manifest["splits"]
    rejected = {item["key"]: item["reason"] for item in manifest["rejected"]}
    assert sorted(rejected) == sorted([*BAD_TRAIN, ESCAPE_KEY]) and "OutsideDestination" in rejected[ESCAPE_KEY]
    assert _files(imagenet.tree.parent) == before  # nothing extracted next to the archives
    assert _files(tmp_path) - {"shards"} == {f"shards/{name}" for name in _files(output)}  # only the output folder
    assert not list(tmp_path.parent.rglob("escape.JPEG")) and not (REPO_ROOT / "escape.JPEG").exists()


def _held_until_closed(connection: socket.socket, limit_s: float) -> bool:
    """Answer nothing until the client closes `connection` (True) or `limit_s` has passed (False)."""
    deadline = time.monotonic() + limit_s
    while (left := deadline - time.monotonic()) > 0:
        if select.select([connection], [], [], left)[0]:
            try:
                if not connection.recv(4096):  # end of stream: the client hung up
                    return True
            except ConnectionError:
                return True
    return False


@dataclass(frozen=True)
class Stall:
    """A request the test server held without answering."""

    path: str
    held_s: float  # from its arrival until the client hung up (or the server's limit)
    closed_by_client: bool  # False: the server's limit ended it, so the client waited that long


@dataclass
class HttpTree:
    """The small ImageNet tree over HTTP on 127.0.0.1, with stalls the test chooses and sees.

    Requests under /slow/ and for any path in `stalling` get no answer until the client hangs up,
    like a stalled server; each is recorded in `stalls` when it ends.
    """

    url: str = ""
    stalling: set[str] = field(default_factory=set)
    stalls: list[Stall] = field(default_factory=list)
    open_stalls: int = 0  # stalls under way
    changed: threading.Condition = field(default_factory=threading.Condition)  # notified as a stall begins or ends

    def wait_for_a_stall(self, timeout: float) -> bool:
        """Whether a stall is under way within `timeout`."""
        with self.changed:
            return self.changed.wait_for(lambda: self.open_stalls > 0, timeout)

    def wait_until_no_stall(self, timeout: float) -> bool:
        """Whether every stall has ended (and is in `stalls`) within `timeout`."""
        with self.changed:
            return self.changed.wait_for(lambda: self.open_stalls == 0, timeout)


class _Handler(SimpleHTTPRequestHandler):
    """Serves the tree; stalls where `tree` says."""

    tree: HttpTree
    STALL_LIMIT_S = 600  # a stall ends by itself after this long, whatever the client does

    def do_GET(self) -> None:  # noqa: N802 (the http.server naming)
        tree = self.tree
        if self.path.startswith("/slow/") or self.path in tree.stalling:
            arrived = time.monotonic()
            with tree.changed:
                tree.open_stalls += 1
                tree.changed.notify_all()
            closed = _held_until_closed(self.connection, self.STALL_LIMIT_S)
            with tree.changed:
                tree.stalls.append(Stall(self.path, time.monotonic() - arrived, closed))
                tree.open_stalls -= 1
                tree.changed.notify_all()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_tree(imagenet: SmallImagenet) -> Iterator[HttpTree]:
    tree = HttpTree()
    handler = type("Handler", (_Handler,), {"tree": tree})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(imagenet.tree)))  # the kernel's port
    server.daemon_threads = True  # a stalled handler must not hold the test's end
    tree.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tree
    server.shutdown()
    server.server_close()


def _url_lists(imagenet: SmallImagenet, root: str, folder: Path, *extra_train: str) -> tuple[Path, Path]:
    """URL lists (train, val) of the tree's files served at `root`, plus `extra_train` lines."""
    train_lines = [f"{p.parent.name}\t{root}/train/{p.parent.name}/{p.name}"
                   for p in sorted((imagenet.tree / "train").rglob("*.JPEG"))]
    labels = {row.split(",")[0] + ".JPEG": row.split(",")[1].split()[0]
              for row in imagenet.val_labels.read_text().splitlines()[1:]}
    val_lines = [f"{labels[p.name]}\t{root}/val/{p.name}" for p in sorted((imagenet.tree / "val").iterdir())]
    (folder / "train.txt").write_text("\n".join([*train_lines, *extra_train]) + "\n")
    (folder / "val.txt").write_text("\n".join(val_lines) + "\n")
    return folder / "train.txt", folder / "val.txt"


def test_url_lists_download_the_same_shards_and_reject_404s_and_stalls(
        spark: Any, imagenet: SmallImagenet, tree_manifest: dict[str, Any], http_tree: HttpTree, tmp_path: Path) -> None:
    from lth.ingest import run_ingest

    root = http_tree.url
    train, val = _url_lists(imagenet, root, tmp_path, f"{CLASSES[0]}\t{root}/train/{CLASSES[0]}/gone_404.JPEG",
                            f"{CLASSES[1]}\t{root}/slow/stalled.JPEG")
    retries = 1
    cfg = ingest_config("source=urls", f"source.train_urls={train}", f"source.val_urls={val}",
                        f"output={tmp_path / 'shards'}", *SMALL_SHARDS,
                        "download.read_timeout_s=1", f"download.retries={retries}", "download.backoff_s=0.1")
    manifest = run_ingest(cfg, spark=spark)
    assert http_tree.wait_until_no_stall(timeout=60)  # the last hang-up may reach the server after the ingest's end
    # The stalled server would hold each attempt for 10 minutes: the client's read timeout hung up on every
    # one (the server never answered), and retried as configured.
    assert [(stall.path, stall.closed_by_client) for stall in http_tree.stalls] == \
        [("/slow/stalled.JPEG", True)] * (retries + 1), http_tree.stalls
    rejected = {item["key"]: item["reason"] for item in manifest["rejected"]}
    assert sorted(rejected) == sorted([*BAD_TRAIN, f"train/{CLASSES[0]}/gone_404.JPEG", f"train/{CLASSES[1]}/stalled.JPEG"])
    assert rejected[f"train/{CLASSES[0]}/gone_404.JPEG"].startswith("HTTP 404")
    assert "timed out" in rejected[f"train/{CLASSES[1]}/stalled.JPEG"]
    assert _shards(manifest) == _shards(tree_manifest)  # the failures changed no shard


KILLED_SHARDS = 28  # one or a few images each, so a kill leaves complete shards, a partial one and unstarted ones


def _ingest_overrides(train_urls: Path, output: Path) -> list[str]:
    return ["source=urls", f"source.train_urls={train_urls}", f"output={output}", f"shards.train={KILLED_SHARDS}",
            "spark.master='local[1]'"]


def _held_record(cfg: Any) -> tuple[str, str]:
    """(shard file, key) of the second image of the first shard, from index 2 on, that has two or more.

    With one task at a time Spark runs tasks in index order, so a download held there leaves shards
    0 and 1 (and any others before it) complete and this one half-written.
    """
    from omegaconf import OmegaConf

    from lth.ingest.fetch import DownloadSettings
    from lth.ingest.images import ImageSettings
    from lth.ingest.inventory import checked
    from lth.ingest.shard_writer import plan_shards
    from lth.ingest.sources import source_inventory

    records, _, labels = checked(source_inventory(cfg.source))
    tasks = plan_shards(records, labels, dict(cfg.shards), int(cfg.shuffle_seed), Path(str(cfg.output)),
                        ImageSettings(**OmegaConf.to_container(cfg.image)),
                        DownloadSettings(**OmegaConf.to_container(cfg.download)))
    task = next(task for task in tasks if task.index >= 2 and len(task.records) >= 2)
    return task.file_name, task.records[1].key


def _group_gone(group: int, timeout: float) -> bool:
    """Whether every process of process group `group` has exited (zombies count as gone) within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (command)": state, ppid, pgrp...
            except (OSError, IndexError):
                continue  # exited while we looked
            alive = alive or (int(fields[2]) == group and fields[0] != "Z")
        if not alive:
            return True
        time.sleep(0.1)
    return False


def test_a_killed_ingest_resumes_to_the_shards_of_an_uninterrupted_one(
        spark: Any, imagenet: SmallImagenet, http_tree: HttpTree, tmp_path: Path) -> None:
    from lth.ingest import run_ingest

    train_urls, _ = _url_lists(imagenet, http_tree.url, tmp_path)
    killed = tmp_path / "killed"
    held_shard, held_key = _held_record(ingest_config(*_ingest_overrides(train_urls, killed)))
    http_tree.stalling.add(f"/{held_key}")  # the download the job will be killed in
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, str(REPO_ROOT / "tools" / "ingest.py"), *_ingest_overrides(train_urls, killed),
               "download.read_timeout_s=900", f"hydra.sweep.dir={tmp_path / 'sweep'}"]  # never gives up on the stall
    with (tmp_path / "killed.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not http_tree.wait_for_a_stall(timeout=1):  # then the job waits in that download: the kill cannot race it
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "killed.log").read_text()[-3000:]
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver, its JVM and the Python workers, mid-shard
        process.wait(timeout=60)
    assert _group_gone(process.pid, timeout=60), "a process of the killed ingest is still running"
    assert http_tree.wait_until_no_stall(timeout=60)
    assert [(stall.path, stall.closed_by_client) for stall in http_tree.stalls] == [(f"/{held_key}", True)]
    http_tree.stalling.clear()  # the server answers again
    done = sorted(path.stem for path in (killed / ".ingest").glob("*.json"))
    assert held_shard not in done and len(done) >= 2 and not (killed / "manifest.json").exists()
    leftovers = [path.name for path in (killed / ".ingest").glob("*.tmp-*")]
    assert [name.split(".tmp-")[0] for name in leftovers] == [held_shard], leftovers  # killed while writing it
    untouched = {name: (killed / name).stat().st_mtime_ns for name in done}

    resumed = run_ingest(ingest_config(*_ingest_overrides(train_urls, killed)), spark=spark)
    fresh = run_ingest(ingest_config(*_ingest_overrides(train_urls, tmp_path / "fresh")), spark=spark)
    assert _shards(resumed) == _shards(fresh) and resumed == fresh
    assert resumed["splits"]["train"]["images"] == imagenet.good_train  # nothing lost, nothing counted twice
    assert {name: (killed / name).stat().st_mtime_ns for name in done} == untouched  # complete shards were skipped
    assert not list((killed / ".ingest").glob("*.tmp-*"))


def test_lth_trains_a_ticket_from_the_shards_validating_on_the_holdout(holdout_shards: Path, tmp_path: Path) -> None:
    from tests.support.jobs import run_lth
    from tests.support.store import by_role, runs

    done = run_lth(tmp_path, "data=imagenet", f"data.path={holdout_shards}", "data.num_classes=3", "data.val_split=holdout",
                   "model=mobilenet_v2_tiny", "train.epochs=2", "train.batch_size=8", "prune.threshold=0.5",
                   "reset.epoch=1", "lth.verbose=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    printed = done.stdout + done.stderr
    assert "data imagenet: 22 train / 6 holdout / 9 val images, 3 classes, 3 + 2 + 2 shards, 32x32; " \
           "validates on holdout, tests on val" in printed and "winners will be chosen on the test split" not in printed
    dense, tickets = by_role(runs(tmp_path))
    assert len(dense) == 1 and len(tickets) == 1
    assert {run.info.status for run in dense + tickets} == {"FINISHED"}
    assert tickets[0].data.metrics["epochs_trained"] == 1 and "test_accuracy" in tickets[0].data.metrics
    assert tickets[0].data.metrics["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_shards_do_not_depend_on_the_process_that_wrote_them(tree_shards: Path, imagenet: SmallImagenet,
                                                             tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from lth.ingest.fetch import DownloadSettings
    from lth.ingest.images import ImageSettings
    from lth.ingest.inventory import checked
    from lth.ingest.shard_writer import plan_shards, write_shard
    from lth.ingest.sources import source_inventory

    cfg = ingest_config("source=tree", f"source.root={imagenet.tree}", f"source.val_labels={imagenet.val_labels}",
                        f"output={tmp_path}", *SMALL_SHARDS)
    records, _, labels = checked(source_inventory(cfg.source))
    tasks = plan_shards(records, labels, dict(cfg.shards), 0, tmp_path, ImageSettings(**OmegaConf.to_container(cfg.image)),
                        DownloadSettings(**OmegaConf.to_container(cfg.download)))
    write_shard(tasks[0])  # here, in the test's process, not in a Spark worker
    assert (tmp_path / tasks[0].file_name).read_bytes() == (tree_shards / tasks[0].file_name).read_bytes()
