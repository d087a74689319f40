"""`reset.epoch=auto`: the earliest candidate reset epoch at which the reference is stable.

The reference is the dense network at each candidate k (`stability.reference=dense`, the
default and the only one for IMP or at threshold 0), or this cell's own ticket at k (`cell`).
Candidates are analysed in ascending order, each reused when already analysed, until one is
stable; none stable resolves to the latest candidate, said so. The chosen cell is the cell
with that explicit k (the same identity, so `reset.epoch=2` later reuses its ticket).
"""

from __future__ import annotations

import logging

from lth.cell import Cell
from lth.data.splits import DataSplits
from lth.dense import DenseParent
from lth.stability.analysis import ensure_stability
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


def resolve_reset_epoch(cell: Cell, experiment_id: str, data: DataSplits, dense: DenseParent,
                        data_for: DataFor) -> tuple[Cell, str]:
    """The cell at the chosen k, and one sentence of why (tagged lth.reset_choice, printed in the job line)."""
    settings = cell.stability
    reference = "dense network" if _of_dense(cell) else "ticket"
    barriers: dict[int, float] = {}
    chosen = None
    for k in sorted(set(settings.candidates)):
        at = cell.with_reset_epoch(k)
        found = ensure_stability(at, experiment_id, dense, _subject(at, experiment_id, data, dense), data_for)
        barriers[k] = found.barrier
        if found.stable:
            chosen = k
            break
    seen = ", ".join(f"k={k}: {100 * b:.2f}%" for k, b in barriers.items())
    if chosen is None:
        chosen = max(settings.candidates)
        why = (f"reset.epoch=auto chose k={chosen}, the latest candidate: the {reference} is stable at none of "
               f"{sorted(set(settings.candidates))} (barriers {seen}; stable below {100 * settings.threshold:g}%)")
        log.warning(why)
    else:
        why = (f"reset.epoch=auto chose k={chosen}, the earliest of {sorted(set(settings.candidates))} at which the "
               f"{reference} is stable (barriers {seen}; stable below {100 * settings.threshold:g}%)")
        log.info(why)
    return cell.with_reset_epoch(chosen), why
