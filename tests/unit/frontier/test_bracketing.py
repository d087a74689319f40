"""The frontier search against synthetic "wins above a density" stand-ins: where it probes, when it stops."""

from __future__ import annotations

import math

import pytest

from lth.frontier.answer import answer
from lth.frontier.bracketing import FrontierConfig, brackets, first_round, next_probes, threshold_of
from lth.frontier.cost import schedule, simulate, worst_case

DEFAULT = FrontierConfig()  # the seed grid's range [1.15%, 80%], P = 4, one 20% step, 4 rounds
GRID = [round(0.8**i, 6) for i in range(1, 21)]  # densities of the seed grid (1 - 0.8^i removed)


def flips_across(config: FrontierConfig, count: int = 37) -> list[float]:
    low, high = config.density_range
    return [low * (high / low) ** ((i + 0.5) / count) for i in range(count)]


def test_round_one_spreads_per_round_probes_strictly_inside_the_range_evenly_in_log_density() -> None:
    probes = first_round(DEFAULT)
    assert len(probes) == 4 and DEFAULT.density_range[0] < probes[0] and probes[-1] < DEFAULT.density_range[1]
    edges = [DEFAULT.density_range[0], *probes, DEFAULT.density_range[1]]
    ratios = [b / a for a, b in zip(edges, edges[1:])]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-4)  # 5 equal pieces in log density


@pytest.mark.parametrize("config", [DEFAULT, FrontierConfig(per_round=4, max_rounds=2),
                                    FrontierConfig(per_round=2, max_rounds=6), FrontierConfig(per_round=8, max_rounds=2),
                                    FrontierConfig((0.05, 0.5), per_round=3, resolution=0.1, max_rounds=5)])
def test_a_monotone_flip_is_bracketed_within_resolution_in_the_predicted_rounds(config: FrontierConfig) -> None:
    predicted = worst_case(config)
    for flip in flips_across(config):
        outcomes, per_round = simulate(lambda d, flip=flip: d >= flip, config)
        rounds = len(per_round)
        found = answer(outcomes, config)
        assert found.winner == min(d for d in outcomes if d >= flip)  # the sparsest probe at or above the flip
        assert found.resolved and found.bracket is not None and not found.inversions
        assert found.bracket.sparse < flip <= found.bracket.dense
        assert math.log(found.bracket.dense / found.bracket.sparse) <= config.step * 1.001
        assert rounds <= predicted.rounds and len(outcomes) <= predicted.probes
        assert rounds <= config.max_rounds + 1  # the narrowing rounds, then one that verifies the flip
        assert not found.unverified and all(not outcomes[d] for d in found.verified)
        assert found.verified or found.bracket.sparse <= config.density_range[0] * (1 - config.resolution) ** -0.25


def test_predicted_rounds_and_probes_match_the_arithmetic_of_bisection() -> None:
    # Round 1 leaves pieces of ln(0.8/0.0115)/5 = 0.848 (3.80 steps of 20%). With rounds to spare each later
    # round bisects: 3.80 -> 1.90 -> 0.95 steps, so an interior flip costs 4 + 1 + 1 probes in 3 rounds.
    interior = [f for f in flips_across(DEFAULT) if first_round(DEFAULT)[0] < f <= first_round(DEFAULT)[-1]]
    # Then one round verifies the resolved flip: 2 steps sparser than its losing end, unless a probe is there.
    for flip in interior:
        outcomes, per_round = simulate(lambda d, flip=flip: d >= flip, DEFAULT)
        assert per_round[:3] == [4, 1, 1] and per_round[3] <= 2 and len(per_round) == 4
    # With only 2 rounds, round 2 must cut 3.80 steps at once: ceil(3.80) - 1 = 3 probes.
    hurried = FrontierConfig(max_rounds=2)
    for flip in interior:
        outcomes, per_round = simulate(lambda d, flip=flip: d >= flip, hurried)
        assert per_round[:2] == [4, 3] and len(per_round) <= 3  # its own probes may already lie below the flip
    assert worst_case(DEFAULT).rounds == 5  # a flip below the first probe also probes the range's end; then verified
    assert schedule(DEFAULT) == [4, 1, 1, 1, 2] and worst_case(DEFAULT).probes == 9
    assert worst_case(hurried).rounds == 3
    unverified = FrontierConfig(verify_steps=0)
    assert schedule(unverified) == [4, 1, 1, 1] and worst_case(unverified).probes == 7


def test_ends_of_the_range_are_probed_only_when_a_bracket_reaches_them() -> None:
    low, high = DEFAULT.density_range
    outcomes, _ = simulate(lambda d: True, DEFAULT)  # everything wins: the frontier lies below the range
    assert low in outcomes and high not in outcomes
    found = answer(outcomes, DEFAULT)
    assert found.winner == low and found.bracket is None and "may lie lower" in found.sentence(DEFAULT)
    outcomes, _ = simulate(lambda d: False, DEFAULT)  # nothing wins: the densest end is tried, then it stops
    assert high in outcomes and answer(outcomes, DEFAULT).winner is None
    assert "no probe won" in answer(outcomes, DEFAULT).sentence(DEFAULT)


