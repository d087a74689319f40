"""Reading shards so that a damaged one fails the epoch with one line naming it, never hangs or shortens it.

What TensorFlow 2.21 does on its own: `TFRecordDataset` checks every record's CRCs and raises
`DataLossError` ("corrupted record at 597", "truncated record at 1053") without naming the
file; a file cut at a record boundary just ends early, silently; and `ignore_errors()`, the
only way to catch an error inside tf.data, retries a file that cannot be opened forever
(measured: a missing file hangs the reader). So nothing here catches errors. Instead:

- before a shard's first record is read, a check (one Python call per shard per epoch) stats
  it: present, and the size the manifest lists; the first time a file version is opened in
  the process (its inode, size and mtime), its SHA-256 is compared with the manifest's too.
  That hash is one extra read of each shard per job, of a file the reader reads next, so
  the page cache serves the reader;
- after its records, every shard carries a sentinel that fails the epoch if it is reached,
  that is, if the file ended before the records the pipeline takes from it (a manifest
  promising more than a file holds). `take` stops before the sentinel when the count is
  right, so it costs nothing per record.

A check that fails raises in the pipeline (InvalidArgumentError, "assertion failed: [<line>]"),
which leaves `model.fit`, so the MLflow run ends FAILED with the line in its error tag. What
remains unnamed: a shard damaged after its hash was taken in this process (or whose
manifest has no checksum), which TensorFlow's CRC check stops with its own DataLossError.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

import tensorflow as tf

from lth.data.manifest import ShardSplit, corrupt, size_problem

SHA256_MISMATCH = "its SHA-256 is not the one manifest.json lists: a damaged or replaced file"
SHORT = "it holds fewer records than the {count} manifest.json lists: truncated or damaged"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)  # hashlib releases the GIL for blocks this large
    return digest.hexdigest()


class ShardCheck:
    """The checked reader of the shards of one folder (the splits a job reads), and what it has verified."""

    def __init__(self, splits: Iterable[ShardSplit], hint: str) -> None:
        """Args:
            splits: The splits the pipelines read (a split read twice is checked once).
            hint: The end of every error line: how to re-ingest (`manifest.reingest_hint`).
        """
        self._expected: dict[str, tuple[int, int | None, str | None]] = {}
        for split in splits:
            for file, count, size, checksum in zip(split.files, split.counts, split.sizes, split.checksums):
                self._expected[file] = (count, size, checksum)
        self._hint = hint
        self._hashed: dict[str, tuple[int, int, int]] = {}  # file -> (inode, size, mtime) whose hash matched

    def problem(self, path: str) -> str:
        """The error line for shard `path` as it is on disk now, or "" when it may be read."""
        _, size, checksum = self._expected[path]
        try:
            stat = os.stat(path)
            if reason := size_problem(size, stat.st_size):
                return corrupt(path, reason, self._hint)
            version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if checksum is not None and self._hashed.get(path) != version:
                if _sha256(path) != checksum:
                    return corrupt(path, SHA256_MISMATCH, self._hint)
                self._hashed[path] = version
        except OSError as error:
            return f"shard {path} cannot be read ({error.strerror}); {self._hint}"
        return ""

    def _opened(self, file: tf.Tensor) -> tf.Tensor:
        line = tf.numpy_function(lambda path: self.problem(path.decode()).encode(), [file], tf.string,
                                 stateful=True, name="shard_check")
        with tf.control_dependencies([tf.debugging.Assert(tf.equal(line, ""), [line])]):
            return tf.identity(file)

    def _ended_early(self, file: tf.Tensor) -> tf.Tensor:
        def line(path: bytes) -> bytes:
            name = path.decode()
            return corrupt(name, SHORT.format(count=self._expected[name][0]), self._hint).encode()

        message = tf.numpy_function(line, [file], tf.string, stateful=True, name="shard_ended_early")
        with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
            return tf.identity(file)  # never returned: the assertion fails

    def records(self, file: tf.Tensor, take: tf.Tensor) -> tf.data.Dataset:
        """The first `take` records of shard `file`, failing (never ending early) if it is damaged or short.

        For `interleave` and `flat_map`: their function runs once per shard as its reader is
        made, so the check runs there, in the graph, and adds no stage to the records' path.
        """
        sentinel = tf.data.Dataset.from_tensors(file).map(self._ended_early)
        return tf.data.TFRecordDataset(self._opened(file)).concatenate(sentinel).take(take)
