"""Figures the README states, derived again from what they come from: the results' json and the planner.

Each sentence is looked for in the README with its line breaks collapsed, so rewrapping a paragraph
is free, while a figure that drifts from its source fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

RESULTS = REPO_ROOT / "docs" / "reproduction"


@pytest.fixture(scope="module")
def readme() -> str:
    return " ".join((REPO_ROOT / "README.md").read_text().split())


def _rows(name: str) -> list[dict]:
    return json.loads((RESULTS / name).read_text())["lines" if name.startswith("frontier") else "rows"]


@pytest.mark.parametrize("tolerance, name", [("0.05", "frontier_vs_grid-tol0.05.json"), ("0.01", "frontier_vs_grid.json")])
def test_frontier_agreement_counts_every_probe_of_the_json(readme: str, tolerance: str, name: str) -> None:
    probes = sum(line["frontier_jobs"] for line in _rows(name))  # each frontier job is one probe
    claims = re.findall(rf"at {re.escape(tolerance)}, (\d+) of (\d+) agree", readme)
    assert claims, f"no 'at {tolerance}, A of N agree' in the README"
    assert [int(total) for _, total in claims] == [probes]
    if tolerance == "0.05":  # the README names its 2 disagreements (k = 1, 3); the rest agree
        assert "the 2 disagreements are 2.69% against 2.81% (k = 1) and 4.11% against 4.40% (k = 3)" in readme
        assert int(claims[0][0]) == probes - 2
    agreeing = sum(line["agreement"][0] for line in _rows(name))  # the benchmark's own count
    assert [int(agree) for agree, _ in claims] == [agreeing]


def test_stability_ends_and_the_maximum_on_the_path_are_the_jsons(readme: str) -> None:
    unstable = [row for row in _rows("stability_fashion.json") if row["model"] == "mobilenet_v2" and row["k"] == 0]
    assert len(unstable) == 4  # dense and 80% ticket, each BatchNorm mode
    ends = [error for row in unstable for error in row["end_errors"]]
    peaks = [row["max_error"] for row in unstable]
    assert (f"the error along the path rises to chance (a maximum of {100 * min(peaks):.0f}–{100 * max(peaks):.0f}% "
            f"error) between ends at {100 * min(ends):.1f}–{100 * max(ends):.1f}%") in readme
    assert "14.4–17.1%" in readme and "87–92%" in readme  # the numbers above, as written today


def _plan(nodes: int, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """Waves, wall-clock, S and E of the README's seed grid on `nodes` nodes, as `python -m lth.plan` prints them."""
    from lth.plan import main

    main(["cluster=slurm", "experiment=seed_grid", "train.epochs=350", "--nodes", str(nodes), "--epoch-minutes", "4.5"])
    out = capsys.readouterr().out
    found = re.search(r"wall-clock: ([\d.,]+ h) \(dense stage [\d.,]+ h, then (\d+) wave\(s\) of tickets\)", out)
    speed = re.search(r"speed-up S = ([\d.]+), efficiency E = S/N = ([\d.]+)", out)
    assert found and speed, out
    return {"wall": found[1], "waves": found[2], "S": speed[1], "E": speed[2]}


def test_the_planners_waves_are_the_ones_the_readme_states(readme: str, capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no MLflow store here: epoch times from --epoch-minutes only, nothing is created
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    twenty, more, fewer = (_plan(nodes, capsys) for nodes in (20, 21, 19))
    assert (twenty["waves"], twenty["S"], twenty["E"]) == ("5", "16.81", "0.84")  # the table's seed_grid row
    assert f"| 100 (5 waves of 20) | 10,527 | {twenty['wall']} (dense 26.2 h first) | **{twenty['S']}** |" in readme
    assert (f"tickets split into exactly {twenty['waves']} full waves, so the waves cost nothing more; 21 nodes would "
            f"still take {more['waves']} waves (S = {more['S']}, E = {more['E']}), and 19 nodes a sixth wave of "
            f"{100 - 5 * 19} tickets ({fewer['wall']}, S = {fewer['S']})") in readme
    assert (more["waves"], fewer["waves"]) == ("5", "6")
