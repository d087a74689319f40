"""Identities of runs: which config keys decide a result, hashed stably.

The dense parent depends on model, data and train (which holds the seed) only, so
every ticket of a sweep shares one dense run. A ticket additionally depends on the
prune and reset groups. Cluster, tracking and the `lth` runtime knobs never change a
result and are never hashed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

DENSE_KEYS: tuple[str, ...] = ("model", "data", "train")
TICKET_KEYS: tuple[str, ...] = ("prune", "reset")
HASH_LENGTH = 16  # hex digits; 64 bits makes an accidental collision across sweeps negligible


def _resolved(cfg: DictConfig, keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: OmegaConf.to_container(cfg[key], resolve=True) for key in keys}


def stable_hash(payload: Mapping[str, Any]) -> str:
    """SHA-256 of canonical JSON (sorted keys, no whitespace), truncated."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def dense_hash(cfg: DictConfig) -> str:
    """Identity of the dense parent a config needs."""
    return stable_hash(_resolved(cfg, DENSE_KEYS))


def ticket_key(cfg: DictConfig) -> str:
    """Identity of one ticket: its dense parent plus how it is pruned and rewound."""
    return stable_hash({"dense": dense_hash(cfg), **_resolved(cfg, TICKET_KEYS)})


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
