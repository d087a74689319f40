"""Replicates over `train.data_seed`: each sparse run is one replicate, judged against its own dense parent."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from lth.config.cell import TrackingConfig
from lth.frontier.judge import Judge, Verdict, unswept
from lth.frontier.lines import make_lines, split_axes
from lth.report.cells import aggregate
from lth.report.collect import DenseRun, Family, Point, collect
from lth.report.outcomes import missing_cells
from lth.report.winners import mark_winners
from tests.support.report_runs import dense_run, ticket_run

FAMILY, CELL = "fam", "cell-t0.8"


def _ticket(kind: str, data_seed: int, dense: str, accuracy: float) -> Point:
    return Point(kind, 0, 0.8, 1, "FINISHED", 0.2, accuracy, False, False, f"{kind}-{data_seed}",
                 val_accuracy=accuracy, cell=CELL, data_seed=data_seed, dense_run=dense)


def _two_data_seeds() -> list[DenseRun]:
    """Dense parents that differ only in data seed: 0.90 and 0.95."""
    return [DenseRun(0, "FINISHED", 0.90, 0.90, "dense-a", data_seed=0),
            DenseRun(0, "FINISHED", 0.95, 0.95, "dense-b", data_seed=1)]


def test_each_data_seed_is_a_replicate_judged_against_its_own_dense_parent() -> None:
    family = Family(FAMILY, dense=_two_data_seeds(),
                    points=[_ticket("ticket", 0, "dense-a", 0.895), _ticket("ticket", 1, "dense-b", 0.94)])
    rows, winners = mark_winners(aggregate(family), 0.01)
    [row] = rows
    assert (row.seeds_run, row.seeds_learned, row.seeds_missing) == (2, 2, 0)
    assert row.chosen_mean == pytest.approx(0.9175) and row.dense_mean == pytest.approx(0.925)
    assert row.eligible and row.why_not == "" and winners[1] == row
    assert family.replicates == [(0, 0), (0, 1)]


def test_controls_pair_with_the_ticket_of_the_same_data_seed_and_a_missing_one_is_named() -> None:
    points = [_ticket("ticket", 0, "dense-a", 0.895), _ticket("ticket", 1, "dense-b", 0.94),
              _ticket("reinit", 0, "dense-a", 0.80), _ticket("reinit", 1, "dense-b", 0.93)]
    family = Family(FAMILY, dense=_two_data_seeds(), points=points)
    rows, _ = mark_winners(aggregate(family), 0.01)
    gap = next(r for r in rows if r.kind == "ticket").gap("reinit")
    assert (gap.pairs, gap.mean, gap.low, gap.high) == (2, pytest.approx(0.0525), pytest.approx(0.01),
                                                        pytest.approx(0.095))
    family.points.pop()  # data seed 1's control never ran
    rows, _ = mark_winners(aggregate(family), 0.01)
    assert missing_cells(family, rows) == ["reinit t=0.8 k=1 seed=0 data_seed=1: never started"]


def test_the_report_and_the_frontier_read_data_seed_replicates_from_mlflow(store) -> None:
    client, experiment_id, uri = store
    parents = [dense_run(client, experiment_id, FAMILY, 0, data_seed, test, {3: test})
               for data_seed, test in ((0, 0.90), (1, 0.95))]
    for parent, data_seed, accuracy in zip(parents, (0, 1), (0.895, 0.94)):
        ticket_run(client, experiment_id, FAMILY, CELL, parent, 0, data_seed, 0.8, accuracy, {3: accuracy})
    family = collect(experiment_id, FAMILY)
    rows, _ = mark_winners(aggregate(family), 0.01)
    assert [(r.seeds_run, r.dense_mean, r.eligible) for r in rows] == [(2, pytest.approx(0.925), True)]
    assert sorted((p.seed, p.data_seed, p.dense_run) for p in family.points) == [(0, 0, parents[0]),
                                                                                 (0, 1, parents[1])]
    replicates, verdicts = Judge(TrackingConfig(uri, "lth"), 0.01).judged(FAMILY)
    assert replicates == [(0, 0), (0, 1)]  # (seed, data-order seed) of the dense parents, as the sweeper checks them
    assert unswept(replicates, [0], [None]) == [(0, 1)]  # a sweep that leaves data_seed unset stops before training
    assert unswept(replicates, [0], [0, 1]) == []
    verdict = verdicts[CELL]
    assert verdict.won and verdict.complete and verdict.replicates == ((0, 0), (0, 1))
    assert verdict.covers([0], [], data_seeds=[0, 1])
    assert not verdict.covers([0], [], data_seeds=[0, 1, 2])  # a data seed the cell never ran


def test_a_cell_found_in_mlflow_stands_only_for_the_data_seeds_it_ran() -> None:
    one = Verdict(CELL, True, True, "", 0.8, 1, 0.9, 0.9, seeds=(0,), replicates=((0, 0),))
    assert one.covers([0], [])  # data seed not swept: the seed orders the data
    assert one.covers([0], [], data_seeds=[None])
    assert not one.covers([0], [], data_seeds=[0, 1])  # a data-seed-0 grid cannot stand for two data seeds


def test_each_line_knows_the_data_seeds_every_probe_must_have(compose: Callable[..., object]) -> None:
    def groups(overrides: list[str]) -> dict:
        cfg = compose(*overrides)
        with open_dict(cfg):
            cfg.pop("hydra", None)
        return OmegaConf.to_container(cfg, resolve=True)

    def parsed(*lines: str) -> list:
        return OverridesParser.create().parse_overrides(list(lines))

    (line,) = make_lines(*split_axes(parsed("reset.epoch=1", "train.data_seed=0,1")), groups)
    assert (line.seeds, line.data_seeds) == ((0,), (0, 1))
    (line,) = make_lines(*split_axes(parsed("reset.epoch=1")), groups)
    assert line.data_seeds == (None,)  # not set: each seed orders its own data
