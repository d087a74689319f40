"""How a config key is declared: once, as a dataclass field of its group, with everything lth derives from it.

`key(...)` returns a `dataclasses.field` whose metadata is a `Key`: the one line of meaning, the allowed
range, whether the key decides a result, under which other settings it is ignored, and the value every
run had before the key existed. From these, and from the field's type and default, lth derives:

- the single-key checks (lth.config.pieces): a `Literal` type lists the allowed values, `Key.bounds` the range;
- the Hydra schema each config group is checked against (lth.config.schema);
- the identity rules (lth.tracking.identity), through `identity_view`;
- the config reference (`python -m lth.config.reference`).

Nothing here imports more than the standard library.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

DROP = object()  # identity_view leaves the key out
NEVER = object()  # the key existed from the first release: no earlier value to match


@dataclass(frozen=True)
class When:
    """A condition on another key of the same group: it holds when that key's value is one of `values`."""

    key: str
    values: tuple[Any, ...]
    negated: bool = False

    def holds(self, group: Mapping[str, Any], defaults: Mapping[str, Any]) -> bool:
        """Whether the condition holds for `group` (a key it lacks has its default)."""
        value = group[self.key] if self.key in group else defaults.get(self.key)
        return any(_same(value, option) for option in self.values) != self.negated

    def __str__(self) -> str:
        shown = " or ".join(repr(v) for v in self.values)
        return f"{self.key} is {'not ' if self.negated else ''}{shown}"


def when(key: str, *values: Any) -> When:
    """Ignored when `key` is one of `values`."""
    return When(key, values)


def unless(key: str, *values: Any) -> When:
    """Ignored unless `key` is one of `values`."""
    return When(key, values, negated=True)


@dataclass(frozen=True)
class Key:
    """What lth knows of one config key besides its type and default.

    Attributes:
        meaning: One line: what the key sets.
        bounds: The allowed range of a number in interval notation, like "[0, 1)" or "[1, inf)".
        runtime: True for a knob that never changes a result (never hashed, or hashed as `hashed_as`).
        ignored_when: Settings of the group's other keys under which the key is not read; any one suffices.
        hashed_as: What the identity holds for the key while it is ignored (DROP: nothing).
        before: The value every run had before the key existed; the identity leaves it out at that value,
            so runs trained before it keep their identity and are reused.
        unordered: A list whose order means nothing (hashed sorted).
        by_content: A path, hashed as the content of what lies there.
        varies_across: "replicates" for the keys a cell's replicates and controls differ in; "levels" for
            the number of IMP levels a job runs (level l is the same run in every job).
    """

    meaning: str
    bounds: str | None = None
    runtime: bool = False
    ignored_when: tuple[When, ...] = ()
    hashed_as: Any = DROP
    before: Any = NEVER
    unordered: bool = False
    by_content: bool = False
    varies_across: str | None = None


def key(meaning: str, default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None,
        ignored: When | tuple[When, ...] = (), **facts: Any) -> Any:
    """One declared key: a dataclass field holding its `Key`.

    Args:
        meaning: One line: what the key sets.
        default: Its default; leave it out for a key every config must set.
        factory: A default built per instance (for a mapping).
        ignored: The settings under which the key is not read.
        **facts: The other attributes of `Key`.
    """
    metadata = {"lth": Key(meaning, ignored_when=ignored if isinstance(ignored, tuple) else (ignored,), **facts)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declared(kind: type) -> dict[str, tuple[dataclasses.Field[Any], Key]]:
    """Every key of a group's dataclass with its declaration, in declaration order."""
    return {f.name: (f, f.metadata["lth"]) for f in dataclasses.fields(kind)}  # type: ignore[arg-type]


def default_of(field: dataclasses.Field[Any]) -> Any:
    """A field's default value, or NEVER for a required key."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return NEVER


def options_of(hint: Any) -> tuple[Any, ...]:
    """The types a field's type allows: the members of a union, else the type itself."""
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def choices_of(hint: Any) -> tuple[Any, ...]:
    """The values of the `Literal` types a field's type allows (its vocabulary), in declared order."""
    return tuple(v for option in options_of(hint) if typing.get_origin(option) is Literal for v in typing.get_args(option))


_BOUNDS = re.compile(r"^([\[(])\s*(-?[\d.e+-]+|-inf)\s*,\s*(-?[\d.e+-]+|inf)\s*([\])])$")


def within(value: float, bounds: str) -> bool:
    """Whether `value` lies in `bounds` (interval notation)."""
    match = _BOUNDS.match(bounds)
    if match is None:
        raise ValueError(f"not an interval: {bounds!r}")
    opening, low, high, closing = match.groups()
    low_value, high_value = float(low), float(high)
    above = value >= low_value if opening == "[" else value > low_value
    below = value <= high_value if closing == "]" else value < high_value
    return above and below and not math.isnan(value)


def _normal(value: Any) -> Any:
    """A value as the identity compares it: a tuple as a list, an empty mapping as null."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value) or None
    return value


def _same(value: Any, other: Any) -> bool:
    """Equal as the identity sees it (True is not 1 here)."""
    value, other = _normal(value), _normal(other)
    return bool(value == other) and isinstance(value, bool) == isinstance(other, bool)


def identity_view(kind: type, group: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of one group that decide a result, as its declarations say.

    A runtime knob, and a key that the group's other settings make irrelevant, become their `hashed_as`
    value or go; a key still at the value it had before it existed goes; an unordered list is sorted.
    The conditions read the group as given, so one rule never hides what another reads.
    """
    keys = declared(kind)
    defaults = {name: default_of(f) for name, (f, _) in keys.items()}
    view = dict(group)
    for name, value in group.items():
        if name not in keys:
            continue
        fact = keys[name][1]
        if fact.runtime or any(rule.holds(group, defaults) for rule in fact.ignored_when):
            if fact.hashed_as is DROP:
                view.pop(name)
                continue
            view[name] = value = fact.hashed_as
        if fact.before is not NEVER and _same(value, fact.before):
            view.pop(name)
        elif fact.unordered:
            view[name] = sorted(value or [])
    return view


def across(kind: type, what: str) -> tuple[str, ...]:
    """The keys of a group declared to vary across `what` ("replicates" or "levels")."""
    return tuple(name for name, (_, fact) in declared(kind).items() if fact.varies_across == what)


def content_keys(kind: type) -> tuple[str, ...]:
    """The keys of a group hashed as the content of the path they hold."""
    return tuple(name for name, (_, fact) in declared(kind).items() if fact.by_content)
