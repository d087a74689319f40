"""Training backups that neither a signal nor a hard kill can leave half-written.

Keras' `BackupAndRestore` overwrites `latest.weights.h5` in place and then writes the epoch
to `training_metadata.json`. A SIGKILL, an OOM kill or a node crash inside those writes
leaves a truncated HDF5 file, or the new weights beside the previous epoch (resumed, that
trains an epoch twice). Here each backup is a new *generation* folder: both files are
written into `generation-N.partial/`, flushed to disk, and the folder is renamed to
`generation-N` in one step, so a kill at any instant leaves the previous generation or the
new one. Older generations are removed only after the new one is in place.

A run over several processes backs up from process 0 alone, into a folder every process
sees (`lth.state_dir`); every process restores from it, and they check that they restored
the same epoch before training on.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras

from lth.common import processes
from lth.training.devices import on_this_process

WEIGHTS = "latest.weights.h5"  # Keras' own file names, so a generation reads like its backup folder
METADATA = "training_metadata.json"
GENERATION = re.compile(r"generation-(\d+)")


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold the signals SLURM and submitit use (preemption, time limit, cancel) until the block ends.

    Python runs signal handlers in the main thread whichever thread the OS picked, so
    masking is not enough: the handlers are swapped for a recorder and the recorded
    signals are raised again, to the original handlers, when the block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
    previous = {number: signal.signal(number, lambda number, _frame: caught.append(number)) for number in held}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in caught:
            signal.raise_signal(number)


def generations(backup_dir: Path) -> list[tuple[int, Path]]:
    """The complete generations in `backup_dir`, oldest first (a `.partial` folder is never one)."""
    if not backup_dir.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in backup_dir.iterdir()
             if path.is_dir() and (match := GENERATION.fullmatch(path.name))]
    return sorted(found)


def _sync(path: Path) -> None:
    """Flush a file's or a folder's content to the disk (a folder: the names it holds)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class SignalSafeBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, written one whole generation at a time and never cut by a signal.

    submitit exits from its signal handler; the write of a generation defers it (measured
    before: a signal inside the weights write resumed the new weights with the optimizer
    state skipped). A SIGKILL cannot be deferred: the generation rename makes it harmless.
    Backups of older lth versions (Keras' flat files) are still resumed from.

    Args:
        backup_dir: The run's backup folder.
        writer: False on the processes of a group other than 0: they restore, never write.
    """

    def __init__(self, backup_dir: str, writer: bool = True) -> None:
        super().__init__(backup_dir)
        self.writer = writer

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        restored = getattr(self.model, "_initial_epoch", None)
        if processes.current().several:  # a folder only process 0 sees would resume it alone: refuse
            leader = processes.broadcast(restored)
            if leader != restored:
                raise RuntimeError(
                    f"process {processes.current().index} restored the backup of epoch {restored} from "
                    f"{self.backup_dir}, process 0 that of epoch {leader}: lth.state_dir must be one folder "
                    "that every process of the run sees")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.writer:
            self._current_epoch = epoch + 1
            return
        with signals_deferred():
            super().on_epoch_end(epoch, logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.writer:  # process 0 removes the finished run's backup; the others only read it
            super().on_train_end(logs)

    def _save_model(self) -> None:
        root = Path(self.backup_dir)
        root.mkdir(parents=True, exist_ok=True)
        older = generations(root)
        number = older[-1][0] + 1 if older else 1
        partial = root / f"generation-{number}.partial"
        shutil.rmtree(partial, ignore_errors=True)  # left by a job killed while writing it
        partial.mkdir()
        with on_this_process():  # saving builds a throwaway optimizer: outside the distribution, not a collective
            self.model.save_weights(str(partial / WEIGHTS), overwrite=True)
        (partial / METADATA).write_text(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))
        for written in (partial / WEIGHTS, partial / METADATA, partial):
            _sync(written)
        partial.rename(root / f"generation-{number}")  # the one step that makes the new backup the backup
        _sync(root)
        for _, path in older:
            shutil.rmtree(path, ignore_errors=True)

    def _load_model(self) -> None:
        root = Path(self.backup_dir)
        complete = generations(root)
        if not complete:
            super()._load_model()  # none, or Keras' flat files
            return
        flat = self._weights_path, self._training_metadata_path
        newest = complete[-1][1]
        self._weights_path, self._training_metadata_path = str(newest / WEIGHTS), str(newest / METADATA)
        try:
            super()._load_model()
        finally:
            self._weights_path, self._training_metadata_path = flat
