"""Where a run trains: the Keras backend, the devices of its data parallelism, its precision.

One device trains plainly. Several train one network data-parallel at the configured
global batch size: `tf.distribute.MirroredStrategy` over one process's devices on
TensorFlow, `keras.distribution.DataParallel` on JAX, whose devices may belong to several
processes (lth.common.processes; TensorFlow refuses more than one process). Masks need nothing
extra: their constraints run inside the train step on every replica.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from lth.common import processes
from lth.config.cell import TrainConfig
from lth.config.vocabulary import BACKENDS, PRECISIONS, ConfigError


def select_backend(backend: str) -> None:
    """Make `backend` the Keras backend of this process; must run before Keras is imported.

    Raises:
        ConfigError: For an unknown backend, or when Keras already runs another one here.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"train.backend must be one of {list(BACKENDS)}, got {backend!r}")
    if "keras" in sys.modules:  # the backend is fixed at import: a second one cannot be loaded
        active = sys.modules["keras"].backend.backend()
        if active != backend:
            raise ConfigError(f"train.backend={backend}, but this process already runs Keras on {active}; "
                              f"start a new process (KERAS_BACKEND={backend})")
        return
    os.environ["KERAS_BACKEND"] = backend


def enter(backend: str) -> processes.Processes:
    """What every job does first, before Keras is imported: pick the backend, join the run's processes.

    Raises:
        ConfigError: As `select_backend` and `lth.common.processes.start` (TensorFlow over several processes).
    """
    select_backend(backend)
    return processes.start(backend)


