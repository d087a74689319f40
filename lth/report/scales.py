"""The axes of lottery.png: x ticks at the cells' sparsities that never collide.

On the seed's grid (1 - 0.8^n kept, n = 1..20) the cells are 0.097 decades apart, about the width
of a label, and matplotlib's log ticks label 20%..90% within half a decade.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path
from matplotlib.ticker import FuncFormatter, Locator, LogLocator, NullFormatter

LABEL_SIZE = 8.0  # points: x tick labels
LABEL_GAP = 6.0  # points of white between neighbouring x labels


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
