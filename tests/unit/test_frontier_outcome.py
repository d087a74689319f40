"""What a frontier sweep reports of its lines: the table, and the epochs its jobs really trained."""

from __future__ import annotations

from lth.frontier.outcome import LineRecord, Probe, epochs_trained, table
from lth.frontier.search import FrontierConfig


def test_a_probe_whose_dense_parents_have_no_accuracy_on_the_choosing_split_still_prints() -> None:
    record = LineRecord("reset.epoch=1", 1, 5, 1, [Probe(0.2, 1, False, "no dense accuracy", 0.91, None)], rounds=1)
    text = table([record], FrontierConfig())
    assert "0.9100 (dense none)" in text and "lost: no dense accuracy" in text


def test_a_reused_ticket_trains_no_epochs_whatever_its_stored_run_trained() -> None:
    assert epochs_trained({"epochs_trained": 4, "reused": False}) == 4
    assert epochs_trained({"epochs_trained": 4, "reused": True}) == 0
    assert epochs_trained(None) == 0  # a job that returned nothing (it failed, and the sweep stops)
