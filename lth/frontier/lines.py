"""The lines of a frontier sweep: what it varies besides the threshold, and the replicates of each probe.

A sweep's axes split in two. Replicate axes (`train.seed`, `train.data_seed`, `prune.control`,
`prune.control_seed`) are the runs of one report cell: every probe runs all of them, and the
report's rule judges them together. Every other axis (usually `reset.epoch`) makes lines: each
combination is searched on its own. The threshold is the search's to choose.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.types import Override

from lth.config.vocabulary import ConfigError
from lth.tracking.identity import cell_key, family_hash

CHOSEN = "prune.threshold"  # the key the search sets on every probe
REPLICATE_AXES = ("train.seed", "train.data_seed", "prune.control", "prune.control_seed")  # one cell, many runs
JUDGED_ONCE = ("lth.report_tolerance", "tracking.")  # the judge of every line reads these from the sweep's config


def _bare(key: str) -> str:
    return key.lstrip("+~")


def split_axes(overrides: Sequence[Override]) -> tuple[list[list[str]], list[list[str]]]:
    """(line axes, replicate axes), each a list of `key=value` choices per key, fixed keys as one-choice axes.

    Raises:
        ConfigError: The sweep sets `prune.threshold`, sweeps what the judge reads once (the tolerance, the
            store), or sweeps a range the basic sweeper would refuse too.
    """
    by_key: dict[str, list[str]] = {}
    for override in overrides:
        key = override.get_key_element()
        if _bare(key) == CHOSEN:
            raise ConfigError("the frontier sweeper chooses prune.threshold itself: remove it from the command line "
                              "and from hydra.sweeper.params (set the searched range with "
                              "hydra.sweeper.frontier.density_range)")
        if override.is_sweep_override():
            if _bare(key).startswith(JUDGED_ONCE):
                raise ConfigError(f"the frontier sweeper judges every line with one value of {_bare(key)}: "
                                  f"run one frontier sweep per value instead of {override.input_line}")
            if not override.is_discrete_sweep():
                raise ConfigError(f"the frontier sweeper takes lists (a,b,c) only, not {override.input_line}")
            by_key[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            by_key[key] = [f"{key}={override.get_value_element_as_str()}"]
    lines = [choices for key, choices in by_key.items() if _bare(key) not in REPLICATE_AXES]
    replicates = [choices for key, choices in by_key.items() if _bare(key) in REPLICATE_AXES]
    return lines, replicates


def product(axes: Sequence[Sequence[str]]) -> list[list[str]]:
    """Every combination of one choice per axis."""
    return [list(choice) for choice in itertools.product(*axes)]


def _swept(axes: Sequence[Sequence[str]], chosen: Sequence[str]) -> str:
    """The choices of the axes that have several: what tells this line from the others."""
    label = " ".join(choice for axis, choice in zip(axes, chosen) if len(axis) > 1)
    return label or "the line"


@dataclass(frozen=True)
class Line:
    """One line of the search: its overrides, its schedule and where its cells are found."""

    label: str  # e.g. `reset.epoch=1`
    overrides: tuple[str, ...]  # every override of the line, fixed keys included
    reset_epoch: int
    epochs: int  # train.epochs: a probe's ticket trains epochs - reset_epoch epochs per replicate
    family: str  # lth.family of its dense parents
    config: Mapping[str, Any]  # the composed groups of its first replicate, resolved
    seeds: tuple[int, ...] = (0,)  # train.seed of the replicates: every probe runs all of them
    controls: tuple[str, ...] = ()  # prune.control of the replicates besides none: every probe beats them all
    data_seeds: tuple[int | None, ...] = (None,)  # train.data_seed of the replicates (None: the seed orders the data)

    def cell(self, threshold: float) -> str:
        """`lth.cell` of this line's probe at `threshold` (the same for all its replicates)."""
        groups = {**self.config, "prune": {**self.config["prune"], "threshold": threshold}}
        return cell_key(groups)

    def job(self, threshold: float, replicate: Sequence[str]) -> list[str]:
        """The overrides of one job: this line, the probe's threshold, one replicate."""
        return [*self.overrides, f"{CHOSEN}={threshold}", *replicate]


def _requested(replicates: Sequence[Sequence[str]], key: str, configured: object) -> list[str]:
    """The values the replicate axis `key` takes, or the config's own value when it is not swept."""
    for axis in replicates:
        if _bare(axis[0].split("=", 1)[0]) == key:
            return [choice.split("=", 1)[1] for choice in axis]
    return [str(configured)]


def _optional_int(value: str) -> int | None:
    """An override's value as an int; `null` (or the config's None) as None."""
    return None if value in ("null", "None") else int(value)


def make_lines(axes: Sequence[Sequence[str]], replicates: Sequence[Sequence[str]],
               compose: Callable[[list[str]], Mapping[str, Any]]) -> list[Line]:
    """Compose the first replicate of every line, and refuse what the search cannot do.

    Args:
        compose: The config groups (resolved, as plain containers) of a list of overrides.

    Raises:
        ConfigError: An IMP sweep (its threshold is not a knob) or `reset.epoch=auto`.
    """
    first = [choices[0] for choices in replicates]
    found = []
    for chosen in product(axes):
        groups = compose([*chosen, *first])
        if groups["prune"]["method"] != "magnitude":
            raise ConfigError("the frontier sweeper searches one-shot thresholds: prune.method=imp sets its "
                              "sparsity by prune.levels and prune.rate; sweep those instead")
        if groups["reset"]["epoch"] == "auto":
            raise ConfigError("the frontier sweeper needs each line's reset epoch: reset.epoch=auto is decided "
                              "inside a job; sweep reset.epoch=0,1,... instead")
        seeds = sorted({int(seed) for seed in _requested(replicates, "train.seed", groups["train"]["seed"])})
        data_seeds = sorted({_optional_int(value) for value in
                             _requested(replicates, "train.data_seed", groups["train"].get("data_seed"))},
                            key=lambda value: -1 if value is None else value)
        controls = sorted(set(_requested(replicates, "prune.control", groups["prune"]["control"])) - {"none"})
        found.append(Line(_swept(axes, chosen), tuple(chosen), int(groups["reset"]["epoch"]),
                          int(groups["train"]["epochs"]), family_hash(groups), groups, tuple(seeds), tuple(controls),
                          tuple(data_seeds)))
    return found
