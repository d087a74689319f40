"""Where a run trains: the Keras backend, the devices of its data parallelism, its precision.

One device trains plainly. Several train one network data-parallel at the configured
global batch size: `tf.distribute.MirroredStrategy` on TensorFlow (or
`MultiWorkerMirroredStrategy` with `SlurmClusterResolver` when a SLURM job spans
several nodes), `keras.distribution.DataParallel` on JAX. Masks need nothing extra:
their constraints run inside the train step on every replica.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from lth.cell import TrainConfig
from lth.vocabulary import BACKENDS, PRECISIONS, ConfigError


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
    """
    kind, names = _visible()
    if setting == "auto":
        return names if kind == "gpu" else names[:1]
    try:
        wanted = int(setting)
    except (TypeError, ValueError):
        raise ConfigError(f"train.devices must be auto or a positive count, got {setting!r}") from None
    if wanted < 1 or wanted > len(names):
        raise ConfigError(f"train.devices={wanted}, but this job sees {len(names)} {kind} device(s): {names}")
    return names[:wanted]


def _slurm_nodes() -> int:
    return int(os.environ.get("SLURM_JOB_NUM_NODES", os.environ.get("SLURM_NNODES", "1")))


def tensorflow_strategy(devices: list[str]) -> Any:
    """The tf.distribute strategy for these local devices; None for a single device on one node."""
    import tensorflow as tf

    if _slurm_nodes() > 1:  # one run across nodes: one worker per node, each with its local GPUs
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(gpus_per_node=len(devices))
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
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
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    yield len(devices)


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
