"""What a frontier sweep reports of its lines: the table, and the epochs its jobs really trained."""

from __future__ import annotations

from lth.frontier.bracketing import FrontierConfig
from lth.frontier.outcome import LineRecord, Probe, epochs_trained, table


def test_a_probe_whose_dense_parents_have_no_accuracy_on_the_choosing_split_still_prints() -> None:
    record = LineRecord("reset.epoch=1", 1, 5, 1, [Probe(0.2, 1, False, "no dense accuracy", 0.91, None)], rounds=1)
    text = table([record], FrontierConfig())
    assert "0.9100 (dense none)" in text and "lost: no dense accuracy" in text


def test_a_reused_ticket_trains_no_epochs_whatever_its_stored_run_trained() -> None:
    assert epochs_trained({"epochs_trained": 4, "reused": False}) == 4
    assert epochs_trained({"epochs_trained": 4, "reused": True}) == 0
    assert epochs_trained(None) == 0  # a job that returned nothing (it failed, and the sweep stops)


def test_the_table_and_json_say_what_was_verified_and_how_far_below_the_flip(tmp_path) -> None:
    import json

    from lth.frontier.outcome import write_json

    probes = [Probe(0.2, 1, True, "", 0.9, 0.9), Probe(0.16, 2, False, "below", 0.8, 0.9),
              Probe(0.128, 3, False, "below", 0.7, 0.9, verifying=True),
              Probe(0.1024, 3, False, "below", 0.7, 0.9, verifying=True)]
    record = LineRecord("reset.epoch=1", 1, 5, 1, probes, rounds=3)
    config = FrontierConfig((0.01, 0.8))
    text = table([record], config)
    assert "verified 2 step(s) below it: 12.80%, 10.24% lost" in text and text.count("round 3, verifying") == 2
    found = json.loads(write_json([record], config, tmp_path / "frontier.json").read_text())
    (line,) = found["lines"]
    assert found["frontier"]["verify_steps"] == 2
    assert line["answer"]["verified"] == [0.128, 0.1024] and line["answer"]["verified_steps"] == 2
    assert line["answer"]["unverified"] == [] and [p["verifying"] for p in line["probes"]] == [True, True, False, False]
    unchecked = LineRecord("reset.epoch=1", 1, 5, 1, probes[:2], rounds=2)
    assert "NOT verified below it (12.80%, 10.24% not probed)" in table([unchecked], config)
