"""`python -m lth.report [report.dense_run=<run id>] [report.tolerance=0.01] [report.register=true]
[report.measure=early_stop]`.

Writes the lottery-ticket report and logs each winning ticket as an MLflow model.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from lth.report import write_reports

CONFIG_DIR = str(Path(__file__).resolve().parent.parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="report")
def main(cfg: DictConfig) -> None:
    """Write one report per family (dense config up to its seed) and say where."""
    try:
        reports = write_reports(str(cfg.tracking.uri), str(cfg.tracking.experiment), Path(cfg.report.output_dir),
                                float(cfg.report.tolerance), cfg.report.dense_run,
                                bool(cfg.report.register), str(cfg.report.measure))
    except ValueError as error:
        raise SystemExit(f"lth: error: {error}") from None
    for files in reports:
        gaps = f", {files.missing} cells missing (listed in the report)" if files.missing else ""
        print(f"lth: report {files.figure} and {files.markdown}{gaps}")
        for model in files.models:
            registered = f", registered as {model.registered}" if model.registered else ""
            print(f"lth: winner of reset epoch {model.reset_epoch}: MLflow model {model.model_uri}{registered}")
    if not reports:
        print("lth: no dense parents found: run a search first")


if __name__ == "__main__":
    main()
