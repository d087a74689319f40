"""report.md: how the winners were chosen, the winners, why the others did not win, every cell, what is missing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lth.report.cells import CONTROLS, TICKET_KINDS, Row, describe
from lth.report.collect import Family
from lth.report.measure import measure_sentence
from lth.report.outcomes import chance_warnings
from lth.report.selection import Selection

RULE = ("A ticket wins its reset epoch when it is the sparsest that (1) ran on the seed (and data seed) of every "
        "finished dense parent, (2) learned on every one of them (no divergence, no emptied layer), (3) has a mean "
        "{split} accuracy at most the tolerance below the mean of its runs' own dense parents, none of them at chance, "
        "and (4) has a mean gap (ticket - control, paired by seed and data seed, on {split}) above 0 to every control "
        "of its cell.")


def _dense_text(family: Family, selection: Selection) -> str:
    test = family.dense_accuracies
    if not test:
        return "Dense: not finished."
    chosen = [d.accuracy(selection.metric) for d in family.finished_dense]
    picked = f"; {selection.split} {np.mean(chosen):.4f}" if selection.split != "test" and None not in chosen else ""
    return (f"Dense test accuracy: {np.mean(test):.4f} (min {min(test):.4f}, max {max(test):.4f}, "
            f"{len(test)} parent{'s' * (len(test) > 1)}){picked}.")


def _gap_text(row: Row, control: str) -> str:
    gap = row.gap(control)
    if gap is None:
        return ""
    if gap.mean is None:
        return "control learned on no seed"
    return f"{gap.mean:+.4f} [{gap.low:+.4f}, {gap.high:+.4f}]" + ("" if gap.complete else " (incomplete)")


def _winner_text(row: Row, scopes: set[str], split: str) -> str:
    gaps = "".join(f"; {c} {row.gap(c).mean:+.4f}" for c in CONTROLS
                   if row.gap(c) is not None and row.gap(c).mean is not None)
    return (f"{describe(row, scopes)} at {100 * row.weights_remaining:.2f}% weights, test accuracy {row.test_mean:.4f} "
            f"({split} {row.chosen_mean:.4f} vs dense {row.dense_mean:.4f} on the same seeds{gaps})")


def _cell_line(r: Row, split: str) -> str:
    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.4f}"

    notes = ", ".join(filter(None, [r.failures, f"{r.seeds_missing} missing" if r.seeds_missing else "",
                                    f"{r.floor_runs} at the floor" if r.floor_runs else "",
                                    f"{r.dense_at_chance} dense parent at chance" if r.dense_at_chance else ""]))
    verdict = "**winner**" if r.winner else ("eligible" if r.eligible else "")
    return (f"| {r.kind} | {r.scope} | {r.label} | {r.reset_epoch} | {'' if r.level is None else r.level} "
            f"| {r.threshold:.4f} | {100 * r.weights_remaining:.2f}% | {r.seeds_learned}/{r.seeds_run} "
            f"| {number(r.test_mean)} | {number(r.test_low)} | {number(r.test_high)} | {number(r.chosen_mean)} "
            f"| {number(r.dense_mean)} | {_gap_text(r, 'reinit')} | {_gap_text(r, 'random_mask')} | {notes} "
            f"| {verdict} |")


def write_markdown(rows: Sequence[Row], winners: dict[int, Row | None], family: Family, selection: Selection,
                   tolerance: float, missing: Sequence[str], path: Path, sections: Sequence[str] = (),
                   measure: str = "final") -> Path:
    """Split, measure and rule first, then winners, the tickets that could not win and why, every cell, what is missing.

    Args:
        sections: Further markdown sections, appended in order (empty ones skipped).
        measure: `report.measure` (lth.report.measure): the epoch every accuracy was read at.
    """
    split = selection.split
    scopes = {r.scope for r in rows}
    warnings = [*chance_warnings(family), *selection.warnings]
    lines = ["# Lottery-ticket report", "", f"{_dense_text(family, selection)} Tolerance: {tolerance:.4f}.", "",
             measure_sentence(measure), "", selection.sentence, "", *[w + "\n" for w in warnings],
             RULE.format(split=split), "",
             "## Winning tickets", "", "| reset epoch | winner |", "|---|---|"]
    for reset, row in winners.items():
        lines.append(f"| {reset} | {_winner_text(row, scopes, split) if row is not None else 'none eligible'} |")
    refused = sorted((r for r in rows if r.kind in TICKET_KINDS and not r.eligible),
                     key=lambda r: (r.reset_epoch, r.kind, r.scope, r.label, -r.weights_remaining))
    lines += ["", f"## Tickets that cannot win ({len(refused)})", ""]
    lines += [f"- k={r.reset_epoch}: {describe(r, scopes)} not eligible: {r.why_not}" for r in refused] or ["none"]
    floor = [r for r in rows if r.floor_runs]
    if floor:
        lines += ["", f"## At the floor ({len(floor)} cells)", "",
                  "These runs hold a layer at `prune.min_density`'s floor: the scope would have emptied it and the "
                  "floor keeps a token path open. They stay on the curves and may win.", ""]
        lines += [f"- k={r.reset_epoch}: {describe(r, scopes)}: {r.floor_runs} of {r.seeds_run} seeds"
                  for r in floor]
    lines += ["", "## All cells", "", f"Seeds learned/run; accuracies are means over the seeds that learned. "
              f"Gaps are ticket - control on {split}: mean [min, max] over seeds.", "",
              f"| kind | scope | settings | reset epoch | level | threshold | weights remaining | seeds learned/run "
              f"| test (mean) | min | max | {split} (mean) | dense {split} (same seeds) | gap reinit | gap random_mask "
              f"| failed or missing | winner |", "|" + "---|" * 17]
    lines += [_cell_line(r, split) for r in rows]
    lines += ["", f"## Missing cells ({len(missing)})", "",
              "A missing replicate (FAILED, unfinished or never started) makes its cell incomplete.", ""]
    lines += [f"- {m}" for m in missing] or ["none"]
    lines += [part for section in sections if section for part in ("", section)]  # stability, mask diagnostics
    path.write_text("\n".join(lines) + "\n")
    return path
