"""Identities of runs: which config keys decide a result, hashed stably.

The dense parent depends on model, data and train (which holds the seed) only, so
every ticket of a sweep shares one dense run. A ticket additionally depends on the
prune and reset groups. Cluster, tracking and the `lth` runtime knobs never change a
result and are never hashed; neither is a key that the rest of the config makes
irrelevant (the step schedule's milestones under cosine, momentum under AdamW, ...),
nor where the data lies (`data.path` is hashed as its content, lth.data.fingerprint).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

# A composed Hydra config, or `lth.cell.Cell.groups` (the same groups, resolved once).
Config = DictConfig | Mapping[str, Any]

DENSE_KEYS: tuple[str, ...] = ("model", "data", "train")
TICKET_PARAM_GROUPS: tuple[str, ...] = (*DENSE_KEYS, "prune", "reset")  # logged as a ticket's params
# Train keys that never change a result, and so are never hashed: the number of devices
# (the global batch is fixed) and how many steps run per call into the compiled step.
RUNTIME_TRAIN_KEYS: tuple[str, ...] = ("devices", "steps_per_execution")
# Keys added after the first release, hashed only when they differ from these values, so
# that every run trained before they existed keeps its identity (and is still reused).
LATER_TRAIN_DEFAULTS: dict[str, Any] = {"backend": "tensorflow", "precision": "float32", "sync_bn": False,
                                        "lr_scaling": "none", "lr_reference_batch": 256,
                                        "weight_decay_mode": "decoupled", "data_seed": None}
# Keys of `train` hashed as these fixed values when the rest of the config ignores them. Fixed
# values (the defaults of conf/train/small.yaml), not removal, so the golden identities hold.
IGNORED_TRAIN_VALUES: dict[str, Any] = {"step_milestones": [], "step_gamma": 0.1, "warmup_epochs": 0, "momentum": 0.9}
# Keys of `prune` that never change what is trained: refuse only declines to start a collapsed mask.
IGNORED_PRUNE_VALUES: dict[str, Any] = {"on_collapse": "warn"}
# Excluded from a cell (lth.cell): a cell's replicates and controls differ only in these.
REPLICATE_KEYS: tuple[str, ...] = ("seed", "control", "control_seed")
HASH_LENGTH = 16  # hex digits; 64 bits makes an accidental collision across sweeps negligible


def _ignored_train_keys(train: Mapping[str, Any]) -> list[str]:
    """Keys of `train` that this schedule and optimizer never read."""
    schedule = train.get("lr_schedule")
    ignored = []
    if schedule != "step":
        ignored += ["step_milestones", "step_gamma"]
    if schedule != "cosine":
        ignored.append("warmup_epochs")
    if train.get("optimizer") in ("adamw", "adam"):
        ignored.append("momentum")
    return ignored


def _train_identity(train: dict[str, Any]) -> dict[str, Any]:
    """The `train` keys that decide a result, with later keys at their defaults removed."""
    devices = train.get("devices", "auto")
    if train.get("backend", "tensorflow") == "jax" or devices == 1:
        # JAX's DataParallel normalises over the global batch, and one device has one batch anyway.
        train["sync_bn"] = False
    for key in RUNTIME_TRAIN_KEYS:
        train.pop(key, None)
    if train.get("lr_scaling", "none") == "none":  # the reference batch means nothing without scaling
        train.pop("lr_reference_batch", None)
    if not train.get("weight_decay"):  # no decay: neither mode decays anything
        train.pop("weight_decay_mode", None)
    for key in _ignored_train_keys(train):
        if key in train:
            train[key] = IGNORED_TRAIN_VALUES[key]
    for key, default in LATER_TRAIN_DEFAULTS.items():
        if key in train and train[key] == default:
            train.pop(key)
    return train


def _data_identity(data: dict[str, Any]) -> dict[str, Any]:
    """The `data` keys with `path` replaced by a fingerprint of what lies there."""
    if data.get("channels", 3) == 3:  # added later: every run trained before it had 3 channels
        data.pop("channels", None)
    if data.get("path") is not None:
        from lth.data.arrays import FILES_READ
        from lth.data.fingerprint import content_fingerprint

        data["content"] = content_fingerprint(str(data.pop("path")), FILES_READ.get(str(data.get("name"))))
    return data


def data_digest(cfg: Config) -> str:
    """Identity of the data a run trains on: the `data` group, its path hashed as content (MLflow's dataset digest)."""
    return stable_hash(_resolved(cfg, ("data",))["data"])


def _group(cfg: Config, key: str) -> Any:
    """One group as plain, resolved data that the identity functions may change."""
    group = cfg[key]
    return OmegaConf.to_container(group, resolve=True) if isinstance(group, DictConfig) else copy.deepcopy(group)


def _resolved(cfg: Config, keys: tuple[str, ...]) -> dict[str, Any]:
    resolved = {key: _group(cfg, key) for key in keys}
    if "train" in resolved:
        resolved["train"] = _train_identity(resolved["train"])
    if "data" in resolved:
        resolved["data"] = _data_identity(resolved["data"])
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
    resolved["train"].pop("seed", None)
    resolved["train"].pop("data_seed", None)  # replicates over SGD noise are replicates too
    return stable_hash(resolved)


def _prune_identity(cfg: Config) -> dict[str, Any]:
    """The prune keys that matter for this method: IMP ignores `threshold`, one-shot `levels`/`rate`."""
    prune = _group(cfg, "prune")
    unused = ("threshold",) if prune.get("method") == "imp" else ("levels", "rate", "layer_rates")
    if not prune.get("layer_rates"):  # added later: every run before it had no per-layer rate
        unused += ("layer_rates",)
    if prune.get("structure", "none") == "none":  # added later: every run before it pruned any weight
        unused += ("structure",)
    if prune.get("control", "none") == "none":
        unused += ("control_seed",)
    relevant = {key: value for key, value in prune.items() if key not in unused}
    relevant["ignore"] = sorted(relevant.get("ignore") or [])  # a set of layer names; order is not meaning
    relevant.update({key: value for key, value in IGNORED_PRUNE_VALUES.items() if key in relevant})
    return relevant


def ticket_key(cfg: Config) -> str:
    """Identity of one ticket job: its dense parent plus how it is pruned and rewound."""
    reset = _group(cfg, "reset")
    return stable_hash({"dense": dense_hash(cfg), "prune": _prune_identity(cfg), "reset": reset})


def imp_level_key(cfg: Config, level: int) -> str:
    """Identity of one IMP level; independent of `prune.levels`, so a longer run reuses earlier levels."""
    prune = {key: value for key, value in _prune_identity(cfg).items() if key != "levels"}
    reset = _group(cfg, "reset")
    return stable_hash({"dense": dense_hash(cfg), "prune": prune, "reset": reset, "level": level})


def cell_key(cfg: Config) -> str:
    """Identity of a cell of the report (tag `lth.cell`): the ticket minus what varies across its replicates.

    A ticket and its reinit / random-mask controls share a cell, as do its seeds; runs
    that differ in anything else (scope, floor, ignored layers, IMP rate, schedule, ...)
    do not. An IMP job's cell leaves out `levels`: level l is the same run in every job.
    """
    prune = {key: value for key, value in _prune_identity(cfg).items() if key not in (*REPLICATE_KEYS, "levels")}
    reset = _group(cfg, "reset")
    return stable_hash({"family": family_hash(cfg), "prune": prune, "reset": reset})


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
