"""The axes of lottery.png: x ticks at the cells' sparsities that never collide, y zoomed to what learned.

On the seed's grid (1 - 0.8^n kept, n = 1..20) the cells are 0.097 decades apart, about the width
of a label, and matplotlib's log ticks label 20%..90% within half a decade; an axis from 0 to 1
squeezes tickets that differ by a point of accuracy into a few pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path
from matplotlib.ticker import FixedLocator, FuncFormatter, Locator, LogLocator, MaxNLocator, NullFormatter, NullLocator

LABEL_SIZE = 8.0  # points: x tick labels
LABEL_GAP = 6.0  # points of white between neighbouring x labels
MARGIN = 0.08  # of the learned span, above and below it
MIN_SPAN = 0.02  # accuracy: never zoom closer than this, so noise does not look like a cliff
BAND = 0.12  # share of the axes' height that the runs that did not learn get below the zoom


def percent(value: float) -> str:
    """`51.2%`, `1.15%`, `80%`: a share of weights in three significant digits."""
    return f"{value:.3g}%"


class CellTicks(Locator):
    """Ticks at the cells' % of weights remaining, thinned on the page so that no two labels collide.

    Positions and label widths are measured on the page at draw time (after the layout, at the
    saving dpi), so the choice is deterministic for a figure size. Both the densest and the
    sparsest cell keep their label. Without cells in view it thins matplotlib's decade ticks.
    """

    def __init__(self, values: Sequence[float], size: float = LABEL_SIZE, gap: float = LABEL_GAP) -> None:
        """Ticks for the cells at `values`.

        Args:
            values: The cells' % of weights remaining (duplicates and 0 are dropped).
            size: The labels' font size in points.
            gap: White between neighbouring labels, in points.
        """
        self.values = sorted({float(f"{v:.3g}") for v in values if v > 0}, reverse=True)  # as the labels read
        self.font = FontProperties(size=size)
        self.gap = gap

    def __call__(self) -> list[float]:
        """The ticks to draw in the current view."""
        low, high = sorted(self.axis.get_view_interval())
        inside = [v for v in self.values if low <= v <= high]
        if not inside:
            inside = sorted((v for v in LogLocator().tick_values(low, high) if low <= v <= high), reverse=True)
        return self.thin(inside)

    def thin(self, values: Sequence[float]) -> list[float]:
        """`values` (densest first) at the smallest stride whose labels clear each other, both ends kept.

        A stride, not a greedy pass: on a geometric grid every label then sits the same distance apart.
        """
        if not values:
            return []
        points_per_pixel = 72.0 / self.axis.axes.figure.dpi
        where = self.axis.axes.transData.transform([(v, 1.0) for v in values])[:, 0] * points_per_pixel
        half = [text_to_path.get_text_width_height_descent(percent(v), self.font, ismath=False)[0] / 2 for v in values]

        def clear(i: int, j: int) -> bool:
            return abs(where[i] - where[j]) >= half[i] + half[j] + self.gap

        last = len(values) - 1
        for stride in range(1, last + 1):
            kept = list(range(0, last, stride))
            while len(kept) > 1 and not clear(kept[-1], last):  # the sparse end wins over its neighbour
                kept.pop()
            kept += [last] if clear(kept[-1], last) else []
            if all(clear(i, j) for i, j in zip(kept, kept[1:])):
                return [values[i] for i in kept]
        return [values[0]]


def x_cells(ax: Axes, values: Sequence[float]) -> None:
    """A log x axis of % of weights remaining, sparser to the right, labelled at the cells that fit."""
    ax.set_xscale("log")
    ax.invert_xaxis()  # sparser to the right, as in the lottery-ticket papers
    ax.xaxis.set_major_locator(CellTicks(values))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: percent(value)))
    ax.xaxis.set_minor_locator(LogLocator(subs=tuple(range(2, 10))))  # the log scale's feel, unlabelled
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", which="major", labelsize=LABEL_SIZE)


def _compressed(bottom: float, band: float) -> tuple[Callable[[np.ndarray], np.ndarray],
                                                     Callable[[np.ndarray], np.ndarray]]:
    """A y scale linear from `bottom` up, and 0..bottom squeezed into `band` below it (both ways)."""
    squeeze = band / bottom

    def forward(y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        return np.where(y >= bottom, y - bottom, (y - bottom) * squeeze)

    def inverse(s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=float)
        return np.where(s >= 0, s + bottom, s / squeeze + bottom)

    return forward, inverse


def y_zoom(ax: Axes, learned: Sequence[float], failed: Sequence[float]) -> None:
    """Zoom y to the learned accuracies (with a margin); what did not learn keeps a band of its own below.

    Args:
        ax: The lottery axes.
        learned: Accuracies that must show: every learned cell's min and max, the dense band.
        failed: Where runs that did not learn are drawn (0 for a diverged one). Those above the
            learned minimum widen the zoom; the others go to a band of BAND of the height,
            linear from 0 up to the zoom, marked off by a dashed line.
    """
    if not learned:
        ax.set_ylim(-0.02, 1.02)
        return
    shown = [*learned, *(y for y in failed if y >= min(learned))]
    low, high = min(shown), max(shown)
    margin = max(MARGIN * (high - low), (MIN_SPAN - (high - low)) / 2, 0.004)
    bottom, top = max(low - margin, 0.0), high + margin
    ticks = [t for t in MaxNLocator(6, steps=[1, 2, 2.5, 5, 10]).tick_values(bottom, top) if bottom <= t <= top]
    below = [y for y in failed if y < bottom]
    if not below or bottom <= 0.0:
        ax.set_ylim(bottom, top)
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        return
    band = BAND / (1 - BAND) * (top - bottom)  # in the scale's units, where the zoom spans top - bottom
    ax.set_yscale("function", functions=_compressed(bottom, band / 1.1))  # 1.1: room under the crosses at 0
    ax.set_ylim(-0.1 * bottom, top)
    ax.yaxis.set_major_locator(FixedLocator([0.0, *ticks]))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.axhspan(-0.1 * bottom, bottom, color="0.94", linewidth=0, zorder=0)
    ax.axhline(bottom, color="0.5", linewidth=0.8, linestyle=(0, (4, 3)), zorder=1)
    ax.text(0.005, bottom, f" did not learn (0 to {bottom:.2f} compressed)", transform=ax.get_yaxis_transform(),
            fontsize=7, color="0.35", style="italic", va="top", ha="left")
