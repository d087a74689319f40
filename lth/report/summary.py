"""What is missing from a family, and every cell as CSV."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from lth.report.cells import CONTROLS, Row, short
from lth.report.collect import Family
from lth.report.selection import Selection
from lth.tracking import schema


def row_name(row: Row, scopes: set[str]) -> str:
    """`ticket`, `reinit [global, min_density=0.01]`, `imp level 2`: a row's kind with what tells it apart."""
    tags = ", ".join(filter(None, [row.scope if len(scopes) > 1 else "", row.label]))
    level = f" level {row.level}" if row.level is not None else ""
    return f"{row.kind}{level}" + (f" [{tags}]" if tags else "")


def missing_cells(family: Family, rows: Sequence[Row]) -> list[str]:
    """Dense parents that did not finish, and replicates with no FINISHED run, with why.

    The grid is observed per series (kind, scope, settings): its thresholds x reset epochs x
    the seeds of the finished dense parents, so a job that never started is listed too.
    """
    lines = [f"dense seed={d.seed}: {d.status}" for d in family.dense if d.status != schema.FINISHED]
    scopes = {r.scope for r in rows}
    for row in rows:
        for seed, control_seed, why in row.missing:
            replicate = f"seed={seed}" + (f" control_seed={control_seed}" if control_seed else "")
            lines.append(f"{row_name(row, scopes)} t={short(row.threshold)} k={row.reset_epoch} {replicate}: {why}")
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
                name = row_name(next(r for r in members if r.level == levels[threshold]), scopes)
                lines += [f"{name} t={short(threshold)} k={reset} seed={seed}: never started" for seed in family.seeds]
    return lines


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
