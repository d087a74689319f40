"""Run identities: stable hashes of exactly the keys that decide a result."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lth.identity import dense_hash, flatten, stable_hash, ticket_key

# Golden values: a change here means every existing dense parent stops being found.
GOLDEN_PAYLOAD_HASH = "84bdd9ed3998f668"
GOLDEN_DEFAULT_DENSE_HASH = "a513945e451ac010"


def test_stable_hash_golden_value_ignores_key_order() -> None:
    assert stable_hash({"b": [1, 2], "a": {"x": 0.5}}) == GOLDEN_PAYLOAD_HASH
    assert stable_hash({"a": {"x": 0.5}, "b": [1, 2]}) == GOLDEN_PAYLOAD_HASH


def test_default_config_dense_hash_is_pinned(compose: Callable[..., object]) -> None:
    assert dense_hash(compose()) == GOLDEN_DEFAULT_DENSE_HASH


@pytest.mark.parametrize("override", [
    "prune.threshold=0.3", "reset.epoch=3", "prune.scope=layer", "tracking.uri=sqlite:///other.db",
    "tracking.experiment=other", "lth.state_dir=/elsewhere", "lth.verbose=0",
])
def test_dense_hash_ignores_keys_that_do_not_decide_the_dense_run(compose: Callable[..., object], override: str) -> None:
    assert dense_hash(compose(override)) == dense_hash(compose())


@pytest.mark.parametrize("override", [
    "train.seed=1", "train.epochs=16", "train.learning_rate=0.1", "model.alpha=0.5",
    "data.split_seed=1", "model=mobilenet_v2", "data=synthetic",
])
def test_dense_hash_changes_with_keys_that_decide_the_dense_run(compose: Callable[..., object], override: str) -> None:
    assert dense_hash(compose(override)) != dense_hash(compose())


def test_ticket_key_depends_on_prune_and_reset_but_not_tracking(compose: Callable[..., object]) -> None:
    base = ticket_key(compose())
    assert ticket_key(compose("prune.threshold=0.3")) != base
    assert ticket_key(compose("reset.epoch=2")) != base
    assert ticket_key(compose("train.seed=3")) != base
    assert ticket_key(compose("tracking.experiment=x")) == base


def test_flatten_uses_dotted_keys_and_json_lists() -> None:
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": "1", "a.c": "[1, 2]", "d": "None"}


def test_number_spelling_and_ignore_order_do_not_change_identities(compose: Callable[..., object]) -> None:
    assert ticket_key(compose("prune.threshold=0")) == ticket_key(compose("prune.threshold=0.0"))
    assert dense_hash(compose("train.weight_decay=0")) == dense_hash(compose("train.weight_decay=0.0"))
    assert ticket_key(compose("prune.ignore=[Conv1,predictions]")) == ticket_key(compose("prune.ignore=[predictions,Conv1]"))


def test_keys_a_method_does_not_use_do_not_split_runs(compose: Callable[..., object]) -> None:
    assert ticket_key(compose("prune.levels=5")) == ticket_key(compose())  # one-shot ignores IMP keys
    assert ticket_key(compose("prune.method=imp", "prune.threshold=0.3")) == ticket_key(compose("prune.method=imp"))
    assert ticket_key(compose("prune.control_seed=4")) == ticket_key(compose())  # no control, no control seed
    assert ticket_key(compose("prune.control=reinit", "prune.control_seed=4")) != ticket_key(
        compose("prune.control=reinit"))


@pytest.mark.parametrize("override", ["train.devices=4", "train.steps_per_execution=8", "train.backend=tensorflow",
                                      "train.precision=float32", "train.lr_reference_batch=512"])
def test_hardware_keys_and_later_defaults_keep_the_dense_identity(compose: Callable[..., object], override: str) -> None:
    # The golden hash above predates these keys: at their defaults, earlier dense parents are still found.
    assert dense_hash(compose(override)) == dense_hash(compose()) == GOLDEN_DEFAULT_DENSE_HASH


@pytest.mark.parametrize("override", ["train.precision=mixed_bfloat16", "train.backend=jax", "train.sync_bn=true",
                                      "train.lr_scaling=linear"])
def test_numerics_keys_change_the_dense_identity(compose: Callable[..., object], override: str) -> None:
    assert dense_hash(compose(override)) != dense_hash(compose())
