"""Build a typed config piece (a group's dataclass, lth.config.cell) from one config group, checking each key.

The checks of single keys are derived from their declarations (lth.config.declare): a piece takes only
the keys it declares, the values of its `Literal` fields, numbers for its numbers, whole numbers for its
ints, and values inside a key's `bounds`. Lists become tuples (so pieces are hashable) and paths `Path`s.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf

from lth.config.declare import Key, choices_of, options_of, within
from lth.config.vocabulary import ConfigError

Piece = TypeVar("Piece")


def _plain(value: Any) -> Any:
    """OmegaConf containers inside a plain mapping as plain lists and dicts."""
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def _listed(choices: tuple[Any, ...]) -> str:
    """`a, b or c`."""
    words = [str(choice) for choice in choices]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _number_types(options: tuple[Any, ...]) -> tuple[type, ...]:
    return tuple(t for t in (int, float) if t in options)


def _check_value(value: Any, hint: Any, fact: Key, key: str) -> None:
    """A value outside its key's vocabulary, type or range, refused with the key's name."""
    options, choices = options_of(hint), choices_of(hint)
    numbers = _number_types(options)
    if value is None or isinstance(value, (list, tuple, dict)) or isinstance(value, str) and str in options:
        return
    if choices and not numbers:
        if value not in choices and not any(typing.get_origin(o) in (tuple, list) for o in options):
            raise ConfigError(f"{key} must be {_listed(choices)}, got {value!r}")
        return
    if choices and value in choices:
        return
    if numbers:
        nullable = ("null",) if type(None) in options else ()
        alternatives = f"{', '.join(map(str, nullable + choices))} or " if nullable + choices else ""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = "a number" if float in numbers else "an integer"
            raise ConfigError(f"{key} must be {alternatives}{kind}, got {value!r}")
        if fact.bounds is not None and not within(float(value), fact.bounds):
            raise ConfigError(f"{key} must be {alternatives}{_phrase(fact.bounds, numbers)} ({fact.meaning}), "
                              f"got {value!r}")


def _phrase(bounds: str, numbers: tuple[type, ...]) -> str:
    """A range in words where it reads better: `a positive integer` for `[1, inf)` of an int."""
    if float not in numbers and bounds in INTEGER_WORDS:
        return INTEGER_WORDS[bounds]
    return f"in {bounds}"


INTEGER_WORDS = {"[0, inf)": "a non-negative integer", "[1, inf)": "a positive integer"}


def _typed(value: Any, hint: Any, key: str, fact: Key) -> Any:
    """`value` as the field's type, checked as declared: lists as tuples, paths as `Path`, whole numbers as the
    int or float declared."""
    _check_value(value, hint, fact, key)
    options = options_of(hint)
    if isinstance(value, list):
        return tuple(value)
    if value is None or isinstance(value, bool):
        return value
    if Path in options:
        return Path(value)
    if isinstance(value, float) and int in options and float not in options:
        if not value.is_integer():  # int() would silently truncate it
            raise ConfigError(f"{key} must be a whole number, got {value!r}")
        return int(value)
    if isinstance(value, int) and float in options:
        return float(value)  # `model.alpha=1` on a command line is an int; the piece promises a float
    return value


def piece(kind: type[Piece], group: Mapping[str, Any], name: str, known_only: bool = False) -> Piece:
    """Build one typed piece from a config group (a DictConfig or a plain mapping).

    Lists become tuples and paths `Path`s, so a piece is hashable where its fields are.
    A field typed as a `Literal` takes only its values, an int field only whole numbers.

    Args:
        kind: The piece's dataclass.
        group: The group's keys and values.
        name: The group's name, for messages.
        known_only: Drop keys the piece does not declare instead of refusing them (params logged
            by an older version, read back from MLflow).

    Raises:
        ConfigError: For a key the piece does not declare, a missing required key, or a
            value outside a field's type or vocabulary.
    """
    if not isinstance(group, Mapping):
        raise ConfigError(f"{name} must be a group of keys, got {group!r}")
    values = {str(key): _plain(value) for key, value in group.items()} if not isinstance(group, DictConfig) \
        else OmegaConf.to_container(group, resolve=True)
    assert isinstance(values, dict)
    fields = {f.name: f for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown and not known_only:
        raise ConfigError(f"{name}.{unknown[0]} is not a key of the {name} group (known: {sorted(fields)})")
    missing = [key for key, f in fields.items() if key not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{name}.{missing[0]} is missing")
    hints = typing.get_type_hints(kind)
    built = {key: _typed(value, hints[key], f"{name}.{key}", fields[key].metadata["lth"])
             for key, value in values.items() if key in fields}
    if "layer_rates" in built and built["layer_rates"] is None:
        built["layer_rates"] = {}  # null in the config: no layer has a rate of its own
    return kind(**built)
