r"""The frontier sweep against the grid it replaces: the same winners, and what each cost in ticket epochs.

Runs, each in its own MLflow store under `--workdir`:
1. the grid: 20 thresholds 1 - 0.8^i (i = 1..20) x the reset epochs, as `-m prune.threshold=... reset.epoch=...`;
2. the frontier sweep over the grid's density range at `per_round` P, in a fresh store (its own dense parent);
3. the same frontier sweep in the grid's store, which starts from the grid's finished cells.

Then prints, and writes as Markdown and JSON, for each reset epoch: the grid's winner (the report's
rule: sparsest eligible cell), the frontier's, how many grid steps apart they are, and the ticket
epochs each spent (a ticket at reset epoch k costs E - k epochs per replicate), with wall-clock; what
verifying each resolved flip found and cost (the winner the rounds before it gave, its jobs, the
winners it found below the flip); and how many probes agree with the grid cell nearest in density.

Examples:
    python benchmarks/frontier_vs_grid.py                             # the README's run (digits, about 40 min on 2 cores)
    python benchmarks/frontier_vs_grid.py --experiment mobilenet_fashion_rewind --train-limit 6000
    python benchmarks/frontier_vs_grid.py --report-only               # tabulate what --workdir already holds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

GRID = [round(1 - 0.8**i, 6) for i in range(1, 21)]  # the seed grid's thresholds
STEP = math.log(1 / 0.8)  # one grid step in log density
DEFAULT_TOLERANCE = 0.01  # lth.report_tolerance's default


def _environment() -> dict[str, str]:
    return ({k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
            | {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)})


def _common(args: argparse.Namespace) -> list[str]:
    resets = ",".join(map(str, args.reset_epochs))
    kept = ",".join(map(str, sorted(set(args.reset_epochs))))
    common = ["lth.verbose=0", f"reset.epoch={resets}", f"lth.report_tolerance={args.tolerance}",
              f"lth.keep_epochs=[{kept}]", *args.overrides]
    if args.experiment:
        common.append(f"experiment={args.experiment}")
    if args.train_limit is not None:
        common.append(f"data.train_limit={args.train_limit}")
    return common


def _frontier_arguments(args: argparse.Namespace) -> list[str]:
    low, high = 1 - GRID[-1], 1 - GRID[0]
    return ["hydra/sweeper=lth_frontier", f"hydra.sweeper.frontier.per_round={args.per_round}",
            f"hydra.sweeper.frontier.density_range=[{low:.6f},{high:.6f}]",
            f"hydra.sweeper.frontier.resolution={args.resolution}", f"hydra.sweeper.frontier.max_rounds={args.max_rounds}"]


def _run(workdir: Path, name: str, arguments: list[str], log: Path) -> float:
    """One sweep in `workdir`; its wall seconds (output to `log`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "lth.train", "-m", *arguments, f"hydra.sweep.dir={workdir}/sweeps/{name}"]
    print("$", " ".join(command[1:]), flush=True)
    started = time.monotonic()
    with log.open("w") as handle:
        subprocess.run(command, cwd=workdir, check=True, env=_environment(), stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    print(f"  {name}: {seconds:.0f} s (log {log})", flush=True)
    return seconds


def _grid_winners(store: Path, tolerance: float
                  ) -> tuple[dict[int, float | None], dict[int, int], int, int, dict[int, dict[float, bool]]]:
    """Per reset epoch the grid's sparsest winning density; inversions per reset epoch; jobs; E; each line's verdicts."""
    import mlflow

    from lth.config.cell import TrackingConfig
    from lth.frontier.judge import Judge
    from lth.report.collect import families_of

    uri = f"sqlite:///{store / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    judge = Judge(TrackingConfig(uri, "lth"), tolerance)
    (family,) = families_of(judge.experiment_id)
    # The grid's store also holds the probes of the frontier sweep run after it: judge the grid's own cells only.
    verdicts = [v for v in judge.verdicts(family).values() if any(abs(v.threshold - t) < 1e-9 for t in GRID)]
    winners: dict[int, float | None] = {}
    inversions: dict[int, int] = {}
    lines: dict[int, dict[float, bool]] = {}
    for reset in sorted({v.reset_epoch for v in verdicts}):
        line = sorted((1 - v.threshold, v.won) for v in verdicts if v.reset_epoch == reset)
        lines[reset] = dict(line)
        winners[reset] = min((d for d, won in line if won), default=None)
        inversions[reset] = sum(a[1] and not b[1] for a, b in zip(line, line[1:]))
    epochs = int(mlflow.get_run(judge_dense(family, judge)).data.params["train.epochs"])
    return winners, inversions, len(verdicts), epochs, lines


def _verification(line: dict) -> dict[str, object]:
    """What verifying the line's flips found and cost, and the answer the probes before it gave.

    The answer without verification is the sparsest winner of the rounds before the first one that
    verified (later narrowing rounds only refine brackets denser than that winner). Verification's cost
    is its own probes and every probe of the search it reopened (the rounds after a verifying winner).
    """
    checks = [p for p in line["probes"] if p.get("verifying")]
    first = min((p["round"] for p in checks), default=None)
    reopened = min((p["round"] for p in checks if p["won"]), default=None)
    before = [p for p in line["probes"] if first is None or p["round"] < first]
    unverified = min((p["density"] for p in before if p["won"]), default=None)
    caused = [p for p in line["probes"] if p.get("verifying") or (reopened is not None and p["round"] > reopened)]
    jobs = len(caused) * line["replicates"]
    return {"verify_jobs": len(checks) * line["replicates"], "reopened_jobs": jobs - len(checks) * line["replicates"],
            "verify_ticket_epochs": jobs * (line["epochs"] - line["reset_epoch"]),
            "verify_found": sorted(p["density"] for p in checks if p["won"]),
            "winner_without_verification": unverified,
            "verification_changed_answer": unverified != line["answer"]["winner"],
            "verified_steps": line["answer"].get("verified_steps", 0)}


def _agreement(probes: list[dict], grid: dict[float, bool]) -> tuple[int, int]:
    """(agreeing, compared): each probe against the grid cell nearest in log density, at most one grid step away."""
    compared = agreeing = 0
    for probe in probes if grid else []:
        nearest = min(grid, key=lambda d: abs(math.log(d / probe["density"])))
        if abs(math.log(nearest / probe["density"])) <= STEP * 1.001:
            compared += 1
            agreeing += grid[nearest] == probe["won"]
    return agreeing, compared


def judge_dense(family: str, judge: object) -> str:
    from lth.report.collect import collect

    return collect(judge.experiment_id, family).finished_dense[0].run_id  # type: ignore[attr-defined]


def _steps(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else abs(math.log(a / b)) / STEP


def _suffix(args: argparse.Namespace) -> str:
    """Where the frontier sweeps of a tolerance live: a tolerance's probes must not count for another's."""
    return "" if args.tolerance == DEFAULT_TOLERANCE else f"-tol{args.tolerance:g}"


def report(args: argparse.Namespace, seconds: dict[str, float]) -> dict[str, object]:
    grid_store, fresh = args.workdir / "grid", args.workdir / f"frontier{_suffix(args)}"
    winners, inversions, grid_jobs, epochs, grid_lines = _grid_winners(grid_store, args.tolerance)
    frontier = json.loads((fresh / "sweeps" / "frontier" / "frontier.json").read_text())
    after = json.loads((grid_store / "sweeps" / f"frontier-after-grid{_suffix(args)}" / "frontier.json").read_text())
    rows = []
    for line, later in zip(frontier["lines"], after["lines"]):
        k = line["reset_epoch"]
        found = line["answer"]["winner"]
        rows.append({"reset_epoch": k, "grid_winner": winners.get(k), "frontier_winner": found,
                     "grid_steps_apart": _steps(found, winners.get(k)), "grid_inversions": inversions.get(k, 0),
                     "frontier_inversions": len(line["answer"]["inversions"]),
                     "grid_ticket_epochs": len(GRID) * (epochs - k), "frontier_ticket_epochs": line["ticket_epochs"],
                     "frontier_jobs": line["jobs"], "frontier_rounds": line["rounds"],
                     "resolved": line["answer"]["resolved"], "after_grid_jobs": later["jobs"],
                     "after_grid_winner": later["answer"]["winner"], **_verification(line),
                     "agreement": _agreement([p for p in line["probes"] if p["round"] > 0], grid_lines.get(k, {}))})
    grid_cost = sum(r["grid_ticket_epochs"] for r in rows)
    frontier_cost = sum(r["frontier_ticket_epochs"] for r in rows)
    verify_cost = sum(r["verify_ticket_epochs"] for r in rows)
    summary = {"epochs": epochs, "tolerance": args.tolerance, "grid_jobs": grid_jobs, "grid_ticket_epochs": grid_cost,
               "frontier_ticket_epochs": frontier_cost, "ratio": frontier_cost / grid_cost, "seconds": seconds,
               "verify_ticket_epochs": verify_cost, "ratio_without_verification": (frontier_cost - verify_cost) / grid_cost,
               "answers_changed_by_verification": sum(r["verification_changed_answer"] for r in rows),
               "per_round": args.per_round, "resolution": args.resolution, "max_rounds": args.max_rounds,
               "overrides": _common(args), "lines": rows}
    return summary


def _percent(density: float | None) -> str:
    return "none" if density is None else f"{100 * density:.2f}%"


def markdown(summary: dict[str, object]) -> str:
    lines = ["# Frontier sweep against the 20-threshold grid", "",
             f"Setup: `{' '.join(summary['overrides'])}`; E = {summary['epochs']}; tolerance {summary['tolerance']}; "
             f"frontier P = {summary['per_round']}, "
             f"resolution {summary['resolution']}, max_rounds {summary['max_rounds']}.", "",
             "| reset epoch | grid winner | frontier winner | grid steps apart | frontier rounds | frontier jobs "
             "| ticket epochs grid | ticket epochs frontier | grid inversions | after the grid: new jobs, winner "
             "| verifying jobs: winners found | jobs of the reopened search | winner without verification |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["lines"]:  # type: ignore[union-attr]
        apart = "-" if r["grid_steps_apart"] is None else f"{r['grid_steps_apart']:.2f}"
        lines.append(f"| {r['reset_epoch']} | {_percent(r['grid_winner'])} | {_percent(r['frontier_winner'])}"
                     f"{'' if r['resolved'] else ' (unresolved)'} | {apart} | {r['frontier_rounds']} | "
                     f"{r['frontier_jobs']} | {r['grid_ticket_epochs']} | {r['frontier_ticket_epochs']} | "
                     f"{r['grid_inversions']} | {r['after_grid_jobs']}, {_percent(r['after_grid_winner'])} | "
                     f"{r['verify_jobs']}: {', '.join(map(_percent, r['verify_found'])) or 'none'} | "
                     f"{r['reopened_jobs']} | "
                     f"{_percent(r['winner_without_verification'])} |")
    seconds = summary["seconds"]
    lines += ["", f"Ticket epochs: frontier {summary['frontier_ticket_epochs']} of the grid's "
              f"{summary['grid_ticket_epochs']} = **{100 * summary['ratio']:.1f}%** (each also trains one dense parent "
              f"of {summary['epochs']} epochs); without verification (its probes and the searches it reopened: "
              f"{summary['verify_ticket_epochs']} ticket epochs) it would be "
              f"{100 * summary['ratio_without_verification']:.1f}%. Verification changed "
              f"{summary['answers_changed_by_verification']} of {len(summary['lines'])} answers.",  # type: ignore[arg-type]
              "Probes against the grid cell nearest in density (at most one step away): "
              + ", ".join(f"k = {r['reset_epoch']}: {r['agreement'][0]} of {r['agreement'][1]} agree"
                          for r in summary["lines"]) + ".", "",
              "Wall-clock on this machine: " + ", ".join(f"{name} {value / 60:.1f} min"
                                                         for name, value in seconds.items()) + "."]  # type: ignore
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("frontier-bench"))
    parser.add_argument("--reset-epochs", type=int, nargs="+", default=[0, 1, 3])
    parser.add_argument("--per-round", type=int, default=4)
    parser.add_argument("--resolution", type=float, default=0.2)
    parser.add_argument("--max-rounds", type=int, default=4)
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="lth.report_tolerance of every sweep")
    parser.add_argument("--experiment", default=None, help="an experiment preset, e.g. mobilenet_fashion_rewind")
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--overrides", nargs="*", default=[], help="more overrides for every sweep")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reproduction" / "frontier_vs_grid",
                        help="where the .md and .json go (a tolerance other than the default adds -tol<value>)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    timings = args.workdir / "seconds.json"
    seconds = json.loads(timings.read_text()) if timings.exists() else {}
    if not args.report_only:
        common, suffix = _common(args), _suffix(args)
        if "grid" not in seconds:  # the grid's runs do not depend on the tolerance: judged anew, never retrained
            seconds["grid"] = _run(args.workdir / "grid", "grid", [f"prune.threshold={','.join(map(str, GRID))}",
                                                                  *common], args.workdir / "grid.log")
        seconds[f"frontier{suffix}"] = _run(args.workdir / f"frontier{suffix}", "frontier",
                                            [*_frontier_arguments(args), *common],
                                            args.workdir / f"frontier{suffix}.log")
        seconds[f"frontier after the grid{suffix}"] = _run(args.workdir / "grid", f"frontier-after-grid{suffix}",
                                                           [*_frontier_arguments(args), *common],
                                                           args.workdir / f"frontier-after-grid{suffix}.log")
        timings.write_text(json.dumps(seconds))
    shown = ("grid", f"frontier{_suffix(args)}", f"frontier after the grid{_suffix(args)}")
    seconds = {name: seconds[name] for name in shown if name in seconds}
    summary = report(args, seconds)
    text = markdown(summary)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = args.out.parent / (args.out.name + _suffix(args))  # e.g. frontier_vs_grid-tol0.05: a tolerance of its own
    Path(f"{out}.md").write_text(text)
    Path(f"{out}.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
