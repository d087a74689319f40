"""The lottery-ticket report: figure, winning tickets, CSV and markdown, logged to the dense parents."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lth import tracking
from lth.report.cells import TICKET_KINDS, Row, aggregate, describe
from lth.report.collect import Family, Point, collect, families_of
from lth.report.diagnostic_plots import diagnostics_text, write_diagnostics
from lth.report.diagnostics import Diagnostics, family_diagnostics
from lth.report.figures import density_figure, lottery_figure
from lth.report.markdown import write_markdown
from lth.report.measure import check_measure, measured
from lth.report.outcomes import chance_warnings, figure_title, missing_cells, write_csv
from lth.report.selection import selection_of
from lth.report.stability import of_cells, stable_cells, write_stability
from lth.report.winners import mark_winners
from lth.tracking import schema

if TYPE_CHECKING:
    from lth.report.model_registry import WinnerModel

log = logging.getLogger("lth")


@dataclass(frozen=True)
class ReportFiles:
    """What one family's report wrote."""

    folder: Path
    figure: Path
    markdown: Path
    csv: Path
    densities: Path
    missing: int
    models: tuple[WinnerModel, ...] = ()  # the winners' MLflow models (lth.report.model_registry)
    extras: tuple[Path, ...] = ()  # stability.png, early_bird.png, mask_overlap.png: those with something to draw


def density_choices(family: Family, rows: Sequence[Row]) -> dict[str, dict[str, Point]]:
    """One mask per scope and ticket cell to draw: the lowest finished seed's, at the earliest reset epoch.

    One-shot masks do not depend on the reset epoch; IMP masks do, so each level is drawn from
    the earliest reset epoch too. A cell whose runs all diverged is drawn: its mask is a fact.
    """
    by_run = {run_id: row for row in rows if row.kind in TICKET_KINDS for run_id in row.run_ids}
    panels: dict[str, dict[str, Point]] = {}
    for point in sorted((p for p in family.points if p.run_id in by_run),
                        key=lambda p: (p.reset_epoch, p.seed, p.level or 0, p.threshold)):
        panels.setdefault(point.scope, {}).setdefault(describe(by_run[point.run_id]), point)
    return panels


def _density_panels(family: Family, rows: Sequence[Row]) -> dict[str, dict[str, list[tuple[str, float]]]]:
    """Per-layer densities (from each chosen run's sparsity.json), by scope and line label."""
    def densities(point: Point) -> list[tuple[str, float]]:
        report = tracking.fetch(point.run_id, schema.SPARSITY_REPORT, lambda path: json.loads(path.read_text()))
        return [(layer["layer"], float(layer["density"])) for layer in report["layers"]]

    return {scope: {label: densities(point) for label, point in sorted(chosen.items(), key=lambda i: i[1].threshold)}
            for scope, chosen in density_choices(family, rows).items()}


def _winner_models(winners: dict[int, Row | None], data_label: str, family: str,
                   register: bool) -> tuple[WinnerModel, ...]:
    """Log the winners that have weights as MLflow models; TensorFlow is loaded only if one has.

    Args:
        data_label: What the family trained on (its registered name starts with it).
    """
    client = MlflowClient()

    def has_weights(run_id: str) -> bool:
        names = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "weights")}
        return {schema.MASK, schema.FINAL_WEIGHTS} <= names

    chosen = {reset: row for reset, row in winners.items()
              if row is not None and row.run_ids and has_weights(row.run_ids[0])}
    if not chosen:
        return ()
    from lth.report.model_registry import log_winners, registered_name

    return tuple(log_winners(chosen, registered_name(data_label, family) if register else None))


def _data_label(family: Family) -> str:
    """The family's data as a short name: a shard folder's name, else the dataset's (`digits-shards`, `digits`)."""
    params = dict(family.dense[0].params) if family.dense else {}
    path = params.get("data.path")
    return Path(path).name if path and path != "None" else params.get("data.name", "data")


