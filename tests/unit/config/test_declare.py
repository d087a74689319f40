"""What the identity makes of a group follows each key's declaration (lth.config.declare)."""

from __future__ import annotations

import pytest

from lth.config.declare import across, identity_view, within
from lth.config.dense_groups import DataConfig, TrainConfig
from lth.config.ticket_groups import PruneConfig


def test_runtime_ignored_and_earlier_defaults_leave_the_identity() -> None:
    train = {"epochs": 3, "optimizer": "adamw", "momentum": 0.5, "lr_schedule": "cosine", "step_gamma": 0.5,
             "devices": 4, "steps_per_execution": 8, "backend": "tensorflow", "sync_bn": True, "weight_decay": 0.0,
             "weight_decay_mode": "l2", "lr_scaling": "none", "lr_reference_batch": 512}
    assert identity_view(TrainConfig, train) == {"epochs": 3, "optimizer": "adamw", "momentum": 0.9,
                                                 "lr_schedule": "cosine", "step_gamma": 0.1, "sync_bn": True,
                                                 "weight_decay": 0.0}


def test_a_key_is_kept_where_the_rest_of_the_group_reads_it() -> None:
    train = {"lr_schedule": "step", "step_gamma": 0.5, "backend": "jax", "sync_bn": True, "weight_decay": 1e-4,
             "weight_decay_mode": "l2"}
    assert identity_view(TrainConfig, train) == {"lr_schedule": "step", "step_gamma": 0.5, "backend": "jax",
                                                 "weight_decay": 1e-4, "weight_decay_mode": "l2"}
    assert identity_view(DataConfig, {"name": "digits", "test_limit": 5, "train_limit": None}) == \
        {"name": "digits", "train_limit": None}
    assert identity_view(PruneConfig, {"method": "imp", "threshold": 0.3, "layer_rates": None,
                                       "ignore": ["b", "a"]}) == {"method": "imp", "ignore": ["a", "b"]}


def test_replicate_keys_are_declared_with_the_keys() -> None:
    assert across(TrainConfig, "replicates") == ("seed", "data_seed")
    assert across(PruneConfig, "replicates") == ("control", "control_seed")
    assert across(PruneConfig, "levels") == ("levels",)


@pytest.mark.parametrize(("value", "bounds", "inside"), [
    (0.0, "[0, 1)", True), (1.0, "[0, 1)", False), (0.0, "(0, 1]", False), (5, "[1, inf)", True),
    (float("nan"), "[0, 1]", False),
])
def test_bounds_are_read_as_intervals(value: float, bounds: str, inside: bool) -> None:
    assert within(value, bounds) is inside