def test_a_winner_sparser_than_a_loser_is_reported_and_both_sides_of_the_loser_are_refined() -> None:
    island = (0.12, 0.2)  # a losing island above the real flip at 5%
    wins = lambda d: d >= 0.05 and not island[0] <= d <= island[1]  # noqa: E731
    after_one = {d: wins(d) for d in first_round(DEFAULT)}  # 2.69% L, 6.28% W, 14.66% L, 34.25% W
    assert [after_one[d] for d in sorted(after_one)] == [False, True, False, True]
    found = answer(after_one, DEFAULT)
    assert found.inversions == ((0.062756, 0.1466),)
    assert "NOT MONOTONE" in found.sentence(DEFAULT)
    kinds = [b.kind for b in brackets(after_one, DEFAULT)]
    assert kinds[0] == "frontier" and sorted(kinds) == ["frontier", "frontier", "inverted"]  # the frontier's first
    probes = next_probes(after_one, DEFAULT, rounds_done=1)
    assert any(0.026864 < d < 0.062756 for d in probes)  # the frontier itself
    assert any(0.062756 < d < 0.1466 for d in probes) and any(0.1466 < d < 0.342461 for d in probes)
    outcomes, _ = simulate(wins, DEFAULT)
    final = answer(outcomes, DEFAULT)
    assert final.resolved and final.bracket is not None and final.bracket.sparse < 0.05 <= final.bracket.dense
    assert final.inversions  # still reported at the end


def test_a_grid_already_in_mlflow_resolves_the_search_without_new_probes() -> None:
    config = FrontierConfig((GRID[-1], GRID[0]))
    for flip in (0.02, 0.1, 0.5):
        grid = {d: d >= flip for d in GRID}
        assert next_probes(grid, config, rounds_done=0) == []
        assert answer(grid, config).winner == min(d for d in GRID if d >= flip)


def test_thresholds_are_the_complement_of_densities_rounded_for_the_command_line() -> None:
    assert threshold_of(0.062756) == 0.937244
    assert all(len(str(threshold_of(d))) <= 8 for d in first_round(DEFAULT))


@pytest.mark.parametrize("bad", [dict(density_range=(0.5, 0.1)), dict(density_range=(0.0, 0.5)),
                                 dict(resolution=1.0), dict(per_round=0), dict(max_rounds=0), dict(verify_steps=-1)])
def test_a_bad_setting_is_refused_with_its_key(bad: dict) -> None:
    with pytest.raises(ValueError, match="frontier"):
        FrontierConfig(**bad)


def test_a_grid_whose_every_cell_wins_within_one_step_of_the_range_end_is_resolved_at_the_default_range() -> None:
    # The default range starts at 0.0115, a hair below the seed grid's sparsest cell (0.8^20 = 0.011529):
    # probing 0.0115 after the grid would spend a ticket on a density one hundredth of a step sparser.
    grid = {d: True for d in GRID}
    assert next_probes(grid, DEFAULT, rounds_done=0) == []
    final = answer(grid, DEFAULT)
    assert final.resolved and final.winner == min(GRID)
    assert "may lie lower" in final.sentence(DEFAULT)
    # Further than one step from the range's end, the end is still probed.
    assert next_probes({d: True for d in GRID[:-2]}, DEFAULT, rounds_done=0) == [DEFAULT.density_range[0]]


def test_a_bound_below_what_a_threshold_can_say_is_refused() -> None:
    with pytest.raises(ValueError, match="density_range"):
        FrontierConfig(density_range=(1e-7, 0.5))  # rounds to threshold 1.0: density 0


def test_a_winner_below_a_resolved_flip_is_found_by_verification_reported_and_refined() -> None:
    pocket = (0.11, 0.125)  # winners 2-3 steps below a loser, where round 1 does not look
    wins = lambda d: d >= 0.2 or pocket[0] <= d <= pocket[1]  # noqa: E731
    trusting, _ = simulate(wins, FrontierConfig(verify_steps=0))
    blind = answer(trusting, DEFAULT)
    assert blind.winner == pytest.approx(0.224064) and blind.resolved and not blind.inversions  # what it said before
    outcomes, per_round = simulate(wins, DEFAULT)
    found = answer(outcomes, DEFAULT)
    assert pocket[0] <= found.winner <= pocket[1]  # the pocket's sparsest probe is the answer now
    assert found.inversions and all(w < loser for w, loser in found.inversions)
    assert found.inversions[0][0] == found.winner and "NOT MONOTONE" in found.sentence(DEFAULT)
    assert found.resolved and found.bracket is not None and found.bracket.width <= DEFAULT.step * 1.001  # refined
    assert found.verified_steps == 2 and not any(outcomes[d] for d in found.verified)  # and verified in turn
    assert "verified 2 step(s) below it" in found.sentence(DEFAULT)
    assert len(per_round) > DEFAULT.max_rounds + 1  # the search reopened below the inversion
    first_check = [d for d in outcomes if d < 0.2 and d not in trusting]
    assert any(pocket[0] <= d <= pocket[1] for d in first_check)


def test_verification_reuses_a_probe_near_its_density_and_stops_at_the_range_end() -> None:
    config = FrontierConfig((GRID[-1], GRID[0]))
    grid = {d: d >= 0.1 for d in GRID}  # every grid cell known: the flip and both steps below it are grid cells
    assert next_probes(grid, config, rounds_done=0) == []
    assert answer(grid, config).verified_steps == 2
    low = {d: d >= GRID[-2] for d in GRID}  # the flip's loser is the range's end: nothing sparser to verify
    assert answer(low, config).verified == () and "nothing sparser" in answer(low, config).sentence(config)
