"""The reusable compiled network: rewinding, schedule resumption, masks reassigned per run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lth.config.cell import Cell
from lth.data import load_data
from lth.pruning.scopes import prune_masks as magnitude_masks
from lth.training.models import kernel_path
from lth.training.network import MaskedNetwork


@pytest.fixture(scope="module")
def small() -> tuple[object, object]:
    from hydra import compose, initialize_config_dir

    from tests.support.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = Cell.of(compose(config_name="train", overrides=["data.train_limit=128", "train.batch_size=32",
                                                             "train.epochs=4"]))
    data = load_data(cfg.data, 32, 0)
    return cfg, data


def test_schedule_resumes_at_epoch_k(small: tuple[object, object]) -> None:
    cfg, data = small
    network = MaskedNetwork(cfg.model, cfg.train, data.steps_per_epoch)
    for k in (0, 1, 3):
        network.load(network.initial_weights, None, start_epoch=k)
        step, total = k * data.steps_per_epoch, 4 * data.steps_per_epoch
        expected = 0.05 * 0.5 * (1 + math.cos(math.pi * step / total))
        assert float(network.model.optimizer.learning_rate) == pytest.approx(expected, rel=1e-6)


def test_load_rewinds_every_variable_and_applies_masks(small: tuple[object, object]) -> None:
    cfg, data = small
    network = MaskedNetwork(cfg.model, cfg.train, data.steps_per_epoch)
    network.load(network.initial_weights, None, 0)
    network.model.fit(data.train, epochs=1, verbose=0, shuffle=False)  # moves kernels, BN statistics and momentum
    trained = network.snapshot()
    assert not np.array_equal(trained["bn_Conv1/moving_mean"], network.initial_weights["bn_Conv1/moving_mean"])
    names = list(network.mask_variables)
    masks = magnitude_masks({n: trained[kernel_path(n)] for n in names}, 0.8, "global")
    network.load(network.initial_weights, masks, start_epoch=1)
    rewound = network.snapshot()
    for path, value in network.initial_weights.items():
        layer = path.split("/")[0]
        expected = value * masks[layer] if path.endswith("/kernel") and layer in masks else value
        np.testing.assert_array_equal(rewound[path], expected, err_msg=path)
    momentums = [v for v in network.model.optimizer.variables if "momentum" in v.path]
    assert len(momentums) == len(network.model.trainable_variables)
    assert all(float(np.abs(v.numpy()).sum()) == 0 for v in momentums)
    network.model.fit(data.train, epochs=1, verbose=0, shuffle=False)  # the same traced step, now with masks
    after = network.snapshot()
    assert sum(int(np.count_nonzero(after[kernel_path(n)][~masks[n]])) for n in names) == 0
    network.load(network.initial_weights, None, 0)  # a dense run again: all masks back to ones
    assert all(float(v.numpy().min()) == 1.0 for v in network.mask_variables.values())
