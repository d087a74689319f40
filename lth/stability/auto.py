"""`reset.epoch=auto`: the earliest candidate reset epoch at which the reference is stable.

The reference is the dense network at each candidate k (`stability.reference=dense`, the
default and the only one for IMP or at threshold 0), or this cell's own ticket at k (`cell`).
Candidates are analysed in ascending order, each reused when already analysed, until one is
stable on the validation split (never on test: k is a training decision); none stable resolves
to the latest candidate, said so. The sentence tagged `lth.reset_choice` names the split and its
resolution (how many images the threshold is), and both splits' barriers. The chosen cell is the
cell with that explicit k (the same identity, so `reset.epoch=2` later reuses its ticket).
"""

from __future__ import annotations

import logging

from lth.cell import Cell
from lth.data.splits import DataSplits
from lth.dense import DenseParent
from lth.stability.analysis import Stability, ensure_stability
from lth.stability.copies import DataFor, Subject, dense_subject, ticket_subject
from lth.tickets import ensure_ticket

log = logging.getLogger("lth")


def _of_dense(cell: Cell) -> bool:
    """Whether auto analyses the dense network (the default; IMP and threshold 0 have no ticket to analyse)."""
    return cell.stability.reference == "dense" or cell.prune.threshold == 0


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


def resolve_reset_epoch(cell: Cell, experiment_id: str, data: DataSplits, dense: DenseParent,
                        data_for: DataFor) -> tuple[Cell, str]:
    """The cell at the chosen k, and one sentence of why (tagged lth.reset_choice, printed in the job line)."""
    settings = cell.stability
    reference = "dense network" if _of_dense(cell) else "ticket"
    found: dict[int, Stability] = {}
    chosen = None
    for k in sorted(set(settings.candidates)):
        at = cell.with_reset_epoch(k)
        found[k] = ensure_stability(at, experiment_id, dense, _subject(at, experiment_id, data, dense), data_for)
        if found[k].stable:  # on validation
            chosen = k
            break
    seen = (f"validation barriers {', '.join(f'k={k}: {100 * f.val_barrier:.2f}%' for k, f in found.items())}; "
            f"test barriers {', '.join(f'k={k}: {100 * f.barrier:.2f}%' for k, f in found.items())}")
    on = f"chosen on {resolution(data, settings.threshold)}"
    candidates = sorted(set(settings.candidates))
    if chosen is None:
        chosen = max(settings.candidates)
        why = (f"reset.epoch=auto chose k={chosen}, the latest candidate: the {reference} is stable at none of "
               f"{candidates} ({seen}; stable below {100 * settings.threshold:g}%), {on}")
        log.warning(why)
    else:
        why = (f"reset.epoch=auto chose k={chosen}, the earliest of {candidates} at which the {reference} is stable "
               f"({seen}; stable below {100 * settings.threshold:g}%), {on}")
        log.info(why)
    return cell.with_reset_epoch(chosen), why
