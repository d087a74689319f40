"""The report's instability section: barrier vs k per sparsity, the stable-from sentence, stable cells ringed."""

from __future__ import annotations

from pathlib import Path

from lth.report.cells import aggregate
from lth.report.collect import DenseRun, Family, Point
from lth.report.plot import lottery_plot
from lth.report.stability import Analysis, barrier_lines, stable_cells, stable_from, write_stability


def _analysis(t: float, k: int, barrier: float, *, seed: int = 0, control: str = "none", bn: str = "recompute",
              scope: str = "lamp", val: float | None = -1.0) -> Analysis:
    """An analysis whose validation barrier is `val` (default: the test barrier; None: logged before validation)."""
    return Analysis(t, k, scope, seed, control, bn, barrier, 0.02, f"a-{t}-{k}-{seed}-{bn}",
                    barrier if val == -1.0 else val)


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
    sentence = stable_from(barrier_lines(ANALYSES, "val"), 0.02)
    assert sentence.startswith("Stable on validation (error barrier below 2%): ")
    assert "dense: stable from k=1;" in sentence
    assert "80% pruned: stable from k=2;" in sentence
    assert "90% pruned: stable from k=2 (also at k=0)." in sentence
    assert "not stable at any analysed k (0, 1)" in stable_from({"dense": [(0, 0.3), (1, 0.2)]}, 0.02)


def test_both_batchnorm_modes_are_told_apart_when_both_were_analysed() -> None:
    lines = barrier_lines([_analysis(0.0, 0, 0.2), _analysis(0.0, 0, 0.1, bn="interpolate")])
    assert list(lines) == ["dense, BN interpolate", "dense, BN recompute"]


def test_stable_ticket_cells_are_ringed_on_the_lottery_figure(tmp_path: Path) -> None:
    stable = stable_cells(ANALYSES)
    assert stable == {(0.8, 2, "lamp"), (0.9, 0, "lamp"), (0.9, 2, "lamp")}  # mean barrier under 2%, no control
    points = [Point("ticket", 0, t, k, "FINISHED", 1 - t, 0.9, False, False, f"r-{t}-{k}", "lamp", val_accuracy=0.9,
                    cell=f"c-{t}-{k}") for t in (0.8, 0.9) for k in (0, 1, 2)]
    rows = aggregate(Family("f", dense=[DenseRun(0, "FINISHED", 0.9, 0.9, "d")], points=points))
    figure = lottery_plot(rows, [0.9], [], "t", stable)
    ringed = [line for line in figure.axes[0].get_lines() if line.get_gid() == "stable"]
    assert len(ringed) == 1 and [round(x, 6) for x in sorted(ringed[0].get_xdata())] == [10.0, 10.0, 20.0]
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
    assert stable_cells(analyses) == {(0.8, 2, "lamp")}
    assert barrier_lines(analyses, "val") == {"80% pruned": [(1, 0.05), (2, 0.01)]}
    assert "80% pruned: stable from k=2" in stable_from(barrier_lines(analyses, "val"), 0.02)
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
