"""A dense parent at chance: one rule, its tickets' verdict, and the warning on the job line."""

from __future__ import annotations

from lth.sweep.results import job_line
from lth.training.result import FitResult, divergence

RECORD = {"threshold": 0.5, "reset_epoch": 1, "scope": "global", "method": "magnitude", "control": "none",
          "seed": 0, "weights_remaining": 0.5, "test_accuracy": 0.1, "dense_test_accuracy": 0.1,
          "epochs_trained": 1, "reused": False, "ticket_run_id": "abc", "dense_run_id": "def"}


def test_a_dense_parent_is_at_chance_up_to_one_and_a_half_times_chance() -> None:
    from lth.training.chance import dense_at_chance

    assert dense_at_chance(0.1000, 10) and dense_at_chance(0.15, 10)
    assert not dense_at_chance(0.1501, 10) and not dense_at_chance(0.96, 10)
    assert dense_at_chance(0.0012, 1000) and not dense_at_chance(0.2, 1000)


def test_a_ticket_stuck_at_chance_is_judged_whenever_its_parent_is_not_at_chance() -> None:
    stuck = FitResult(2.3, 0.1, 3, 1.0, False, None, 2.30)
    assert divergence(stuck, dense_accuracy=0.18, num_classes=10) == "chance"  # the parent learned a little
    assert divergence(stuck, dense_accuracy=0.10, num_classes=10) is None  # the parent is at chance itself


def test_the_job_line_warns_of_a_dense_parent_at_chance() -> None:
    line = job_line(RECORD, num_classes=10)
    assert line.endswith("; WARNING: dense parent at chance (test accuracy 0.1000, at most 1.5/10): "
                         "its tickets mean nothing")
    assert "WARNING" not in job_line({**RECORD, "dense_test_accuracy": 0.9}, num_classes=10)
    assert "WARNING" not in job_line(RECORD)  # classes not known (a record read without its config)
