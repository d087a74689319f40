"""A training process for the backup kill test: `train BACKUP_DIR OUT.npz` or `resume OUT_DIR BACKUP_DIR...`.

`train` trains the tiny masked MobileNetV2 for 3 epochs with `fit_and_evaluate` and prints
`save-begin EPOCH` and `save-end EPOCH` on stdout around every backup write, so the test can
SIGKILL it at chosen instants inside a write. `resume` starts each given backup folder again,
as a new job would, and saves each run's final variables to OUT_DIR/<folder name>.npz.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from lth.training import fitting

EPOCHS = 3


class MarkedBackup(fitting.SignalSafeBackup):
    """The real backup, with its writes marked on stdout (the writes themselves are untouched)."""

    def _save_model(self) -> None:
        print(f"save-begin {self._current_epoch} {time.monotonic():.6f}", flush=True)
        super()._save_model()
        print(f"save-end {self._current_epoch} {time.monotonic():.6f}", flush=True)


def _network_and_data() -> tuple[object, object]:
    from hydra import compose, initialize_config_dir

    from lth.cell import Cell
    from lth.data import load_data
    from lth.training.network import MaskedNetwork

    config_dir = Path(__file__).resolve().parents[3] / "conf"
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cell = Cell.of(compose(config_name="train", overrides=[
            "data.train_limit=96", "train.batch_size=32", f"train.epochs={EPOCHS}"]))
    data = load_data(cell.data, 32, 0)
    return MaskedNetwork(cell.model, cell.train, data.steps_per_epoch), data


def _train(network: object, data: object, backup: Path) -> dict[str, np.ndarray]:
    network.load(network.initial_weights, None, start_epoch=0)  # every job starts from the same initial state
    fitting.fit_and_evaluate(network.model, data, EPOCHS, 0, backup, lambda *_: None, 0)
    return network.snapshot()


def main(mode: str, first: str, *rest: str) -> None:
    network, data = _network_and_data()
    if mode == "train":
        fitting.SignalSafeBackup = MarkedBackup  # fit_and_evaluate builds its backup from this name
        np.savez(rest[0], **_train(network, data, Path(first)))
        return
    for backup in map(Path, rest):
        try:
            np.savez(Path(first) / f"{backup.name}.npz", **_train(network, data, backup))
        except Exception as error:  # noqa: BLE001 - each backup is judged on its own, the test lists the failures
            print(f"failed {backup.name}: {type(error).__name__}: {str(error)[:300]}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