def _visible() -> tuple[str, list[str]]:
    """(kind, names) of the devices the active backend sees: its GPUs, else its (logical) CPUs."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
        return ("gpu", gpus) if gpus else ("cpu", [device.name for device in tf.config.list_logical_devices("CPU")])
    devices = keras.distribution.list_devices()
    kind = "gpu" if devices and devices[0].lower().startswith(("gpu", "cuda")) else "cpu"
    return kind, devices


def device_kind_and_count() -> tuple[str, int]:
    """(kind, count) of the accelerators this process sees; CPU counts as one."""
    kind, names = _visible()
    return (kind, len(names)) if kind == "gpu" else ("cpu", 1)


def replica_devices(setting: Any) -> list[str]:
    """The devices one run trains on, for `train.devices`.

    `auto` takes every visible GPU, or the one CPU. A number takes that many devices
    and fails if fewer are visible; on a CPU-only machine it takes logical CPU devices
    (TensorFlow: `tf.config.set_logical_device_configuration`; JAX:
    `--xla_force_host_platform_device_count`), which is how data parallelism is tested.
    In a run over several processes JAX sees every process's devices: `auto` takes all of
    them (one CPU each on CPU-only machines), and a number must be their count.
    """
    kind, names = _visible()
    group = processes.current()
    if group.several:
        if setting not in ("auto", len(names)):
            raise ConfigError(f"train.devices={setting}, but this run's {group.count} processes hold "
                              f"{len(names)} {kind} device(s) in all: use train.devices=auto")
        return names
    if setting == "auto":
        return names if kind == "gpu" else names[:1]
    try:
        wanted = int(setting)
    except (TypeError, ValueError):
        raise ConfigError(f"train.devices must be auto or a positive count, got {setting!r}") from None
    if wanted < 1 or wanted > len(names):
        raise ConfigError(f"train.devices={wanted}, but this job sees {len(names)} {kind} device(s): {names}")
    return names[:wanted]


def tensorflow_strategy(devices: list[str]) -> Any:
    """The tf.distribute strategy for this process's devices; None for a single device.

    One process only: Keras 3 `fit` under `MultiWorkerMirroredStrategy` fails
    (keras-team/keras#20585), so lth.common.processes.start refuses TensorFlow across processes.
    """
    import tensorflow as tf

    if len(devices) == 1:
        return None
    return tf.distribute.MirroredStrategy(devices)


@contextlib.contextmanager
def data_parallel(train: TrainConfig) -> Iterator[int]:
    """Build (and later train) the network inside this block; yields the number of replicas.

    On TensorFlow the strategy is captured by the model built here, so `fit` outside
    the block still runs on every replica. On JAX the distribution is set for the
    process, because Keras' JAX trainer reads it again in `fit`.
    """
    import keras

    devices = replica_devices(train.devices)
    if keras.backend.backend() == "tensorflow":
        if len(devices) > 1 and train.sync_bn and "GPU" not in devices[0].upper():
            # Measured: synchronized BatchNorm across logical CPU devices fails in TF's collectives
            # (a shape mismatch with the default all-reduce, a hang with ReductionToOneDevice).
            raise ConfigError("train.sync_bn on TensorFlow needs GPU replicas; on CPU devices use "
                              "train.backend=jax, whose DataParallel computes BatchNorm over the global batch")
        strategy = tensorflow_strategy(devices)
        if strategy is None:
            yield 1
            return
        with strategy.scope():
            yield strategy.num_replicas_in_sync
        return
    if len(devices) == 1:
        yield 1
        return
    distribution = keras.distribution.DataParallel(devices=devices)
    # Each process feeds its own part of every global batch (lth.data.splits.Part); Keras
    # would otherwise shard the dataset itself, which it cannot do for a PyDataset.
    distribution.auto_shard_dataset = False
    keras.distribution.set_distribution(distribution)
    yield len(devices)


@contextlib.contextmanager
def on_this_process() -> Iterator[None]:
    """Models built inside this block live on this process alone, outside the run's distribution.

    Under a JAX distribution over several processes, creating or assigning a variable is a
    collective (JAX checks that every process passes the same value), so a model that only
    process 0 builds (e.g. a control's fresh initialisation) must be built outside it.
    """
    import keras

    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


@contextlib.contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Layers built inside this block compute in `precision`; their variables stay float32.

    Keras' mixed policies keep float32 master weights, so the mask constraints act on
    float32 variables. `compile()` wraps the optimizer of a mixed_float16 model in a
    `LossScaleOptimizer` (dynamic loss scaling).
    """
    import keras

    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {list(PRECISIONS)}, got {precision!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def seed_everything(seed: int) -> None:
    """`keras.utils.set_random_seed`, without importing TensorFlow on other backends.

    Keras also seeds TensorFlow whenever it can import it, which costs seconds and
    defeats a JAX-only install. A `None` entry in `sys.modules` makes that import fail
    as if TensorFlow were absent (the import system's documented rule).
    """
    import keras

    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    sys.modules["tensorflow"] = None  # type: ignore[assignment]
    try:
        keras.utils.set_random_seed(seed)
    finally:
        del sys.modules["tensorflow"]


def normalises_per_replica(train: TrainConfig, replicas: int) -> bool:
    """Whether BatchNorm sees each replica's slice of the batch (TensorFlow without sync_bn on several devices).

    Then the numbers depend on the replica count: measured, 4 replicas vs 1 move one
    MobileNetV2 update by 27%. JAX's DataParallel normalises over the global batch.
    """
    return replicas > 1 and train.backend == "tensorflow" and not train.sync_bn


def check_replica_reuse(train: TrainConfig, run_id: str, trained_replicas: int, replicas: int) -> None:
    """Refuse to rewind tickets on `replicas` devices into a dense parent trained on another count,
    where BatchNorm is per replica on either side (a ticket would not train like its parent).

    Raises:
        ConfigError: One line naming both counts and the ways out.
    """
    if trained_replicas == replicas:
        return
    if normalises_per_replica(train, trained_replicas) or normalises_per_replica(train, replicas):
        raise ConfigError(
            f"dense parent {run_id} was trained on {trained_replicas} replica(s) and this job has {replicas}; "
            f"with per-replica BatchNorm (TensorFlow, train.sync_bn=false) its tickets would not train like it: "
            f"run with train.devices={trained_replicas}, or train.sync_bn=true / train.backend=jax (a new dense parent)")
