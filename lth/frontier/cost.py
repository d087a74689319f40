"""What a frontier search costs before anything runs: the search replayed against stand-ins that flip once.

lth.frontier.bracketing is deterministic, so replaying it against "wins above a density" stand-ins,
for flips spread across and beyond the range, gives the rounds and probes of every single-flip
line. `python -m lth.plan` prices a frontier sweep with `schedule`, its costliest such line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lth.frontier.bracketing import FrontierConfig, Outcomes, after_round, next_probes, verifying


@dataclass(frozen=True)
class Cost:
    """What the search costs on one line, before anything runs (a single flip, as `worst_case` assumes)."""

    rounds: int  # rounds in the worst case
    probes: int  # probes in the worst case
    mean_probes: float  # probes averaged over flips spread evenly in log density over the range


Round = tuple[int, int]  # (probes, of which verify a resolved flip)


def replay(wins: Callable[[float], bool], config: FrontierConfig,
           known: Outcomes | None = None) -> tuple[dict[float, bool], list[Round]]:
    """Run the search against `wins` (density -> won), as the sweeper does; (every outcome, each round)."""
    outcomes = dict(known or {})
    rounds: list[Round] = []
    narrowed = 0
    while probes := next_probes(outcomes, config, narrowed):
        checking = verifying(outcomes, config, probes)
        outcomes.update({d: wins(d) for d in probes})
        rounds.append((len(probes), len(checking)))
        narrowed = after_round(narrowed, any(outcomes[d] for d in checking))
    return outcomes, rounds


def simulate(wins: Callable[[float], bool], config: FrontierConfig,
             known: Outcomes | None = None) -> tuple[dict[float, bool], list[int]]:
    """Run the search against `wins` (density -> won); (every outcome, probes in each round)."""
    outcomes, rounds = replay(wins, config, known)
    return outcomes, [probes for probes, _ in rounds]


def _single_flips(config: FrontierConfig, flips: int) -> list[list[Round]]:
    """Each round of flips spread across the range, and of one beyond each end."""
    low, high = config.density_range
    spread = [low * (high / low) ** (i / (flips - 1)) for i in range(flips)]
    return [replay(lambda d, flip=flip: d >= flip, config)[1] for flip in [low / 2, *spread, min(1.0, high * 1.5)]]


def worst_case(config: FrontierConfig, flips: int = 400) -> Cost:
    """The rounds and probes of a line whose winning flips once, over flips spread across and beyond the range.

    They include verification: a single flip's never finds a winner, so once the flip is resolved it adds
    one round of up to `verify_steps` probes (fewer near the range's end or next to earlier probes).
    """
    runs = [[probes for probes, _ in rounds] for rounds in _single_flips(config, flips)]
    return Cost(max(len(r) for r in runs), max(sum(r) for r in runs), sum(sum(r) for r in runs) / len(runs))


def costliest(config: FrontierConfig, flips: int = 400) -> list[Round]:
    """Each round of the costliest single flip (most probes, then most rounds): what a plan assumes."""
    return max(_single_flips(config, flips), key=lambda r: (sum(p for p, _ in r), len(r)))


def schedule(config: FrontierConfig, flips: int = 400) -> list[int]:
    """Probes per round of the costliest single flip."""
    return [probes for probes, _ in costliest(config, flips)]
