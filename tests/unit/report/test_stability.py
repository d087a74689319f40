"""The report's instability section: barrier vs k per sparsity, the stable-from sentence, stable cells ringed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lth.report.cells import aggregate
from lth.report.collect import DenseRun, Family, Point
from lth.report.figures import lottery_plot
from lth.report.stability import (
    DEFAULT_COPIES,
    Analysis,
    barrier_lines,
    read_analysis,
    stable_cells,
    stable_sentence,
    write_stability,
)
from lth.stability.verdict import stable_from


def _analysis(t: float, k: int, barrier: float, *, seed: int = 0, control: str = "none", bn: str = "recompute",
              scope: str = "lamp", val: float | None = -1.0, copies: str = DEFAULT_COPIES, points: int = 30,
              bn_batches: int = 32) -> Analysis:
    """An analysis whose validation barrier is `val` (default: the test barrier; None: logged before validation)."""
    return Analysis(t, k, scope, seed, control, bn, barrier, 0.02, f"a-{t}-{k}-{seed}-{bn}",
                    barrier if val == -1.0 else val, None, copies, points, bn_batches, f"r-{t}-{k}",
                    f"c-{t}-{k}" if t else "")


ANALYSES = [
    _analysis(0.0, 0, 0.20), _analysis(0.0, 1, 0.015), _analysis(0.0, 2, 0.01),
    _analysis(0.8, 0, 0.30), _analysis(0.8, 1, 0.05), _analysis(0.8, 1, 0.03, seed=1), _analysis(0.8, 2, 0.019),
    _analysis(0.9, 0, 0.010), _analysis(0.9, 1, 0.04), _analysis(0.9, 2, 0.012),
    _analysis(0.8, 0, 0.001, control="reinit"),  # a control: not a line of its own
]


def test_one_line_per_sparsity_with_the_dense_network_first_and_seeds_averaged() -> None:
    lines = barrier_lines(ANALYSES)
    assert list(lines) == ["dense", "80% pruned", "90% pruned"]
    assert lines["dense"] == [(0, 0.20), (1, 0.015), (2, 0.01)]
    assert [k for k, _ in lines["80% pruned"]] == [0, 1, 2]
    assert abs(dict(lines["80% pruned"])[1] - 0.04) < 1e-12  # mean of seeds 0 and 1


def test_the_sentence_says_from_which_epoch_each_network_stays_stable() -> None:
    sentence = stable_sentence(ANALYSES, 0.02)
    assert sentence.startswith("Stable on validation (error barrier below 2% at k and every later analysed k): ")
    assert "dense: stable from k=1;" in sentence
    # Seed 1 was analysed at k=1 only: the verdict compares seed 0 at every k (the table still averages both).
    assert "80% pruned: stable from k=2 (judged on seed(s) 0, analysed at every k; 1 other replicate(s) only at some);" \
        in sentence
    assert "90% pruned: stable from k=2 (also at k=0)." in sentence
    assert "not stable at any analysed k (0, 1)" in stable_sentence([_analysis(0, 0, 0.3), _analysis(0, 1, 0.2)], 0.02)


def test_both_batchnorm_modes_are_told_apart_when_both_were_analysed() -> None:
    lines = barrier_lines([_analysis(0.0, 0, 0.2), _analysis(0.0, 0, 0.1, bn="interpolate")])
    assert list(lines) == ["dense, BN interpolate", "dense, BN recompute"]


def test_stable_ticket_cells_are_ringed_on_the_lottery_figure(tmp_path: Path) -> None:
    stable = stable_cells(ANALYSES)
    setting = ("BN recompute, copies next data seed, points 30, BN batches 32",)
    assert stable == {"c-0.8-2": setting, "c-0.9-0": setting, "c-0.9-2": setting}  # mean barrier under 2%, no control
    points = [Point("ticket", 0, t, k, "FINISHED", 1 - t, 0.9, False, False, f"r-{t}-{k}", "lamp", val_accuracy=0.9,
                    cell=f"c-{t}-{k}") for t in (0.8, 0.9) for k in (0, 1, 2)]
    rows = aggregate(Family("f", dense=[DenseRun(0, "FINISHED", 0.9, 0.9, "d")], points=points))
    figure = lottery_plot(rows, [0.9], [], "t", stable)
    ringed = [line for line in figure.axes[0].get_lines() if line.get_gid() == "stable"]
    assert len(ringed) == 1 and [round(x, 6) for x in sorted(ringed[0].get_xdata())] == [10.0, 10.0, 20.0]
    assert ringed[0].get_label().endswith(f"({setting[0]})")  # the ring names the analysis it comes from
    assert not [line for line in lottery_plot(rows, [0.9], [], "t").axes[0].get_lines() if line.get_gid() == "stable"]
    path, text = write_stability(ANALYSES, "dense abc", tmp_path)
    assert path == tmp_path / "stability.png" and path.stat().st_size > 10_000
    assert "| dense | test | 20.00% | 1.50% | 1.00% |" in text and "![barrier](stability.png)" in text
    assert "| dense | validation | 20.00% | 1.50% | 1.00% |" in text
    assert write_stability([], "dense abc", tmp_path) == (None, "")


def test_validation_decides_what_is_stable_and_an_analysis_without_it_is_judged_nowhere(tmp_path: Path) -> None:
    analyses = [_analysis(0.8, 1, 0.01, val=0.05),  # stable on test only: not stable
                _analysis(0.8, 2, 0.05, val=0.01),  # stable on validation only: stable
                _analysis(0.9, 2, 0.01, val=None)]  # logged before validation was walked: not judged
    assert set(stable_cells(analyses)) == {"c-0.8-2"}
    assert barrier_lines(analyses, "val") == {"80% pruned": [(1, 0.05), (2, 0.01)]}
    assert "80% pruned: stable from k=2" in stable_sentence(analyses, 0.02)
    _, text = write_stability(analyses, "dense abc", tmp_path)
    assert "| 80% pruned | validation | 5.00% | 1.00% |" in text and "| 80% pruned | test | 1.00% | 5.00% |" in text
    assert "1 analysis(es) were logged before paths were walked on validation" in text


def test_a_dense_analysis_at_k_above_0_logged_before_copies_started_alike_is_left_out(tmp_path: Path) -> None:
    """Its copy 1 kept the dense run's momentum: no job reuses it, and the report does not average it in."""
    analyses = [_analysis(0.0, 1, 0.30, val=None), _analysis(0.0, 1, 0.01, seed=1),  # old (momentum), new
                _analysis(0.0, 0, 0.20, val=None)]  # at k = 0 the dense run was copy 1 rightly: kept, unjudged
    _, text = write_stability(analyses, "dense abc", tmp_path)
    assert "| dense | test | 20.00% | 1.00% |" in text  # k = 1 is the new analysis alone, not (30% + 1%) / 2
    assert "1 analysis(es) of the dense network at k > 0 were logged before every copy started" in text


