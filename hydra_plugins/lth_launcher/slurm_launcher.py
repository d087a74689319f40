"""The SLURM launcher of a sweep: dense parents first, as their own jobs, then one array of tickets.

It extends hydra-submitit-launcher's `SlurmLauncher` (same config keys, same array
submission, same requeue-on-preemption through `checkpoint()`) in two ways:

* Before the array is submitted, every distinct dense parent of the sweep is trained
  as one job and awaited, so no ticket job holds its GPUs while waiting for a parent,
  and a parent is never trained by a hundred jobs racing for its lock. A sweeper that
  launches several times (the frontier sweep's rounds) gets each parent's job once.
* A task that SLURM cancels or kills does not abort the wait for the others: it comes
  back as a FAILED job naming its state and log, and the sweep's summary lists it.

While it waits, one progress line (lth.sweep.progress) says how many jobs are done,
running, pending and failed, with an ETA from the finished jobs' times.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.lth_launcher import numbered
from lth.sweep.progress import Counts, ProgressLine, eta_s
from lth.tracking.identity import dense_hash

log = logging.getLogger("lth")


class DenseJob:
    """Trains one dense parent in a SLURM job; a preempted job is requeued and resumes its backup."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def __call__(self) -> str:
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
        from lth.training.devices import enter

        enter(str(self.cfg.train.backend))  # the configured backend, and the job's processes (tasks_per_node, nodes)
        from lth.stages.cell_search import run_dense  # TensorFlow only inside the job

        return run_dense(self.cfg).run_id

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on preemption or timeout: run again from the top (training resumes)."""
        return submitit.helpers.DelayedSubmission(self)


LOST_AFTER_S = 60.0  # a task SLURM has not known of for this long is reported lost, not awaited forever
POLL_S = 5.0  # how often the submitting process asks SLURM about unfinished tasks
RUNNING = ("RUNNING", "COMPLETING")  # SLURM states of a job that has started and not ended
NOT_DENSE = ("prune.", "reset.", "stability.", "tracking.", "cluster.", "lth.", "hydra.")  # never in a dense identity


def _failure(job: submitit.Job, why: str, overrides: Sequence[str]) -> JobReturn:
    """A JobReturn for a task that never returned (cancelled, killed, node failure)."""
    ret = JobReturn()
    ret.overrides = list(overrides)
    ret.status = JobStatus.FAILED
    ret._return_value = RuntimeError(f"SLURM job {job.job_id} ended {why} without a result; log {job.paths.stderr}")
    return ret


def _unknown_to_slurm(job: submitit.Job) -> bool:
    """Neither accounting nor the queue knows the task: a pending array task cancelled before it
    started leaves no accounting record, and submitit would wait for it forever."""
    if job.state != "UNKNOWN":
        return False
    queued = subprocess.run(["squeue", "-h", "-j", job.job_id], capture_output=True, text=True, check=False)
    return not queued.stdout.strip()


def _outcome(job: submitit.Job, overrides: Sequence[str]) -> JobReturn:
    """The JobReturn a finished task sent back, or a FAILED one naming its SLURM state."""
    try:
        return job.results()[0]
    except Exception as error:  # cancelled, out of memory, node failure: the other tasks still count
        return _failure(job, f"{job.state} ({type(error).__name__})", overrides)


class SlurmLauncher(SubmititSlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher with a dense-first stage and per-task failures."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._trained_dense: set[str] = set()  # dense hashes whose job ended well in an earlier `launch` (frontier rounds)

    def _executor(self) -> submitit.AutoExecutor:
        """What the parent's `launch` prepares before it submits: the executor, then the sweep dir.

        hydra-submitit-launcher (1.2.0) does this inline in `BaseSubmititLauncher.launch`, which
        goes on to submit the whole sweep as one array and to wait with `job.results()`, raising
        at the first task SLURM cancels. It has no method that builds the executor alone and no
        hook between building and submitting, so its code cannot be called for this part; the
        lines below follow it step by step, by its own rules (`_EXECUTOR`, its constructor keys,
        the unprefixed keys of `BaseQueueConf`, `hydra.sweep.mode`). tests/unit/plugins/test_slurm_launcher.py
        runs the parent's `launch` up to `sbatch` and checks that ours submits with the same
        executor and sweep dir, so a plugin upgrade that changes them fails a test instead of
        drifting. The values are plain already: the parent's `__init__`, inherited here, turns
        every OmegaConf container of `hydra.launcher` (`setup`, `additional_parameters`) into a list or dict.
        """
        assert self.config is not None
        constructor_keys = {"max_num_timeout"}  # the parent passes these to AutoExecutor as `slurm_<key>`
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
            **{f"{self._EXECUTOR}_{key}": value for key, value in self.params.items() if key in constructor_keys})
        shared = set(OmegaConf.structured(BaseQueueConf).keys())  # every submitit executor takes these unprefixed
        executor.update_parameters(**{
            key if key in shared else f"{self._EXECUTOR}_{key}": value
            for key, value in self.params.items() if key not in constructor_keys | {"submitit_folder"}
        })
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, self.config.hydra.sweep.dir)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:  # e.g. +hydra.sweep.mode=750 for a group-readable sweep
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        return executor

    def _train_dense_parents(self, executor: submitit.AutoExecutor, job_overrides: Sequence[Sequence[str]]) -> None:
        """Submit one job per distinct dense parent of the sweep and wait for all of them."""
        assert self.hydra_context is not None and self.config is not None
        parents: dict[str, DictConfig] = {}
        composed: set[tuple[str, ...]] = set()
        for overrides in job_overrides:
            # Cells that differ only in keys outside the dense identity share a parent: compose one of them.
            signature = tuple(sorted(o for o in overrides if not o.lstrip("+~").startswith(NOT_DENSE)))
            if signature in composed:
                continue
            composed.add(signature)
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                del cfg["hydra"]
            parents.setdefault(dense_hash(cfg), cfg)
        trained = self._trained_dense
        parents = {key: cfg for key, cfg in parents.items() if key not in trained}
        if not parents:
            return
        executor.update_parameters(name="lth-dense")
        jobs = {key: executor.submit(DenseJob(cfg)) for key, cfg in parents.items()}
        for key, job in jobs.items():
            log.info("dense parent %s: SLURM job %s (log %s)", key[:8], job.job_id, job.paths.stdout)
        print(f"lth: training {len(jobs)} dense parent(s) first, as SLURM job(s) "
              f"{' '.join(job.job_id for job in jobs.values())}", flush=True)
        progress = ProgressLine("dense parents")
        while not all(job.done() for job in jobs.values()):
            running = sum(job.state in RUNNING for job in jobs.values())
            finished = sum(job.done() for job in jobs.values())
            progress.show(Counts(finished, running, len(jobs) - finished - running, 0), None)
            time.sleep(POLL_S)
        progress.close()
        for key, job in jobs.items():
            try:
                job.results()  # every task's; a job of several tasks (tasks_per_node, nodes) has no single result
            except Exception as error:  # no ticket can run without its parent
                raise RuntimeError(f"dense parent {key[:8]} failed in SLURM job {job.job_id} ({job.state}); "
                                   f"log {job.paths.stderr}") from error
            trained.add(key)
        executor.update_parameters(name=str(self.params.get("name", "lth")))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Dense parents, then the tickets as one array; every task's outcome, failed ones included."""
        assert self.hydra_context is not None and self.config is not None
        executor = self._executor()
        self._train_dense_parents(executor, job_overrides)
        numbers = [initial_job_idx + i for i in range(len(job_overrides))]
        for number, overrides in zip(numbers, job_overrides):
            log.info("\t#%d : %s", number, " ".join(filter_overrides(overrides)))
        started = time.perf_counter()
        jobs = executor.map_array(
            self, [list(o) for o in job_overrides], ["hydra.sweep.dir"] * len(numbers), numbers,
            [f"job_id_for_{n}" for n in numbers], [Singleton.get_state()] * len(numbers))
        print(f"lth: {len(jobs)} ticket jobs in SLURM array {jobs[0].job_id.split('_')[0]} "
              f"(submitted in {time.perf_counter() - started:.1f} s)", flush=True)
        return self._wait_for_tasks(jobs, numbers, job_overrides)

    def _wait_for_tasks(self, jobs: Sequence[submitit.Job], numbers: Sequence[int],
                        job_overrides: Sequence[Sequence[str]]) -> list[JobReturn]:
        """Every task's JobReturn, in sweep order, telling the local callbacks as each one ends."""
        assert self.hydra_context is not None
        returns: dict[int, JobReturn] = {}
        unknown_since: dict[int, float] = {}
        started: dict[int, float] = {}  # when each task was first seen running
        job_seconds: list[float] = []
        parallel, polled = 1, time.monotonic()
        progress = ProgressLine("tickets")
        while len(returns) < len(jobs):
            for index, (job, number, overrides) in enumerate(zip(jobs, numbers, job_overrides)):
                if index in returns:
                    continue
                if job.done():
                    returns[index] = _outcome(job, overrides)
                    # A task never seen running started after the last poll.
                    job_seconds.append(time.monotonic() - started.get(index, polled))
                elif _unknown_to_slurm(job):
                    since = unknown_since.setdefault(index, time.monotonic())
                    if time.monotonic() - since < LOST_AFTER_S:
                        continue
                    returns[index] = _failure(job, "CANCELLED or lost (SLURM no longer knows it)", overrides)
                else:
                    unknown_since.pop(index, None)
                    if job.state in RUNNING:
                        started.setdefault(index, time.monotonic())
                    continue
                # The job's own callbacks ran on its node; the submitting side's callbacks hear of it here.
                progress.clear()
                self.hydra_context.callbacks.on_job_end(config=numbered(self.config, number),
                                                        job_return=returns[index])
            polled = time.monotonic()
            counts = self._counts(jobs, returns, started)
            parallel = max(parallel, counts.running)
            progress.show(counts, eta_s(counts, job_seconds, parallel))
            if len(returns) < len(jobs):
                time.sleep(POLL_S)
        progress.close()
        return [returns[index] for index in range(len(jobs))]

    @staticmethod
    def _counts(jobs: Sequence[submitit.Job], returns: dict[int, JobReturn], started: dict[int, float]) -> Counts:
        """Done and failed from the tasks' returns; running: started and not returned; the rest pending."""
        failed = sum(ret.status == JobStatus.FAILED for ret in returns.values())
        running = sum(index not in returns for index in started)
        return Counts(len(returns) - failed, running, len(jobs) - len(returns) - running, failed)
