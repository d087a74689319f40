"""How a frontier sweep reads its axes: lines to search, replicates of every probe, and what it refuses."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from lth.config.vocabulary import ConfigError
from lth.frontier.judge import Verdict
from lth.frontier.lines import make_lines, product, split_axes
from lth.tracking.identity import cell_key, family_hash


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


def test_each_line_knows_the_seeds_and_controls_every_probe_must_have(compose: Callable[..., object]) -> None:
    axes, replicates = split_axes(parsed("reset.epoch=0,1", "train.seed=0,1", "prune.control=none,reinit"))
    lines = make_lines(axes, replicates, composer(compose))
    assert [(line.seeds, line.controls) for line in lines] == [((0, 1), ("reinit",))] * 2
    axes, replicates = split_axes(parsed("reset.epoch=0"))
    (line,) = make_lines(axes, replicates, composer(compose))
    assert (line.seeds, line.controls) == ((0,), ())  # the config's own seed, no control


def test_a_cell_found_in_mlflow_counts_only_with_every_seed_and_control_the_sweep_asks_for() -> None:
    grid_cell = Verdict("c", True, True, "", 0.9, 1, 0.95, 0.95, seeds=(0,), controls=())
    assert grid_cell.covers(seeds=(0,), controls=())
    assert not grid_cell.covers(seeds=(0, 1), controls=())  # a seed-0 grid cannot stand for two seeds
    assert not grid_cell.covers(seeds=(0,), controls=("reinit",))  # nor for a sweep that asks for a control
    controlled = Verdict("c", False, True, "", 0.9, 1, 0.95, 0.95, seeds=(0, 1), controls=("reinit",))
    assert controlled.covers(seeds=(0, 1), controls=("reinit",))
    unfinished = Verdict("c", False, False, "1 seed missing", 0.9, 1, None, 0.95, seeds=(0, 1), controls=())
    assert not unfinished.covers(seeds=(0,), controls=())


def test_what_the_judge_reads_once_for_the_whole_sweep_cannot_be_a_line() -> None:
    for line in ("lth.report_tolerance=0.01,0.05", "tracking.uri=sqlite:///a.db,sqlite:///b.db"):
        with pytest.raises(ConfigError, match="one value"):
            split_axes(parsed("reset.epoch=0,1", line))
    split_axes(parsed("reset.epoch=0,1", "lth.report_tolerance=0.05"))  # one value for every line is fine
