"""`python -m lth.export <ticket run id>`: a ticket compacted and in TFLite, measured, logged to its run.

Writes `exports/<run id>/` (compact.keras, dense/sparse/compact/compact_sparse.tflite, export.json,
export.md), prints the table, and logs the folder as the run's `export/` artifacts.
`--latency-only` times the TFLite files of an earlier export again (from that folder, or
downloaded from the run) and prints the new speed-ups beside the recorded ones.
Bad arguments, a missing store or an unknown run end in one `lth: error:` line (status 2).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from lth.export.forms import TestSet


class ExportError(RuntimeError):
    """What stops an export before it starts: said in one line."""


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lth.export", description=__doc__.split("\n")[0])
    parser.add_argument("run_id", help="a finished ticket, control or IMP job (its last level is exported)")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
                        help="MLflow store holding the run (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: exports/<run id>)")
    parser.add_argument("--runs", type=int, default=200,
                        help="timed runs per TFLite file at least (more for a fast model: about a second of calls)")
    parser.add_argument("--threads", type=int, default=2, help="TFLite interpreter threads")
    parser.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images only")
    parser.add_argument("--no-log", action="store_true", help="write the folder, log nothing to MLflow")
    parser.add_argument("--latency-only", action="store_true",
                        help="re-time an earlier export's TFLite files and compare with its recorded speed-ups")
    arguments = parser.parse_args(argv)
    if arguments.runs < 1 or arguments.threads < 1:
        parser.error("--runs and --threads must be at least 1")
    if arguments.test_limit is not None and arguments.test_limit < 1:
        parser.error("--test-limit must be at least 1 (leave it out to use the whole test split)")
    return arguments


def _connect(uri: str) -> None:
    """Point MLflow at `uri`, refusing a SQLite file that is not there (MLflow would create an empty store)."""
    from lth import tracking

    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise ExportError(f"no MLflow store at {uri}: run from the folder that holds mlflow.db, or pass "
                          f"--tracking-uri (or set MLFLOW_TRACKING_URI)")
    tracking.connect_uri(uri)


def test_set(config: DictConfig, limit: int | None) -> TestSet:
    """The test split of the data the ticket was trained on, as arrays."""
    import numpy as np

    from lth.config.cell import DataConfig
    from lth.config.pieces import piece
    from lth.data.arrays import LOADERS
    from lth.data.load import load_data
    from lth.export.forms import TestSet

    data = piece(DataConfig, config.data, "data", known_only=True)
    if data.name in LOADERS:
        images, labels = LOADERS[data.name](data)[2]
    else:  # shards: the test split's tf.data pipeline, read once
        batches = [(np.asarray(x), np.asarray(y)) for x, y in load_data(data, 256, 0).test]
        images, labels = np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])
    return TestSet(images[:limit], labels[:limit])


def _retime(arguments: argparse.Namespace, folder: Path) -> None:
    """Time an earlier export's TFLite files again; print the recorded and new speed-ups side by side."""
    import hashlib
    import tempfile

    from lth import tracking
    from lth.export import measured_report
    from lth.export.forms import BASELINE
    from lth.export.latency import measure
    from lth.tracking import schema

    with tempfile.TemporaryDirectory(prefix="lth-export-") as scratch:
        source = str(folder)
        if not (folder / measured_report.REPORT_JSON).exists():  # not exported on this machine: take the run's files
            _connect(arguments.tracking_uri)
            try:
                folder = tracking.download_folder(arguments.run_id, schema.EXPORT_FOLDER, Path(scratch))
            except Exception as error:  # an unknown run, or one never exported
                raise ExportError(f"no export of run {arguments.run_id} in {folder} or in {arguments.tracking_uri} "
                                  f"(run `python -m lth.export {arguments.run_id}` first): {error}") from error
            source = f"the '{schema.EXPORT_FOLDER}/' artifacts of run {arguments.run_id}"
        recorded = measured_report.read(folder / measured_report.REPORT_JSON)
        timed = [form for form in recorded.forms if form.latency_ms is not None]
        for form in timed:  # what exactly is timed, so a rerun can be matched to the files it measured
            content = (folder / form.name).read_bytes()
            print(f"lth: timing {form.name}: {len(content)} bytes, sha256 {hashlib.sha256(content).hexdigest()}")
        timing = measure([folder / form.name for form in timed], runs=arguments.runs, threads=arguments.threads)
    print(f"Latency of {source}: recorded at {recorded.threads} threads, {recorded.runs} runs; now at "
          f"{arguments.threads} threads, {timing[BASELINE].runs} runs (batch 1, median)\n")
    print("| file | recorded ms | recorded speed-up (p10-p90) | now ms | speed-up now (p10-p90) |\n"
          "|---|---|---|---|---|")
    for form in timed:
        now, low, high = timing[form.name].speedups_over(timing[BASELINE])
        spread = "" if form.speedup_p10 is None else f" ({form.speedup_p10:.2f}-{form.speedup_p90:.2f})"
        print(f"| {form.name} | {form.latency_ms:.3f} | {form.speedup:.2f}×{spread} | "
              f"{timing[form.name].median_ms:.3f} | {now:.2f}× ({low:.2f}-{high:.2f}) |")


def _export(arguments: argparse.Namespace, folder: Path) -> None:
    """Load the ticket and its test split, write and measure every form, log them to the run."""
    from lth import tracking
    from lth.export import measured_report
    from lth.export.forms import export_forms
    from lth.export.ticket import load_ticket
    from lth.tracking import schema

    _connect(arguments.tracking_uri)
    try:
        ticket = load_ticket(arguments.run_id)
        run = tracking.get_run(arguments.run_id)
    except Exception as error:  # an unknown id, a run without a mask
        raise ExportError(f"cannot load ticket {arguments.run_id} from {arguments.tracking_uri}: {error}") from error
    test = test_set(ticket.config, arguments.test_limit)
    export = export_forms(ticket.model, folder, test, runs=arguments.runs, threads=arguments.threads,
                          progress=lambda line: print(f"lth: {line}", flush=True))
    title = f"Export of {run.data.tags.get(schema.RUN_NAME, arguments.run_id)} ({arguments.run_id})"
    measured_report.write(export, folder, title)
    print(measured_report.markdown(export, title))
    if not arguments.no_log:
        tracking.log_folder(arguments.run_id, folder, schema.EXPORT_FOLDER)
        print(f"lth: logged {folder} as artifacts '{schema.EXPORT_FOLDER}/' of run {arguments.run_id}")
    print(f"lth: rerun the latency measurement with: python -m lth.export {arguments.run_id} --latency-only")


def main(argv: Sequence[str] | None = None) -> int:
    """Export one ticket (or time its export again); returns the exit status."""
    arguments = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="lth: %(message)s")
    folder = arguments.out or Path("exports") / arguments.run_id
    try:
        (_retime if arguments.latency_only else _export)(arguments, folder)
    except ExportError as error:
        print(f"lth: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
