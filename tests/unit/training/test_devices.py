"""Device selection, the learning-rate rule and the config errors of the hardware keys."""

from __future__ import annotations

import dataclasses

import pytest

from lth.config.cell import Cell, TrainConfig
from lth.config.pieces import piece
from lth.training.devices import replica_devices, select_backend
from lth.training.fitting import learning_rate
from lth.validation.validate import ConfigError


def test_auto_on_a_cpu_machine_trains_on_one_device() -> None:
    assert len(replica_devices("auto")) == 1


def test_asking_for_more_devices_than_visible_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"train.devices=64, but this job sees 1 cpu device"):
        replica_devices(64)
    with pytest.raises(ConfigError, match="auto or a positive count"):
        replica_devices("all")


def test_a_second_backend_in_one_process_is_refused() -> None:
    import keras

    select_backend(keras.backend.backend())  # the active one: fine
    with pytest.raises(ConfigError, match="already runs Keras on tensorflow"):
        select_backend("jax")
    with pytest.raises(ConfigError, match="must be one of"):
        select_backend("torch")


def test_linear_scaling_multiplies_the_rate_by_batch_over_reference() -> None:
    train = piece(TrainConfig, {"seed": 0, "learning_rate": 0.1, "epochs": 90, "lr_schedule": "constant",
                                "batch_size": 1024, "lr_scaling": "linear", "lr_reference_batch": 256}, "train")
    assert learning_rate(train, 100) == pytest.approx(0.4)
    train = dataclasses.replace(train, lr_scaling="none")
    assert learning_rate(train, 100) == pytest.approx(0.1)


@pytest.mark.parametrize(("overrides", "trained", "now", "refused"), [
    ((), 4, 1, True),                             # TF, per-replica BN: a 4-GPU parent is not a 1-GPU parent
    ((), 1, 4, True),
    ((), 2, 2, False),                            # same count, same numbers
    (("train.sync_bn=true",), 4, 1, False),      # statistics over the global batch on both sides
    (("train.backend=jax",), 4, 1, False),        # JAX's DataParallel normalises over the global batch
])
def test_reusing_a_dense_parent_across_replica_counts(compose, overrides: tuple[str, ...], trained: int, now: int,
                                                      refused: bool) -> None:
    from lth.training.devices import check_replica_reuse
    from lth.validation.validate import ConfigError

    cfg = compose(*overrides)
    if refused:
        with pytest.raises(ConfigError, match=f"trained on {trained} replica.*this job has {now}"):
            check_replica_reuse(Cell.of(cfg).train, "run-1", trained, now)
    else:
        check_replica_reuse(Cell.of(cfg).train, "run-1", trained, now)
