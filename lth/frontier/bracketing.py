"""Where a frontier sweep probes next: bracketing the density at which a ticket stops winning.

A *line* is one setting of what a sweep varies besides the threshold and the replicates
(usually one reset epoch). Along a line, winning is expected to flip once: tickets lose below
some density and win above it. The search brackets that flip on a log-density scale
(density = 1 - prune.threshold, the fraction of prunable weights kept):

1. Round 1 probes `per_round` densities spread evenly, in log density, strictly inside
   `density_range`. An end of the range is probed only when a bracket reaches it.
2. Each later round splits every open bracket into as few pieces as still resolve it within
   the rounds left (`max_rounds`): bisection when rounds are plenty, `per_round` probes at once
   when they are not. Fewer probes per round cost fewer ticket epochs; more cost fewer rounds.
3. A bracket is *resolved* when both its ends were probed and its sparser end keeps at least
   (1 - `resolution`) of its denser end's weights: it is one pruning step of `resolution` wide.
4. Winning need not be monotone, so a resolved flip is *verified*: the next round probes
   `verify_steps` pruning steps sparser than its losing end. A winner there is an inversion
   (a winner below a loser): the search reopens below it, with `max_rounds` rounds again, and
   its new flip is verified in turn. Verification never needs a narrowing round: it is probed
   even when `max_rounds` are spent (a round of verification alone only happens then, or when
   nothing else is left to narrow).

Brackets are read off the probes, sorted by density, wherever two neighbours disagree. A winner
that is sparser than a loser is therefore never hidden once probed: the brackets on both sides of
the loser are refined too (after the frontier's own), and the answer lists every such pair.

The search is deterministic, so lth.frontier.cost can predict its cost before anything runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

THRESHOLD_DIGITS = 6  # thresholds are probed rounded to this many decimals (they travel as Hydra overrides)
RELATIVE_EPSILON = 1e-9  # densities this close (relatively) are the same density
ROUNDING_SLACK = 1e-3  # a bracket this much wider than one step is resolved: thresholds are given to 6 decimals
NEARBY = 0.25  # a probe within this many steps of a verification density verifies there: none is trained again
Outcomes = Mapping[float, bool]  # density -> whether the ticket there won


@dataclass(frozen=True)
class FrontierConfig:
    """How a frontier sweep searches (the `hydra.sweeper.frontier` keys).

    Raises:
        ValueError: A range outside (0, 1], a resolution outside (0, 1), or a count below 1.
    """

    density_range: tuple[float, float] = (0.0115, 0.8)  # (sparsest, densest) fraction of weights kept that is searched
    per_round: int = 4  # most probes per line in one round (each probe is a ticket job per replicate)
    resolution: float = 0.2  # a bracket is resolved when one pruning step of this rate spans it
    max_rounds: int = 4  # narrowing stops after this many rounds (counted again after an inversion), resolved or not
    verify_steps: int = 2  # pruning steps sparser than a resolved flip that are probed to verify it; 0: none

    def __post_init__(self) -> None:
        low, high = self.density_range
        if not 0 < low < high <= 1 or rounded(low) <= 0:
            raise ValueError(f"frontier.density_range must be two densities 0 < low < high <= 1, got {low}, {high} "
                             f"(a density below {10.0 ** -THRESHOLD_DIGITS:g} is a threshold of 1: nothing kept)")
        if not 0 < self.resolution < 1:
            raise ValueError(f"frontier.resolution must be in (0, 1), got {self.resolution}")
        if self.per_round < 1 or self.max_rounds < 1:
            raise ValueError(f"frontier.per_round and frontier.max_rounds must be >= 1, got {self.per_round} "
                             f"and {self.max_rounds}")
        if self.verify_steps < 0:
            raise ValueError(f"frontier.verify_steps must be >= 0, got {self.verify_steps}")

    @property
    def step(self) -> float:
        """The log-density width of a resolved bracket."""
        return -math.log(1.0 - self.resolution)


def config_of(node: Mapping[str, Any]) -> FrontierConfig:
    """The typed `hydra.sweeper.frontier` node (a key it lacks keeps its default).

    Raises:
        ValueError: A value FrontierConfig refuses, or one that is not a number.
    """
    defaults = FrontierConfig()
    low, high = (float(d) for d in node.get("density_range", defaults.density_range))
    return FrontierConfig((low, high), int(node.get("per_round", defaults.per_round)),
                          float(node.get("resolution", defaults.resolution)),
                          int(node.get("max_rounds", defaults.max_rounds)),
                          int(node.get("verify_steps", defaults.verify_steps)))


def rounded(density: float) -> float:
    """The density a probe really has: 1 - its threshold rounded to THRESHOLD_DIGITS decimals."""
    return round(1.0 - round(1.0 - density, THRESHOLD_DIGITS), THRESHOLD_DIGITS)


def threshold_of(density: float) -> float:
    """prune.threshold of a probe at `density`."""
    return round(1.0 - density, THRESHOLD_DIGITS)


def same(a: float, b: float) -> bool:
    return abs(a - b) <= RELATIVE_EPSILON * max(a, b) + 10.0 ** -(THRESHOLD_DIGITS + 1)


@dataclass(frozen=True)
class Bracket:
    """Two neighbouring densities between which winning flips (or may flip, at a range end)."""

    sparse: float  # density of the sparser end
    dense: float  # density of the denser end
    sparse_probed: bool  # False: the sparser end is the range's end, not a probe
    dense_probed: bool
    kind: str  # frontier (a loser below a winner), inverted (a winner below a loser), below_range, above_range

    @property
    def width(self) -> float:
        """log(dense / sparse)."""
        return math.log(self.dense / self.sparse)

    @property
    def open_end(self) -> bool:
        return not (self.sparse_probed and self.dense_probed)

    def resolved(self, step: float) -> bool:
        """One step wide with both ends probed; or a winner within one step of the range's sparsest end.

        The latter needs no probe at the range's end: nothing sparser than it is searched, so the
        answer is already as exact as `resolution` asks (the summary says the frontier may lie lower).
        """
        probed = self.dense_probed and (self.sparse_probed or self.kind == "below_range")
        return probed and self.width <= step * (1 + ROUNDING_SLACK)

    def probes_for(self, step: float, rounds_left: int) -> int:
        """The fewest probes this round that still resolve the bracket in `rounds_left` rounds.

        Known ends: q interior probes make q + 1 pieces a round. An open end is probed first,
        so q probes there make q pieces, and the rounds after it split as known ends do.
        """
        pieces = self.width / step
        for count in range(1, 10_000):
            after = count * (count + 1) ** (rounds_left - 1) if self.open_end else (count + 1) ** rounds_left
            if after >= pieces / (1 + ROUNDING_SLACK):
                return count
        return 10_000

    def points(self, count: int) -> list[float]:
        """`count` densities: the open end first, then interior points evenly spaced in log density."""
        ends = [d for d, probed in ((self.sparse, self.sparse_probed), (self.dense, self.dense_probed)) if not probed]
        ends = ends[:count]
        interior = count - len(ends)
        inside = [self.sparse * math.exp(self.width * j / (interior + 1)) for j in range(1, interior + 1)]
        return [rounded(d) for d in ends + inside]


def in_range(outcomes: Outcomes, config: FrontierConfig) -> dict[float, bool]:
    """The outcomes inside the searched range (a grid's earlier cells may lie outside it)."""
    low, high = config.density_range
    return {d: won for d, won in outcomes.items() if low * (1 - RELATIVE_EPSILON) <= d <= high * (1 + RELATIVE_EPSILON)}


def brackets(outcomes: Outcomes, config: FrontierConfig) -> list[Bracket]:
    """Every flip between neighbouring probes, and a range end not yet ruled out; the frontier's first."""
    known = in_range(outcomes, config)
    if not known:
        return []
    low, high = config.density_range
    densities = sorted(known)
    found = []
    if known[densities[0]] and not same(densities[0], low):  # the sparsest probe won: look lower
        found.append(Bracket(low, densities[0], False, True, "below_range"))
    for sparse, dense in zip(densities, densities[1:]):
        if known[sparse] != known[dense]:
            found.append(Bracket(sparse, dense, True, True, "frontier" if known[dense] else "inverted"))
    if not any(known.values()) and not same(densities[-1], high):  # nothing won yet: look denser
        found.append(Bracket(densities[-1], high, True, False, "above_range"))
    winner = min((d for d, won in known.items() if won), default=None)
    return sorted(found, key=lambda b: (not same(b.dense, winner) if winner is not None else False, b.sparse))


def first_round(config: FrontierConfig) -> list[float]:
    """`per_round` densities strictly inside the range, evenly spaced in log density."""
    low, high = config.density_range
    width = math.log(high / low)
    return [rounded(low * math.exp(width * j / (config.per_round + 1))) for j in range(1, config.per_round + 1)]


def probed_near(density: float, seen: Sequence[float], config: FrontierConfig) -> float | None:
    """The probe in `seen` within NEARBY steps of `density` (a grid's own cells, or an earlier round's probe)."""
    return min(seen, key=lambda d: abs(math.log(d / density)), default=None) if any(
        abs(math.log(d / density)) <= config.step * NEARBY for d in seen) else None


def verification_points(outcomes: Outcomes, config: FrontierConfig) -> list[float]:
    """The densities that verify the line's resolved flip: `verify_steps` steps sparser than its losing end.

    Empty while the flip below the sparsest winner is unresolved. Where the searched range ends first, its
    end is the last point (unless it lies within NEARBY steps of the previous one).
    """
    known = in_range(outcomes, config)
    winner = min((d for d, won in known.items() if won), default=None)
    if winner is None:
        return []
    flip = next((b for b in brackets(known, config) if same(b.dense, winner)), None)
    if flip is None or flip.kind != "frontier" or not flip.resolved(config.step):
        return []
    low = config.density_range[0]
    points: list[float] = []
    for j in range(1, config.verify_steps + 1):
        point = rounded(flip.sparse * (1 - config.resolution) ** j)
        if point < low * (1 - RELATIVE_EPSILON):  # the range ends first: its end is the last point, unless next door
            if abs(math.log((points[-1] if points else flip.sparse) / low)) > config.step * NEARBY:
                points.append(rounded(low))
            break
        points.append(point)
    return points


def verifying(outcomes: Outcomes, config: FrontierConfig, probes: Sequence[float]) -> list[float]:
    """Which of a round's `probes` verify a flip, given the outcomes known before the round."""
    checking = verification_points(outcomes, config)
    return [d for d in probes if probed_near(d, checking, config) is not None]


def next_probes(outcomes: Outcomes, config: FrontierConfig, rounds_done: int) -> list[float]:
    """The densities to probe in the next round of one line; empty when its search is over.

    Args:
        rounds_done: Narrowing rounds since the search last opened: since it started, or since a
            verification probe won (an inversion reopens the search below it).
    """
    rounds_left = config.max_rounds - rounds_done
    known = in_range(outcomes, config)
    if not known:
        return first_round(config) if rounds_left > 0 else []
    budget, chosen = config.per_round, []
    for bracket in brackets(known, config) if rounds_left > 0 else []:
        if budget == 0:
            break
        if bracket.resolved(config.step):
            continue
        count = min(budget, bracket.probes_for(config.step, rounds_left))
        fresh = [d for d in bracket.points(count)
                 if not any(same(d, seen) for seen in [*known, *chosen])]
        chosen += fresh
        budget -= len(fresh)
    checking = [d for d in verification_points(known, config) if probed_near(d, [*known, *chosen], config) is None]
    return sorted(chosen + checking)


def after_round(rounds_done: int, verified_won: bool) -> int:
    """Narrowing rounds since the search opened, after a round: a winner found by verification reopens it."""
    return 0 if verified_won else rounds_done + 1


def pretty(densities: Sequence[float]) -> str:
    """`1.52%, 3.40%` for a log line."""
    return ", ".join(f"{100 * d:.2f}%" for d in densities)
