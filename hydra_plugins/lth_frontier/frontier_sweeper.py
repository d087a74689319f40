"""`hydra/sweeper=lth_frontier`: for each reset epoch, the sparsest winning ticket, in rounds of ticket jobs.

Where the basic sweeper launches a fixed grid, this one chooses the thresholds (lth.frontier.bracketing):
each round launches, through the configured launcher (so `cluster=slurm` makes a round one
array, after the dense parents' jobs in the first), at most `per_round` thresholds per line
with every replicate, then reads back which won by the report's own rule (lth.frontier.judge)
and narrows to where winning flips. A resolved flip is then verified: `verify_steps` probes
sparser than it, in a round of their own or beside other lines' narrowing; a winner there is
reported as an inversion and the line's search reopens below it. Every probe is an ordinary ticket job: the report,
`load_ticket` and reuse treat it like a grid's cell, and cells already in MLflow count before
the first round. At the end it prints the answer per line and writes frontier.json and
frontier.png to the sweep directory and to each line's dense parents in MLflow.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from lth import tracking
from lth.config.cell import TrackingConfig
from lth.config.pieces import piece
from lth.config.vocabulary import ConfigError
from lth.frontier.bracketing import (
    FrontierConfig,
    after_round,
    config_of,
    next_probes,
    pretty,
    rounded,
    threshold_of,
    verifying,
)
from lth.frontier.judge import Judge, Verdict, unswept
from lth.frontier.lines import Line, make_lines, product, split_axes
from lth.frontier.outcome import PRIOR_ROUND, LineRecord, Probe, epochs_trained, table, write_figure, write_json

log = logging.getLogger("lth")


def frontier_config(node: DictConfig) -> FrontierConfig:
    """The typed `hydra.sweeper.frontier` node; a bad value stops the sweep with one line."""
    try:
        return config_of(node)
    except (ValueError, TypeError) as error:
        raise SystemExit(f"lth: error: hydra.sweeper.frontier: {error}") from None


class FrontierSweeper(Sweeper):
    """Searches each line's sparsest winning ticket in rounds of ticket jobs."""

    def __init__(self, frontier: DictConfig, params: dict[str, str] | None = None) -> None:
        super().__init__()
        self.search = frontier_config(frontier)
        self.params = dict(params or {})  # sweep axes from a config, as the basic sweeper's `params`
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def _compose(self, overrides: list[str]) -> dict[str, Any]:
        """One job's config groups, resolved, without the hydra node."""
        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg):
            del cfg["hydra"]
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]

    def _lines(self, arguments: list[str]) -> tuple[list[Line], list[list[str]]]:
        """The lines and the replicate overrides of every probe; a sweep the search cannot run stops here."""
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        try:
            axes, replicates = split_axes(parser.parse_overrides(
                [*(f"{key}={value}" for key, value in self.params.items()), *arguments]))
            return make_lines(axes, replicates, self._compose), product(replicates)
        except ConfigError as error:
            raise SystemExit(f"lth: error: {error}") from None

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        assert self.config is not None and self.launcher is not None
        lines, replicates = self._lines(arguments)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        judge = Judge(piece(TrackingConfig, self.config.tracking, "tracking"), float(self.config.lth.report_tolerance))
        records = [LineRecord(line.label, line.reset_epoch, line.epochs, len(replicates)) for line in lines]
        self._record_prior(judge, lines, records)
        returns: list[Sequence[JobReturn]] = []
        dense_runs: set[str] = set()
        number = 0
        for round_number in itertools.count(1):  # ends: each reopening moves a line's winner strictly sparser, in range
            plan = {i: probes for i, record in enumerate(records)
                    if (probes := next_probes(record.outcomes, self.search, record.narrowed))}
            if not plan:
                break
            checking = {i: verifying(records[i].outcomes, self.search, densities) for i, densities in plan.items()}
            batch, owners = [], []
            for i, densities in plan.items():
                log.info("frontier round %d, %s: probing %s", round_number, lines[i].label, pretty(densities))
                for density in densities:
                    batch += [lines[i].job(threshold_of(density), replicate) for replicate in replicates]
                    owners += [i] * len(replicates)
            print(f"lth: frontier round {round_number}: {len(batch)} ticket jobs "
                  f"({'; '.join(_planned(lines[i].label, d, checking[i]) for i, d in plan.items())})", flush=True)
            results = self.launcher.launch(batch, initial_job_idx=number)
            number += len(batch)
            returns.append(results)
            self._check(results, round_number)
            for owner, result in zip(owners, results):
                record = result.return_value if isinstance(result.return_value, dict) else {}
                records[owner].epochs_trained += epochs_trained(record)
                dense_runs.add(str(record.get("dense_run_id", "")))
            for i in plan:
                records[i].rounds += 1
            self._record_round(judge, lines, records, plan, checking, round_number)
        self._finish(records, sweep_dir, {run for run in dense_runs if run})
        return returns

    @staticmethod
    def _check(results: Sequence[JobReturn], round_number: int) -> None:
        """A failed job leaves its probe unjudged: stop, as the basic sweeper does (a rerun reuses the rest)."""
        failed = [r for r in results if r.status == JobStatus.FAILED]
        if failed:
            raise RuntimeError(f"frontier round {round_number}: {len(failed)} of {len(results)} jobs failed, so their "
                               f"thresholds cannot be judged (first: {failed[0]._return_value!r}); run the same "
                               f"command again: every finished probe is reused")

    def _record_prior(self, judge: Judge, lines: Sequence[Line], records: Sequence[LineRecord]) -> None:
        """The finished cells of each line already in MLflow (a grid's, an earlier frontier's).

        A cell counts only when it was judged on every seed and control this sweep asks for. A
        family whose dense parents have seeds the sweep does not list stops here, before anything
        trains: the report would judge every probe on those seeds too, and no probe would finish.
        """
        families = {family: judge.judged(family) for family in {line.family for line in lines}}  # one read each
        for line, record in zip(lines, records):
            replicates, verdicts = families[line.family]
            extra = unswept(replicates, line.seeds, line.data_seeds)
            if extra:
                named = ", ".join(f"train.seed={seed} train.data_seed={data}" for seed, data in extra)
                raise SystemExit(f"lth: error: {line.label}: MLflow already holds dense parents of {named} for this "
                                 f"sweep, which the report judges every ticket on; sweep those train.seed and "
                                 f"train.data_seed values too")
            for verdict in verdicts.values():
                if verdict.covers(line.seeds, line.controls, line.data_seeds) and verdict.reset_epoch == line.reset_epoch \
                        and line.cell(verdict.threshold) == verdict.cell:
                    record.probes.append(_probe(verdict, PRIOR_ROUND))
            if record.probes:
                print(f"lth: frontier {line.label}: {len(record.probes)} finished cells found in MLflow count "
                      f"as probes", flush=True)

    def _record_round(self, judge: Judge, lines: Sequence[Line], records: Sequence[LineRecord],
                      plan: dict[int, list[float]], checking: dict[int, list[float]], round_number: int) -> None:
        """Judge this round's probes; one the report cannot judge although its jobs finished stops the sweep.

        A probe that verified a flip and won is an inversion: the line's search reopens below it.
        """
        families: dict[str, dict[str, Verdict]] = {}
        for i, densities in plan.items():
            if lines[i].family not in families:  # one MLflow read per family and round
                families[lines[i].family] = judge.verdicts(lines[i].family)
            verdicts = families[lines[i].family]
            for density in densities:
                verdict = verdicts.get(lines[i].cell(threshold_of(density)))
                if verdict is None or not verdict.covers(lines[i].seeds, lines[i].controls, lines[i].data_seeds):
                    raise RuntimeError(
                        f"frontier {lines[i].label} t={threshold_of(density)}: its jobs finished but the report "
                        f"cannot judge the cell ({verdict.why_not if verdict else 'no run found in MLflow'}); every "
                        f"seed and data seed of the family's dense parents must be swept (train.seed=..., "
                        f"train.data_seed=...)")
                records[i].probes.append(_probe(verdict, round_number, density in checking[i]))
            judged = [p for p in records[i].probes if p.round == round_number]
            won, lost = (sorted(p.density for p in judged if p.won is outcome) for outcome in (True, False))
            found = sorted(p.density for p in judged if p.verifying and p.won)
            records[i].narrowed = after_round(records[i].narrowed, bool(found))
            print(f"lth: frontier round {round_number}, {lines[i].label}: won {pretty(won) or 'none'}; "
                  f"lost {pretty(lost) or 'none'}"
                  + (f"; verification found a winner below the flip ({pretty(found)}): NOT MONOTONE, the search "
                     f"reopens below it" if found else ""), flush=True)

    def _finish(self, records: Sequence[LineRecord], sweep_dir: Path, dense_runs: set[str]) -> None:
        """Print the answer of every line; write frontier.json and frontier.png, also to the dense parents."""
        print("\nlth: frontier sweep\n" + table(records, self.search), flush=True)
        files = [write_json(records, self.search, sweep_dir / "frontier.json"),
                 write_figure(records, self.search, sweep_dir / "frontier.png")]
        print(f"lth: frontier results in {files[0]} and {files[1]}", flush=True)
        for run_id in sorted(dense_runs):
            for path in files:
                tracking.log_to_run(run_id, files={"frontier": path})


def _probe(verdict: Verdict, round_number: int, verifies: bool = False) -> Probe:
    return Probe(rounded(1.0 - verdict.threshold), round_number, verdict.won, verdict.why_not, verdict.chosen_mean,
                 verdict.dense_mean, verifies)


def _planned(label: str, densities: Sequence[float], checking: Sequence[float]) -> str:
    """`reset.epoch=1: 5.08%, 3.28% (verifying 3.28%)` for a round's line."""
    return f"{label}: {pretty(densities)}" + (f" (verifying {pretty(checking)})" if checking else "")
