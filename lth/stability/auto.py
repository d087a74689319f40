"""`reset.epoch=auto`: the candidate reset epoch from which on the reference is stable, one k per cell.

- **What decides.** The reference is the dense network at each candidate k
  (`stability.reference=dense`, the default and the only one for IMP or at threshold 0), or the
  cell's own ticket at k (`cell`), of one replicate: `train.seed=stability.reference_seed`, its
  data in that seed's own order, no control. Every replicate of a cell (seeds, data seeds,
  controls) decides from that same reference, so all of them train at one k, wherever their jobs
  run: the reference's dense parent, tickets and analyses are claimed by identity
  (lth.tracking.claim), so each is trained once and every other job reads or waits for it.
- **What "stable" means** is lth.stability.verdict's, which the report uses too: stable at k and
  at every later candidate, on the validation split (never on test: k is a training decision).
  So the candidates are analysed from the latest down, each reused when already analysed,
  until one is unstable; the choice is the earliest candidate above it. If the latest is
  unstable, k is the latest candidate, said so.
- **What it says.** The sentence tagged `lth.reset_choice` (and printed in the job line) names the
  reference, the rule, each candidate's barriers on both splits and the validation split's
  resolution. The chosen cell is the cell with that explicit k (the same identity, so
  `reset.epoch=2` later reuses its ticket).
"""

from __future__ import annotations

import logging

from lth.config.cell import Cell
from lth.data.splits import DataSplits
from lth.stability.analysis import Stability, ensure_stability
from lth.stability.copies import DataFor, Subject, dense_subject, ticket_subject
from lth.stability.verdict import stable_from
from lth.stages.dense import DenseParent, ensure_dense
from lth.stages.tickets import ensure_ticket

log = logging.getLogger("lth")


def _of_dense(cell: Cell) -> bool:
    """Whether auto analyses the dense network (the default; IMP and threshold 0 have no ticket to analyse)."""
    return cell.stability.reference == "dense" or cell.prune.threshold == 0


def reference_of(cell: Cell) -> Cell:
    """The replicate whose reference decides k for every replicate of `cell`."""
    return cell.with_seeds(cell.stability.reference_seed, None).with_control("none")


def _subject(cell: Cell, experiment_id: str, data: DataSplits, dense: DenseParent) -> Subject:
    if _of_dense(cell):
        return dense_subject(cell, dense)
    return ticket_subject(cell, dense, ensure_ticket(cell, experiment_id, data, dense).ticket_run_id)


def resolution(data: DataSplits, threshold: float) -> str:
    """`the validation split (144 images: the 2% threshold is about 3 images)`: what a choice on it can tell."""
    split = "the validation split" + (" (which is the test split here: data.val_split = data.test_split)"
                                      if data.val_is_test else "")
    if not data.val_images:
        return split
    return (f"{split} ({data.val_images:,} images: the {100 * threshold:g}% threshold is about "
            f"{threshold * data.val_images:.0f} images)")


def analyse_candidates(reference: Cell, experiment_id: str, data: DataSplits, dense: DenseParent,
                       data_for: DataFor) -> dict[int, Stability]:
    """The reference's analyses, from the latest candidate down to the first unstable one (k -> analysis)."""
    found: dict[int, Stability] = {}
    for k in sorted(set(reference.stability.candidates), reverse=True):
        at = reference.with_reset_epoch(k)
        found[k] = ensure_stability(at, experiment_id, dense, _subject(at, experiment_id, data, dense), data_for)
        if not found[k].stable:  # on validation; nothing earlier can be stable from k onwards
            break
    return found


def resolve_reset_epoch(cell: Cell, experiment_id: str, data_for: DataFor) -> tuple[Cell, str]:
    """The cell at the chosen k, and one sentence of how it was decided (tagged lth.reset_choice, in the job line)."""
    settings = cell.stability
    reference = reference_of(cell)
    data = data_for(reference)
    dense = ensure_dense(reference, experiment_id, data)
    if not dense.reused and reference.train != cell.train:
        # A sweep is refused without its reference replicate (lth.stability.checks); a lone job is not.
        log.warning("reset.epoch=auto trained the dense parent of train.seed=%d (stability.reference_seed) to "
                    "decide k; the report expects every cell on it too, so run this cell's train.seed=%d replicate "
                    "as well, unless the sweep does", settings.reference_seed, settings.reference_seed)
    found = analyse_candidates(reference, experiment_id, data, dense, data_for)
    chosen = stable_from({k: f.val_barrier for k, f in sorted(found.items())}, settings.threshold)
    candidates = sorted(set(settings.candidates))
    what = (f"train.seed={settings.reference_seed}'s {'dense network' if _of_dense(cell) else 'ticket'} "
            f"(stability.reference_seed; data in its own order, no control), for every replicate of this cell")
    ordered = sorted(found.items())
    seen = (f"validation barriers {', '.join(f'k={k}: {100 * f.val_barrier:.2f}%' for k, f in ordered)}; "
            f"test barriers {', '.join(f'k={k}: {100 * f.barrier:.2f}%' for k, f in ordered)}; "
            f"stable below {100 * settings.threshold:g}%; "
            f"{sum(f.reused for f in found.values())} of {len(found)} analyses reused")
    on = f"chosen on {resolution(data, settings.threshold)}"
    if chosen is None:
        chosen = max(candidates)
        why = (f"reset.epoch=auto chose k={chosen}, the latest of {candidates}, from {what}: it is not stable from "
               f"any of them ({seen}), {on}")
        log.warning(why)
    else:
        below = [k for k in candidates if k < chosen]
        rule = (f"stable from k={chosen} onwards" + (f", and k={max(below)} is not" if below else
                                                       ", the earliest candidate"))
        why = f"reset.epoch=auto chose k={chosen} from {what}: {rule} ({seen}), {on}"
        log.info(why)
    return cell.with_reset_epoch(chosen), why