def test_stable_means_stable_at_k_and_every_later_analysed_k_for_auto_and_the_report_alike() -> None:
    barriers = {0: 0.01, 1: 0.05, 2: 0.012, 4: 0.019}  # stable at 0 alone, then unstable at 1, then stable again
    assert stable_from(barriers, 0.02) == 2  # not 0: the earliest stable k is not stable from onwards
    assert stable_from({0: 0.01, 2: 0.03}, 0.02) is None and stable_from({}, 0.02) is None
    analyses = [_analysis(0.0, k, barrier) for k, barrier in barriers.items()]
    assert "dense: stable from k=2 (also at k=0)." in stable_sentence(analyses, 0.02)


@pytest.mark.parametrize("other", [dict(bn="interpolate"), dict(copies="data seeds [5]"), dict(points=10),
                                   dict(bn_batches=4)])
def test_two_analyses_of_one_cell_in_different_settings_are_judged_apart_never_averaged(other: dict) -> None:
    # Averaged, 1% and 5% would be 3%: unstable. Apart, the first setting finds the cell stable, the other not.
    stable, unstable = _analysis(0.8, 2, 0.01), _analysis(0.8, 2, 0.05, **other)
    assert stable_cells([stable, unstable]) == {"c-0.8-2": (stable.describe(),)}
    assert stable.describe() != unstable.describe()
    lines = barrier_lines([stable, unstable])
    assert sorted(lines.values()) == [[(2, 0.01)], [(2, 0.05)]]  # two lines, each its own setting's barrier
    assert all(label.startswith("80% pruned, ") for label in lines)  # each label says which setting it is


def _stability_run(params: dict[str, str]) -> object:
    from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag

    tags = {"lth.threshold": "0.8", "lth.reset_epoch": "2", "lth.seed": "1", "lth.analysed_run": "t1"}
    return Run(RunInfo("a1", "0", "u", "FINISHED", 0, 1, "active"),
               RunData([Metric("barrier", 0.1, 0, 0), Metric("val_barrier", 0.01, 0, 0)],
                       [Param(k, v) for k, v in params.items()], [RunTag(k, v) for k, v in tags.items()]))


def test_an_analysis_reads_its_settings_from_its_params() -> None:
    params = {"stability.data_seeds": "[4]", "train.data_seed": "3", "stability.points": "12",
              "stability.bn": "recompute", "stability.bn_batches": "8", "stability.threshold": "0.02"}
    found = read_analysis(_stability_run(params))
    assert found is not None and (found.copies, found.points, found.bn_batches) == (DEFAULT_COPIES, 12, 8)
    assert found.replicate == (1, 3) and found.analysed_run == "t1"
    assert read_analysis(_stability_run({**params, "stability.data_seeds": "[5, 6]"})).copies == "data seeds [5, 6]"


def test_analyses_of_two_cells_at_one_sparsity_are_told_apart_by_their_cell_reruns_included() -> None:
    from lth.report.stability import of_cells

    channel = _analysis(0.8, 2, 0.01)
    weights = replace(_analysis(0.8, 2, 0.05), analysed_run="rerun-of-B")  # a later finished run of cell B
    cells = {"r-0.8-2": ("A", "structure=channel"), "rerun-of-B": ("B", "structure=none, cell B")}
    found = of_cells([channel, weights], cells)
    assert [a.cell for a in found] == ["A", "B"]
    assert stable_cells(found) == {"A": (channel.describe(),)}  # B's 5% is not averaged in
    assert barrier_lines(found) == {"80% pruned, structure=channel": [(2, 0.01)],
                                    "80% pruned, structure=none": [(2, 0.05)]}  # no per-k `cell B`


def test_a_barrier_that_is_not_a_number_is_not_stable() -> None:
    assert stable_from({2: float("nan"), 4: 0.01}, 0.02) == 4
