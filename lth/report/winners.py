"""Which tickets win, and why each other ticket does not.

A ticket (one-shot or an IMP level) is *eligible* when all of these hold:

1. complete: the replicate (seed, data seed) of every finished dense parent ran it (no FAILED or
   unfinished replicate);
2. learned everywhere: no replicate diverged or emptied a layer, so the mean is not a survivor's;
3. matching: its mean on the choosing split is at most `tolerance` below the mean of the dense
   parents of exactly the same replicates, each run's own (tag `lth.dense_run`), none of them at
   chance (lth.training.chance: a parent that learned nothing leaves nothing to match);
4. above its controls: for every reinit or random_mask control of the same cell (and level), the
   mean over seeds of (ticket - control) is > 0, and that control is complete;
5. on the common base: its weights remaining is a fraction of all prunable weights, as every other
   run's; an xnnpack_1x1 or `prune.ignore` run logged before that counted its masked layers only.

The *winning* ticket of a reset epoch is the sparsest eligible one (ties: the more accurate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from lth.report.cells import TICKET_KINDS, Row

EPSILON = 1e-9  # accuracies are ratios of counts; keep "exactly at the tolerance" on the right side of it


def reasons(row: Row, tolerance: float, split: str = "val") -> list[str]:
    """Why `row` cannot win; empty when it is eligible."""
    why = []
    if row.seeds_missing:
        why.append(f"incomplete ({row.seeds_missing} of {row.seeds_run + row.seeds_missing} seeds missing)")
    if row.seeds_learned < row.seeds_run:
        why.append(f"{row.seeds_learned}/{row.seeds_run} seeds learned" + (f" ({row.failures})" if row.failures else ""))
    if row.seeds_learned:
        if row.chosen_mean is None or row.dense_mean is None:
            why.append(f"no {split} accuracy to compare with dense on its seeds")
        elif row.chosen_mean < row.dense_mean - tolerance - EPSILON:
            why.append(f"{split} {row.chosen_mean:.4f} is more than {tolerance:g} below dense {row.dense_mean:.4f} "
                       f"on the same seeds")
    if row.dense_at_chance:
        why.append(f"dense parent at chance ({row.dense_at_chance} of {row.seeds_run} seeds)")
    for gap in row.gaps:
        if not gap.complete:
            why.append(f"{gap.control} control incomplete")
        elif gap.mean is not None and gap.mean <= 0:
            why.append(f"not above {gap.control} (gap {gap.mean:+.4f}, min {gap.low:+.4f}, max {gap.high:+.4f})")
    if not row.base_known:
        why.append(f"logged before the common base: its {100 * row.weights_remaining:.2f}% weights remaining is of its "
                   f"masked layers only, not of all prunable weights (delete the run and rerun its job to compare it)")
    return why


def mark_winners(rows: Sequence[Row], tolerance: float, split: str = "val"
                 ) -> tuple[list[Row], dict[int, Row | None]]:
    """Set `eligible`, `why_not` and `winner` on every row.

    Returns:
        The rows in their order, and each reset epoch's winner (None: no ticket is eligible).
    """
    judged = []
    for row in rows:
        if row.kind in TICKET_KINDS:
            why = reasons(row, tolerance, split)
            row = replace(row, eligible=not why, why_not="; ".join(why))
        judged.append(row)
    winners: dict[int, Row | None] = {}
    for reset in sorted({r.reset_epoch for r in judged if r.kind in TICKET_KINDS}):
        eligible = [i for i, r in enumerate(judged) if r.reset_epoch == reset and r.eligible]
        best = min(eligible, key=lambda i: (judged[i].weights_remaining, -(judged[i].chosen_mean or 0.0)), default=None)
        if best is not None:
            judged[best] = replace(judged[best], winner=True)
        winners[reset] = judged[best] if best is not None else None
    return judged, winners
