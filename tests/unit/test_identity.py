"""Run identities: stable hashes of exactly the keys that decide a result."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lth.identity import dense_hash, flatten, stable_hash, ticket_key

# Golden values: a change here means every existing dense parent stops being found.
GOLDEN_PAYLOAD_HASH = "230902e1d47f4b90"
GOLDEN_DEFAULT_DENSE_HASH = "3a8e84c7fd3cdbad"


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