def _diagnostics(family: Family) -> Diagnostics:
    """The family's mask diagnostics; none when a mask or checkpoint they read is not stored (said once)."""
    try:
        return family_diagnostics(family)
    except (MlflowException, OSError, KeyError, ValueError) as error:  # the report stands without them
        log.warning("report of %s: no mask diagnostics (%s: %s)", family.family, type(error).__name__,
                    str(error).splitlines()[0][:300])
        return Diagnostics({}, {})


def _diagnostics_section(text: str, figures: Sequence[Path]) -> str:
    """The mask diagnostics' markdown section, with the figures that were drawn; empty without any."""
    drawn = [f"![{path.stem}]({path.name})" for path in figures if path.name != "stability.png"]
    return "\n\n".join(["## Mask diagnostics", text, *drawn]) if text or drawn else ""


def write_report(experiment_id: str, family: str, output_dir: Path, tolerance: float,
                 register: bool = False, measure: str = "final") -> ReportFiles:
    """Write the report of one family to `output_dir/<family>/`, log it to its dense parents, and log its winners.

    Args:
        register: Also register each winner's model in the Model Registry (`registered_name`).
        measure: `report.measure`: read every run at its final or early-stop epoch (lth.report.measure);
            tagged on the dense parents with the report it judged.
    """
    runs = measured(collect(experiment_id, family), measure)
    selection = selection_of(runs)
    for warning in [*chance_warnings(runs), *selection.warnings]:
        log.warning("report of %s: %s", family, warning.strip("*"))
    rows, winners = mark_winners(aggregate(runs, selection.metric), tolerance, selection.split)
    missing = missing_cells(runs, rows)
    folder = output_dir / family
    folder.mkdir(parents=True, exist_ok=True)
    failed = [p for p in runs.points if p.finished and not p.learned]
    name = next((d.name for d in runs.dense if d.name), family)
    title = figure_title(name, runs, rows)  # what became of every run: trained and failed is not missing
    labels = {row.cell: row.label for row in rows if row.kind == "ticket"}  # every run of a cell, reruns too
    analyses = of_cells(runs.analyses, {p.run_id: (p.cell_id, labels.get(p.cell_id, "")) for p in runs.points
                                        if p.kind == "ticket"})
    barriers, stability_text = write_stability(analyses, name, folder)
    diagnostics = _diagnostics(runs)
    extras = (*filter(None, [barriers]), *write_diagnostics(runs, folder, diagnostics))
    files = ReportFiles(
        folder,
        lottery_figure(rows, runs.dense_accuracies, failed, title, folder / "lottery.png", stable_cells(analyses)),
        write_markdown(rows, winners, runs, selection, tolerance, missing, folder / "report.md",
                       [stability_text, _diagnostics_section(diagnostics_text(diagnostics), extras)], measure),
        write_csv(rows, selection, folder / "results.csv"),
        density_figure(_density_panels(runs, rows), f"Per-layer density of the tickets of {name}", folder / "densities.png"),
        len(missing),
        _winner_models(winners, _data_label(runs), family, register),
        tuple(extras),
    )
    client = MlflowClient()
    for dense in runs.dense:
        for path in (files.figure, files.markdown, files.csv, files.densities, *files.extras):
            client.log_artifact(dense.run_id, str(path), schema.REPORT_FOLDER)
        client.set_tag(dense.run_id, schema.REPORT_MEASURE, measure)  # which accuracies its report/ folder judged
    return files


def write_reports(tracking_uri: str, experiment: str, output_dir: Path, tolerance: float,
                  dense_run_id: str | None = None, register: bool = False, measure: str = "final") -> list[ReportFiles]:
    """Reports of every family of an experiment, or of one dense parent's family, read at `measure`'s epoch.

    Raises:
        ValueError: An unknown `measure`, or no such experiment.
    """
    check_measure(measure)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per small file is noise
    mlflow.set_tracking_uri(tracking_uri)
    found = MlflowClient().get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"no MLflow experiment {experiment!r} at {tracking_uri}")
    return [write_report(found.experiment_id, family, output_dir, tolerance, register, measure)
            for family in families_of(found.experiment_id, dense_run_id)]
