"""Figures of instability analysis: one linear path, and barrier against reset epoch (the report's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib import colormaps
from matplotlib.figure import Figure  # no pyplot: no global figure state, no display needed

if TYPE_CHECKING:  # lth.stability.path imports Keras; the report draws barriers without it
    from lth.stability.path import PathErrors


SPLIT_STYLE = {"val": ("--", "validation"), "test": ("-", "test")}  # validation decides, test is reported


def path_figure(paths: Mapping[str, Mapping[int, PathErrors]], title: str, threshold: float) -> Figure:
    """Error along each copy's path to copy 1 (α = 1) on each split, with each barrier in the legend.

    The verdict in the title is validation's (test's alone when only test was walked).
    """
    fig = Figure(figsize=(6.5, 4), dpi=120, layout="constrained")
    ax = fig.subplots()
    for index, seed in enumerate(sorted({seed for by_seed in paths.values() for seed in by_seed})):
        colour = colormaps["tab10"](index % 10)
        for split, by_seed in paths.items():
            if seed in by_seed:
                found = by_seed[seed]
                style, name = SPLIT_STYLE[split]
                ax.plot(found.alphas, [100 * e for e in found.errors], style, marker="o", markersize=3, color=colour,
                        gid=f"path:{split}:{seed}",
                        label=f"copy data_seed={seed}, {name}: barrier {100 * found.barrier:.2f}%")
    ax.set_xlabel("α   (0: the copy, 1: copy 1)")
    ax.set_ylabel("error (%)")
    judged = "val" if "val" in paths else "test"
    stable = all(found.barrier < threshold for found in paths[judged].values())
    ax.set_title(f"{title}: {'stable' if stable else 'unstable'} on {SPLIT_STYLE[judged][1]} "
                 f"(barrier < {100 * threshold:g}%: stable)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def barrier_figure(lines: Mapping[str, Sequence[tuple[int, float]]], threshold: float, title: str) -> Figure:
    """Error barrier (%) against reset epoch k, one line per sparsity (and `dense`), the threshold dashed."""
    fig = Figure(figsize=(7.5, 4.5), dpi=120, layout="constrained")
    ax = fig.subplots()
    for index, (label, points) in enumerate(lines.items()):
        ordered = sorted(points)
        colour = "black" if label == "dense" else colormaps["tab10"](index % 10)
        ax.plot([k for k, _ in ordered], [100 * b for _, b in ordered], marker="o", color=colour, gid=f"barrier:{label}",
                label=label)
    ax.set_xticks(sorted({k for points in lines.values() for k, _ in points}))  # the analysed epochs only
    ax.axhline(100 * threshold, color="red", linestyle="--", linewidth=1, gid="threshold",
               label=f"stable below {100 * threshold:g}%")
    ax.set_xlabel("reset epoch k")
    ax.set_ylabel("error barrier (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write `fig` as PNG and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
