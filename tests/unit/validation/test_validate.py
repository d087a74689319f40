"""Bad input becomes one clear error before any training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lth.validation.validate import ConfigError, validate_config


@pytest.mark.parametrize(("override", "message"), [
    ("prune.threshold=1.0", r"prune.threshold must be in \[0, 1\)"),
    ("prune.threshold=-0.2", r"prune.threshold must be in \[0, 1\)"),
    ("reset.epoch=16", "after the end of training"),
    ("reset.epoch=-1", "reset.epoch must be auto or a non-negative integer"),
    ("prune.scope=channel", "prune.scope must be global, layer, lamp or erk"),
    ("lth.keep_epochs=[0,2]", "not among lth.keep_epochs"),
    ("lth.keep_epochs=[0,99]", "list of epochs in"),
    ("lth.keep_epochs=3", "list of epochs in"),
    ("train.optimizer=lion", "train.optimizer"),
    ("data.val_fraction=0", "data.val_fraction"),
    ("data.path=/no/such/folder", "data.path does not exist"),
    ("train.seed=-1", "train.seed must be a non-negative integer"),
    ("train.weight_decay_mode=l1", "train.weight_decay_mode must be decoupled or l2"),
    ("data.channels=1", "data.channels=1 but model mobilenet_v2 takes 3"),
    ("prune.structure=blocks", "prune.structure must be none, xnnpack_1x1 or channel"),
    ("prune.structure=channel prune.method=imp", "prune.structure=channel prunes whole channels in one shot"),
    # hardware and numerics
    ("train.backend=torch", "train.backend must be tensorflow or jax"),
    ("train.precision=float16", "train.precision must be float32, mixed_bfloat16 or mixed_float16"),
    ("train.devices=0", "train.devices must be auto or a positive integer"),
    ("train.lr_scaling=sqrt", "train.lr_scaling must be none or linear"),
    ("train.steps_per_execution=0", "train.steps_per_execution must be a positive integer"),
])
def test_bad_values_are_named_with_their_key(compose: Callable[..., object], override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(compose(*override.split()))


def test_default_and_edge_values_pass(compose: Callable[..., object]) -> None:
    validate_config(compose())
    validate_config(compose("prune.threshold=0", "reset.epoch=0"))
    validate_config(compose("reset.epoch=15", "lth.keep_epochs=[0,15]"))
    validate_config(compose("prune.structure=xnnpack_1x1", "prune.method=imp"))
    validate_config(compose("prune.structure=channel", "prune.control=random_mask"))


@pytest.mark.parametrize(("overrides", "scope"), [
    ((), "lamp"), (("prune.structure=xnnpack_1x1",), "lamp"), (("prune.structure=channel",), "layer"),
    (("prune.structure=channel", "prune.scope=lamp"), "lamp"), (("prune.scope=global",), "global"),
])
def test_scope_is_lamp_unless_channels_go_then_layer(compose: Callable[..., object], overrides: tuple[str, ...],
                                                     scope: str) -> None:
    # A channel ticket is for speed: the same fraction of every group makes the MACs fall with the weights.
    assert validate_config(compose(*overrides)).prune.scope == scope


def test_a_value_of_the_wrong_type_fails_at_composition_against_the_declared_schema(
        compose: Callable[..., object]) -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="prune.threshold=abc") as raised:
        compose("prune.threshold=abc")
    assert "could not be converted to Float" in str(raised.value.__cause__)
    with pytest.raises(ConfigCompositionException, match="train.no_such_key"):
        compose("train.no_such_key=1")


def test_lenet_takes_one_channel_and_its_preset_passes(compose: Callable[..., object], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.channels=3 but model lenet_300_100 takes 1"):
        validate_config(compose("model=lenet_300_100", "data.channels=3"))
    # data.path only has to exist here: the presets are checked without the Fashion-MNIST package
    validate_config(compose("experiment=lenet_fashion_imp", f"data.path={tmp_path}"))
    validate_config(compose("experiment=mobilenet_fashion_rewind", f"data.path={tmp_path}"))


@pytest.mark.parametrize("overrides", [
    ("prune.threshold=0.99", "prune.min_density=0.01"),                       # the floor alone keeps 1%: all that is left
    ("prune.threshold=0.9", "prune.min_density=0.2"),
    ("prune.method=imp", "prune.levels=10", "prune.rate=0.5", "prune.min_density=0.001"),  # 0.1% left after 10 levels
])
def test_a_floor_the_threshold_cannot_honour_is_refused_before_training(compose: Callable[..., object],
                                                                        overrides: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError, match="prune.min_density"):
        validate_config(compose(*overrides))


def test_a_floor_below_what_is_left_passes(compose: Callable[..., object]) -> None:
    validate_config(compose("prune.threshold=0.99", "prune.min_density=0.005"))
    validate_config(compose("prune.threshold=0.99", "prune.min_density=0"))


def test_retry_settings_mlflow_cannot_take_stop_the_sweep_up_front(compose: Callable[..., object]) -> None:
    with pytest.raises(ConfigError, match="tracking.http_backoff_factor must be a whole number"):
        validate_config(compose("tracking=server", "tracking.http_backoff_factor=0.5"))
    validate_config(compose("tracking=server"))
