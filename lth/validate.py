"""Checks that turn bad input into one clear line before any training starts."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig

from lth.scopes import SCOPES, imp_threshold

METHODS: tuple[str, ...] = ("magnitude", "imp")
CONTROLS: tuple[str, ...] = ("none", "reinit", "random_mask")


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the fix."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate_config(cfg: DictConfig) -> None:
    """Static checks of one job's config (no TensorFlow, no data loading).

    Raises:
        ConfigError: On the first problem found.
    """
    threshold = cfg.prune.threshold
    _check(isinstance(threshold, (int, float)) and not isinstance(threshold, bool),
           f"prune.threshold must be a number in [0, 1), got {threshold!r}")
    _check(0.0 <= float(threshold) < 1.0,
           f"prune.threshold must be in [0, 1) (the fraction of weights removed), got {threshold}")
    _check(cfg.prune.scope in SCOPES, f"prune.scope must be one of {list(SCOPES)}, got {cfg.prune.scope!r}")
    _check(cfg.prune.method in METHODS, f"prune.method must be one of {list(METHODS)}, got {cfg.prune.method!r}")
    _check(cfg.prune.control in CONTROLS, f"prune.control must be one of {list(CONTROLS)}, got {cfg.prune.control!r}")
    min_density = cfg.prune.min_density
    _check(isinstance(min_density, (int, float)) and 0.0 <= min_density <= 1.0,
           f"prune.min_density must be in [0, 1], got {min_density!r}")
    _check(cfg.prune.on_collapse in ("warn", "refuse"),
           f"prune.on_collapse must be warn or refuse, got {cfg.prune.on_collapse!r}")
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
    _check(min_density == 0 or min_density < 1.0 - final_threshold - 1e-12,  # 1 - 0.99 is 0.01 + 9e-18
           f"prune.min_density={min_density} keeps at least that fraction of every layer, but the threshold leaves "
           f"only {1.0 - final_threshold:.6g} of the weights; lower prune.min_density below {1.0 - final_threshold:.6g}")
    epochs, reset = cfg.train.epochs, cfg.reset.epoch
    _check(isinstance(epochs, int) and epochs >= 1, f"train.epochs must be a positive integer, got {epochs!r}")
    _check(isinstance(reset, int) and not isinstance(reset, bool),
           f"reset.epoch must be an integer epoch, got {reset!r}")
    _check(reset >= 0, f"reset.epoch must be >= 0 (0 = the initial weights), got {reset}")
    _check(reset <= epochs, f"reset.epoch={reset} is after the end of training (train.epochs={epochs})")
    keep = cfg.lth.keep_epochs
    _check(keep == "all" or (isinstance(keep, (Sequence, ListConfig)) and not isinstance(keep, str)
                             and all(isinstance(k, int) and 0 <= k <= epochs for k in keep)),
           f"lth.keep_epochs must be 'all' or a list of epochs in [0, {epochs}], got {keep!r}")
    if keep != "all":  # the final weights are always kept
        _check(reset in set(keep) or reset == epochs, f"reset.epoch={reset} is not among lth.keep_epochs={list(keep)}")
    _check(cfg.train.batch_size >= 1, f"train.batch_size must be >= 1, got {cfg.train.batch_size}")
    seed = cfg.train.seed
    _check(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0,
           f"train.seed must be a non-negative integer (it seeds the weights and the data order), got {seed!r}")
    _check(cfg.train.optimizer in ("sgd", "adamw", "adam"),
           f"train.optimizer must be sgd, adamw or adam, got {cfg.train.optimizer!r}")
    mode = cfg.train.get("weight_decay_mode", "decoupled")
    _check(mode in ("l2", "decoupled"), f"train.weight_decay_mode must be l2 or decoupled, got {mode!r}")
    _check(cfg.train.lr_schedule in ("cosine", "step", "constant"),
           f"train.lr_schedule must be cosine, step or constant, got {cfg.train.lr_schedule!r}")
    _check(cfg.train.backend in ("tensorflow", "jax"), f"train.backend must be tensorflow or jax, got {cfg.train.backend!r}")
    _check(cfg.train.precision in ("float32", "mixed_bfloat16", "mixed_float16"),
           f"train.precision must be float32, mixed_bfloat16 or mixed_float16, got {cfg.train.precision!r}")
    _check(cfg.train.devices == "auto" or (isinstance(cfg.train.devices, int) and cfg.train.devices >= 1),
           f"train.devices must be auto or a positive count, got {cfg.train.devices!r}")
    _check(cfg.train.lr_scaling in ("none", "linear"),
           f"train.lr_scaling must be none or linear, got {cfg.train.lr_scaling!r}")
    _check(isinstance(cfg.train.steps_per_execution, int) and cfg.train.steps_per_execution >= 1,
           f"train.steps_per_execution must be a positive integer, got {cfg.train.steps_per_execution!r}")
    _check(cfg.train.backend == "tensorflow" or cfg.data.name != "imagenet",
           "data=imagenet reads TFRecord shards with tf.data: it needs train.backend=tensorflow")
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


# `tracking` key -> (MLflow's environment variable, whether MLflow parses it as an integer, least, most).
# MLflow 3 reads the retries, the backoff factor and the timeout with int(): "0.3" would fail every
# request, and int(0.3) would silently turn the backoff off, so a fraction is refused instead.
# The upper bounds are MLflow's own limits (_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT and
# _MLFLOW_HTTP_REQUEST_MAX_BACKOFF_FACTOR_LIMIT), which it would otherwise report on the first request.
HTTP_SETTINGS: dict[str, tuple[str, bool, float, float]] = {
    "http_retries": ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", True, 0, 10),
    "http_backoff_factor": ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", True, 0, 120),
    "http_backoff_jitter_s": ("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", False, 0, float("inf")),
    "http_timeout_s": ("MLFLOW_HTTP_REQUEST_TIMEOUT", True, 1, float("inf")),
}


def http_environment(tracking_cfg: Mapping[str, Any]) -> dict[str, str]:
    """MLflow's environment variables for the `tracking` group's retry settings.

    Raises:
        ConfigError: A setting MLflow cannot take as given (a fraction where it reads an integer,
            or a value outside its limits).
    """
    environment = {}
    for key, (variable, whole, least, most) in HTTP_SETTINGS.items():
        value = tracking_cfg.get(key)
        if value is None:
            continue
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if number is None or not least <= number <= most or (whole and not number.is_integer()):
            kind = "a whole number of seconds" if key == "http_backoff_factor" else "an integer" if whole else "a number"
            bounds = f">= {least:g}" if most == float("inf") else f"in [{least:g}, {most:g}]"
            raise ConfigError(f"tracking.{key} must be {kind} {bounds}"
                              f"{' (MLflow reads ' + variable + ' as an integer)' if whole else ''}, got {value!r}")
        environment[variable] = str(int(number)) if whole else str(number)
    return environment


def require_java(min_major: int = 17) -> None:
    """Spark paths need a Java runtime; fail with the install hint if there is none."""
    java = shutil.which("java")
    hint = f"install Java {min_major} (Debian: apt-get install openjdk-{min_major}-jre-headless) or set JAVA_HOME"
    if java is None:
        raise ConfigError(f"Spark needs Java {min_major}+, but `java` is not on PATH: {hint}")
    banner = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    version = banner.split('"')[1] if '"' in banner else ""
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major < min_major:
        raise ConfigError(f"Spark needs Java {min_major}+, found {version or 'an unknown version'}: {hint}")
