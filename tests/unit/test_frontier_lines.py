"""How a frontier sweep reads its axes: lines to search, replicates of every probe, and what it refuses."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from lth.frontier.lines import make_lines, product, split_axes
from lth.tracking.identity import cell_key, family_hash
from lth.vocabulary import ConfigError


def parsed(*lines: str) -> list:
    return OverridesParser.create().parse_overrides(list(lines))


def composer(compose: Callable[..., object]) -> Callable[[list[str]], dict]:
    def groups(overrides: list[str]) -> dict:
        cfg = compose(*overrides)
        with open_dict(cfg):
            cfg.pop("hydra", None)
        return OmegaConf.to_container(cfg, resolve=True)

    return groups


def test_seeds_and_controls_are_replicates_of_a_probe_and_other_axes_make_lines() -> None:
    axes, replicates = split_axes(parsed("reset.epoch=0,1,2", "train.seed=0,1", "prune.control=none,reinit",
                                         "prune.scope=lamp", "train.epochs=4"))
    assert [len(axis) for axis in axes] == [3, 1, 1]
    assert len(product(axes)) == 3 and len(product(replicates)) == 4
    assert ["train.seed=0", "prune.control=none"] in product(replicates)


def test_the_threshold_is_the_search_s_to_choose() -> None:
    for line in ("prune.threshold=0.5,0.8", "prune.threshold=0.5", "+prune.threshold=0.5"):
        with pytest.raises(ConfigError, match="chooses prune.threshold"):
            split_axes(parsed("reset.epoch=0,1", line))
    with pytest.raises(ConfigError, match="lists"):
        split_axes(parsed("reset.epoch=interval(0,3)"))


def test_each_line_knows_its_schedule_family_and_the_cell_of_any_threshold(compose: Callable[..., object]) -> None:
    axes, replicates = split_axes(parsed("reset.epoch=0,2", "train.seed=0,1", "train.epochs=5"))
    lines = make_lines(axes, replicates, composer(compose))
    assert [(line.label, line.reset_epoch, line.epochs) for line in lines] == [("reset.epoch=0", 0, 5),
                                                                             ("reset.epoch=2", 2, 5)]
    job = lines[1].job(0.937244, ["train.seed=1"])
    assert job == ["reset.epoch=2", "train.epochs=5", "prune.threshold=0.937244", "train.seed=1"]
    direct = compose(*job)  # the job's own composition: the same cell (seeds share it) and family
    assert lines[1].cell(0.937244) == cell_key(direct) and lines[1].family == family_hash(direct)
    assert lines[1].cell(0.937244) != lines[1].cell(0.9) != lines[0].cell(0.9)


def test_imp_and_automatic_reset_epochs_are_refused_before_anything_runs(compose: Callable[..., object]) -> None:
    for overrides, why in ((["prune.method=imp", "reset.epoch=0,1"], "prune.levels"),
                           (["reset.epoch=auto"], "reset.epoch=auto")):
        axes, replicates = split_axes(parsed(*overrides))
        with pytest.raises(ConfigError, match=why):
            make_lines(axes, replicates, composer(compose))
