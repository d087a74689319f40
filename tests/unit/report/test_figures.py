"""lottery.png at the seed's scale: x labels that do not collide, a y axis zoomed to what learned, an honest title.

The figures are drawn with Agg, so what is asserted is where the renderer puts things on the page.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lth.report import outcomes
from lth.report.cells import Row, aggregate
from lth.report.collect import DenseRun, Family, Point
from lth.report.figures import lottery_plot
from lth.report.winners import mark_winners

SEED_GRID = [round(1 - 0.8**n, 6) for n in range(1, 21)]  # conf/experiment/seed_grid.yaml: 80% down to 1.15% kept
SEED_RESETS = (0, 1, 2, 4, 6)
DEMO_GRID = [0.5, 0.7, 0.8]  # conf/experiment/demo.yaml
DENSE = [DenseRun(0, "FINISHED", 0.96, 0.96, "dense-0")]


def _point(t: float, k: int, test: float | None, *, seed: int = 0, status: str = "FINISHED", diverged: str = "",
           empty: bool = False, floor: bool = False) -> Point:
    return Point("ticket", seed, t, k, status, 1 - t, None if diverged else test, bool(diverged), empty,
                 f"ticket-{t}-{k}-{seed}", "global", val_accuracy=test, cell=f"c-{t}-{k}", divergence=diverged,
                 floor_layers=floor)


def _rows(points: Sequence[Point], dense: Sequence[DenseRun] = DENSE) -> tuple[Family, list[Row]]:
    family = Family("f", dense=list(dense), points=list(points))
    return family, mark_winners(aggregate(family), 0.01)[0]


def _drawn(rows: Sequence[Row], failed: Sequence[Point] = ()) -> Figure:
    figure = lottery_plot(rows, [0.96], failed, "t")
    FigureCanvasAgg(figure).draw()  # lays out and places the ticks exactly as savefig does
    return figure


def _main(figure: Figure) -> Axes:
    return next(ax for ax in figure.axes if any(str(x.get_gid()).startswith("series:") for x in ax.get_lines()))


def _line(figure: Figure, gid: str):
    return next(x for ax in figure.axes for x in ax.get_lines() if x.get_gid() == gid)


def _labels(ax: Axes) -> list[tuple[str, object]]:
    """(text, box on the page) of every x tick label drawn: in view, visible and not empty."""
    renderer = ax.figure.canvas.get_renderer()
    low, high = sorted(ax.get_xlim())
    ticks = [*zip(ax.xaxis.get_majorticklocs(), ax.xaxis.get_major_ticks(len(ax.xaxis.get_majorticklocs()))),
             *zip(ax.xaxis.get_minorticklocs(), ax.xaxis.get_minor_ticks(len(ax.xaxis.get_minorticklocs())))]
    return [(tick.label1.get_text(), tick.label1.get_window_extent(renderer)) for loc, tick in ticks
            if low <= loc <= high and tick.label1.get_visible() and tick.label1.get_text()]


def _grid(thresholds: Sequence[float], resets: Sequence[int]) -> list[Point]:
    return [_point(t, k, 0.95 - 0.15 * i / len(thresholds) + 0.002 * k)
            for i, t in enumerate(thresholds) for k in resets]


# x ticks ----------------------------------------------------------------------------------------------------------

def test_the_seed_grids_tick_labels_do_not_overlap_and_name_both_ends() -> None:
    _, rows = _rows(_grid(SEED_GRID, SEED_RESETS))
    labels = _labels(_main(_drawn(rows)))
    boxes = sorted((box for _, box in labels), key=lambda box: box.x0)
    gaps = [right.x0 - left.x1 for left, right in zip(boxes, boxes[1:])]
    assert min(gaps) >= 2, [text for text, _ in labels]  # pixels between neighbouring labels
    texts = [text for text, _ in labels]
    assert "80%" in texts and "1.15%" in texts  # the densest and the sparsest cell are named
    assert len(texts) >= 6  # thinned, not emptied


def test_the_tick_choice_is_deterministic_and_names_the_demos_every_threshold() -> None:
    _, rows = _rows(_grid(SEED_GRID, SEED_RESETS))
    assert [t for t, _ in _labels(_main(_drawn(rows)))] == [t for t, _ in _labels(_main(_drawn(rows)))]
    _, demo = _rows(_grid(DEMO_GRID, (0, 1)))
    assert sorted(t for t, _ in _labels(_main(_drawn(demo)))) == ["20%", "30%", "50%"]


# y axis -----------------------------------------------------------------------------------------------------------

def _height_share(ax: Axes, low: float, high: float) -> float:
    """The share of the axes' height that accuracies low..high take on the page."""
    bottom, top = ax.transData.transform([(10.0, low), (10.0, high)])[:, 1]
    return float((top - bottom) / ax.bbox.height)


