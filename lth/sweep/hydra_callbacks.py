"""Hydra callbacks: validate a whole sweep up front, report each job, summarise the sweep."""

from __future__ import annotations

import atexit
import itertools
import sys
import time
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lth import tracking as lth_tracking
from lth.config.cell import StateConfig, TrackingConfig
from lth.config.pieces import piece
from lth.stability.checks import check_auto_reference
from lth.sweep import results
from lth.sweep.progress import Counts, ProgressLine, eta_s
from lth.validation.validate import ConfigError, validate_config

FRONTIER_SWEEPER = "FrontierSweeper"  # hydra/sweeper=lth_frontier (hydra_plugins.lth_frontier)


def sweep_cells(config: DictConfig) -> list[list[str]]:
    """The override list of every job a multirun will launch (the basic sweeper's product).

    Sweep parameters from the config (`hydra.sweeper.params`) come first and are
    replaced by command-line overrides of the same key, as the basic sweeper does.
    """
    by_key: dict[str, str] = {}
    for key, value in (config.hydra.sweeper.get("params") or {}).items():
        by_key[str(key)] = f"{key}={value}"
    for line in config.hydra.overrides.task:
        by_key[line.split("=", 1)[0]] = line
    axes = []
    for override in OverridesParser.create().parse_overrides(list(by_key.values())):
        key = override.get_key_element()
        if override.is_sweep_override():
            axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            axes.append([override.input_line])
    return [list(cell) for cell in itertools.product(*axes)]


class SweepSummary(Callback):
    """Checks every cell before any job runs, prints a line per job and a table at the end.

    Hydra skips `on_multirun_end` when a job failed, so the table is also printed when
    the last local job ends, and at interpreter exit as a last resort (too late for
    MLflow downloads there, so the report is skipped): a partial sweep still shows what
    finished and what is missing.
    """

    def __init__(self) -> None:
        # (sweep dir, jobs, where runs are logged, where the report goes) until summarised
        self._pending: tuple[Path, int | None, TrackingConfig, StateConfig] | None = None  # jobs: None if not known
        self._ended = 0  # jobs that ended in this process (all of them with the local launcher)
        self._failed = 0
        self._job_seconds: list[float] = []  # how long each local job took, for the ETA
        self._started: float | None = None  # when the running local job started
        self._progress: ProgressLine | None = None  # local sweeps only: a SLURM launcher shows its own

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        cells = sweep_cells(config)  # a frontier sweep's: each line and replicate at the configured threshold
        checked = []
        for cell in cells:
            try:
                checked.append(validate_config(compose(config_name=config.hydra.job.config_name, overrides=cell)))
            except ConfigError as error:
                raise SystemExit(f"lth: error in sweep cell [{' '.join(cell)}]: {error}") from None
        try:
            check_auto_reference(checked)
        except ConfigError as error:
            raise SystemExit(f"lth: error: {error}") from None
        frontier = FRONTIER_SWEEPER in str(config.hydra.sweeper.get("_target_", ""))
        if frontier:  # its jobs are chosen round by round
            print(f"lth: frontier sweep of {len(cells)} line x replicate settings, thresholds chosen round by round; "
                  f"outputs in {config.hydra.sweep.dir}", flush=True)
        else:
            print(f"lth: sweep of {len(cells)} jobs, outputs in {config.hydra.sweep.dir}", flush=True)
        tracking, state = piece(TrackingConfig, config.tracking, "tracking"), piece(StateConfig, config.lth, "lth")
        self._pending = (Path(config.hydra.sweep.dir), None if frontier else len(cells), tracking, state)
        if "BasicLauncher" in str(config.hydra.launcher.get("_target_", "")) and not frontier:
            # Between jobs, on its own line: a line rewritten in place would fight the jobs' own output.
            self._progress = ProgressLine("jobs", sys.stdout, every_s=0.0, in_place=False)
        atexit.register(self._summarise, at_exit=True)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._started = time.monotonic()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        number = config.hydra.job.get("num", 0)
        if job_return.status == JobStatus.COMPLETED and isinstance(job_return._return_value, dict):
            classes = OmegaConf.select(config, "data.num_classes")  # warns of a dense parent at chance
            print(f"lth: job {number}: {results.job_line(job_return._return_value, classes)}", flush=True)
        elif job_return.status == JobStatus.FAILED:
            print(f"lth: job {number} FAILED: {job_return._return_value!r}", flush=True)
        self._ended += 1
        self._failed += job_return.status == JobStatus.FAILED
        if self._progress is not None and self._pending is not None and self._pending[1] is not None \
                and self._started is not None:
            self._job_seconds.append(time.monotonic() - self._started)
            left = self._pending[1] - self._ended
            counts = Counts(self._ended - self._failed, 0, left, self._failed)
            self._progress.show(counts, eta_s(counts, self._job_seconds, 1))
        if self._pending is not None and self._ended == self._pending[1]:
            self._summarise()  # before Hydra re-raises a failed job's error and skips on_multirun_end

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._summarise()

    @staticmethod
    def _report(tracking: TrackingConfig, state: StateConfig, dense_run_ids: set[str]) -> None:
        """Write the lottery-ticket report of every family this sweep touched."""
        from lth.report import write_reports  # matplotlib only when a sweep produced something

        written: set[Path] = set()
        for dense_run_id in sorted(dense_run_ids):
            for files in write_reports(tracking.uri, tracking.experiment, state.report_dir, state.report_tolerance,
                                       dense_run_id):
                if files.folder not in written:
                    written.add(files.folder)
                    gaps = f" ({files.missing} cells missing, listed there)" if files.missing else ""
                    print(f"lth: report {files.figure} and {files.markdown}{gaps}", flush=True)

    def _summarise(self, at_exit: bool = False) -> None:
        if self._pending is None:
            return
        sweep_dir, jobs, tracking, state = self._pending
        self._pending = None
        uri = tracking.uri
        records = results.collect(sweep_dir)
        if records:
            print("\n" + results.table(records), flush=True)
            if at_exit:  # MLflow's download threads refuse work once the interpreter is shutting down
                print("lth: no report (the sweep ended abnormally); run `python -m lth.report`", flush=True)
            else:
                self._report(tracking, state, {str(record["dense_run_id"]) for record in records})
        missing = (f" ({jobs - len(records)} of {jobs} jobs did not finish; see their logs)"
                   if jobs is not None and len(records) < jobs else "")
        print(
            f"\nlth: {len(records)} tickets finished{missing}. Browse every run with `mlflow ui` "
            f"(tracking URI {uri}) at {lth_tracking.runs_page(uri, tracking.experiment)}; job outputs are in {sweep_dir}",
            flush=True,
        )
