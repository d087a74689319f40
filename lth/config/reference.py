"""The config reference, generated from the declarations: `python -m lth.config.reference > reference.md`.

One table per group: each key's type, default, allowed values or range, meaning, and what the identity
makes of it. The documentation renders this page; nothing in it is written by hand.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from lth.config.cell import DENSE_GROUPS, PIECES, TICKET_GROUPS
from lth.config.declare import DROP, NEVER, Key, choices_of, declared, default_of


def _type_name(hint: Any) -> str:
    """A field's type in words: `int | auto`, `list[int]`, `str`."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "str"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(option) if typing.get_origin(option) is not Literal
                          else " | ".join(map(str, typing.get_args(option))) for option in typing.get_args(hint))
    if origin is tuple:
        return f"list[{_type_name(typing.get_args(hint)[0])}]"
    if origin is not None:
        return "mapping"
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _allowed(hint: Any, fact: Key) -> str:
    choices = choices_of(hint)
    parts = [", ".join(map(str, choices))] if choices else []
    if fact.bounds:
        parts.append(fact.bounds)
    return "; ".join(parts)


def _identity(group: str, fact: Key) -> str:
    """What the identity makes of a key."""
    if group not in TICKET_GROUPS:
        return "runtime: never hashed"
    words = []
    if fact.runtime:
        words.append("runtime: never hashed" if fact.hashed_as is DROP else f"runtime: hashed as {fact.hashed_as!r}")
    else:
        words.append("decides the dense parent" if group in DENSE_GROUPS else "decides the ticket")
    for rule in fact.ignored_when:
        shown = "left out" if fact.hashed_as is DROP else f"hashed as {fact.hashed_as!r}"
        words.append(f"ignored when {rule} ({shown})")
    if fact.before is not NEVER:
        words.append(f"left out at {fact.before!r}, its value before it existed")
    if fact.varies_across:
        words.append(f"varies across {fact.varies_across}")
    if fact.by_content:
        words.append("hashed as the content of the files")
    if fact.unordered:
        words.append("order ignored")
    return "; ".join(words)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|")


def reference_markdown() -> str:
    """Every declared key, one table per config group."""
    lines = ["# Config reference", "", "Generated from the declarations in `lth/config/` "
             "(`python -m lth.config.reference`).", ""]
    for group, (_, kind) in PIECES.items():
        hints = typing.get_type_hints(kind)
        lines += [f"## `{group}`", "", (kind.__doc__ or "").strip().splitlines()[0], "",
                  "| key | type | default | allowed | meaning | identity |", "|---|---|---|---|---|---|"]
        for name, (field, fact) in declared(kind).items():
            default = default_of(field)
            shown = "required" if default is NEVER else f"`{default!r}`"
            lines.append(f"| `{group}.{name}` | {_cell(_type_name(hints[name]))} | {_cell(shown)} | "
                         f"{_cell(_allowed(hints[name], fact))} | {_cell(fact.meaning)} | {_cell(_identity(group, fact))} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown())
