"""Which probes of a frontier sweep won, by the report's own rule, read from MLflow.

A probe is one threshold on one line. Its replicates (seeds, data seeds, controls) share one report cell
(tag `lth.cell`), so its verdict is that cell's, exactly as `python -m lth.report` would judge
it (lth.report.winners): it won when every replicate finished and learned, its mean on the
choosing split is within `lth.report_tolerance` of its runs' own dense parents, and it
is above every control that was run. A cell the report still expects replicates of is not
judged yet: its verdict is incomplete.

Every cell already in MLflow counts, so a frontier sweep after a grid starts from the grid's
finished cells of the same line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lth import tracking
from lth.config.cell import TrackingConfig
from lth.report.cells import Row, aggregate
from lth.report.collect import collect, order_seed
from lth.report.selection import selection_of
from lth.report.winners import mark_winners


@dataclass(frozen=True)
class Verdict:
    """The report's judgement of one cell."""

    cell: str  # lth.cell
    won: bool  # the report's rule calls it eligible
    complete: bool  # every replicate the report expects finished, controls included
    why_not: str  # the report's reasons; empty for a winner
    threshold: float
    reset_epoch: int
    chosen_mean: float | None  # mean accuracy on the choosing split
    dense_mean: float | None  # the dense parents' on the same seeds
    seeds: tuple[int, ...] = ()  # seeds of the family's finished dense parents: those a complete cell has run
    controls: tuple[str, ...] = ()  # controls every replicate of which finished
    replicates: tuple[tuple[int, int], ...] = ()  # (seed, data-order seed) of those parents (collect.DenseRun)

    def covers(self, seeds: Sequence[int], controls: Sequence[str],
               data_seeds: Sequence[int | None] | None = None) -> bool:
        """Judged on every seed, data seed and control a sweep asks for: a seed-0 grid's cell cannot stand for two.

        Args:
            data_seeds: `train.data_seed` of the sweep's replicates (None: the seed orders the data);
                None: not checked, only the seeds are.
        """
        asked = {(seed, order_seed(seed, data_seed)) for seed in seeds for data_seed in data_seeds or ()}
        return (self.complete and set(seeds) <= set(self.seeds) and set(controls) <= set(self.controls)
                and asked <= set(self.replicates))


def unswept(replicates: Sequence[tuple[int, int]], seeds: Sequence[int],
            data_seeds: Sequence[int | None]) -> list[tuple[int, int]]:
    """The family's (seed, data-order seed) replicates a sweep of `seeds` x `data_seeds` does not run.

    The report judges every cell on each of them, so a probe of such a sweep could never be judged.
    """
    asked = {(seed, order_seed(seed, data_seed)) for seed in seeds for data_seed in data_seeds}
    return sorted(set(replicates) - asked)


def _complete(row: Row) -> bool:
    return row.seeds_missing == 0 and all(gap.complete for gap in row.gaps)


class Judge:
    """Reads a family's cells from MLflow and judges them as the report does."""

    def __init__(self, tracking_config: TrackingConfig, tolerance: float) -> None:
        self.tolerance = tolerance
        self.experiment_id = tracking.connect(tracking_config.uri, tracking_config.experiment)

    def verdicts(self, family: str) -> dict[str, Verdict]:
        """Every one-shot ticket cell of `family` (by `lth.cell`); empty before a dense parent finished."""
        return self.judged(family)[1]

    def judged(self, family: str) -> tuple[list[tuple[int, int]], dict[str, Verdict]]:
        """One read of `family`: its finished dense parents' (seed, data-order seed) replicates (every cell is
        judged on all), and `verdicts`."""
        runs = collect(self.experiment_id, family)
        if not runs.finished_dense:
            return [], {}
        selection = selection_of(runs)
        rows, _ = mark_winners(aggregate(runs, selection.metric), self.tolerance, selection.split)
        seeds, replicates = tuple(runs.seeds), tuple(runs.replicates)
        verdicts = {row.cell: Verdict(row.cell, row.eligible, _complete(row), row.why_not, row.threshold,
                                      row.reset_epoch, row.chosen_mean, row.dense_mean, seeds,
                                      tuple(sorted(gap.control for gap in row.gaps if gap.complete)), replicates)
                    for row in rows if row.kind == "ticket"}
        return runs.replicates, verdicts
