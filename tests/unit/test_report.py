"""Report logic on hand-made runs: aggregation over seeds, winners, missing cells, files."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from lth.report.collect import Family, Point
from lth.report.plot import lottery_figure
from lth.report.summary import aggregate, mark_winners, missing_cells, write_csv, write_markdown


def _point(kind: str, t: float, k: int, seed: int, acc: float | None, status: str = "FINISHED",
           diverged: bool = False) -> Point:
    return Point(kind, seed, t, k, status, 1 - t, acc, diverged, False, f"{kind}-{t}-{k}-{seed}")


def _dense(seed: int, accuracy: float) -> SimpleNamespace:
    return SimpleNamespace(info=SimpleNamespace(status="FINISHED"),
                           data=SimpleNamespace(metrics={"test_accuracy": accuracy}, tags={"lth.seed": str(seed)}))


POINTS = [
    _point("ticket", 0.5, 1, 0, 0.95), _point("ticket", 0.5, 1, 1, 0.93),
    _point("ticket", 0.8, 1, 0, 0.94), _point("ticket", 0.8, 1, 1, 0.96),
    _point("ticket", 0.9, 1, 0, 0.50), _point("ticket", 0.9, 1, 1, None, status="FAILED"),
    _point("ticket", 0.5, 0, 0, 0.80), _point("ticket", 0.5, 0, 1, 0.82),
    _point("reinit", 0.8, 1, 0, 0.99), _point("reinit", 0.8, 1, 1, float("nan"), diverged=True),
]


def test_replicates_are_aggregated_with_mean_and_min_max() -> None:
    rows = {(r.kind, r.reset_epoch, r.threshold): r for r in aggregate(POINTS)}
    cell = rows[("ticket", 1, 0.8)]
    assert (cell.mean, cell.low, cell.high, cell.seeds) == (pytest.approx(0.95), 0.94, 0.96, 2)
    assert rows[("ticket", 1, 0.9)].seeds == 1  # the FAILED replicate is left out, not counted as 0
    assert rows[("reinit", 1, 0.8)].seeds == 1  # a diverged run never becomes an accuracy


def test_winner_is_the_sparsest_ticket_within_tolerance_and_controls_never_win() -> None:
    rows, winners = mark_winners(aggregate(POINTS), dense_mean=0.955, tolerance=0.02)
    assert winners[1] is not None and winners[1].threshold == 0.8  # 0.9 is sparser but far below dense
    assert winners[0] is None  # 0.81 is not within 0.02 of 0.955
    assert [r for r in rows if r.winner] == [winners[1]]


def test_missing_cells_name_failed_diverged_and_never_started_runs() -> None:
    family = Family("f", dense=[_dense(0, 0.95), _dense(1, 0.96)], points=POINTS)
    missing = missing_cells(family)
    assert "ticket t=0.9000 k=1 seed=1: FAILED" in missing
    assert "reinit t=0.8000 k=1 seed=1: diverged" in missing
    assert "ticket t=0.8000 k=0 seed=0: never started" in missing  # the grid is thresholds x resets x seeds
    assert len(missing) == 4 + 1 + 1  # k=0 lacks t=0.8, 0.9 for both seeds; the FAILED and the diverged run


def test_files_are_written(tmp_path: Path) -> None:
    rows, winners = mark_winners(aggregate(POINTS), dense_mean=0.955, tolerance=0.02)
    figure = lottery_figure(rows, [0.95, 0.96], [POINTS[-1]], "test", tmp_path / "lottery.png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = write_markdown(rows, winners, [0.95, 0.96], 0.02, ["x"], tmp_path / "report.md").read_text()
    assert "| 0 | none within tolerance |" in markdown and "| 1 | ticket at 20.00% weights" in markdown
    csv_lines = write_csv(rows, tmp_path / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(rows)


def test_cells_of_different_scopes_are_separate_lines_not_replicates(tmp_path: Path) -> None:
    from dataclasses import replace

    points = [replace(_point("ticket", 0.8, 1, 0, acc), scope=scope, run_id=scope)
              for scope, acc in (("lamp", 0.97), ("erk", 0.96), ("layer", 0.92))]
    rows, winners = mark_winners(aggregate(points), dense_mean=0.96, tolerance=0.005)
    assert sorted((r.scope, r.seeds, r.mean) for r in rows) == [("erk", 1, 0.96), ("lamp", 1, 0.97), ("layer", 1, 0.92)]
    markdown = write_markdown(rows, winners, [0.96], 0.005, [], tmp_path / "report.md").read_text()
    assert "| 1 | ticket [lamp] at 20.00% weights, accuracy 0.9700 |" in markdown  # equally sparse: the more accurate
    assert "| ticket | layer | 1 | 0.8000 |" in markdown
    family = Family("f", dense=[_dense(0, 0.96)], points=[*points, replace(points[0], scope="global", status="FAILED")])
    assert missing_cells(family) == ["ticket [global] t=0.8000 k=1 seed=0: FAILED"]
    assert lottery_figure(rows, [0.96], [], "scopes", tmp_path / "lottery.png").exists()
