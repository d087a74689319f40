"""Report rules on hand-made runs: seeds learned, controls, cells, the floor, the choosing split, the figures."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lth.report import density_choices
from lth.report.cells import aggregate
from lth.report.collect import DenseRun, Family, Point
from lth.report.figures import density_plot, lottery_plot, series_gid
from lth.report.markdown import write_markdown
from lth.report.outcomes import CSV_COLUMNS, figure_title, missing_cells, write_csv
from lth.report.selection import selection_of
from lth.report.winners import mark_winners

SETTINGS = (("prune.min_density", "0.002"), ("prune.scope", "lamp"))


def _point(kind: str, t: float, k: int, seed: int, test: float | None, val: float | None = None, *,
           status: str = "FINISHED", diverged: str = "", cell: str | None = "c", level: int | None = None,
           scope: str = "lamp", settings: tuple = SETTINGS, empty: bool = False, floor: bool = False,
           run: str = "") -> Point:
    cell = None if cell is None else f"{cell}-t{t}-k{k}"  # lth.cell holds the threshold and reset epoch
    return Point(kind, seed, t, k, status, 1 - t, None if diverged else test, bool(diverged), empty,
                 run or f"{kind}-{t}-{k}-{seed}-{cell}-{level}", scope, val_accuracy=test if val is None else val,
                 cell=cell, level=level, settings=settings, divergence=diverged, floor_layers=floor)


def _dense(seed: int, test: float, val: float | None = None, status: str = "FINISHED",
           params: tuple = (("data.name", "digits"), ("data.val_fraction", "0.1"))) -> DenseRun:
    return DenseRun(seed, status, test if status == "FINISHED" else None, test if val is None else val,
                    f"dense-{seed}", params=params)


TWO_DENSE = [_dense(0, 0.95), _dense(1, 0.96)]


def _judged(points: list[Point], dense: list[DenseRun] = TWO_DENSE, tolerance: float = 0.01):
    family = Family("f", dense=list(dense), points=points)
    selection = selection_of(family)
    rows, winners = mark_winners(aggregate(family, selection.metric), tolerance, selection.split)
    return family, selection, rows, winners


def _one(rows: list, **match: object):
    found = [r for r in rows if all(getattr(r, k) == v for k, v in match.items())]
    assert len(found) == 1, found
    return found[0]


# Item 6: survivor bias -------------------------------------------------------------------------------------------

def test_a_cell_shows_seeds_learned_over_run_and_a_diverged_seed_keeps_it_from_winning() -> None:
    points = [_point("ticket", 0.5, 1, 0, 0.95), _point("ticket", 0.5, 1, 1, 0.96),
              _point("ticket", 0.9, 1, 0, 0.99), _point("ticket", 0.9, 1, 1, None, diverged="chance")]
    _, _, rows, winners = _judged(points)
    survivor = _one(rows, threshold=0.9)
    assert (survivor.seeds_learned, survivor.seeds_run, survivor.seeds_missing) == (1, 2, 0)
    assert survivor.test_mean == 0.99 and not survivor.winner  # shown, not hidden, and not a winner
    assert survivor.why_not == "1/2 seeds learned (1 diverged: chance)"
    assert winners[1] is not None and winners[1].threshold == 0.5


def test_a_failed_seed_is_missing_and_its_cell_is_incomplete() -> None:
    points = [_point("ticket", 0.5, 1, 0, 0.95), _point("ticket", 0.5, 1, 1, 0.96),
              _point("ticket", 0.9, 1, 0, 0.99), _point("ticket", 0.9, 1, 1, None, status="FAILED")]
    family, _, rows, winners = _judged(points)
    incomplete = _one(rows, threshold=0.9)
    assert (incomplete.seeds_learned, incomplete.seeds_run, incomplete.seeds_missing) == (1, 1, 1)
    assert incomplete.why_not == "incomplete (1 of 2 seeds missing)"
    assert winners[1].threshold == 0.5
    assert missing_cells(family, rows) == ["ticket t=0.9 k=1 seed=1: FAILED"]


def test_a_cell_where_no_seed_learned_is_a_row_and_its_runs_are_drawn() -> None:
    points = [_point("ticket", 0.5, 1, s, 0.95) for s in (0, 1)]
    points += [_point("ticket", 0.98, 1, s, None, diverged="nan") for s in (0, 1)]
    _, _, rows, _ = _judged(points)
    dead = _one(rows, threshold=0.98)
    assert (dead.seeds_learned, dead.seeds_run, dead.test_mean, dead.eligible) == (0, 2, None, False)
    figure = lottery_plot(rows, [0.95, 0.96], [p for p in points if p.diverged], "t")
    crosses = [line for line in figure.axes[0].get_lines() if line.get_gid() == "diverged"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == pytest.approx([2.0, 2.0])


def test_a_rerun_of_a_seed_counts_once() -> None:
    points = [_point("ticket", 0.5, 1, 0, 0.95, run="first"), _point("ticket", 0.5, 1, 0, 0.20, run="second"),
              _point("ticket", 0.5, 1, 1, 0.96)]
    _, _, rows, _ = _judged(points)
    assert (rows[0].seeds_run, rows[0].test_mean, rows[0].run_ids) == (2, pytest.approx(0.955), ("first", points[2].run_id))


# Item 7: winners must beat their controls ------------------------------------------------------------------------

def test_gaps_pair_ticket_and_control_by_seed() -> None:
    points = [_point("ticket", 0.8, 1, s, v) for s, v in ((0, 0.95), (1, 0.96), (2, 0.97))]
    points += [_point("reinit", 0.8, 1, 0, 0.93), _point("reinit", 0.8, 1, 1, 0.90),
               _point("reinit", 0.8, 1, 2, None, diverged="chance")]  # no pair at seed 2: nothing to subtract
    points += [replace(_point("random_mask", 0.8, 1, 0, v, run=f"rm{cs}"),
                       settings=(*SETTINGS, ("prune.control_seed", str(cs)))) for cs, v in ((0, 0.90), (1, 0.94))]
    dense = [*TWO_DENSE, _dense(2, 0.96)]
    _, _, rows, _ = _judged(points, dense)
    ticket = _one(rows, kind="ticket")
    reinit, shuffled = ticket.gap("reinit"), ticket.gap("random_mask")
    assert (reinit.mean, reinit.low, reinit.high, reinit.pairs) == (pytest.approx(0.04), pytest.approx(0.02),
                                                                    pytest.approx(0.06), 2)
    assert (shuffled.mean, shuffled.pairs) == (pytest.approx(0.95 - 0.92), 1)  # control seeds averaged per seed
    assert _one(rows, kind="random_mask").seeds_run == 2 and not shuffled.complete  # seeds 1, 2 never ran it
    assert ticket.why_not == "random_mask control incomplete"


def test_a_ticket_that_matches_dense_but_not_its_control_does_not_win() -> None:
    points = [_point("ticket", 0.8, 1, s, 0.955) for s in (0, 1)]
    points += [_point("reinit", 0.8, 1, 0, 0.97), _point("reinit", 0.8, 1, 1, 0.96)]
    points += [_point("ticket", 0.5, 1, s, 0.955) for s in (0, 1)]
    _, _, rows, winners = _judged(points)
    below = _one(rows, kind="ticket", threshold=0.8)
    assert below.why_not == "not above reinit (gap -0.0100, min -0.0150, max -0.0050)"
    assert winners[1].threshold == 0.5  # no control ran at 0.5: matching dense is all it has to do


def test_a_control_that_learned_on_no_seed_is_beaten() -> None:
    points = [_point("ticket", 0.8, 1, s, 0.955) for s in (0, 1)]
    points += [_point("reinit", 0.8, 1, s, None, diverged="nan") for s in (0, 1)]
    _, _, rows, winners = _judged(points)
    assert _one(rows, kind="ticket").gap("reinit").mean is None and winners[1].threshold == 0.8


def test_dense_is_compared_on_exactly_the_seeds_that_learned() -> None:
    dense = [_dense(0, 0.90), _dense(1, 0.99)]
    points = [_point("ticket", 0.8, 1, 0, 0.91), _point("ticket", 0.8, 1, 1, None, diverged="chance")]
    _, _, rows, _ = _judged(points, dense)
    assert rows[0].dense_mean == 0.90  # not 0.945, the mean over both parents


def test_a_dense_parent_that_did_not_finish_is_missing_and_no_cell_waits_for_it() -> None:
    dense = [*TWO_DENSE, _dense(2, 0.0, status="FAILED")]
    family, _, rows, winners = _judged([_point("ticket", 0.8, 1, s, 0.955) for s in (0, 1)], dense)
    assert winners[1] is not None and rows[0].seeds_missing == 0
    assert missing_cells(family, rows) == ["dense seed=2: FAILED"]


# Item 8: cells are experiments ----------------------------------------------------------------------------------

def test_cells_differing_in_min_density_are_two_rows_labelled_by_what_differs(tmp_path: Path) -> None:
    other = (("prune.min_density", "0.01"), ("prune.scope", "lamp"))
    points = [_point("ticket", 0.8, 1, s, 0.95) for s in (0, 1)]
    points += [_point("ticket", 0.8, 1, s, 0.90, cell="other", settings=other) for s in (0, 1)]
    family, selection, rows, winners = _judged(points)
    assert sorted((r.label, r.seeds_run, r.test_mean) for r in rows) == [("min_density=0.002", 2, 0.95),
                                                                         ("min_density=0.01", 2, 0.90)]
    markdown = write_markdown(rows, winners, family, selection, 0.01, [], tmp_path / "r.md").read_text()
    assert "| 1 | t=0.8 [min_density=0.002] at 20.00% weights" in markdown
    assert "- k=1: t=0.8 [min_density=0.01] not eligible: val 0.9000 is more than 0.01 below dense 0.9550" in markdown


def test_runs_without_lth_cell_group_by_scope_reset_and_threshold() -> None:
    points = [_point("ticket", 0.8, 1, s, 0.95, cell=None, settings=()) for s in (0, 1)]
    points += [_point("reinit", 0.8, 1, s, 0.90, cell=None, settings=()) for s in (0, 1)]
    points += [_point("ticket", 0.8, 1, s, 0.93, cell=None, settings=(), scope="global") for s in (0, 1)]
    _, _, rows, _ = _judged(points)
    assert sorted((r.kind, r.scope, r.seeds_run) for r in rows) == [("reinit", "lamp", 2), ("ticket", "global", 2),
                                                                    ("ticket", "lamp", 2)]
    assert _one(rows, kind="ticket", scope="lamp").gap("reinit").mean == pytest.approx(0.05)


def test_imp_levels_are_cells_and_pair_with_the_control_of_their_level() -> None:
    points = [_point("imp", t, 1, s, acc, cell="imp", level=level)
              for level, t, acc in ((1, 0.2, 0.96), (2, 0.36, 0.955)) for s in (0, 1)]
    points += [_point("imp_reinit", t, 1, s, acc, cell="imp", level=level)
               for level, t, acc in ((1, 0.2, 0.90), (2, 0.36, 0.97)) for s in (0, 1)]
    _, _, rows, winners = _judged(points)
    level_2 = _one(rows, kind="imp", level=2)
    assert level_2.gap("reinit").mean == pytest.approx(-0.015) and not level_2.eligible
    assert winners[1].level == 1 and winners[1].gap("reinit").mean == pytest.approx(0.06)


# Item 9: collapsed is empty; the floor is a warning -------------------------------------------------------------

def test_a_run_at_the_floor_stays_on_the_curve_and_can_win(tmp_path: Path) -> None:
    points = [_point("ticket", 0.9, 1, s, 0.955, floor=True) for s in (0, 1)]
    family, selection, rows, winners = _judged(points)
    assert winners[1].threshold == 0.9 and rows[0].floor_runs == 2
    figure = lottery_plot(rows, [0.95, 0.96], [], "t")
    assert [list(line.get_xdata()) for line in figure.axes[0].get_lines() if line.get_gid() == series_gid(rows[0])
            ] == [pytest.approx([10.0])]
    markdown = write_markdown(rows, winners, family, selection, 0.01, [], tmp_path / "r.md").read_text()
    assert "- k=1: t=0.9: 2 of 2 seeds" in markdown and "## At the floor (1 cells)" in markdown


def test_a_run_with_an_emptied_layer_is_off_the_lines_and_cannot_win() -> None:
    points = [_point("ticket", 0.5, 1, s, 0.95) for s in (0, 1)]
    points += [_point("ticket", 0.95, 1, 0, 0.96), _point("ticket", 0.95, 1, 1, 0.40, empty=True)]
    _, _, rows, _ = _judged(points)
    collapsed = _one(rows, threshold=0.95)
    assert collapsed.why_not == "1/2 seeds learned (1 collapsed)" and collapsed.test_mean == 0.96
    figure = lottery_plot(rows, [0.95, 0.96], [p for p in points if p.empty_layers], "t")
    lines = {line.get_gid(): line for line in figure.axes[0].get_lines()}
    assert (list(lines["collapsed"].get_xdata()), list(lines["collapsed"].get_ydata())) == (
        [pytest.approx(5.0)], [0.40])
    assert 0.40 not in list(lines[series_gid(collapsed)].get_ydata())


# Item 14: winners chosen on validation --------------------------------------------------------------------------

def test_winners_are_chosen_on_validation_and_the_table_shows_test(tmp_path: Path) -> None:
    dense = [_dense(0, test=0.90, val=0.95), _dense(1, test=0.90, val=0.95)]
    points = [_point("ticket", 0.9, 1, s, test=0.95, val=0.90) for s in (0, 1)]  # matches dense on test only
    points += [_point("ticket", 0.5, 1, s, test=0.85, val=0.95) for s in (0, 1)]  # matches on validation
    family, selection, rows, winners = _judged(points, dense)
    assert selection.metric == "val_accuracy" and winners[1].threshold == 0.5
    assert winners[1].test_mean == 0.85  # what the table shows
    markdown = write_markdown(rows, winners, family, selection, 0.01, [], tmp_path / "r.md").read_text()
    assert ("Winners chosen on validation split `val` (a stratified 0.1 slice of train); accuracies shown on `test`."
            in markdown)
    assert "WARNING" not in markdown


def test_runs_without_val_accuracy_fall_back_to_test_and_say_so_loudly() -> None:
    points = [replace(_point("ticket", 0.8, 1, s, 0.95), val_accuracy=None) for s in (0, 1)]
    _, selection, _, winners = _judged(points)
    assert selection.metric == "test_accuracy" and winners[1] is not None
    assert selection.sentence == "Winners chosen on TEST split `test`; accuracies shown on `test`."
    assert selection.warnings[0].startswith("**WARNING: 2 run(s) lack `val_accuracy`")


@pytest.mark.parametrize(("params", "sentence", "warns"), [
    ((("data.name", "imagenet"), ("data.val_split", "holdout"), ("data.test_split", "val")),
     "Winners chosen on validation split `holdout`; accuracies shown on `val`.", False),
    ((("data.name", "imagenet"), ("data.val_split", "val"), ("data.test_split", "val")),
     "Winners chosen on validation split `val`; accuracies shown on `val`.", True),
    ((("data.name", "imagenet"), ("data.eval_split", "val")),  # logged before val and test were separate
     "Winners chosen on validation split `val`; accuracies shown on `val`.", True),
])
def test_the_report_names_both_splits_and_warns_when_they_are_one(params: tuple, sentence: str, warns: bool) -> None:
    family = Family("f", dense=[_dense(0, 0.7, params=params)], points=[_point("ticket", 0.8, 1, 0, 0.7)])
    selection = selection_of(family)
    assert selection.sentence == sentence
    assert bool(selection.warnings) is warns
    assert not warns or "validation and test are the same split (`val`)" in selection.warnings[0]


# Figures --------------------------------------------------------------------------------------------------------

SWEEP = [_point(kind, t, k, s, acc + s / 100)
         for kind, acc in (("ticket", 0.95), ("reinit", 0.90), ("random_mask", 0.85))
         for t in (0.5, 0.8) for k in (0, 1) for s in (0, 1)]


def test_winners_are_starred_at_their_coordinates_and_each_kind_series_and_reset_is_one_line() -> None:
    _, _, rows, winners = _judged(SWEEP)
    lines = lottery_plot(rows, [0.95, 0.96], [], "t").axes[0].get_lines()
    stars = [(list(line.get_xdata()), list(line.get_ydata())) for line in lines if line.get_gid() == "winner"]
    assert sorted(stars) == sorted(([pytest.approx(100 * w.weights_remaining)], [pytest.approx(w.test_mean)])
                                   for w in winners.values())
    assert all(line.get_marker() == "*" for line in lines if line.get_gid() == "winner")
    series = {line.get_gid(): line for line in lines if str(line.get_gid()).startswith("series:")}
    assert len(series) == 3 * 2  # (ticket, reinit, random_mask) x reset epochs 0 and 1
    assert {gid: line.get_linestyle() for gid, line in series.items()} == {  # controls dashed, tickets solid
        f"series:{kind}:lamp::k={k}": "-" if kind == "ticket" else "--"
        for kind in ("ticket", "reinit", "random_mask") for k in (0, 1)}


def test_diverged_runs_are_crosses_on_the_axis_at_their_weights_remaining() -> None:
    diverged = [replace(_point("ticket", 0.9, 1, 0, None, diverged="nan"), weights_remaining=0.0995)]
    _, _, rows, _ = _judged([*SWEEP, *diverged])
    line = next(x for x in lottery_plot(rows, [0.95], diverged, "t").axes[0].get_lines() if x.get_gid() == "diverged")
    assert (line.get_marker(), list(line.get_xdata()), list(line.get_ydata())) == ("x", [pytest.approx(9.95)], [0.0])


def test_density_figure_has_a_panel_per_scope_and_draws_imp_levels() -> None:
    points = [_point("ticket", 0.8, 1, 0, 0.95), _point("ticket", 0.8, 1, 0, 0.95, scope="global", cell="g"),
              _point("imp", 0.2, 1, 0, 0.95, cell="imp", level=1), _point("imp", 0.36, 1, 0, 0.95, cell="imp", level=2)]
    family, _, rows, _ = _judged(points, [_dense(0, 0.95)])
    chosen = density_choices(family, rows)
    assert {scope: sorted(labels) for scope, labels in chosen.items()} == {
        "global": ["t=0.8"], "lamp": ["IMP level 1 (t=0.2)", "IMP level 2 (t=0.36)", "t=0.8"]}
    panels = {scope: {label: [("Conv1", 0.5), ("Conv_1", 0.0)] for label in labels} for scope, labels in chosen.items()}
    figure = density_plot(panels, "d")
    assert [ax.get_title() for ax in figure.axes] == ["d: scope global", "d: scope lamp"]
    assert [len(ax.get_lines()) for ax in figure.axes] == [1, 3]


# Files ----------------------------------------------------------------------------------------------------------

def test_files_hold_every_cell_and_the_missing_ones(tmp_path: Path) -> None:
    points = [*SWEEP[:-1], replace(SWEEP[-1], status="RUNNING")]
    family, selection, rows, winners = _judged(points)
    missing = missing_cells(family, rows)
    assert missing == ["random_mask t=0.8 k=1 seed=1: RUNNING"]
    lines = write_csv(rows, selection, tmp_path / "results.csv").read_text().splitlines()
    assert lines[0].split(",") == list(CSV_COLUMNS) and len(lines) == 1 + 12
    markdown = write_markdown(rows, winners, family, selection, 0.01, missing, tmp_path / "report.md").read_text()
    assert "## Missing cells (1)" in markdown and "- random_mask t=0.8 k=1 seed=1: RUNNING" in markdown


def test_a_never_started_cell_of_the_grid_is_missing() -> None:
    points = [_point("ticket", t, k, s, 0.95) for t, k in ((0.5, 0), (0.5, 1), (0.8, 1)) for s in (0, 1)]
    family, _, rows, _ = _judged(points)
    assert missing_cells(family, rows) == ["ticket t=0.8 k=0 seed=0: never started",
                                           "ticket t=0.8 k=0 seed=1: never started"]


# A dense parent at chance ---------------------------------------------------------------------------------------

def test_tickets_of_a_dense_parent_at_chance_cannot_win_and_the_report_says_why(tmp_path: Path) -> None:
    params = (("data.name", "digits"), ("data.val_fraction", "0.1"), ("data.num_classes", "10"))
    dense = [_dense(0, 0.10, params=params)]  # a 10-class parent at 0.10: it learned nothing
    points = [_point("ticket", 0.5, 1, 0, 0.10)]  # "matches" it
    family, selection, rows, winners = _judged(points, dense)
    assert rows[0].why_not == "dense parent at chance (1 of 1 seeds)" and winners[1] is None
    markdown = write_markdown(rows, winners, family, selection, 0.01, [], tmp_path / "r.md").read_text()
    assert ("**WARNING: dense parent seed=0 is at chance (test accuracy 0.1000, at most 1.5/10): its tickets "
            "cannot win.**") in markdown
    assert "dense parent at chance" in _cell_notes(markdown, rows[0])
    assert figure_title("f", family, rows).endswith("1 runs: 0 learned, 1 learned from a dense parent at chance")


def _cell_notes(markdown: str, row) -> str:
    """The `failed or missing` column of a row's line in the all-cells table."""
    line = next(x for x in markdown.splitlines() if x.startswith(f"| {row.kind} | {row.scope} |"))
    return line.split("|")[-3]


