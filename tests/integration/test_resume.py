"""A run interrupted after an epoch and started again ends bit-identical to an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from lth.config.cell import Cell
from lth.data import load_data
from lth.training.fitting import fit_and_evaluate
from lth.training.network import MaskedNetwork


class DieAfter(keras.callbacks.Callback):
    """Simulates a preempted job: raises once `epochs` epochs (and their backups) are done."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt("preempted")


@pytest.fixture(scope="module")
def setup() -> tuple[object, object, MaskedNetwork]:
    from hydra import compose, initialize_config_dir

    from tests.support.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = Cell.of(compose(config_name="train", overrides=["data.train_limit=96", "train.batch_size=32",
                                                             "train.epochs=3"]))
    data = load_data(cfg.data, 32, 0)
    return cfg, data, MaskedNetwork(cfg.model, cfg.train, data.steps_per_epoch)


def _batches(data: object, epoch: int) -> np.ndarray:
    data.begin_epoch(epoch)
    return np.concatenate([labels.numpy() for _, labels in data.train])


def test_training_order_is_a_function_of_the_epoch(setup: tuple[object, object, MaskedNetwork]) -> None:
    _, data, _ = setup
    first, second = _batches(data, 0), _batches(data, 1)
    assert len(first) == 96 and not np.array_equal(first, second)
    np.testing.assert_array_equal(_batches(data, 0), first)  # same epoch, same order, from any new iterator
    np.testing.assert_array_equal(_batches(load_data(setup[0].data, 32, 0), 0), first)  # and in another process


def test_resumed_run_ends_exactly_where_an_uninterrupted_one_does(
    setup: tuple[object, object, MaskedNetwork], tmp_path: Path
) -> None:
    _, data, network = setup
    network.load(network.initial_weights, None, start_epoch=0)
    straight = fit_and_evaluate(network.model, data, 3, 0, tmp_path / "straight", lambda *_: None, 0)
    expected = network.snapshot()

    network.load(network.initial_weights, None, start_epoch=0)
    backup = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        fit_and_evaluate_with(network, data, backup, DieAfter(1))
    assert backup.is_dir()  # the backup of epoch 1 survived the interruption
    network.load(network.initial_weights, None, start_epoch=0)  # a new job starts from scratch...
    resumed = fit_and_evaluate(network.model, data, 3, 0, backup, lambda *_: None, 0)  # ...and resumes
    assert resumed.epochs_trained == 2
    for path, value in network.snapshot().items():
        np.testing.assert_array_equal(value, expected[path], err_msg=path)
    assert resumed.test_accuracy == straight.test_accuracy and resumed.test_loss == straight.test_loss


def fit_and_evaluate_with(network: MaskedNetwork, data: object, backup: Path, extra: keras.callbacks.Callback) -> None:
    """`fit_and_evaluate`'s callbacks plus `extra` last, so the backup is written before it fires."""
    from lth.training.backup import SignalSafeBackup
    from lth.training.fitting import EpochEnd, EpochOrder

    network.model.fit(data.train, validation_data=data.val, epochs=3, initial_epoch=0, verbose=0, shuffle=False, callbacks=[
        EpochOrder(data, 0, 3), EpochEnd(lambda *_: None), SignalSafeBackup(str(backup)), extra])


def test_a_preemption_signal_waits_until_the_backup_is_written() -> None:
    import os
    import signal
    import time

    from lth.training.backup import signals_deferred

    events: list[str] = []
    previous = signal.signal(signal.SIGUSR2, lambda *_: events.append("signal handled"))
    try:
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGUSR2)  # what SLURM sends on preemption
            time.sleep(0.05)
            events.append("backup written")
        time.sleep(0.05)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert events == ["backup written", "signal handled"]
