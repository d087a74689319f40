"""The Hydra schema of `conf/train.yaml`, derived from the declarations and registered in Hydra's ConfigStore.

conf/train.yaml names `lth_schema` first in its defaults list, so every group is composed onto its
declared keys: a key no group declares, or a value of the wrong type, fails at composition, and a key a
preset leaves out has its declared default. The schema's types are what OmegaConf can check (a
`Literal` is a str, `int | auto` is Any); the vocabularies and ranges are checked by lth.config.pieces.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Optional

from lth.config.cell import PIECES
from lth.config.declare import NEVER, default_of

SCHEMA_NAME = "lth_schema"


def _checkable(hint: Any) -> Any:
    """A declared type as OmegaConf checks it."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return str
    if origin in (typing.Union, types.UnionType):
        present = [arg for arg in args if arg is not type(None)]
        if len(present) == 1:
            return Optional[_checkable(present[0])]  # noqa: UP045 (OmegaConf reads typing.Optional)
        return Any
    if origin is tuple:
        return list[_checkable(args[0])]  # type: ignore[misc]
    if origin in (Mapping, dict):
        return Any  # OmegaConf 2.3 cannot merge a mapping onto a typed null; lth.validation.rules checks it
    return str if hint is Path else hint


def _field(declared: dataclasses.Field[Any], hint: Any) -> tuple[str, Any, dataclasses.Field[Any]]:
    default = default_of(declared)
    if default is NEVER:
        return declared.name, _checkable(hint), dataclasses.field(default="???")  # Hydra's MISSING
    if isinstance(default, (tuple, list, dict)):
        copy = list(default) if isinstance(default, (tuple, list)) else dict(default)
        return declared.name, _checkable(hint), dataclasses.field(default_factory=lambda: copy)
    return declared.name, _checkable(hint), dataclasses.field(default=str(default) if isinstance(default, Path)
                                                              else default)


def group_schema(kind: type) -> type:
    """The OmegaConf-checkable twin of a group's declared dataclass: same keys, same defaults."""
    hints = typing.get_type_hints(kind)
    return dataclasses.make_dataclass(f"{kind.__name__}Schema",
                                      [_field(f, hints[f.name]) for f in dataclasses.fields(kind)])


def run_schema() -> type:
    """The schema of a whole job config: one field per declared group, and the launchers' own `spark` group."""
    schemas = {group: group_schema(kind) for group, (_, kind) in PIECES.items()}
    fields: list[tuple[str, Any, dataclasses.Field[Any]]] = [
        (group, schema, dataclasses.field(default_factory=schema)) for group, schema in schemas.items()]
    fields.append(("spark", Optional[dict[str, Any]], dataclasses.field(default=None)))  # noqa: UP045  cluster=spark
    return dataclasses.make_dataclass("RunSchema", fields)


def register() -> None:
    """Store the schema as `lth_schema`, once per process (every process that composes conf/train.yaml)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    if store.repo.get(f"{SCHEMA_NAME}.yaml") is None:
        store.store(name=SCHEMA_NAME, node=run_schema())
