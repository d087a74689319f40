"""What is missing from a family, what became of every run (the figure's title), and every cell as CSV."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from lth.report.cells import CONTROLS, IMP_STOPPED, NEVER_STARTED, REFUSED, Row, imp_stops, never_run, replicate_text, short
from lth.report.collect import DenseRun, Family, Point
from lth.report.selection import Selection
from lth.tracking import schema
from lth.training.chance import chance_text


def row_name(row: Row, scopes: set[str]) -> str:
    """`ticket`, `reinit [global, min_density=0.01]`, `imp level 2`: a row's kind with what tells it apart."""
    tags = ", ".join(filter(None, [row.scope if len(scopes) > 1 else "", row.label]))
    level = f" level {row.level}" if row.level is not None else ""
    return f"{row.kind}{level}" + (f" [{tags}]" if tags else "")


def missing_replicates(family: Family, rows: Sequence[Row]) -> list[tuple[str, str]]:
    """(what, why) of each sparse replicate with no FINISHED run.

    The grid is observed per series (kind, scope, settings): its thresholds x reset epochs x
    the replicates of the finished dense parents, so a job that never started is listed too.
    """
    found: list[tuple[str, str]] = []
    scopes = {r.scope for r in rows}
    for row in rows:
        for seed, data_seed, control_seed, why in row.missing:
            replicate = replicate_text(seed, data_seed, control_seed)
            found.append((f"{row_name(row, scopes)} t={short(row.threshold)} k={row.reset_epoch} {replicate}", why))
    stops = imp_stops(family.points)
    series: dict[tuple[str, str, str], list[Row]] = {}
    for row in rows:
        series.setdefault((row.kind, row.scope, row.label), []).append(row)
    for members in series.values():
        present = {(r.reset_epoch, round(r.threshold, 6)) for r in members}
        levels = {round(r.threshold, 6): r.level for r in members}
        for reset in sorted({r.reset_epoch for r in members}):
            for threshold in sorted(levels):
                if (reset, threshold) in present:
                    continue
                like = next(r for r in members if r.level == levels[threshold])
                cell = next((r.cell for r in members if r.reset_epoch == reset), None)  # an IMP job's levels share it
                found += [(f"{row_name(like, scopes)} t={short(threshold)} k={reset} {replicate_text(*replicate)}",
                           never_run(stops, like.kind, cell, like.level, (*replicate, 0)))
                          for replicate in family.replicates]
    return found


def missing_cells(family: Family, rows: Sequence[Row]) -> list[str]:
    """Dense parents that did not finish, then `missing_replicates`, as lines: `ticket t=0.9 k=1 seed=1: FAILED`."""
    return [f"dense {replicate_text(*d.replicate)}: {d.status}" for d in _unfinished(family)] + [
        f"{what}: {why}" for what, why in missing_replicates(family, rows)]


def chance_warnings(family: Family) -> list[str]:
    """A warning per finished dense parent at chance (lth.training.chance): its tickets cannot win."""
    return [f"**WARNING: dense parent {replicate_text(*d.replicate)} is at chance "
            f"({chance_text(float(d.final_test or 0.0), int(dict(d.params)['data.num_classes']))}): "
            f"its tickets cannot win.**" for d in family.finished_dense if d.at_chance]


def _unfinished(family: Family) -> list[DenseRun]:
    """Dense parents with no FINISHED run: no cell waits for their seeds."""
    return [d for d in family.dense if d.status != schema.FINISHED]


TITLE_WIDTH = 110  # characters a title line holds at the figure's width and size, with room to spare
# What became of a run, in the order the title tells it: trained and failed first, then not trained.
OUTCOMES = ("learned", "learned from a dense parent at chance", "stuck at chance", "diverged (NaN)", "diverged",
            "emptied a layer", "no accuracy", "failed", "refused (a layer would be empty)", "running", "not started",
            "not run (IMP stopped below)")