# IMP stops at a diverged level ----------------------------------------------------------------------------------

def test_imp_levels_above_a_diverged_level_say_imp_stopped_there() -> None:
    def level(kind: str, number: int, seed: int, accuracy: float | None, diverged: str = "") -> Point:
        t = {1: 0.2, 2: 0.36, 3: 0.488}[number]  # one IMP job's levels share its cell
        return replace(_point(kind, t, 1, seed, accuracy, diverged=diverged, level=number), cell="imp-k1")

    points = [level("imp", n, s, 0.95) for n in (1, 2, 3) for s in (0, 1) if (s, n) not in ((1, 2), (1, 3))]
    points.append(level("imp", 2, 1, None, diverged="chance"))  # seed 1's IMP stops here
    points += [level("imp_reinit", n, s, 0.90) for n in (1, 2, 3) for s in (0, 1) if (s, n) != (1, 3)]
    family, _, rows, _ = _judged(points)
    assert _one(rows, kind="imp", level=3).missing == ((1, 1, 0, "IMP stopped at level 2 (diverged)"),)
    assert _one(rows, kind="imp_reinit", level=3).missing == (
        (1, 1, 0, "IMP stopped at level 2 (its ticket diverged)"),)
    assert missing_cells(family, rows) == ["imp level 3 t=0.488 k=1 seed=1: IMP stopped at level 2 (diverged)",
                                           "imp_reinit level 3 t=0.488 k=1 seed=1: IMP stopped at level 2 "
                                           "(its ticket diverged)"]
