"""A training process for the backup kill tests.

    python tests/support/workers/backup_kill.py train BACKUP_DIR OUT.npz [EPOCH PHASE]
    python tests/support/workers/backup_kill.py resume OUT_DIR BACKUP_DIR...

`train` trains a masked network for 3 epochs with `fit_and_evaluate`, backing up
into BACKUP_DIR, and saves its final variables to OUT.npz. It prints `save-begin EPOCH T`,
`phase EPOCH PHASE T` and `save-end EPOCH T` (T: time.monotonic()) around and inside every backup
write, so a caller can kill it at chosen instants. Given EPOCH and PHASE, it SIGKILLs itself at
that phase of that epoch's write (PHASES), exactly there, however busy the machine is.

`resume` starts each given backup folder again, as a new job would, saves each run's final
variables to OUT_DIR/<folder name>.npz and prints `trained <folder name> <epochs>`.

The network is the config group `model=$LTH_KILL_MODEL`: LeNet-300-100 by default, whose process
starts and traces in 7 s where the tiny MobileNetV2's takes 18 (the write protocol is the same for
both; `benchmarks/backup_kill_sweep.py` kills the tiny MobileNetV2, BatchNorm statistics and all).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lth.training import backup, fitting

EPOCHS = 3
# The phases of one backup write (lth.training.backup.SignalSafeBackup._save_model), in order.
PHASES = (
    "folder-made",  # generation-N.partial/ exists, empty
    "weights-cut",  # the weights file half-written: the file truncated to half its size, then the kill
    "weights-written",  # the weights file whole, no metadata yet
    "metadata-written",  # both files written, nothing flushed to disk yet
    "flushed",  # both files and the folder flushed, not yet renamed
    "renamed",  # generation-N in place, the older generation not yet removed
    "done",  # the write returned: only generation-N is left
)


def _kill_self() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # no handler, no cleanup, as a node crash or the OOM killer


class MarkedBackup(fitting.SignalSafeBackup):
    """The real backup, its writes marked on stdout and, if asked, killed at one phase (the write is untouched)."""

    kill_at: tuple[int, str] | None = None

    def _phase(self, name: str) -> None:
        print(f"phase {self._current_epoch} {name} {time.monotonic():.6f}", flush=True)
        if self.kill_at == (self._current_epoch, name):
            _kill_self()

    def _save_model(self) -> None:
        print(f"save-begin {self._current_epoch} {time.monotonic():.6f}", flush=True)
        real_save, real_sync, real_rename = self.model.save_weights, backup._sync, Path.rename
        synced: list[Path] = []

        def save_weights(path: str, **kwargs: Any) -> None:
            self._phase("folder-made")
            real_save(path, **kwargs)
            if self.kill_at == (self._current_epoch, "weights-cut"):
                with open(path, "r+b") as handle:
                    handle.truncate(os.path.getsize(path) // 2)
                _kill_self()
            self._phase("weights-written")

        def sync(path: Path) -> None:
            if not synced:
                self._phase("metadata-written")
            synced.append(path)
            real_sync(path)

        def rename(source: Path, target: Any) -> Any:
            self._phase("flushed")
            moved = real_rename(source, target)
            self._phase("renamed")
            return moved

        self.model.save_weights = save_weights  # type: ignore[method-assign]
        backup._sync, Path.rename = sync, rename  # type: ignore[method-assign]
        try:
            super()._save_model()
        finally:
            self.model.save_weights, backup._sync, Path.rename = real_save, real_sync, real_rename  # type: ignore[method-assign]
        self._phase("done")
        print(f"save-end {self._current_epoch} {time.monotonic():.6f}", flush=True)


def _network_and_data() -> tuple[Any, Any]:
    from hydra import compose, initialize_config_dir

    from lth.config.cell import Cell
    from lth.data import load_data
    from lth.training.network import MaskedNetwork

    config_dir = Path(__file__).resolve().parents[3] / "conf"
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cell = Cell.of(compose(config_name="train", overrides=[
            f"model={os.environ.get('LTH_KILL_MODEL', 'lenet_300_100')}", "data.train_limit=96", "train.batch_size=32",
            f"train.epochs={EPOCHS}"]))
    data = load_data(cell.data, 32, 0)
    return MaskedNetwork(cell.model, cell.train, data.steps_per_epoch), data


def _train(network: Any, data: Any, backup_dir: Path) -> tuple[dict[str, np.ndarray], int]:
    """(final variables, epochs trained) of one job that backs up into `backup_dir`."""
    network.load(network.initial_weights, None, start_epoch=0)  # every job starts from the same initial state
    result = fitting.fit_and_evaluate(network.model, data, EPOCHS, 0, backup_dir, lambda *_: None, 0)
    return network.snapshot(), result.epochs_trained


def main(mode: str, first: str, *rest: str) -> None:
    network, data = _network_and_data()
    if mode == "train":
        if rest[1:]:
            MarkedBackup.kill_at = (int(rest[1]), rest[2])
            assert rest[2] in PHASES, f"unknown phase {rest[2]!r}; one of {PHASES}"
        fitting.SignalSafeBackup = MarkedBackup  # fit_and_evaluate builds its backup from this name
        np.savez(rest[0], **_train(network, data, Path(first))[0])
        return
    for backup_dir in map(Path, rest):
        try:
            weights, trained = _train(network, data, backup_dir)
            np.savez(Path(first) / f"{backup_dir.name}.npz", **weights)
            print(f"trained {backup_dir.name} {trained}", flush=True)
        except Exception as error:  # noqa: BLE001 - each backup is judged on its own, the test lists the failures
            print(f"failed {backup_dir.name}: {type(error).__name__}: {str(error)[:300]}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
