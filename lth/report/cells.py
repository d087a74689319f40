"""Cells of a family: the replicates of one experiment, aggregated, with their gaps to the controls.

A cell is one experiment repeated over seeds: the runs of one kind that share `lth.cell`
(and, for IMP, the level). Runs logged before `lth.cell` existed fall back to
(scope, reset epoch, threshold). A replicate is a train seed and data-order seed (`train.data_seed`,
else the seed), and for a control also its `prune.control_seed`; each counts once, with its first
FINISHED run, and is compared with its own dense parent (tag `lth.dense_run`):

- *run*: a FINISHED run, whether it learned or not;
- *learned*: run, not diverged, no layer emptied; only these make the cell's accuracies;
- *missing*: no FINISHED run (FAILED, RUNNING, KILLED, never started, or an IMP level above the
  level where its job stopped). The replicate of every finished dense parent is expected of every cell.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from lth.config.vocabulary import CONTROLS as ALL_CONTROLS
from lth.report.collect import Family, Point, Settings
from lth.tracking import schema

TICKET_KINDS = ("ticket", "imp")  # what can win; controls only calibrate
CONTROLS: tuple[str, ...] = tuple(control for control in ALL_CONTROLS if control != "none")
# Settings never shown as a label: they are columns (scope, threshold, reset epoch), the kind itself
# (method, control), a replicate axis (control_seed), or shared by IMP levels reused across job lengths (levels).
UNLABELLED = ("prune.threshold", "prune.scope", "reset.epoch", "prune.method", "prune.control", "prune.control_seed",
              "prune.levels")
ONE_SHOT_UNUSED = ("prune.rate",)  # one-shot runs log it but never use it (nor lth.tracking.identity)
NEVER_STARTED = "never started"  # why a replicate with no run at all is missing
IMP_STOPPED = "IMP stopped at level"  # why an IMP level above a diverged one has none: `IMP stopped at level 2 (diverged)`
REFUSED = "refused: a layer would be empty"  # why, with the status, a run `prune.on_collapse=refuse` stopped
# The label of a cell logged before the common base (collect.Point.base_known): its weights remaining is another axis.
MASKED_BASE = "weights remaining of masked layers only"


@dataclass(frozen=True)
class Gap:
    """Ticket minus control on the choosing split, paired by replicate (seed and data seed)."""

    control: str  # reinit or random_mask
    mean: float | None  # mean of the per-seed gaps; None when the control learned on no paired seed
    low: float | None
    high: float | None
    pairs: int  # seeds where both the ticket and the control learned
    complete: bool  # the control has no missing replicate


@dataclass(frozen=True)
class Row:
    """One cell, aggregated over its replicates."""

    kind: str
    scope: str
    reset_epoch: int
    threshold: float
    level: int | None
    cell: str  # lth.cell, or the fallback of runs logged before it
    weights_remaining: float  # mean over the run replicates; the nominal 1 - threshold if none logged it
    test_mean: float | None  # over the replicates that learned; None when none did
    test_low: float | None
    test_high: float | None
    chosen_mean: float | None  # the choosing metric (val_accuracy, or test) over the same replicates
    dense_mean: float | None  # the dense parents' choosing metric over exactly the seeds that learned
    seeds_learned: int
    seeds_run: int
    seeds_missing: int
    failures: str = ""  # why run replicates did not learn, e.g. "1 diverged: chance"
    missing: tuple[tuple[int, int, int, str], ...] = ()  # (seed, data-order seed, control_seed, why) of each missing
    floor_runs: int = 0  # run replicates with a layer held at the floor (they stay on the curves)
    dead_channels: float | None = None  # mean over run replicates
    run_ids: tuple[str, ...] = ()  # the replicates' runs, by seed
    settings: Settings = ()
    label: str = ""  # the settings that tell this cell from the family's others, e.g. min_density=0.01
    gaps: tuple[Gap, ...] = ()
    eligible: bool = False
    why_not: str = ""
    winner: bool = False
    base_known: bool = True  # weights_remaining is of all prunable weights (False: see collect.Point.base_known)
    dense_at_chance: int = 0  # run replicates whose dense parent is at chance (lth.training.chance): they cannot win

    def gap(self, control: str) -> Gap | None:
        """The gap to `control` (reinit or random_mask), if that control ran for this cell."""
        return next((g for g in self.gaps if g.control == control), None)


def describe(row: Row, scopes: set[str] | frozenset[str] = frozenset()) -> str:
    """`t=0.9`, `IMP level 2 (t=0.36)`, `reinit t=0.9 [global, min_density=0.01]`: a cell in words.

    The scope is named only when the report holds several (it is a column of the table).
    """
    where = f"level {row.level} (t={short(row.threshold)})" if row.level is not None else f"t={short(row.threshold)}"
    kind = {"ticket": "", "imp": "IMP "}.get(row.kind, f"{row.kind} ")
    tags = ", ".join(filter(None, [row.scope if len(scopes) > 1 else "", row.label]))
    return f"{kind}{where}" + (f" [{tags}]" if tags else "")


def short(value: float) -> str:
    """A threshold without trailing zeros: 0.9, 0.488, 0.9885."""
    return f"{value:.4f}".rstrip("0").rstrip(".")


def control_kind(kind: str, control: str) -> str:
    """The kind of `control` of a ticket kind: reinit for a ticket, imp_reinit for IMP."""
    return control if kind == "ticket" else f"imp_{control}"


def _key(point: Point) -> tuple[str, int | None, int, float]:
    return point.cell_id, point.level, point.reset_epoch, round(point.threshold, 6)


Replicate = tuple[int, int, int]  # seed, data-order seed, control seed
Stops = dict[tuple[str, str, int, int, int], int]  # (kind, cell, *replicate) -> the IMP level its job diverged at


def replicate_text(seed: int, data_seed: int, control_seed: int = 0) -> str:
    """`seed=1`, `seed=0 data_seed=1 control_seed=2`: a replicate, its defaults left out."""
    return (f"seed={seed}" + (f" data_seed={data_seed}" if data_seed != seed else "")
            + (f" control_seed={control_seed}" if control_seed else ""))


def imp_stops(points: Sequence[Point]) -> Stops:
    """The lowest diverged level of every IMP job: its job ran no level above it (lth.stages.imp)."""
    stops: Stops = {}
    for point in points:
        if point.level is not None and point.diverged:
            key = (point.kind, point.cell_id, *point.replicate, point.control_seed)
            stops[key] = min(point.level, stops.get(key, point.level))
    return stops


def never_run(stops: Stops, kind: str, cell: str | None, level: int | None, replicate: Replicate) -> str:
    """Why a replicate has no run: its IMP job (or a control's ticket) stopped below `level`, else NEVER_STARTED."""
    own = stops.get((kind, cell or "", *replicate))
    ticket = stops.get(("imp", cell or "", *replicate[:2], 0)) if kind.startswith("imp_") else None
    if level is not None and own is not None and own < level:
        return f"{IMP_STOPPED} {own} (diverged)"
    if level is not None and ticket is not None and ticket < level:  # a control trains no level its ticket lacks
        return f"{IMP_STOPPED} {ticket} (its ticket diverged)"
    return NEVER_STARTED


def _why_missing(points: Sequence[Point], stopped: str = NEVER_STARTED) -> str:
    if not points:
        return stopped
    refused = any(p.empty_layers for p in points)  # prune.on_collapse=refuse fails a run before it trains
    return ", ".join(sorted({p.status for p in points})) + (f" ({REFUSED})" if refused else "")


def _failures(points: Sequence[Point]) -> str:
    counts = Counter(f"diverged: {p.divergence}" if p.diverged else "collapsed" if p.empty_layers else "no accuracy"
                     for p in points if p.finished and not p.learned)
    return ", ".join(f"{n} {why}" for why, n in sorted(counts.items()))


GroupKey = tuple[str, str, int | None, int, float]  # kind, cell, level, reset epoch, threshold


def _row(kind: str, members: list[Point], family: Family, metric: str, stops: Stops
         ) -> tuple[Row, dict[tuple[int, int], list[float]]]:
    """The cell of `members`, and the choosing metric of its learned replicates by (seed, data seed), for the gaps."""
    by_replicate: dict[Replicate, list[Point]] = defaultdict(list)
    for point in members:
        by_replicate[(*point.replicate, point.control_seed)].append(point)
    expected = {(*replicate, control_seed) for replicate in family.replicates
                for control_seed in {r[2] for r in by_replicate}}
    chosen: list[Point] = []
    missing = []
    first = members[0]
    for replicate in sorted(expected | set(by_replicate)):
        runs = by_replicate.get(replicate, [])
        finished = next((p for p in runs if p.finished), None)  # oldest first: a rerun never doubles a seed
        if finished is None:
            missing.append((*replicate, _why_missing(runs, never_run(stops, kind, first.cell_id, first.level,
                                                                      replicate))))
        else:
            chosen.append(finished)
    learned = [p for p in chosen if p.learned]
    test = np.array([p.test_accuracy for p in learned], dtype=float)
    picked = [p.accuracy(metric) for p in learned]
    parents = {p.replicate: family.parent_of(p) for p in learned}  # each replicate's own dense parent
    dense_values = [None if d is None else d.accuracy(metric) for d in parents.values()]
    at_chance = {p.replicate for p in chosen if (parent := family.parent_of(p)) is not None and parent.at_chance}
    remaining = [p.weights_remaining for p in chosen or members if p.weights_remaining is not None]
    dead = [p.dead_channels for p in chosen if p.dead_channels is not None]
    by_seed: dict[tuple[int, int], list[float]] = defaultdict(list)
    for point, value in zip(learned, picked):
        if value is not None:
            by_seed[point.replicate].append(float(value))
    row = Row(
        kind, first.scope, first.reset_epoch, first.threshold, first.level, first.cell_id,
        float(np.mean(remaining)) if remaining else 1.0 - first.threshold,
        float(test.mean()) if learned else None, float(test.min()) if learned else None,
        float(test.max()) if learned else None,
        float(np.mean(picked)) if learned and None not in picked else None,
        float(np.mean(dense_values)) if dense_values and None not in dense_values else None,
        len(learned), len(chosen), len(missing), _failures(chosen), tuple(missing),
        sum(p.floor_layers for p in chosen), float(np.mean(dead)) if dead else None,
        tuple(p.run_id for p in chosen), first.settings, base_known=all(p.base_known for p in chosen or members),
        dense_at_chance=len(at_chance))
    return row, dict(by_seed)


def _gaps(key: GroupKey, rows: dict[GroupKey, Row], values: dict[GroupKey, dict[tuple[int, int], list[float]]]
          ) -> tuple[Gap, ...]:
    """Ticket minus each control of the same cell (and level), per replicate (seed, data seed) where both learned."""
    gaps = []
    for control in CONTROLS:
        other = (control_kind(key[0], control), *key[1:])
        if other not in rows:
            continue
        ticket, against = values[key], values[other]
        per_seed = [float(np.mean(ticket[s]) - np.mean(against[s])) for s in sorted(ticket) if s in against]
        gaps.append(Gap(control, float(np.mean(per_seed)) if per_seed else None, min(per_seed, default=None),
                        max(per_seed, default=None), len(per_seed), rows[other].seeds_missing == 0))
    return tuple(gaps)


def _applies(row: Row, key: str) -> bool:
    return key not in UNLABELLED and (row.kind.startswith("imp") or key not in ONE_SHOT_UNUSED)


def _labelled(rows: list[Row]) -> list[Row]:
    """Label each row with the settings whose values differ across the family, so no two rows read alike."""
    settings = [dict(r.settings) for r in rows]
    keys = sorted({k for s in settings for k in s})
    varying = [k for k in keys
               if len({s.get(k, "?") for r, s in zip(rows, settings) if _applies(r, k)}) > 1]
    labelled = [replace(r, label=", ".join(f"{k.removeprefix('prune.')}={s.get(k, '?')}" for k in varying
                                           if _applies(r, k)))
                for r, s in zip(rows, settings)]
    shown = Counter((r.kind, r.scope, r.label, r.reset_epoch, r.level, round(r.threshold, 6)) for r in labelled)
    # Same settings, different cells (e.g. runs from before lth.cell next to newer ones): name the cell itself.
    return [replace(r, label=", ".join(filter(None, [r.label, f"cell {r.cell}"])))
            if shown[(r.kind, r.scope, r.label, r.reset_epoch, r.level, round(r.threshold, 6))] > 1 else r
            for r in labelled]


def aggregate(family: Family, metric: str = schema.VAL_ACCURACY) -> list[Row]:
    """Every cell of the family (also those where no seed learned), sorted by kind, series, reset, sparsity.

    Args:
        family: Its dense parents (whose finished seeds every cell is expected to run) and sparse runs.
        metric: What chooses winners (`val_accuracy`, or `test_accuracy` for runs logged without it):
            the dense comparison and the gaps to the controls are measured on it.
    """
    groups: dict[GroupKey, list[Point]] = defaultdict(list)
    for point in family.points:
        groups[(point.kind, *_key(point))].append(point)
    rows: dict[GroupKey, Row] = {}
    values: dict[GroupKey, dict[tuple[int, int], list[float]]] = {}
    stops = imp_stops(family.points)
    for key, members in groups.items():
        rows[key], values[key] = _row(key[0], members, family, metric, stops)
    with_gaps = [replace(row, gaps=_gaps(key, rows, values)) if row.kind in TICKET_KINDS else row
                 for key, row in rows.items()]
    labelled = [r if r.base_known else replace(r, label=", ".join(filter(None, [r.label, MASKED_BASE])))
                for r in _labelled(with_gaps)]
    return sorted(labelled, key=lambda r: (r.kind, r.scope, r.label, r.reset_epoch, r.level or 0, -r.weights_remaining))
