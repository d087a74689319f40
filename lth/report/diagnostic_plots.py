"""The mask diagnostics as figures and a markdown paragraph: early_bird.png and mask_overlap.png.

Drawn elements carry gids, as in lth.report.figures: `early_bird:<scope label>:<threshold>` (one line
per sparsity), `early_bird_threshold` (You et al.'s 0.1), and `overlap:<overlap key>` (`overlap:IMP seeds`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure  # no pyplot: no global figure state, no display needed
from matplotlib.ticker import MaxNLocator

from lth.report.collect import Family
from lth.report.diagnostics import OVERLAP_KEYS, Diagnostics, EarlyBird, Overlaps, family_diagnostics
from lth.report.figures import save
from lth.report.scales import percent

EARLY_BIRD_EPSILON = 0.1  # You et al. call the mask drawn once consecutive distances stay below this
MARKERS = {"seed": "o", "scope": "s", "reset epoch": "^"}  # marker and colour by what differs; style by method
COLOURS = {differs: colormaps["tab10"](i) for i, differs in enumerate(MARKERS)}


def _comparison(key: str) -> tuple[str, str, str]:
    """(who, what differs, line style) of an overlap key: `IMP seeds` -> (IMP levels, seed, dash-dot)."""
    imp = key.startswith("IMP ")
    return ("IMP levels" if imp else "one-shot tickets"), key.removeprefix("IMP ")[:-1], "-." if imp else "--"


def early_bird_plot(distances: Mapping[str, EarlyBird], title: str) -> Figure | None:
    """Mask distance to the previous kept epoch against epoch: a panel per scope, a line per sparsity.

    Args:
        distances: Scope label -> threshold -> (epoch, distance), as `Diagnostics.early_bird`.
        title: Figure title.

    Returns:
        The figure, or None when no panel has a point.
    """
    panels = {label: lines for label, lines in distances.items() if any(lines.values())}
    if not panels:
        return None
    fig = Figure(figsize=(8, 3.8 * len(panels)), dpi=110, layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (label, lines) in zip(axes, sorted(panels.items())):
        for threshold, points in sorted(lines.items()):
            if points:
                ax.plot([e for e, _ in points], [d for _, d in points], marker="o",
                        label=f"{percent(100 * threshold)} sparsity", gid=f"early_bird:{label}:{threshold}")
        ax.axhline(EARLY_BIRD_EPSILON, color="grey", linestyle=":", linewidth=1, gid="early_bird_threshold",
                   label=f"{EARLY_BIRD_EPSILON:g} (You et al.'s early-bird threshold)")
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (distance from the previous kept epoch's mask)")
        ax.set_ylabel("mask distance (fraction of weights)")
        ax.set_title(f"scope {label}", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def overlap_plot(overlaps: Overlaps, title: str) -> Figure | None:
    """Mean Jaccard overlap against % sparsity, one marker set per comparison, each point's pair count beside it.

    Returns:
        The figure, or None when there is no pair.
    """
    drawn = {name: points for name, points in overlaps.items() if points}
    if not drawn:
        return None
    fig = Figure(figsize=(8, 4.5), dpi=110, layout="constrained")
    ax = fig.subplots()
    for key in [k for k in OVERLAP_KEYS if k in drawn] + sorted(set(drawn) - set(OVERLAP_KEYS)):
        who, differs, style = _comparison(key)
        xs, ys = [100 * s for s, _, _ in drawn[key]], [j for _, j, _ in drawn[key]]
        ax.plot(xs, ys, marker=MARKERS.get(differs, "x"), linestyle=style, color=COLOURS.get(differs, "black"),
                markerfacecolor="white" if style == "-." else None, label=f"{who} that differ in {differs}",
                gid=f"overlap:{key}")
        for x, y, (_, _, pairs) in zip(xs, ys, drawn[key]):
            ax.annotate(f"n={pairs}", (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.set_ylim(0, 1.05)  # a Jaccard index lives in [0, 1]; room above 1.0 for the pair counts
    ax.set_xlabel("sparsity (% of weights removed)")
    ax.set_ylabel("mean Jaccard overlap of kept weights")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def early_bird_figure(distances: Mapping[str, EarlyBird], title: str, path: Path) -> Path | None:
    """`early_bird_plot` written to `path`; None (and no file) when there is nothing to draw."""
    fig = early_bird_plot(distances, title)
    return None if fig is None else save(fig, path)


def overlap_figure(overlaps: Overlaps, title: str, path: Path) -> Path | None:
    """`overlap_plot` written to `path`; None (and no file) when there is nothing to draw."""
    fig = overlap_plot(overlaps, title)
    return None if fig is None else save(fig, path)


def _early_bird_sentence(label: str, lines: EarlyBird, epochs: Sequence[int]) -> str:
    """The last change of each sparsity's mask, and the epoch from which it stays under the threshold."""
    parts = []
    for threshold, points in sorted(lines.items()):
        if not points:
            continue
        last, distance = points[-1]
        before = max(e for e in epochs if e < last)
        part = f"at {percent(100 * threshold)} sparsity the mask changes by {percent(100 * distance)} " \
               f"from epoch {before} to {last}"
        settled = _settled_epoch(points)
        if settled is not None:
            part += f" (every change under {percent(100 * EARLY_BIRD_EPSILON)} from epoch {settled} on)"
        parts.append(part)
    return (f"Early-bird ({label}): " + "; ".join(parts) + ".") if parts else ""


