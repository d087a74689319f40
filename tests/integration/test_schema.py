"""The MLflow schema: what a writer puts on a run is what its reader gets back."""

from __future__ import annotations

import keras
import pytest

from lth.sweep import results
from lth.tracking import schema
from lth.training.early_stop import EarlyStop
from lth.training.fitting import EpochEnd, optimizer_state


@pytest.mark.parametrize("level", [None, 3])
def test_sparse_tags_read_back_what_they_wrote(level: int | None) -> None:
    written = schema.SparseTags(0.36, 1, "lamp", "imp", "reinit", 2, level)
    tags = written.tags()
    assert schema.SparseTags.read(tags) == written
    assert (tags[schema.THRESHOLD], tags[schema.SEED]) == ("0.36", "2") and (schema.LEVEL in tags) == (level is not None)


def test_runs_logged_before_a_tag_existed_read_with_its_old_meaning() -> None:
    old = schema.SparseTags.read({schema.THRESHOLD: "0.8", schema.RESET_EPOCH: "0"})
    assert (old.scope, old.method, old.control, old.seed, old.level) == ("global", "magnitude", "none", 0, None)


def test_one_kind_for_the_report_and_the_sweep_table() -> None:
    for method, control, kind in [("magnitude", "none", "ticket"), ("imp", "none", "imp"),
                                  ("magnitude", "reinit", "reinit"), ("imp", "random_mask", "random_mask")]:
        assert schema.kind(method, control) == kind == results.kind({"method": method, "control": control})


def test_outcome_metrics_read_back_and_a_diverged_run_has_no_accuracy() -> None:
    point = EarlyStop(epoch=3, val_loss=0.4, test_loss=0.5, test_accuracy=0.8)
    learned = schema.outcome_metrics(0.9, 0.3, 5, 10, 1.5, point)
    outcome = schema.Outcome.read({**learned, schema.VAL_ACCURACY: 0.88, schema.WEIGHTS_REMAINING: 0.2})
    assert (outcome.test_accuracy, outcome.val_accuracy, outcome.weights_remaining) == (0.9, 0.88, 0.2)
    assert (outcome.early_stop_epoch, outcome.early_stop_test_accuracy) == (3, 0.8)
    diverged = schema.outcome_metrics(0.1, float("nan"), 2, 2, 1.0, point, diverged=True)
    assert schema.TEST_ACCURACY not in diverged and diverged[schema.DIVERGED_TEST_ACCURACY] == 0.1
    assert schema.Outcome.read(diverged).test_accuracy is None and schema.EARLY_STOP_EPOCH not in diverged


def test_collapse_and_divergence_tags_read_back() -> None:
    tags = {**schema.collapse_tags(["a", "b"], ["c"]), **schema.divergence_tags("nan", 4)}
    assert schema.collapse_lists(tags) == (["a", "b"], ["c"]) and schema.divergence(tags) == "nan"
    assert schema.collapse_tags([], []) == {} and schema.collapse_lists({}) == ([], [])
    assert schema.divergence({}) is None
    assert schema.kept_epochs(schema.keep_epochs_tag(frozenset({0, 2, 10}))) == frozenset({0, 2, 10})


def test_the_fit_loops_own_metric_names_are_the_schemas() -> None:
    """lth.training.fitting knows no tracker and spells its per-epoch names itself: they must be these."""
    plain = keras.optimizers.SGD(0.1)
    scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
    scaled.build([keras.Variable(1.0)])  # its loss scale exists once it is built
    assert set(optimizer_state(plain)) == {schema.OPTIMIZER_ITERATIONS}
    assert set(optimizer_state(scaled)) == {schema.OPTIMIZER_ITERATIONS, schema.LOSS_SCALE}
    seen: dict[str, float] = {}
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(keras.ops.ones((4, 2)), keras.ops.ones((4, 1)), epochs=1, verbose=0,
              callbacks=[EpochEnd(lambda _epoch, metrics: seen.update(metrics))])
    assert {schema.LEARNING_RATE, schema.OPTIMIZER_ITERATIONS} <= set(seen)
