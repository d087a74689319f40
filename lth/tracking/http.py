"""MLflow's HTTP retry settings, from the `tracking` group (checked before a sweep starts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lth.config.vocabulary import ConfigError

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
