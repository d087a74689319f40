"""The processes of one run: how many train it together, which one this is, and how they talk.

A run may span several processes (SLURM tasks, Spark barrier tasks), each feeding its
slice of every global batch to one `keras.distribution.DataParallel` over all their
devices. Process 0 leads: it alone claims runs, logs to MLflow and writes backups; the
others follow its orders (lth.training.group). Nothing here imports JAX until a group of
several processes starts.

Where the group comes from, first match wins:
* `LTH_PROCESS_COUNT`, `LTH_PROCESS_ID`, `LTH_COORDINATOR`: set by the Spark launcher
  in each barrier task (hydra_plugins.lth_launcher.spark_launcher);
* `SLURM_NTASKS` > 1 inside a job step (`SLURM_STEP_ID`, as srun and submitit start tasks):
  `jax.distributed` then reads SLURM's variables itself;
* otherwise one process.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lth.config.vocabulary import ConfigError

log = logging.getLogger("lth")
COUNT, INDEX, COORDINATOR = "LTH_PROCESS_COUNT", "LTH_PROCESS_ID", "LTH_COORDINATOR"
HEARTBEAT_S = 60  # a process silent this long is taken for dead, and the others fail
SHUTDOWN_S = 60  # how long a process that ends waits at exit for the others to end too
TENSORFLOW_REFUSED = (
    "one run over {count} processes needs train.backend=jax: Keras 3 fit under TensorFlow's "
    "MultiWorkerMirroredStrategy fails (keras-team/keras#20585, tensorflow/tensorflow#72388)")


@dataclass(frozen=True)
class Processes:
    """This process's place in its run's group.

    Attributes:
        index: 0 for the leader.
        count: Processes of the run (1: a plain run).
        coordinator: `host:port` of the leader's coordination service; None lets
            `jax.distributed` find it (SLURM) or, for one process, needs none.
    """

    index: int = 0
    count: int = 1
    coordinator: str | None = None

    @property
    def leader(self) -> bool:
        """Whether this process claims runs, logs to MLflow and writes backups."""
        return self.index == 0

    @property
    def several(self) -> bool:
        """Whether the run spans more than one process."""
        return self.count > 1


def from_environment(environ: Mapping[str, str] = os.environ) -> Processes:
    """The group this process was started in (see the module docstring)."""
    if COUNT in environ:
        count, index = int(environ[COUNT]), int(environ.get(INDEX, "0"))
        coordinator = environ.get(COORDINATOR)
        if count > 1 and not coordinator:
            raise ConfigError(f"{COUNT}={count} needs {COORDINATOR}=host:port of process 0")
    elif int(environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_STEP_ID" in environ:
        count, index, coordinator = int(environ["SLURM_NTASKS"]), int(environ["SLURM_PROCID"]), None
    else:
        return Processes()
    if not 0 <= index < count:
        raise ConfigError(f"process {index} of {count}: the index must be in 0..{count - 1}")
    return Processes(index, count, coordinator)


@functools.cache
def current() -> Processes:
    """This process's group, read once from its environment (it never changes while it lives)."""
    return from_environment()


def start(backend: str) -> Processes:
    """Join this process's group before any computation; refuse TensorFlow for more than one.

    On CPUs the collectives run through gloo (JAX's CPU default has none across
    processes); on GPUs `jax.distributed` uses NCCL. No random seed needs agreeing on (what
    Keras' `distribution.initialize` adds): every run seeds itself with `train.seed`.

    Raises:
        ConfigError: Several processes on TensorFlow, before any compute.
    """
    processes = current()
    if not processes.several:
        return processes
    if backend != "jax":
        raise ConfigError(TENSORFLOW_REFUSED.format(count=processes.count))
    import jax

    if jax.distributed.is_initialized():
        return processes
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # A process that dies is noticed by the others within HEARTBEAT_S, and they fail rather than wait.
    jax.distributed.initialize(processes.coordinator, processes.count, processes.index,
                               heartbeat_timeout_seconds=HEARTBEAT_S, shutdown_timeout_seconds=SHUTDOWN_S)
    log.info("process %d of %d joined its run: devices %s of %d in all (CUDA_VISIBLE_DEVICES=%s)", processes.index,
             processes.count, [str(device) for device in jax.local_devices()], jax.device_count(),
             os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
    return processes


def stop() -> None:
    """Leave the group together (a barrier): a process that just exits can take the others down with it.

    Process 0 hosts the coordination service; the others abort when it vanishes under them.
    Python's exit does this too, but a Spark Python worker does not exit through it.
    """
    if current().several:
        import jax

        if jax.distributed.is_initialized():
            jax.distributed.shutdown()


def broadcast(value: Any) -> Any:
    """`value` as process 0 holds it, on every process (any picklable object; a collective).

    On one process it is `value` itself.
    """
    if not current().several:
        return value
    import numpy as np
    from jax.experimental import multihost_utils

    payload = np.frombuffer(pickle.dumps(value), dtype=np.uint8) if current().leader else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.array(payload.size, np.int64)))
    padded = np.zeros(size, np.uint8)
    padded[:payload.size] = payload
    received = np.asarray(multihost_utils.broadcast_one_to_all(padded), dtype=np.uint8)
    return pickle.loads(received.tobytes())
