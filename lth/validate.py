"""Checks that turn bad input into one clear line before any training starts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig

from lth.cell import Cell
from lth.pruning.scopes import SCOPES, imp_threshold
from lth.stability.checks import check_stability
from lth.tracking.http import http_environment
from lth.vocabulary import (
    BACKENDS,
    CONTROLS,
    IMAGENET_NEEDS_TENSORFLOW,
    LR_SCALINGS,
    METHODS,
    ON_COLLAPSE,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    STRUCTURES,
    WEIGHT_DECAY_MODES,
    ConfigError,
)

__all__ = ["Cell", "ConfigError", "http_environment", "validate_config"]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _one_of(value: Any, allowed: Sequence[str], key: str, listed: bool = False) -> None:
    """`key must be a, b or c` (or `one of [...]` when `listed`) unless `value` is allowed."""
    words = f"one of {list(allowed)}" if listed else f"{', '.join(allowed[:-1])} or {allowed[-1]}"
    _check(value in allowed, f"{key} must be {words}, got {value!r}")


def validate_config(cfg: DictConfig) -> Cell:
    """Static checks of one job's config (no TensorFlow, no data loading), then its typed cell.

    Raises:
        ConfigError: On the first problem found.
    """
    threshold = cfg.prune.threshold
    _check(isinstance(threshold, (int, float)) and not isinstance(threshold, bool),
           f"prune.threshold must be a number in [0, 1), got {threshold!r}")
    _check(0.0 <= float(threshold) < 1.0,
           f"prune.threshold must be in [0, 1) (the fraction of weights removed), got {threshold}")
    _one_of(cfg.prune.scope, SCOPES, "prune.scope", listed=True)
    _one_of(cfg.prune.method, METHODS, "prune.method", listed=True)
    _one_of(cfg.prune.control, CONTROLS, "prune.control", listed=True)
    min_density = cfg.prune.min_density
    _check(isinstance(min_density, (int, float)) and 0.0 <= min_density <= 1.0,
           f"prune.min_density must be in [0, 1], got {min_density!r}")
    _one_of(cfg.prune.on_collapse, ON_COLLAPSE, "prune.on_collapse")
    structure = cfg.prune.get("structure", "none")
    _one_of(structure, STRUCTURES, "prune.structure", listed=True)
    _check(structure != "channel" or cfg.prune.method != "imp",
           "prune.structure=channel prunes whole channels in one shot; it does not run with prune.method=imp "
           "(use prune.structure=none or xnnpack_1x1 for IMP)")
    final_threshold = float(threshold)
    if cfg.prune.method == "imp":
        levels, rate = cfg.prune.levels, cfg.prune.rate
        _check(isinstance(levels, int) and levels >= 1, f"prune.levels must be a positive integer, got {levels!r}")
        _check(isinstance(rate, (int, float)) and 0.0 < rate < 1.0, f"prune.rate must be in (0, 1), got {rate!r}")
        final_threshold = imp_threshold(rate, levels)
    rates = cfg.prune.get("layer_rates") or {}
    _check(isinstance(rates, Mapping),
           f"prune.layer_rates must map layer names to rates, like {{predictions: 0.1}}, got {rates!r}")
    if rates:
        _check(cfg.prune.method == "imp", "prune.layer_rates sets IMP rates per layer: it needs prune.method=imp")
        for name, layer_rate in rates.items():
            _check(isinstance(layer_rate, (int, float)) and not isinstance(layer_rate, bool) and 0.0 < layer_rate < 1.0,
                   f"prune.layer_rates.{name} must be in (0, 1), got {layer_rate!r}")
        ignored = sorted(set(rates) & set(cfg.prune.ignore))
        _check(not ignored, f"prune.layer_rates names layers that prune.ignore keeps dense: {ignored}")
        # The floor must fit in the most pruned part: the layers at `rate` or one with its own.
        final_threshold = max(final_threshold, *(imp_threshold(r, cfg.prune.levels) for r in rates.values()))
    # The floor alone would keep at least min_density of the weights; the exact per-layer
    # count (ceil per layer) is checked once the model is built, still before any training.
    # Under prune.structure=channel the floor counts channels, checked once the model is built.
    # (The 1e-12: 1 - 0.99 is 0.01 + 9e-18.)
    _check(structure == "channel" or min_density == 0 or min_density < 1.0 - final_threshold - 1e-12,
           f"prune.min_density={min_density} keeps at least that fraction of every layer, but the threshold leaves "
           f"only {1.0 - final_threshold:.6g} of the weights; lower prune.min_density below {1.0 - final_threshold:.6g}")
    epochs, reset = cfg.train.epochs, cfg.reset.epoch
    _check(isinstance(epochs, int) and epochs >= 1, f"train.epochs must be a positive integer, got {epochs!r}")
    _check(reset == "auto" or (isinstance(reset, int) and not isinstance(reset, bool)),
           f"reset.epoch must be an integer epoch or auto (chosen from stability.candidates), got {reset!r}")
    keep = cfg.lth.keep_epochs
    _check(keep == "all" or (isinstance(keep, (Sequence, ListConfig)) and not isinstance(keep, str)
                             and all(isinstance(k, int) and 0 <= k <= epochs for k in keep)),
           f"lth.keep_epochs must be 'all' or a list of epochs in [0, {epochs}], got {keep!r}")
    stability = cfg.get("stability")
    if stability is not None:
        check_stability(stability, cfg.prune.method, float(threshold))
    resets = list(stability.candidates) if reset == "auto" and stability is not None else [reset]
    _check(reset != "auto" or stability is not None, "reset.epoch=auto needs the stability group (conf/stability)")
    where = " (in stability.candidates)" if reset == "auto" else ""
    for epoch in resets:
        _check(isinstance(epoch, int) and epoch >= 0,
               f"reset.epoch must be >= 0 (0 = the initial weights), got {epoch}{where}")
        _check(epoch <= epochs, f"reset.epoch={epoch}{where} is after the end of training (train.epochs={epochs})")
        if keep != "all":  # the final weights are always kept
            _check(epoch in set(keep) or epoch == epochs,
                   f"reset.epoch={epoch}{where} is not among lth.keep_epochs={list(keep)}")
    _check(cfg.train.batch_size >= 1, f"train.batch_size must be >= 1, got {cfg.train.batch_size}")
    seed = cfg.train.seed
    _check(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0,
           f"train.seed must be a non-negative integer (it seeds the weights and the data order), got {seed!r}")
    data_seed = cfg.train.get("data_seed")
    _check(data_seed is None or (isinstance(data_seed, int) and not isinstance(data_seed, bool) and data_seed >= 0),
           f"train.data_seed must be null (= train.seed) or a non-negative integer (it seeds the data order and "
           f"augmentation), got {data_seed!r}")
    _one_of(cfg.train.optimizer, OPTIMIZERS, "train.optimizer")
    # Listed l2 first, as this message always has (the vocabulary itself is cell.WEIGHT_DECAY_MODES).
    _one_of(cfg.train.get("weight_decay_mode", "decoupled"), WEIGHT_DECAY_MODES[::-1], "train.weight_decay_mode")
    _one_of(cfg.train.lr_schedule, SCHEDULES, "train.lr_schedule")
    _one_of(cfg.train.backend, BACKENDS, "train.backend")
    _one_of(cfg.train.precision, PRECISIONS, "train.precision")
    _check(cfg.train.devices == "auto" or (isinstance(cfg.train.devices, int) and cfg.train.devices >= 1),
           f"train.devices must be auto or a positive count, got {cfg.train.devices!r}")
    _one_of(cfg.train.lr_scaling, LR_SCALINGS, "train.lr_scaling")
    _check(isinstance(cfg.train.steps_per_execution, int) and cfg.train.steps_per_execution >= 1,
           f"train.steps_per_execution must be a positive integer, got {cfg.train.steps_per_execution!r}")
    _check(cfg.train.backend == "tensorflow" or cfg.data.name != "imagenet", IMAGENET_NEEDS_TENSORFLOW)
    if "tracking" in cfg:  # retry settings MLflow cannot take fail the sweep here, not in every job
        http_environment(cfg.tracking)
    channels, model_channels = cfg.data.get("channels", 3), cfg.model.get("input_channels", 3)
    _check(channels == model_channels, f"data.channels={channels} but model {cfg.model.name} takes {model_channels} "
                                       f"channel(s): leave data.channels at its default (the model's input_channels)")
    if cfg.data.name == "imagenet":
        _check(isinstance(cfg.data.get("val_split"), str) and isinstance(cfg.data.get("test_split"), str),
               "data.val_split and data.test_split must name splits of the shard manifest (train, val, holdout)")
    if cfg.data.name == "digits":
        for key in ("test_fraction", "val_fraction"):
            value = cfg.data[key]
            _check(0.0 < value < 0.5, f"data.{key} must be in (0, 0.5), got {value}")
    if "path" in cfg.data and cfg.data.path is not None:
        from pathlib import Path

        hints = {"fashion_mnist": " (install it with `apt-get install dataset-fashion-mnist`)",
                 "imagenet": " (write the shards with `python tools/ingest.py`)"}
        hint = hints.get(cfg.data.name, "")
        _check(Path(cfg.data.path).exists(), f"data.path does not exist: {cfg.data.path}{hint}")
    return Cell.of(cfg)
