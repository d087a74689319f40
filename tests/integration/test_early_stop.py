"""The early-stop point: the first epoch of minimum finite val_loss, its weights, and its test figures.

A tiny Keras model stands in for a run: before each simulated epoch end its weights are set
to values unique to that epoch, so which epoch's weights were kept can be read off them.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import pytest

from lth.data.pydataset import OrderedBatches
from lth.tracking.schema import early_stop_metrics
from lth.training.early_stop import EarlyStop, EarlyStopPoint

NAN = float("nan")


def _model() -> keras.Model:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(inputs))
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _weights_of(epoch: int, model: keras.Model) -> list[np.ndarray]:
    """Weights unique to a (0-based) epoch: the kernel and bias of a different random draw each time."""
    rng = np.random.default_rng(100 + epoch)
    return [rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()]


def _test_split() -> OrderedBatches:
    rng = np.random.default_rng(0)
    return OrderedBatches((rng.normal(size=(40, 4)).astype(np.float32), rng.integers(0, 3, 40).astype(np.int32)), 16)


def _feed(point: EarlyStopPoint, model: keras.Model, losses: list[float | None], first_epoch: int = 0) -> None:
    """Simulate Keras' fit: set each epoch's weights, then call on_epoch_end with its val_loss."""
    point.set_model(model)
    for epoch, loss in enumerate(losses, start=first_epoch):
        model.set_weights(_weights_of(epoch, model))
        point.on_epoch_end(epoch, {"loss": 1.0} if loss is None else {"loss": 1.0, "val_loss": loss})


def _figures(model: keras.Model, weights: list[np.ndarray], test: OrderedBatches) -> tuple[float, float]:
    keep = model.get_weights()
    model.set_weights(weights)
    loss, accuracy = model.evaluate(test, verbose=0)
    model.set_weights(keep)
    return float(loss), float(accuracy)


def _same(first: list[np.ndarray], second: list[np.ndarray]) -> bool:
    return len(first) == len(second) and all(np.array_equal(a, b) for a, b in zip(first, second))


def test_keeps_the_first_minimum_and_exactly_its_weights_ignoring_nan(tmp_path: Path) -> None:
    model, test = _model(), _test_split()
    point = EarlyStopPoint(tmp_path / "backup" / "early_stop.npz")
    _feed(point, model, [0.5, 0.3, 0.4, 0.3, NAN])  # 0.3 twice: the first one (epoch 2) is kept
    assert (point.epoch, point.val_loss) == (2, 0.3)
    assert _same(point.weights, _weights_of(1, model))
    final_weights = model.get_weights()
    assert _same(final_weights, _weights_of(4, model))
    expected = _figures(model, _weights_of(1, model), test)
    assert expected != _figures(model, final_weights, test)  # the epochs are told apart by their figures
    result = point.evaluate(model, test, 5, (9.0, 0.99))
    assert result == EarlyStop(epoch=2, val_loss=0.3, test_loss=expected[0], test_accuracy=expected[1])
    assert _same(model.get_weights(), final_weights)  # the trained weights are put back
    assert early_stop_metrics(result) == {"early_stop_epoch": 2.0, "early_stop_val_loss": 0.3,
                                "early_stop_test_loss": expected[0], "early_stop_test_accuracy": expected[1]}


@pytest.mark.parametrize(("losses", "epoch", "val_loss"), [
    ([NAN, 0.7, math.inf, 0.6, 0.6], 4, 0.6),     # NaN and inf are no minimum; a tie keeps the first
    ([0.2, NAN, 0.2, 0.25], 1, 0.2),               # the first epoch
    ([None, 0.9, None, 0.8], 4, 0.8),              # epochs without val_loss are skipped
    ([-0.1, 0.0, -0.2], 3, -0.2),                  # any finite value counts, even an odd one
])
def test_the_epoch_is_one_based_and_the_first_finite_minimum(tmp_path: Path, losses: list[float | None], epoch: int,
                                                            val_loss: float) -> None:
    model = _model()
    point = EarlyStopPoint(tmp_path / "early_stop.npz")
    _feed(point, model, losses)
    assert (point.epoch, point.val_loss) == (epoch, val_loss)
    assert _same(point.weights, _weights_of(epoch - 1, model))


def test_a_minimum_at_the_final_epoch_returns_the_final_figures_without_evaluating(tmp_path: Path) -> None:
    model = _model()
    point = EarlyStopPoint(tmp_path / "early_stop.npz")
    _feed(point, model, [0.5, 0.4, 0.3])
    final_weights = model.get_weights()

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("evaluated although the minimum is the final epoch")

    model.evaluate = refuse
    assert point.evaluate(model, None, 3, (1.25, 0.75)) == EarlyStop(3, 0.3, 1.25, 0.75)
    assert _same(model.get_weights(), final_weights)


@pytest.mark.parametrize("losses", [[], [None, None], [NAN, math.inf, NAN]], ids=["no_epoch", "no_val_loss", "nan"])
def test_no_finite_val_loss_gives_none_and_writes_nothing(tmp_path: Path, losses: list[float | None]) -> None:
    model = _model()
    state = tmp_path / "early_stop.npz"
    point = EarlyStopPoint(state)
    _feed(point, model, losses)
    point.on_epoch_end(len(losses), None)  # Keras may pass no logs at all
    assert point.evaluate(model, _test_split(), len(losses) + 1, (1.0, 0.5)) is None
    assert (point.epoch, point.weights) == (None, None)
    assert not state.exists()


def test_a_resumed_job_keeps_the_minimum_of_the_epochs_trained_before_it_died(tmp_path: Path) -> None:
    model, test = _model(), _test_split()
    state = tmp_path / "backup" / "run" / "early_stop.npz"
    first = EarlyStopPoint(state)
    _feed(first, model, [0.5, 0.3])  # epochs 1-2, then the job dies
    assert state.is_file() and sorted(p.name for p in state.parent.iterdir()) == ["early_stop.npz"]  # no partial file

    resumed = EarlyStopPoint(state)  # the requeued job, a new process: only the file carries the point
    assert (resumed.epoch, resumed.val_loss) == (2, 0.3)
    assert _same(resumed.weights, _weights_of(1, model))
    assert [w.dtype for w in resumed.weights] == [w.dtype for w in _weights_of(1, model)]

    _feed(resumed, model, [0.4, 0.3, NAN], first_epoch=2)  # epochs 3-5: none below the earlier minimum
    assert (resumed.epoch, resumed.val_loss) == (2, 0.3)
    expected = _figures(model, _weights_of(1, model), test)
    assert resumed.evaluate(model, test, 5, (9.0, 0.99)) == EarlyStop(2, 0.3, *expected)
    assert _same(model.get_weights(), _weights_of(4, model))

    again = EarlyStopPoint(state)
    _feed(again, model, [0.1], first_epoch=5)  # a lower one later replaces it, on disk too
    assert (again.epoch, again.val_loss) == (6, 0.1)
    reread = EarlyStopPoint(state)
    assert (reread.epoch, reread.val_loss) == (6, 0.1) and _same(reread.weights, _weights_of(5, model))


def test_fit_and_evaluate_reports_the_point_of_a_real_fit(tmp_path: Path) -> None:
    """Wired into lth's fit loop: the logged val_loss history decides the point, test figures at its weights."""
    from lth.training.fitting import fit_and_evaluate

    class Splits:  # the DataSplits fields fit_and_evaluate reads
        def __init__(self) -> None:
            rng = np.random.default_rng(1)
            images = rng.normal(size=(64, 4)).astype(np.float32)
            labels = rng.integers(0, 3, 64).astype(np.int32)
            self.train = OrderedBatches((images[:32], labels[:32]), 8)
            self.val = OrderedBatches((images[32:48], labels[32:48]), 8)
            self.test = OrderedBatches((images[48:], labels[48:]), 8)
            self.val_loss_factor = self.test_loss_factor = 1.0  # nothing padded (one device)

        def begin_epoch(self, epoch: int) -> None:
            pass

    model = _model()
    model.optimizer.learning_rate.assign(2.0)  # large steps on random labels: val_loss rises after the first epoch
    logged: dict[int, float] = {}
    kept: dict[int, list[np.ndarray]] = {}

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        logged[epoch] = metrics["val_loss"]
        kept[epoch] = model.get_weights()

    data = Splits()
    result = fit_and_evaluate(model, data, 6, 0, tmp_path / "backup", on_epoch_end, 0)
    best = min(logged, key=lambda epoch: (logged[epoch], epoch))
    assert best < 6 and logged[6] > logged[best] + 0.1  # random labels overfit (measured: the minimum is epoch 1)
    assert result.early_stop is not None
    assert (result.early_stop.epoch, result.early_stop.val_loss) == (best, logged[best])
    assert (result.early_stop.test_loss, result.early_stop.test_accuracy) == _figures(model, kept[best], data.test)
    assert result.early_stop.test_loss != result.test_loss
    assert _same(model.get_weights(), kept[6])
