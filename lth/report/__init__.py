"""The lottery-ticket report: figure, winning tickets, CSV and markdown, logged to the dense parents."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from lth import tracking
from lth.report.collect import Point, collect, families_of
from lth.report.plot import density_figure, lottery_figure
from lth.report.summary import aggregate, mark_winners, missing_cells, write_csv, write_markdown

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


def _density_profiles(points: list[Point]) -> dict[str, list[tuple[str, float]]]:
    """Per-layer densities of one ticket per threshold (first seed, earliest reset epoch)."""
    tickets = sorted((p for p in points if p.kind == "ticket" and p.status == "FINISHED"),
                     key=lambda p: (p.threshold, p.seed, p.reset_epoch))
    chosen: dict[float, Point] = {}
    for point in tickets:
        chosen.setdefault(round(point.threshold, 6), point)
    profiles = {}
    for threshold, point in sorted(chosen.items()):
        report = tracking.fetch(point.run_id, "sparsity.json", lambda path: json.loads(path.read_text()))
        profiles[f"t={threshold:.3f} ({point.scope})"] = [(layer["layer"], layer["density"]) for layer in report["layers"]]
    return profiles


def write_report(experiment_id: str, family: str, output_dir: Path, tolerance: float) -> ReportFiles:
    """Write the report of one family to `output_dir/<family>/` and log it to its dense parents."""
    runs = collect(experiment_id, family)
    dense = runs.dense_accuracies
    rows = aggregate(runs.points)
    rows, winners = mark_winners(rows, float(np.mean(dense)) if dense else float("inf"), tolerance)
    missing = missing_cells(runs)
    folder = output_dir / family
    folder.mkdir(parents=True, exist_ok=True)
    failed = [p for p in runs.points if p.status == "FINISHED" and (p.diverged or p.empty_layers)]
    name = runs.dense[0].data.tags.get("mlflow.runName", family) if runs.dense else family
    title = f"Lottery tickets of {name}" + (f" ({len(missing)} cells missing)" if missing else "")
    files = ReportFiles(
        folder,
        lottery_figure(rows, dense, failed, title, folder / "lottery.png"),
        write_markdown(rows, winners, dense, tolerance, missing, folder / "report.md"),
        write_csv(rows, folder / "results.csv"),
        density_figure(_density_profiles(runs.points), f"Per-layer density of the tickets of {name}",
                       folder / "densities.png"),
        len(missing),
    )
    client = MlflowClient()
    for run in runs.dense:
        for path in (files.figure, files.markdown, files.csv, files.densities):
            client.log_artifact(run.info.run_id, str(path), "report")
    return files


def write_reports(tracking_uri: str, experiment: str, output_dir: Path, tolerance: float,
                  dense_run_id: str | None = None) -> list[ReportFiles]:
    """Reports of every family of an experiment, or of one dense parent's family."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per small file is noise
    mlflow.set_tracking_uri(tracking_uri)
    found = MlflowClient().get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"no MLflow experiment {experiment!r} at {tracking_uri}")
    return [write_report(found.experiment_id, family, output_dir, tolerance)
            for family in families_of(found.experiment_id, dense_run_id)]
