"""The Spark launcher (`cluster=spark`): each job of a sweep is one run over `spark.workers` barrier tasks.

A job is one Spark stage in barrier mode (`RDD.barrier()`): its tasks start together on
any master (`local-cluster[…]`, standalone, YARN, Kubernetes), and if one fails they all
fail. The tasks agree on a coordinator through the `BarrierTaskContext`: task 0 picks a free
port on its host and `allGather` tells the others, which is all `jax.distributed` needs
(lth.common.processes). Each task then runs the Hydra job as it would run anywhere (`run_job`,
as hydra-submitit-launcher does on a SLURM node) with its place in the group in its
environment; process 0 claims and logs the runs (lth.training.group), so the dense-once
and reuse rules are those of every other launcher. A job whose stage fails (an executor
lost, a task killed) comes back FAILED with one line that says so, and the same command
run again resumes it from its last finished epoch (its backup in `lth.state_dir`).

The tasks work in the folder the sweep was started from, so relative paths (the SQLite
store, `lth.state_dir`, the data) mean the same on every executor: on a real cluster that
folder, or absolute paths in the config, must be on storage every executor sees.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.lth_launcher import numbered

log = logging.getLogger("lth")


class BarrierJob:
    """What each barrier task of one job runs (pickled to the executors with everything it needs)."""

    def __init__(self, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig,
                 workers: int, folder: str) -> None:
        # No callbacks in the tasks: the sweep's (its summary, its report) run once, on the driver, which
        # hears of each job; in the tasks they would run once per process, and process 1 would write a report.
        self.hydra_context = dataclasses.replace(hydra_context, callbacks=type(hydra_context.callbacks)())
        self.task_function, self.config = task_function, config
        self.workers, self.folder = workers, folder
        self.singletons = Singleton.get_state()  # Hydra's config repository and plugins, as on the driver

    def __call__(self, _: Iterator[Any]) -> Iterator[JobReturn | None]:
        from pyspark import BarrierTaskContext

        context = BarrierTaskContext.get()
        index = context.partitionId()
        host = context.getTaskInfos()[0].address.rsplit(":", 1)[0]  # the executor of task 0
        offer = f"{host}:{_free_port()}" if index == 0 else ""
        coordinator = context.allGather(offer)[0]  # every task hears task 0's address
        os.environ.update({"LTH_PROCESS_COUNT": str(self.workers), "LTH_PROCESS_ID": str(index),
                           "LTH_COORDINATOR": coordinator})
        os.chdir(self.folder)  # relative paths resolve where the sweep was started
        Singleton.set_state(self.singletons)
        setup_globals()
        try:
            returned = run_job(hydra_context=self.hydra_context, task_function=self.task_function,
                               config=self.config, job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        finally:
            from lth.common.processes import stop

            stop()
        if returned.status == JobStatus.FAILED:  # every task fails the stage, so Spark says which one and why
            raise RuntimeError(f"process {index} of {self.workers}: {returned._return_value!r}")
        yield returned if index == 0 else None


def _free_port() -> int:
    """A TCP port free on this host now, for `jax.distributed`'s coordinator."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


def _stage_failure(error: Exception, overrides: Sequence[str], workers: int) -> JobReturn:
    """A FAILED JobReturn that says in one line what Spark reported and how to resume."""
    reason = next((line.strip() for line in str(error).splitlines()
                   if any(word in line for word in ("ExecutorLostFailure", "RuntimeError", "Error", "lost"))),
                  type(error).__name__)
    ret = JobReturn()
    ret.overrides = list(overrides)
    ret.status = JobStatus.FAILED
    ret._return_value = RuntimeError(
        f"the Spark barrier stage of {workers} tasks failed ({reason[:300]}); run the same command again: "
        "it resumes from the last finished epoch")
    return ret


class SparkLauncher(Launcher):
    """Runs each job of a sweep, one after the other, as one run over `workers` Spark barrier tasks.

    Args:
        master: The Spark master (`spark.master`).
        workers: Barrier tasks, i.e. processes, of each run (`spark.workers`); the master must
            offer that many task slots at once.
        app_name: The application name in Spark's UI.
        driver_memory: Memory of the driver JVM (it holds no data here).
        conf: Any other Spark setting, dotted (`{spark.executor.memory: 4g}`).
    """

    def __init__(self, master: str, workers: int, app_name: str = "lth", driver_memory: str = "1g",
                 conf: dict[str, Any] | None = None) -> None:
        self.spark_cfg = OmegaConf.create({
            "master": master, "app_name": app_name, "driver_memory": driver_memory,
            # A fresh Python worker per task: a process joins one JAX group in its life (jax.distributed).
            "conf": {"spark.python.worker.reuse": False, **(conf or {})}})
        self.workers = int(workers)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Every job's JobReturn, in order (a job whose stage failed comes back FAILED; the others still run)."""
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        if self.workers < 1:
            raise ValueError(f"spark.workers must be a positive count, got {self.workers}")
        from lth.ingest.run import spark_session

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        spark = spark_session(self.spark_cfg)
        returns: list[JobReturn] = []
        for number, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s (%d Spark barrier tasks on %s)", number, " ".join(filter_overrides(overrides)),
                     self.workers, self.spark_cfg.master)
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"spark_{spark.sparkContext.applicationId}_{number}"
                sweep_config.hydra.job.num = number
            job = BarrierJob(self.hydra_context, self.task_function, sweep_config, self.workers, os.getcwd())
            spark.sparkContext.setJobDescription(f"lth job {number}: {' '.join(filter_overrides(overrides))}")
            try:
                results = spark.sparkContext.parallelize(range(self.workers), self.workers).barrier() \
                    .mapPartitions(job).collect()
                returned = next(result for result in results if result is not None)
            except Exception as error:  # Py4JJavaError: the stage failed; the sweep's other jobs still run
                returned = _stage_failure(error, overrides, self.workers)
                print(f"lth: job {number} failed: {returned._return_value}", flush=True)
            # The job's callbacks ran in its tasks; the sweep's callbacks here hear of it too.
            self.hydra_context.callbacks.on_job_end(config=numbered(self.config, number), job_return=returned)
            returns.append(returned)
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        spark.stop()  # before Python exits: a master left running relaunches executors into a dying JVM
        return returns
