"""The report's figures, built as matplotlib Figures (so tests can read what is drawn) and saved as PNG.

Every drawn element carries a gid: `dense`, `series:<kind>:<scope>:<settings>:k=<reset>` (one line per
kind, series and reset epoch), `winner`, `partial` (cells where some seed did not learn),
`diverged`, `collapsed` and `stable` (cells an instability analysis found stable); density panels are titled by scope.
The x axis is one base, all prunable weights: cells logged before it on their masked layers only are not drawn, and
a legend entry (gid `apart`) counts them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # no pyplot: no global figure state, no display needed

from lth.report.cells import TICKET_KINDS, Row
from lth.report.collect import Point
from lth.report.scales import x_cells, y_zoom

RING_COLOURS = ("green", "darkcyan", "olive", "teal")  # one per analysis setting that found cells stable
STYLES = {  # kind -> (line style, marker, label); tickets solid, IMP dash-dotted, controls dashed (Frankle & Carbin)
    "ticket": ("-", "o", "ticket"),
    "imp": ("-.", "s", "IMP"),
    "reinit": ("--", "v", "reinit control"),
    "random_mask": ((0, (3, 1.5)), "^", "random-mask control"),
    "imp_reinit": ("--", "D", "IMP reinit control"),
    "imp_random_mask": ((0, (3, 1.5)), "P", "IMP random-mask control"),
}
Profiles = Mapping[str, Sequence[tuple[str, float]]]  # line label -> (layer, density) in network order


def series_gid(row: Row) -> str:
    """The gid of the line `row` is drawn on."""
    return f"series:{row.kind}:{row.scope}:{row.label}:k={row.reset_epoch}"


def _x(point: Point) -> float:
    """% of weights remaining; a run that never logged it sits at its nominal threshold."""
    return 100 * (point.weights_remaining if point.weights_remaining is not None else 1.0 - point.threshold)


def _count_stacked(ax: Axes, where: Sequence[tuple[float, float]], colour: str) -> None:
    """`×3` over a marker that stands for several runs (reset epochs at one sparsity), so none is lost."""
    for (x, y), count in sorted(Counter((round(x, 6), round(y, 4)) for x, y in where).items()):
        if count > 1:
            ax.annotate(f"×{count}", (x, y), xytext=(6, 5), textcoords="offset points", ha="left", fontsize=7,
                        color=colour, annotation_clip=False)


def lottery_plot(rows: Sequence[Row], dense: Sequence[float], failed: Sequence[Point], title: str,
                 stable: Mapping[str, tuple[str, ...]] | None = None) -> Figure:
    """Test accuracy against % of weights remaining (log x labelled at the cells, sparser to the right).

    The y axis zooms to the learned cells and the dense band; runs that did not learn are drawn in
    a narrow band of their own below (see `lth.report.scales.y_zoom`), so none is hidden.

    Args:
        rows: Aggregated cells; each with a learned seed is a point (mean, min-max bars) on its line.
        dense: Dense test accuracies over seeds (a black line and a grey band).
        failed: FINISHED runs that did not learn: diverged ones are red crosses at 0 (never at an
            accuracy) at their weights remaining, ones with an emptied layer orange crosses at their
            accuracy, off the lines; `×n` counts runs drawn on one spot.
        title: Figure title.
        stable: Report cell (lth.cell) -> the settings of the analyses that found it stable: ringed, one
            ring colour and legend entry per analysis setting (lth.report.stability.stable_cells).
    """
    apart = [r for r in rows if not r.base_known]  # another axis: a share of their masked layers only
    rows, failed = [r for r in rows if r.base_known], [p for p in failed if p.base_known]
    fig = Figure(figsize=(11, 5.5), dpi=120, layout="constrained")  # constrained: room for the outside legend
    ax = fig.subplots()
    if dense:
        mean = float(np.mean(dense))
        ax.axhline(mean, color="black", linewidth=1.2, gid="dense",
                   label=f"dense {mean:.3f} ({len(dense)} seed{'s' * (len(dense) > 1)})")
        ax.axhspan(min(dense), max(dense), color="grey", alpha=0.25, linewidth=0)
    scopes = {r.scope for r in rows}
    drawn = [r for r in rows if r.test_mean is not None]
    colours = {key: colormaps["tab10"](i % 10)
               for i, key in enumerate(sorted({(r.scope, r.label, r.reset_epoch) for r in rows}))}
    for gid in sorted({series_gid(r) for r in drawn}):
        line = sorted((r for r in drawn if series_gid(r) == gid), key=lambda r: -r.weights_remaining)
        first = line[0]
        style, marker, name = STYLES.get(first.kind, ("--", "x", first.kind))
        tags = ", ".join(filter(None, [first.scope if len(scopes) > 1 else "", first.label]))
        colour = colours[(first.scope, first.label, first.reset_epoch)]
        bars = ax.errorbar([100 * r.weights_remaining for r in line], [r.test_mean for r in line],
                           yerr=[[r.test_mean - r.test_low for r in line], [r.test_high - r.test_mean for r in line]],
                           linestyle=style, marker=marker, color=colour, capsize=3, markersize=5,
                           alpha=1.0 if first.kind in TICKET_KINDS else 0.7,
                           label=f"k={first.reset_epoch} {name}" + (f" [{tags}]" if tags else ""))
        bars.lines[0].set_gid(gid)
        partial = [r for r in line if r.seeds_learned < r.seeds_run]
        if partial:  # the mean of the survivors only: mark it, never let it pass for the cell's
            ax.plot([100 * r.weights_remaining for r in partial], [r.test_mean for r in partial], marker="o",
                    markersize=11, markerfacecolor="none", markeredgecolor="red", linestyle="none", gid="partial")
    settings = sorted({setting for found in (stable or {}).values() for setting in found})
    for i, setting in enumerate(settings):  # stable under SGD noise: the cells late resetting is meant to find
        ringed = [r for r in drawn if r.kind == "ticket" and setting in (stable or {}).get(r.cell, ())]
        ax.plot([100 * r.weights_remaining for r in ringed], [r.test_mean for r in ringed], marker="o",
                markersize=15 + 5 * i, markerfacecolor="none", markeredgecolor=RING_COLOURS[i % len(RING_COLOURS)],
                markeredgewidth=2, linestyle="none", gid="stable",
                label=f"stable: validation barrier below the threshold ({setting})")
    winners = [r for r in drawn if r.winner]
    for row in winners:
        ax.plot(100 * row.weights_remaining, row.test_mean, marker="*", markersize=18, gid="winner",
                color=colours[(row.scope, row.label, row.reset_epoch)], markeredgecolor="black", zorder=5,
                linestyle="none")
    diverged = [p for p in failed if p.diverged]
    collapsed = [p for p in failed if not p.diverged and p.empty_layers and p.test_accuracy is not None]
    if diverged:
        ax.plot([_x(p) for p in diverged], [0.0] * len(diverged), "x", color="red", markersize=10, gid="diverged",
                markeredgewidth=2, clip_on=False, linestyle="none", label="diverged: NaN or chance (no accuracy)")
        _count_stacked(ax, [(_x(p), 0.0) for p in diverged], "red")
    if collapsed:  # at their accuracy but apart from the lines: a network with an emptied layer is not a ticket
        ax.plot([_x(p) for p in collapsed], [p.test_accuracy for p in collapsed], "X", color="orange",
                markeredgecolor="black", markersize=9, linestyle="none", gid="collapsed", label="emptied layer(s)")
        _count_stacked(ax, [(_x(p), float(p.test_accuracy)) for p in collapsed], "darkorange")
    if any(r.seeds_learned < r.seeds_run for r in drawn):
        ax.plot([], [], marker="o", markersize=11, markerfacecolor="none", markeredgecolor="red", linestyle="none",
                label="some seeds did not learn (mean of those that did)")
    ax.plot([], [], marker="*", markersize=14, color="white", markeredgecolor="black", linestyle="none",
            label="winning ticket")
    if apart:
        ax.plot([], [], linestyle="none", gid="apart",
                label=f"not drawn: {len(apart)} cell{'s' * (len(apart) > 1)} logged before the common base "
                      f"(% of masked layers only; see report.md)")
    x_cells(ax, [100 * r.weights_remaining for r in rows] + [_x(p) for p in failed])
    learned = [v for r in drawn for v in (r.test_low, r.test_high)] + [*dense]
    y_zoom(ax, learned, [0.0] * len(diverged) + [p.test_accuracy for p in collapsed])
    ax.set_xlabel("% of weights remaining (log scale)")
    ax.set_ylabel("test accuracy")
    ax.grid(True, which="major", alpha=0.3)
    fig.suptitle(title, fontsize=10)  # over the whole figure: a long second line is not cut off
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # off the data
    return fig


def density_plot(panels: Mapping[str, Profiles], title: str) -> Figure:
    """Per-layer density, layers in network order: one panel per scope, one line per mask in it."""
    fig = Figure(figsize=(12, 4 * max(len(panels), 1)), dpi=110)
    axes = fig.subplots(max(len(panels), 1), 1, squeeze=False)[:, 0]
    for ax, (scope, profiles) in zip(axes, sorted(panels.items())):
        layers: list[str] = []
        for label, profile in profiles.items():
            layers = layers or [name for name, _ in profile]
            ax.plot(range(len(profile)), [max(density, 1e-5) for _, density in profile], marker=".", label=label)
        ax.set_yscale("log")  # an emptied layer is drawn at the bottom edge, not dropped
        ax.set_ylim(bottom=1e-5, top=1.5)
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels(layers, rotation=90, fontsize=6)
        ax.set_ylabel("density (kept fraction, log)")
        ax.set_title(f"{title}: scope {scope}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write `fig` as PNG to `path` and return the path."""
    fig.savefig(path)
    return path


def lottery_figure(rows: Sequence[Row], dense: Sequence[float], failed: Sequence[Point], title: str,
                   path: Path, stable: Mapping[str, tuple[str, ...]] | None = None) -> Path:
    """`lottery_plot` written to `path`."""
    return save(lottery_plot(rows, dense, failed, title, stable), path)


def density_figure(panels: Mapping[str, Profiles], title: str, path: Path) -> Path:
    """`density_plot` written to `path`."""
    return save(density_plot(panels, title), path)