def test_the_y_axis_zooms_to_the_learned_runs_with_a_margin() -> None:
    _, rows = _rows(_grid(SEED_GRID, SEED_RESETS))
    ax = _main(_drawn(rows))
    low = min(r.test_low for r in rows)
    high = max([*(r.test_high for r in rows), 0.96])  # the dense line is a learned run too
    assert _height_share(ax, low, high) > 0.8  # the differences between tickets get the page
    bottom, top = ax.transData.transform([(10.0, low), (10.0, high)])[:, 1]
    assert bottom > ax.bbox.y0 + 2 and top < ax.bbox.y1 - 2  # with a margin: no point sits on the frame


def test_failed_runs_stay_visible_in_a_narrow_band_below_the_learned_runs() -> None:
    points = _grid(SEED_GRID[:10], SEED_RESETS)
    points += [_point(SEED_GRID[12], 0, None, diverged="chance"), _point(SEED_GRID[13], 0, None, diverged="nan"),
               _point(SEED_GRID[14], 0, 0.40, empty=True)]
    _, rows = _rows(points)
    failed = [p for p in points if not p.learned]
    figure = _drawn(rows, failed)
    ax = _main(figure)
    learned_bottom = ax.transData.transform((10.0, min(r.test_low for r in rows if r.test_low is not None)))[1]
    for gid, count in (("diverged", 2), ("collapsed", 1)):
        line = _line(figure, gid)
        shown = line.axes.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()]))
        assert len(shown) == count
        assert all(line.axes.bbox.y0 <= y < learned_bottom for y in shown[:, 1])  # drawn, below what learned
        assert all(ax.bbox.x0 < x < ax.bbox.x1 for x in shown[:, 0])
    share = (learned_bottom - ax.bbox.y0) / ax.bbox.height
    assert share < 0.25  # the band is narrow: the learned runs keep the page
    learned = [r for r in rows if r.test_mean is not None]
    assert _height_share(ax, min(r.test_low for r in learned), max(r.test_high for r in learned)) > 0.6


# title ------------------------------------------------------------------------------------------------------------

def test_the_title_says_what_did_not_learn_and_what_is_missing_and_why() -> None:
    points = [_point(0.5, 1, 0.95), _point(0.6, 1, 0.95, floor=True), _point(0.7, 1, 0.94, floor=True)]
    points += [_point(t, 1, None, diverged="chance") for t in (0.9, 0.92)]
    points += [_point(0.94, 1, None, diverged="nan"), _point(0.95, 1, 0.08, empty=True)]
    points += [_point(0.96, 1, None, status="FAILED"), _point(0.97, 1, None, status="RUNNING")]
    points += [_point(t, 0, 0.95) for t in (0.5, 0.6)]  # k=0 has none of the sparser cells: never started
    family, rows = _rows(points)
    title = outcomes.figure_title("seed_grid", family, rows)
    assert title.splitlines()[0] == "Lottery tickets of seed_grid"
    assert " ".join(title.splitlines()[1:]) == (  # the second line wraps at the figure's width
        "18 runs: 5 learned (2 with a layer at the min_density floor), 2 stuck at chance, 1 diverged (NaN), "
        "1 emptied a layer, 1 failed, 1 running, 7 not started")
    assert "missing" not in title  # a run at the floor or at chance was trained: it is not missing


def test_a_complete_family_says_so_and_an_unfinished_dense_parent_is_named() -> None:
    family, rows = _rows(_grid(DEMO_GRID, (0, 1)))
    assert outcomes.figure_title("demo", family, rows) == "Lottery tickets of demo\n6 runs: 6 learned"
    dense = [*DENSE, DenseRun(1, "FAILED", None, None, "dense-1")]
    family, rows = _rows(_grid(DEMO_GRID, (0, 1)), dense)
    assert outcomes.figure_title("demo", family, rows).endswith("6 runs: 6 learned; 1 dense parent not finished")
