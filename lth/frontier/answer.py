"""What the probes of one line say: the sparsest winner, the flip below it, its verification, any inversion."""

from __future__ import annotations

from dataclasses import dataclass

from lth.frontier.bracketing import (
    Bracket,
    FrontierConfig,
    Outcomes,
    brackets,
    in_range,
    pretty,
    probed_near,
    same,
    threshold_of,
    verification_points,
)


@dataclass(frozen=True)
class Answer:
    """What the probes of one line say."""

    winner: float | None  # density of the sparsest winning probe; None: none won
    bracket: Bracket | None  # the flip below that winner (or above the densest loser when none won)
    resolved: bool  # that bracket is resolved, or the winner is the range's sparsest end
    inversions: tuple[tuple[float, float], ...]  # (winner, the denser loser next to it): winning did not flip once
    verified: tuple[float, ...] = ()  # probes below the resolved flip that verified it (all lost: none is sparser)
    unverified: tuple[float, ...] = ()  # verification densities not probed yet (the sweep ended before them)
    verified_steps: int = 0  # how many pruning steps below the flip's losing end verification reached

    def sentence(self, config: FrontierConfig) -> str:
        """One line for the sweep's summary."""
        if self.winner is None:
            what = "no probe won"
        else:
            what = f"sparsest winner {100 * self.winner:.2f}% of weights (t={threshold_of(self.winner):g})"
        if self.bracket is not None and not (self.resolved and self.bracket.kind == "below_range"):
            state = "resolved" if self.resolved else "NOT resolved"
            what += (f"; flip in [{100 * self.bracket.sparse:.2f}%, {100 * self.bracket.dense:.2f}%] ({state} at "
                     f"resolution {config.resolution:g})")
            if self.resolved and self.bracket.kind == "frontier":
                what += "; " + self._verification(config)
        elif self.winner is not None:
            what += " (within one step of the sparsest density searched: the frontier may lie lower)"
        for winner, loser in self.inversions:
            what += f"; NOT MONOTONE: {100 * winner:.2f}% won but the denser {100 * loser:.2f}% lost"
        return what

    def _verification(self, config: FrontierConfig) -> str:
        if self.unverified:
            return f"NOT verified below it ({pretty(self.unverified)} not probed)"
        if self.verified:
            return (f"verified {self.verified_steps} step(s) below it: {pretty(self.verified)} lost"
                    + ("" if self.verified_steps == config.verify_steps else " (the searched range ends there)"))
        if config.verify_steps == 0:
            return "not verified (frontier.verify_steps=0)"
        return "nothing sparser is searched to verify it against"


def answer(outcomes: Outcomes, config: FrontierConfig) -> Answer:
    """The sparsest winner of a line, the bracket below it, its verification, and any winner sparser than a loser."""
    known = in_range(outcomes, config)
    winner = min((d for d, won in known.items() if won), default=None)
    found = brackets(known, config)
    if winner is None:
        bracket = found[0] if found else None
    else:
        bracket = next((b for b in found if same(b.dense, winner)), None)
    resolved = bracket is None or bracket.resolved(config.step)
    inversions = tuple(sorted((b.sparse, b.dense) for b in found if b.kind == "inverted"))
    checking = verification_points(known, config)
    seen = {d: probed_near(d, list(known), config) for d in checking}
    verified = tuple(probe for probe in seen.values() if probe is not None)
    unverified = tuple(d for d, probe in seen.items() if probe is None)
    return Answer(winner, bracket, resolved, inversions, verified, unverified, 0 if unverified else len(verified))