def _settled_epoch(points: Sequence[tuple[int, float]]) -> int | None:
    """The first epoch after which every distance stays below EARLY_BIRD_EPSILON, if any."""
    settled = None
    for epoch, distance in points:
        settled = (settled if settled is not None else epoch) if distance < EARLY_BIRD_EPSILON else None
    return settled


def _epoch_list(epochs: Sequence[int]) -> str:
    """`0-15` for a run of consecutive epochs, `0, 1, 5, 15` otherwise."""
    consecutive = len(epochs) > 2 and list(epochs) == list(range(epochs[0], epochs[-1] + 1))
    return f"{epochs[0]}-{epochs[-1]}" if consecutive else ", ".join(map(str, epochs))


def diagnostics_text(d: Diagnostics) -> str:
    """A short markdown paragraph of both diagnostics; empty when there are none."""
    sentences = [_early_bird_sentence(label, lines, d.epochs) for label, lines in sorted(d.early_bird.items())]
    if d.dense_seed is not None and any(sentences):
        sentences.insert(0, f"Masks of the seed-{d.dense_seed} dense parent's weights at its kept epochs "
                            f"{_epoch_list(d.epochs)}.")
    for key in [k for k in OVERLAP_KEYS if k in d.overlaps]:
        who, differs, _ = _comparison(key)
        points = ", ".join(f"{j:.2f} at {percent(100 * (1 - s))} remaining ({pairs} pair{'s' * (pairs > 1)})"
                           for s, j, pairs in d.overlaps[key])
        why = ""
        if key == "reset epochs":  # a one-shot mask prunes the final weights, whatever k: anything below 1 is a fault
            same = all(j == 1.0 for _, j, _ in d.overlaps[key])
            why = " (as expected: one-shot masks prune the final weights)" if same else \
                " (expected 1.00: one-shot masks prune the final weights, whatever k; check these runs)"
        sentences.append(f"The masks of {who} that differ only in {differs} overlap with mean Jaccard {points}{why}.")
    return " ".join(s for s in sentences if s)


def write_diagnostics(family: Family, folder: Path, diagnostics: Diagnostics | None = None) -> list[Path]:
    """Write early_bird.png and mask_overlap.png of `family` into `folder` (created if missing).

    MLflow must already point at the family's store (as `lth.report.write_reports` does). A figure
    with nothing to draw is not written.

    Args:
        diagnostics: `family_diagnostics(family)` if the caller already has it (for `diagnostics_text`
            too); computed here otherwise.

    Returns:
        The files written.
    """
    diagnostics = family_diagnostics(family) if diagnostics is None else diagnostics
    name = next((d.name for d in family.dense if d.name), family.family)  # as lth.report titles its figures
    folder.mkdir(parents=True, exist_ok=True)
    written = [
        early_bird_figure(diagnostics.early_bird, f"Early-bird mask distance of {name}", folder / "early_bird.png"),
        overlap_figure(diagnostics.overlaps, f"Mask overlap of {name}", folder / "mask_overlap.png"),
    ]
    return [path for path in written if path is not None]
