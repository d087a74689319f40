"""The typed cell: built once from the composed config, hashed exactly as the raw config was."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from lth.config.cell import Cell, ModelConfig, PruneConfig, TrainConfig
from lth.config.pieces import piece
from lth.config.vocabulary import BACKENDS, ConfigError
from lth.tracking.identity import cell_key, dense_hash, family_hash, imp_level_key, ticket_key
from lth.validation.validate import validate_config

PRESETS = [
    (),
    ("experiment=lenet_fashion_imp", "data.path={files}"),
    ("experiment=mobilenet_fashion_rewind", "data.path={files}"),
    ("data=synthetic", "train.backend=jax", "train.devices=2", "tracking=server"),
    ("prune.method=imp", "prune.levels=4", "prune.layer_rates={{predictions: 0.1}}", "prune.control=reinit"),  # {{}}: format
    ("train=imagenet", "model=mobilenet_v2", "prune.ignore=[Conv1]", "prune.control=random_mask"),
    ("data=imagenet", "data.path={shards}", "data.val_split=holdout", "model=mobilenet_v2"),
    ("data=digits_shards", "data.path={shards}"),
]


def _stand_ins(root: Path) -> dict[str, Path]:
    """Fashion-MNIST's four files and a shard manifest: identities read the files, not the images in them."""
    from lth.data.arrays import FASHION_MNIST_FILES

    files, shards = root / "fashion", root / "shards"
    files.mkdir()
    shards.mkdir()
    for name in FASHION_MNIST_FILES:
        (files / name).write_bytes(name.encode())
    manifest = {"format": "lth-shards/1", "labels": ["a", "b"], "splits": {"train": {"shards": [{"sha256": "0"}]}}}
    (shards / "manifest.json").write_text(json.dumps(manifest))
    return {"files": files, "shards": shards}


@pytest.mark.parametrize("overrides", PRESETS, ids=lambda o: " ".join(o) or "default")
def test_the_cell_hashes_as_the_composed_config(compose: Callable[..., object], overrides: tuple[str, ...],
                                                tmp_path: Path) -> None:
    """Every identity computed from the cell's typed pieces equals the one of the raw config: runs stay reused."""
    places = _stand_ins(tmp_path)
    cfg = compose(*(override.format(**places) for override in overrides))
    cell = Cell.of(cfg)
    for identity in (dense_hash, family_hash, ticket_key, cell_key):
        assert identity(cell) == identity(cfg), identity.__name__
    assert imp_level_key(cell, 2) == imp_level_key(cfg, 2)


def test_validation_returns_the_typed_cell(compose: Callable[..., object]) -> None:
    cell = validate_config(compose("prune.threshold=0.5", "reset.epoch=2", "lth.keep_epochs=[0,2]"))
    assert (cell.prune.threshold, cell.reset.epoch, cell.state.keep_epochs) == (0.5, 2, (0, 2))
    assert isinstance(cell.state.state_dir, Path) and cell.train.step_milestones == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cell.prune.threshold = 0.9  # type: ignore[misc]
    hash(cell.train), hash(cell.model)  # hashable: the compiled network is cached by them


def test_an_imp_controls_ticket_is_the_cell_with_control_none(compose: Callable[..., object]) -> None:
    control = Cell.of(compose("prune.method=imp", "prune.control=reinit"))
    ticket = control.with_control("none")
    composed = compose("prune.method=imp", "prune.control=none")
    assert ticket.prune.control == "none" and control.prune.control == "reinit"
    assert ticket_key(ticket) == ticket_key(composed) != ticket_key(control)
    assert imp_level_key(ticket, 1) == imp_level_key(composed, 1)


def test_a_piece_refuses_unknown_and_missing_keys_and_values_outside_its_vocabulary() -> None:
    base = {"epochs": 2, "batch_size": 8, "learning_rate": 0.1, "seed": 0}
    with pytest.raises(ConfigError, match=r"^train\.learning_rat is not a key of the train group"):
        piece(TrainConfig, {**base, "learning_rat": 0.1}, "train")
    with pytest.raises(ConfigError, match=r"^train\.seed is missing$"):
        piece(TrainConfig, {k: v for k, v in base.items() if k != "seed"}, "train")
    with pytest.raises(ConfigError, match=r"^train\.backend must be tensorflow or jax, got 'torch'$"):
        piece(TrainConfig, {**base, "backend": "torch"}, "train")
    with pytest.raises(ConfigError, match=r"^prune\.control must be none, reinit or random_mask"):
        piece(PruneConfig, {"method": "magnitude", "threshold": 0.5, "scope": "layer", "control": "shuffle"}, "prune")


def test_a_piece_gives_lists_as_tuples_and_whole_numbers_as_the_floats_it_declares() -> None:
    model = piece(ModelConfig, {"name": "lenet_300_100", "input_size": 28, "num_classes": 10, "alpha": 1,
                                "hidden_units": [300, 100]}, "model")
    assert model.hidden_units == (300, 100) and isinstance(model.alpha, float)
    prune = piece(PruneConfig, {"method": "imp", "threshold": 0.0, "scope": "layer", "layer_rates": None}, "prune")
    assert prune.layer_rates == {}  # null in the config: no layer has a rate of its own


def test_each_vocabulary_is_declared_once(compose: Callable[..., object]) -> None:
    """validate, the devices and the pieces all refuse a backend from one tuple."""
    from lth.training import devices

    assert devices.BACKENDS is BACKENDS
    with pytest.raises(ConfigError, match="train.backend must be tensorflow or jax"):
        validate_config(compose("train.backend=torch"))
