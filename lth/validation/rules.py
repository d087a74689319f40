"""The rules that relate several keys, each named, checked before any training (lth.validation.validate).

A single key's type, vocabulary and range are checked where it is declared (lth.config.pieces); what
is left here needs two keys or more, or the world outside the config (a path that must exist).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from lth.config.cell import Cell
from lth.config.vocabulary import IMAGENET_NEEDS_TENSORFLOW, ConfigError
from lth.pruning.scopes import imp_threshold
from lth.tracking.http import http_environment

Rule = Callable[[DictConfig, Cell], None]


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def channels_prune_in_one_shot(cfg: DictConfig, cell: Cell) -> None:
    """prune.structure=channel against prune.method=imp."""
    _check(cell.prune.structure != "channel" or cell.prune.method != "imp",
           "prune.structure=channel prunes whole channels in one shot; it does not run with prune.method=imp "
           "(use prune.structure=none or xnnpack_1x1 for IMP)")


def layer_rates_fit_imp(cfg: DictConfig, cell: Cell) -> None:
    """prune.layer_rates against prune.method and prune.ignore; each rate in (0, 1)."""
    rates = cfg.prune.get("layer_rates") or {}
    _check(isinstance(rates, Mapping),
           f"prune.layer_rates must map layer names to rates, like {{predictions: 0.1}}, got {rates!r}")
    if not rates:
        return
    _check(cell.prune.method == "imp", "prune.layer_rates sets IMP rates per layer: it needs prune.method=imp")
    for name, rate in rates.items():
        _check(isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0.0 < rate < 1.0,
               f"prune.layer_rates.{name} must be in (0, 1), got {rate!r}")
    ignored = sorted(set(rates) & set(cell.prune.ignore))
    _check(not ignored, f"prune.layer_rates names layers that prune.ignore keeps dense: {ignored}")


def floor_below_threshold(cfg: DictConfig, cell: Cell) -> None:
    """prune.min_density against the fraction the threshold (or IMP's last level) leaves.

    The floor alone would keep at least min_density of the weights; the exact per-layer count (ceil per
    layer) is checked once the model is built, still before any training, as is the channel floor of
    prune.structure=channel. (The 1e-12: 1 - 0.99 is 0.01 + 9e-18.)
    """
    prune = cell.prune
    final = prune.threshold
    if prune.method == "imp":  # the most pruned part: the layers at `rate` or one with its own
        final = max(imp_threshold(rate, prune.levels) for rate in (prune.rate, *prune.layer_rates.values()))
    _check(prune.structure == "channel" or prune.min_density == 0 or prune.min_density < 1.0 - final - 1e-12,
           f"prune.min_density={prune.min_density} keeps at least that fraction of every layer, but the threshold "
           f"leaves only {1.0 - final:.6g} of the weights; lower prune.min_density below {1.0 - final:.6g}")


def reset_within_training(cfg: DictConfig, cell: Cell) -> None:
    """reset.epoch (or every stability.candidates under auto) against train.epochs and lth.keep_epochs."""
    epochs, reset, keep = cell.train.epochs, cell.reset.epoch, cell.state.keep_epochs
    _check(keep == "all" or all(0 <= k <= epochs for k in keep),
           f"lth.keep_epochs must be 'all' or a list of epochs in [0, {epochs}], got {cfg.lth.keep_epochs!r}")
    _check(reset != "auto" or "stability" in cfg, "reset.epoch=auto needs the stability group (conf/stability)")
    resets = list(cell.stability.candidates) if reset == "auto" else [reset]
    where = " (in stability.candidates)" if reset == "auto" else ""
    for epoch in resets:
        _check(isinstance(epoch, int) and epoch >= 0,
               f"reset.epoch must be >= 0 (0 = the initial weights), got {epoch}{where}")
        _check(epoch <= epochs, f"reset.epoch={epoch}{where} is after the end of training (train.epochs={epochs})")
        if keep != "all":  # the final weights are always kept
            _check(epoch in set(keep) or epoch == epochs,
                   f"reset.epoch={epoch}{where} is not among lth.keep_epochs={list(keep)}")


def keep_epochs_listed(cfg: DictConfig, cell: Cell) -> None:
    """lth.keep_epochs: all, or a list of whole epochs (its range is reset_within_training's)."""
    keep = cfg.lth.keep_epochs
    _check(keep == "all" or (isinstance(keep, (Sequence, ListConfig)) and not isinstance(keep, str)
                             and all(isinstance(k, int) and not isinstance(k, bool) for k in keep)),
           f"lth.keep_epochs must be 'all' or a list of epochs in [0, {cell.train.epochs}], got {keep!r}")


def stability_copies_listed(cfg: DictConfig, cell: Cell) -> None:
    """stability.data_seeds and stability.candidates: lists whose every element is a valid seed or epoch."""
    seeds, candidates = cell.stability.data_seeds, cell.stability.candidates
    _check(seeds is None or (len(seeds) >= 1 and all(_whole(seed) and seed >= 0 for seed in seeds)),
           f"stability.data_seeds must be null or a non-empty list of non-negative integers, got {seeds!r}")
    _check(len(candidates) >= 1 and all(_whole(k) for k in candidates),
           f"stability.candidates must be a non-empty list of reset epochs, got {candidates!r}")


def stability_fits_imp(cfg: DictConfig, cell: Cell) -> None:
    """The stability group against prune.method=imp: an IMP job's copies would need every level retrained."""
    if cell.prune.method == "imp":
        _check(not cell.stability.enabled,
               "stability=on analyses one-shot tickets and the dense network, not prune.method=imp")
        _check(cell.stability.reference == "dense",
               "reset.epoch=auto with prune.method=imp needs stability.reference=dense (an IMP cell is not analysed)")


def imagenet_on_tensorflow(cfg: DictConfig, cell: Cell) -> None:
    """data=imagenet (tf.data over TFRecord shards) against train.backend."""
    _check(cell.train.backend == "tensorflow" or cell.data.name != "imagenet", IMAGENET_NEEDS_TENSORFLOW)


def retries_mlflow_takes(cfg: DictConfig, cell: Cell) -> None:
    """The tracking group's HTTP settings together, as MLflow reads them (lth.tracking.http)."""
    if "tracking" in cfg:  # retry settings MLflow cannot take fail the sweep here, not in every job
        http_environment(cfg.tracking)


def data_channels_fit_the_model(cfg: DictConfig, cell: Cell) -> None:
    """data.channels against model.input_channels."""
    _check(cell.data.channels == cell.model.input_channels,
           f"data.channels={cell.data.channels} but model {cell.model.name} takes {cell.model.input_channels} "
           f"channel(s): leave data.channels at its default (the model's input_channels)")


def dataset_keys_present(cfg: DictConfig, cell: Cell) -> None:
    """The keys a dataset's loader needs: shard splits for imagenet, the two fractions for digits."""
    if cell.data.name == "imagenet":
        _check(isinstance(cell.data.val_split, str) and isinstance(cell.data.test_split, str),
               "data.val_split and data.test_split must name splits of the shard manifest (train, val, holdout)")
    if cell.data.name == "digits":
        for key in ("test_fraction", "val_fraction"):
            _check(getattr(cell.data, key) is not None, f"data.{key} must be in (0, 0.5), got null")


def data_path_exists(cfg: DictConfig, cell: Cell) -> None:
    """data.path, where it is set, against the filesystem."""
    if cell.data.path is not None:
        hints = {"fashion_mnist": " (install it with `apt-get install dataset-fashion-mnist`)",
                 "imagenet": " (write the shards with `python tools/ingest.py`)"}
        _check(Path(cell.data.path).exists(), f"data.path does not exist: {cell.data.path}{hints.get(cell.data.name, '')}")


RULES: tuple[Rule, ...] = (channels_prune_in_one_shot, layer_rates_fit_imp, floor_below_threshold,
                           keep_epochs_listed, reset_within_training, stability_copies_listed, stability_fits_imp,
                           imagenet_on_tensorflow,
                           retries_mlflow_takes, data_channels_fit_the_model, dataset_keys_present, data_path_exists)
