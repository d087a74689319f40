"""The lottery-ticket figure: accuracy against % of weights remaining (log x), one line per reset epoch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; report jobs run on machines without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from lth.report.collect import Point  # noqa: E402
from lth.report.summary import Row, scope_label  # noqa: E402

STYLES = {  # kind -> (line style, marker, label suffix); controls dashed, as in Frankle & Carbin
    "ticket": ("-", "o", "ticket"),
    "imp": ("-.", "s", "IMP"),
    "reinit": ("--", "v", "reinit control"),
    "random_mask": (":", "^", "random-mask control"),
    "imp_reinit": ("--", "D", "IMP reinit control"),
}


def lottery_figure(rows: Sequence[Row], dense: Sequence[float], failed: Sequence[Point], title: str,
                   path: Path) -> Path:
    """Write the figure to `path` (PNG) and return it.

    Args:
        rows: Aggregated cells (mean, min-max over seeds).
        dense: Dense test accuracies over seeds (drawn as a band).
        failed: Diverged runs (red crosses on the x axis, never accuracies) and runs with collapsed
            layers (orange crosses at their accuracy, off the lines).
        title: Figure title.
        path: Where to write.
    """
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    if dense:
        mean = float(np.mean(dense))
        ax.axhline(mean, color="black", linewidth=1.2, label=f"dense {mean:.3f} ({len(dense)} seed{'s' * (len(dense) > 1)})")
        ax.axhspan(min(dense), max(dense), color="grey", alpha=0.25, linewidth=0)
    scopes = {r.scope for r in rows}
    series = sorted({(r.scope, r.reset_epoch) for r in rows})  # one colour per (scope, reset epoch)
    colours = {key: plt.cm.tab10(i % 10) for i, key in enumerate(series)}
    for (kind, scope, reset) in sorted({(r.kind, r.scope, r.reset_epoch) for r in rows}):
        line = sorted((r for r in rows if (r.kind, r.scope, r.reset_epoch) == (kind, scope, reset)),
                      key=lambda r: -r.weights_remaining)
        style, marker, label = STYLES.get(kind, ("--", "x", kind))
        x = [100 * r.weights_remaining for r in line]
        y = np.array([r.mean for r in line])
        errors = np.array([[r.mean - r.low for r in line], [r.high - r.mean for r in line]])
        colour = colours[(scope, reset)]
        ax.errorbar(x, y, yerr=errors, linestyle=style, marker=marker, color=colour, capsize=3, markersize=5,
                    alpha=1.0 if kind in ("ticket", "imp") else 0.7,
                    label=f"k={reset} {label}{scope_label(scope, scopes)}")
        for r in line:
            if r.winner:
                ax.plot(100 * r.weights_remaining, r.mean, marker="*", markersize=18, color=colour,
                        markeredgecolor="black", zorder=5, linestyle="none")
    diverged = [p for p in failed if p.diverged]
    collapsed = [p for p in failed if not p.diverged]
    if diverged:
        ax.plot([100 * (p.weights_remaining or 1.0) for p in diverged], [0.0] * len(diverged), "x", color="red",
                markersize=10, markeredgewidth=2, clip_on=False, label="diverged (no accuracy)")
    if collapsed:  # drawn at their accuracy, but apart from the lines: an emptied layer is not a ticket
        ax.plot([100 * (p.weights_remaining or 1.0) for p in collapsed], [p.test_accuracy or 0.0 for p in collapsed],
                "X", color="orange", markeredgecolor="black", markersize=9, linestyle="none",
                label="collapsed layer(s)")
    ax.plot([], [], marker="*", markersize=14, color="white", markeredgecolor="black", linestyle="none",
            label="winning ticket")
    ax.set_xscale("log")
    ax.invert_xaxis()  # sparser to the right, as in the lottery-ticket papers
    percent = FuncFormatter(lambda value, _: f"{value:g}%")
    ax.xaxis.set_major_formatter(percent)
    ax.xaxis.set_minor_formatter(percent)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("% of weights remaining (log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(bottom=0.0)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def density_figure(profiles: dict[str, list[tuple[str, float]]], title: str, path: Path) -> Path:
    """Per-layer density, layers in network order, one line per mask (e.g. per threshold)."""
    fig, ax = plt.subplots(figsize=(12, 5), dpi=110)
    layers: list[str] = []
    for label, profile in profiles.items():
        layers = layers or [name for name, _ in profile]
        ax.plot(range(len(profile)), [density for _, density in profile], marker=".", label=label)
    ax.set_yscale("log")
    ax.set_ylim(bottom=1e-4, top=1.5)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=90, fontsize=6)
    ax.set_ylabel("density (kept fraction, log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