def _outcome(point: Point, family: Family) -> str:
    """What a FINISHED run that counts for its cell came to."""
    if point.learned:
        parent = family.parent_of(point)
        return "learned from a dense parent at chance" if parent is not None and parent.at_chance else "learned"
    if point.diverged:
        return {"chance": "stuck at chance", "nan": "diverged (NaN)"}.get(point.divergence, "diverged")
    return "emptied a layer" if point.empty_layers else "no accuracy"


def _not_run(why: str) -> str:
    """Why a replicate has no FINISHED run, as one of OUTCOMES."""
    if REFUSED in why:
        return "refused (a layer would be empty)"
    if why == NEVER_STARTED:
        return "not started"
    if why.startswith(IMP_STOPPED):
        return "not run (IMP stopped below)"
    return "running" if "RUNNING" in why or "SCHEDULED" in why else "failed"  # else FAILED or KILLED


def figure_title(name: str, family: Family, rows: Sequence[Row]) -> str:
    """`Lottery tickets of <name>` over what became of every run, e.g. `100 runs: 75 learned, 22 stuck at chance`.

    A run is one replicate (seed, data seed, control seed) of one cell, counted once, whether it ran or not. Runs at
    the chance floor or with an emptied layer were trained: they are told apart from those never
    trained, and the learned ones holding a layer at `prune.min_density`'s floor are counted as such.
    """
    by_id = {p.run_id: p for p in family.points}
    counted = [by_id[run_id] for row in rows for run_id in row.run_ids]
    outcomes = Counter(_outcome(p, family) for p in counted)
    outcomes.update(_not_run(why) for _, why in missing_replicates(family, rows))
    dense = len(_unfinished(family))
    floor = sum(1 for p in counted if p.learned and p.floor_layers)
    parts = [f"{outcomes[o]} {o}" + (f" ({floor} with a layer at the min_density floor)"
                                     if o == "learned" and floor else "")
             for o in OUTCOMES if outcomes[o] or o == "learned"]
    told = [f"{sum(outcomes.values())} runs: {parts[0]}", *parts[1:]]
    told[-1] += f"; {dense} dense parent{'s' * (dense > 1)} not finished" if dense else ""
    lines = [told[0]]
    for part in told[1:]:  # wrap between outcomes, never inside one
        if len(lines[-1]) + 2 + len(part) > TITLE_WIDTH:
            lines[-1] += ","
            lines.append(part)
        else:
            lines[-1] += f", {part}"
    return "\n".join([f"Lottery tickets of {name}", *lines])


def _number(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


CSV_COLUMNS = (
    "kind", "scope", "settings", "reset_epoch", "threshold", "level", "weights_remaining_pct",
    "seeds_learned", "seeds_run", "seeds_missing", "seeds",
    "test_accuracy_mean", "test_accuracy_min", "test_accuracy_max",
    "selection_metric", "selection_mean", "dense_selection_mean",
    *(f"gap_{c}_{part}" for c in CONTROLS for part in ("mean", "min", "max", "seeds")),
    "failures", "floor_runs", "dead_channels", "eligible", "winner", "why_not", "cell",
)


def write_csv(rows: Sequence[Row], selection: Selection, path: Path) -> Path:
    """Every cell, one line each; empty fields where there is no number (nothing learned, no control)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            gaps = []
            for control in CONTROLS:
                gap = r.gap(control)
                gaps += (["", "", "", ""] if gap is None else
                         [_number(gap.mean), _number(gap.low), _number(gap.high), gap.pairs])
            writer.writerow([
                r.kind, r.scope, r.label, r.reset_epoch, f"{r.threshold:.6f}", "" if r.level is None else r.level,
                _number(100 * r.weights_remaining),
                r.seeds_learned, r.seeds_run, r.seeds_missing, r.seeds_run,
                _number(r.test_mean), _number(r.test_low), _number(r.test_high),
                selection.metric, _number(r.chosen_mean), _number(r.dense_mean), *gaps,
                r.failures, r.floor_runs, _number(r.dead_channels, 1), int(r.eligible), int(r.winner), r.why_not,
                r.cell,
            ])
    return path
