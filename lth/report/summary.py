"""Aggregate replicates, pick winning tickets, list missing cells; write CSV and markdown."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lth.report.collect import Family, Point

TICKET_KINDS = ("ticket", "imp")  # what can win; controls only calibrate


@dataclass(frozen=True)
class Row:
    """One (kind, scope, reset epoch, threshold) cell, aggregated over seeds."""

    kind: str
    reset_epoch: int
    threshold: float
    weights_remaining: float
    mean: float
    low: float
    high: float
    seeds: int
    winner: bool = False
    scope: str = "global"  # how the mask spread the sparsity over layers; cells of different scopes never merge


def scope_label(scope: str, scopes: set[str]) -> str:
    """` [lamp]` when a report holds several scopes, else nothing."""
    return f" [{scope}]" if len(scopes) > 1 else ""


def aggregate(points: Sequence[Point]) -> list[Row]:
    """Mean and min-max over seeds of every usable cell, sorted by kind, reset, sparsity."""
    groups: dict[tuple[str, str, int, float], list[Point]] = defaultdict(list)
    for point in points:
        if point.usable:
            groups[(point.kind, point.scope, point.reset_epoch, round(point.threshold, 6))].append(point)
    rows = []
    for (kind, scope, reset, threshold), members in groups.items():
        accuracies = np.array([p.test_accuracy for p in members], dtype=float)
        rows.append(Row(kind, reset, threshold, float(np.mean([p.weights_remaining for p in members])),
                        float(accuracies.mean()), float(accuracies.min()), float(accuracies.max()), len(members),
                        scope=scope))
    return sorted(rows, key=lambda r: (r.kind, r.scope, r.reset_epoch, -r.weights_remaining))


def mark_winners(rows: list[Row], dense_mean: float, tolerance: float) -> tuple[list[Row], dict[int, Row | None]]:
    """The sparsest ticket of each reset epoch whose mean accuracy is within `tolerance` of dense.

    Returns:
        The rows with `winner` set, and each reset epoch's winner (None: none within tolerance).
    """
    winners: dict[int, Row | None] = {}
    for reset in sorted({r.reset_epoch for r in rows if r.kind in TICKET_KINDS}):
        eligible = [r for r in rows if r.kind in TICKET_KINDS and r.reset_epoch == reset
                    and r.mean >= dense_mean - tolerance]
        best = min(eligible, key=lambda r: (r.weights_remaining, -r.mean)) if eligible else None  # ties: accuracy
        winners[reset] = replace(best, winner=True) if best is not None else None
    chosen = {w for w in winners.values() if w is not None}
    return [replace(r, winner=True) if replace(r, winner=True) in chosen else r for r in rows], winners


def missing_cells(family: Family) -> list[str]:
    """Cells of the observed grid (per kind: thresholds x resets x seeds) with no usable run, and why."""
    seeds = sorted({int(r.data.tags.get("lth.seed", 0)) for r in family.dense}) or [0]
    lines = []
    scopes = {p.scope for p in family.points}
    for kind, scope in sorted({(p.kind, p.scope) for p in family.points}):
        points = [p for p in family.points if p.kind == kind and p.scope == scope]
        thresholds = sorted({round(p.threshold, 6) for p in points})
        resets = sorted({p.reset_epoch for p in points})
        for reset in resets:
            for threshold in thresholds:
                for seed in seeds:
                    cell = [p for p in points if p.reset_epoch == reset and round(p.threshold, 6) == threshold
                            and p.seed == seed]
                    if any(p.usable for p in cell):
                        continue
                    why = ("diverged" if any(p.diverged for p in cell)
                           else "collapsed layers" if any(p.empty_layers for p in cell)
                           else ", ".join(sorted({p.status for p in cell})) or "never started")
                    lines.append(f"{kind}{scope_label(scope, scopes)} t={threshold:.4f} k={reset} seed={seed}: {why}")
    return lines


def write_csv(rows: Sequence[Row], path: Path) -> Path:
    """All aggregated cells, one line each."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["kind", "scope", "reset_epoch", "threshold", "weights_remaining_pct", "test_accuracy_mean",
                         "test_accuracy_min", "test_accuracy_max", "seeds", "winner"])
        for r in rows:
            writer.writerow([r.kind, r.scope, r.reset_epoch, f"{r.threshold:.6f}", f"{100 * r.weights_remaining:.4f}",
                             f"{r.mean:.4f}", f"{r.low:.4f}", f"{r.high:.4f}", r.seeds, int(r.winner)])
    return path


def write_markdown(rows: Sequence[Row], winners: dict[int, Row | None], dense: Sequence[float], tolerance: float,
                   missing: Sequence[str], path: Path) -> Path:
    """Winners first, then every cell, then what is missing."""
    dense_text = f"{np.mean(dense):.4f} (min {min(dense):.4f}, max {max(dense):.4f}, {len(dense)} seeds)" if dense \
        else "not finished"
    lines = ["# Lottery-ticket report", "", f"Dense test accuracy: {dense_text}. Tolerance: {tolerance:.4f}.", "",
             "## Winning tickets (sparsest within tolerance of dense)", "", "| reset epoch | winner |", "|---|---|"]
    scopes = {r.scope for r in rows}
    for reset, row in winners.items():
        text = (f"{row.kind}{scope_label(row.scope, scopes)} at {100 * row.weights_remaining:.2f}% weights, "
                f"accuracy {row.mean:.4f}" if row is not None else "none within tolerance")
        lines.append(f"| {reset} | {text} |")
    lines += ["", "## All cells", "", "| kind | scope | reset epoch | threshold | weights remaining | accuracy (mean) "
              "| min | max | seeds | winner |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.kind} | {r.scope} | {r.reset_epoch} | {r.threshold:.4f} | {100 * r.weights_remaining:.2f}% | "
                     f"{r.mean:.4f} | {r.low:.4f} | {r.high:.4f} | {r.seeds} | {'**yes**' if r.winner else ''} |")
    lines += ["", f"## Missing cells ({len(missing)})", ""] + ([f"- {m}" for m in missing] or ["none"])
    path.write_text("\n".join(lines) + "\n")
    return path
