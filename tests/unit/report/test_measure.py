"""`report.measure`: winners chosen on each run's final epoch, or on its early-stop epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from lth.report import write_reports
from lth.report.cells import aggregate
from lth.report.collect import DenseRun, Family, Point
from lth.report.selection import selection_of
from lth.report.winners import mark_winners
from lth.tracking import schema
from tests.support.paths import CONFIG_DIR
from tests.support.report_runs import dense_run, ticket_run

# (run, early-stop epoch) -> validation accuracy logged at that epoch
VAL_AT = {("dense", 3): 0.95, ("t0.5", 3): 0.95, ("t0.9", 2): 0.95}


def _ticket(t: float, final_val: float, stop_test: float, stop: int) -> Point:
    return Point("ticket", 0, t, 1, "FINISHED", 1 - t, 0.90, False, False, f"t{t}", val_accuracy=final_val,
                 cell=f"c{t}", early_stop_epoch=stop, early_stop_test_accuracy=stop_test)


def _family() -> Family:
    """t=0.9 peaks at epoch 2 (val 0.95) and overfits to 0.90 by the end; t=0.5 holds 0.95 to the end."""
    dense = DenseRun(0, "FINISHED", 0.95, 0.95, "dense", early_stop_epoch=3, early_stop_test_accuracy=0.95)
    return Family("f", dense=[dense], points=[_ticket(0.5, 0.95, 0.94, 3), _ticket(0.9, 0.90, 0.93, 2)])


def measured(family: Family, measure: str, val_at=None) -> Family:
    from lth.report.measure import measured as read_at

    return read_at(family, measure, val_at)


def _winner(family: Family) -> float:
    selection = selection_of(family)
    _, winners = mark_winners(aggregate(family, selection.metric), 0.01, selection.split)
    return winners[1].threshold


def test_the_early_stop_measure_chooses_and_shows_the_early_stop_accuracies() -> None:
    family = _family()
    assert _winner(measured(family, "final")) == 0.5  # at the end t=0.9 is 0.05 below dense on validation
    early = measured(family, "early_stop", lambda run_id, epoch: VAL_AT.get((run_id, epoch)))
    assert _winner(early) == 0.9
    sparse = next(p for p in early.points if p.threshold == 0.9)
    assert (sparse.val_accuracy, sparse.test_accuracy) == (0.95, 0.93)
    assert early.dense[0].accuracy(schema.TEST_ACCURACY) == 0.95


def test_a_run_without_an_early_stop_point_has_no_accuracy_under_that_measure() -> None:
    family = _family()
    family.points.append(Point("ticket", 1, 0.5, 1, "FINISHED", 0.5, 0.9, False, False, "old", val_accuracy=0.9,
                               cell="c0.5"))  # logged before early_stop_epoch existed
    old = next(p for p in measured(family, "early_stop", lambda run_id, epoch: None).points if p.run_id == "old")
    assert (old.test_accuracy, old.val_accuracy, old.learned) == (None, None, False)


def test_report_measure_is_declared_final_and_a_bad_value_is_one_line(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        assert compose("report").report.measure == "final"
    with pytest.raises(ValueError, match=r"^report.measure must be final or early_stop, got 'best'$"):
        write_reports(f"sqlite:///{tmp_path / 'mlflow.db'}", "lth", tmp_path, 0.01, measure="best")


def test_the_report_reads_validation_at_the_early_stop_epoch_states_the_measure_and_tags_it(
        store, tmp_path: Path) -> None:
    client, experiment_id, uri = store
    dense = dense_run(client, experiment_id, "fam", 0, None, 0.95, {1: 0.90, 2: 0.94, 3: 0.95}, early_stop=(3, 0.95))
    ticket_run(client, experiment_id, "fam", "c0.9", dense, 0, None, 0.9, 0.90, {2: 0.95, 3: 0.90},
               early_stop=(2, 0.93))
    [files] = write_reports(uri, "lth", tmp_path / "reports", 0.01, measure="early_stop")
    text = files.markdown.read_text()
    assert ("Measure: early stop. Every accuracy is read at the run's early-stop epoch (its minimum validation "
            "loss): test accuracy of its weights there, and validation accuracy logged at that epoch.") in text
    assert "| 1 | t=0.9 at 10.00% weights, test accuracy 0.9300 (val 0.9500 vs dense 0.9500" in text
    assert client.get_run(dense).data.tags[schema.REPORT_MEASURE] == "early_stop"
    [files] = write_reports(uri, "lth", tmp_path / "reports", 0.01)
    assert "Measure: final. Every accuracy is read at the run's last epoch." in files.markdown.read_text()
    assert client.get_run(dense).data.tags[schema.REPORT_MEASURE] == "final"


def test_a_dense_parent_is_at_chance_by_its_final_accuracy_whatever_the_measure() -> None:
    """The job line and the tag judged the final accuracy; the report must not judge the early-stop one."""
    params = (("data.num_classes", "10"),)
    at_chance = DenseRun(0, "FINISHED", 0.10, 0.10, "d", params=params, early_stop_epoch=1,
                         early_stop_test_accuracy=0.60, final_test_accuracy=0.10)
    learned = DenseRun(0, "FINISHED", 0.90, 0.90, "e", params=params, early_stop_epoch=1,
                       early_stop_test_accuracy=0.12, final_test_accuracy=0.90)
    family = Family("f", dense=[at_chance, learned])
    early = measured(family, "early_stop", lambda run_id, epoch: 0.5)
    assert [d.at_chance for d in early.dense] == [True, False]
