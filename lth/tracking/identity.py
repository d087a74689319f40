"""Identities of runs: which config keys decide a result, hashed stably.

The dense parent depends on model, data and train (which holds the seed) only, so
every ticket of a sweep shares one dense run. A ticket additionally depends on the
prune and reset groups. Cluster, tracking and the `lth` runtime knobs never change a
result and are never hashed; neither is a key that the rest of the config makes
irrelevant (the step schedule's milestones under cosine, momentum under AdamW, ...),
nor where the data lies (`data.path` is hashed as its content, lth.data.fingerprint).

Which key is which is declared with the key itself (lth.config.declare): this module keeps no list
of keys. A key added later is declared with the value every earlier run had, so old runs keep
their identity and are reused.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lth.config.cell import DENSE_GROUPS, PIECES, TICKET_GROUPS, Cell
from lth.config.declare import across, content_keys, identity_view
from lth.config.dense_groups import DataConfig, TrainConfig
from lth.config.ticket_groups import PruneConfig

# What an identity is computed from: a composed Hydra config, plain groups (a mapping of group name to
# its keys), or a `lth.config.cell.Cell`, whose typed pieces are the groups.
Config = DictConfig | Mapping[str, Any] | Cell

DENSE_KEYS: tuple[str, ...] = DENSE_GROUPS
TICKET_PARAM_GROUPS: tuple[str, ...] = TICKET_GROUPS  # logged as a ticket's params
DECLARED: dict[str, type] = {group: PIECES[group][1] for group in TICKET_GROUPS}  # the groups hashed
HASH_LENGTH = 16  # hex digits; 64 bits makes an accidental collision across sweeps negligible


def _with_content(data: dict[str, Any]) -> dict[str, Any]:
    """The `data` keys with a path replaced by a fingerprint of what lies there."""
    for name in content_keys(DataConfig):
        if data.get(name) is not None:
            from lth.data.arrays import FILES_READ
            from lth.data.fingerprint import content_fingerprint

            data["content"] = content_fingerprint(str(data.pop(name)), FILES_READ.get(str(data.get("name"))))
    return data


def data_digest(cfg: Config) -> str:
    """Identity of the data a run trains on: the `data` group, its path hashed as content (MLflow's dataset digest)."""
    return stable_hash(_resolved(cfg, ("data",))["data"])


def _group(cfg: Config, key: str) -> dict[str, Any]:
    """One group as plain, resolved data that the identity functions may change."""
    if not isinstance(cfg, Mapping):  # a Cell: its typed piece, key by key
        piece = getattr(cfg, key)
        return {f.name: copy.deepcopy(getattr(piece, f.name)) for f in dataclasses.fields(piece)}
    group = cfg[key]
    return OmegaConf.to_container(group, resolve=True) if isinstance(group, DictConfig) else copy.deepcopy(dict(group))


def plain_groups(cfg: Config, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The groups `keys` as plain data, every key as given (what a run logs as its params)."""
    return {key: _group(cfg, key) for key in keys}


def _resolved(cfg: Config, keys: tuple[str, ...]) -> dict[str, Any]:
    """The groups `keys` as their declarations say they decide a result (lth.config.declare.identity_view)."""
    resolved = {key: identity_view(DECLARED[key], _group(cfg, key)) for key in keys}
    if "data" in resolved:
        resolved["data"] = _with_content(resolved["data"])
    return resolved


def _canonical(value: Any) -> Any:
    """Numbers as floats, so `0` and `0.0` (both valid on a command line) hash alike."""
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def stable_hash(payload: Mapping[str, Any]) -> str:
    """SHA-256 of canonical JSON (sorted keys, numbers as floats, no whitespace), truncated."""
    canonical = json.dumps(_canonical(payload), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def dense_hash(cfg: Config) -> str:
    """Identity of the dense parent a config needs."""
    return stable_hash(_resolved(cfg, DENSE_KEYS))


def family_hash(cfg: Config) -> str:
    """Identity of a dense parent up to its seeds: replicates over `train.seed` (or `data_seed`) share it."""
    resolved = _resolved(cfg, DENSE_KEYS)
    for name in across(TrainConfig, "replicates"):
        resolved["train"].pop(name, None)
    return stable_hash(resolved)


def _prune_identity(cfg: Config) -> dict[str, Any]:
    """The prune keys that matter, as declared: IMP ignores `threshold`, one-shot `levels` and `rate`."""
    return _resolved(cfg, ("prune",))["prune"]


def _reset(cfg: Config) -> dict[str, Any]:
    return _resolved(cfg, ("reset",))["reset"]


def ticket_key(cfg: Config) -> str:
    """Identity of one ticket job: its dense parent plus how it is pruned and rewound."""
    return stable_hash({"dense": dense_hash(cfg), "prune": _prune_identity(cfg), "reset": _reset(cfg)})


def imp_level_key(cfg: Config, level: int) -> str:
    """Identity of one IMP level; independent of `prune.levels`, so a longer run reuses earlier levels."""
    levels = across(PruneConfig, "levels")
    prune = {key: value for key, value in _prune_identity(cfg).items() if key not in levels}
    return stable_hash({"dense": dense_hash(cfg), "prune": prune, "reset": _reset(cfg), "level": level})


def cell_key(cfg: Config) -> str:
    """Identity of a cell of the report (tag `lth.cell`): the ticket minus what varies across its replicates.

    A ticket and its reinit / random-mask controls share a cell, as do its seeds; runs
    that differ in anything else (scope, floor, ignored layers, IMP rate, schedule, ...)
    do not. An IMP job's cell leaves out `levels`: level l is the same run in every job.
    """
    varying = (*across(PruneConfig, "replicates"), *across(PruneConfig, "levels"))
    prune = {key: value for key, value in _prune_identity(cfg).items() if key not in varying}
    return stable_hash({"family": family_hash(cfg), "prune": prune, "reset": _reset(cfg)})


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested config into dotted keys with string values (for MLflow params)."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return flat
