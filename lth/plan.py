"""`python -m lth.plan [overrides] --nodes N`: what a sweep will cost on a cluster, before it is submitted.

Takes the sweep exactly as `python -m lth.train -m` would (grid overrides, `experiment=seed_grid`,
or `hydra/sweeper=lth_frontier`), and prints its jobs, GPU-epochs, GPU-hours, wall-clock, and
the speed-up S and efficiency E over one slot, with why S falls short of N (lth.sweep.cluster_schedule).

Epoch times come from `--epoch-minutes`, or from the sweep's dense parent already logged in
MLflow (`train_seconds / epochs_trained`; a parent that is there is reused, so the sweep's dense
stage is then only its reuse job). A frontier sweep is planned for its worst case on a fresh store.

Examples:
    python -m lth.plan experiment=seed_grid --nodes 20 --epoch-minutes 4.5
    python -m lth.plan experiment=seed_frontier --nodes 20 --epoch-minutes 4.5
    python -m lth.plan cluster=slurm prune.threshold=0.5,0.8 reset.epoch=0,1 --nodes 1 --gpus-per-node 4
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from lth.frontier.bracketing import config_of
from lth.frontier.cost import costliest
from lth.frontier.lines import CHOSEN, make_lines, product, split_axes
from lth.sweep.cluster_schedule import Cluster, Job, plan, why
from lth.tracking.identity import dense_hash
from lth.train import CONFIG_DIR

FRONTIER = "FrontierSweeper"  # the frontier sweeper's class (hydra_plugins.lth_frontier)


@dataclass(frozen=True)
class Sweep:
    """The jobs of a sweep, and what to say about them."""

    jobs: list[Job]
    what: str  # e.g. "grid: 100 ticket jobs"
    dense: list[dict]  # the composed groups of each distinct dense parent


def _arguments(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m lth.plan", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1, help="nodes the sweep may use at once")
    parser.add_argument("--gpus-per-node", type=int, default=None, help="GPUs of a node (default: one job per node)")
    parser.add_argument("--gpus-per-job", type=int, default=None,
                        help="GPUs of each job (default: hydra.launcher.gpus_per_node with cluster=slurm, else 1)")
    parser.add_argument("--epoch-minutes", type=float, default=None,
                        help="minutes of one epoch of one job (default: from the dense parent logged in MLflow)")
    parser.add_argument("--job-overhead-minutes", type=float, default=None,
                        help="minutes each job spends outside training (default: the logged dense run's, else 0)")
    return parser.parse_known_args(argv)


def _groups(cfg: DictConfig) -> dict:
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _sweep(overrides: list[str]) -> tuple[Sweep, DictConfig]:
    """Compose the sweep's config and list its jobs (each distinct non-threshold setting composed once)."""
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        base = compose(config_name="train", overrides=plain, return_hydra_config=True)
        params = {str(k): str(v) for k, v in (base.hydra.sweeper.get("params") or {}).items()}
        by_key = {key: f"{key}={value}" for key, value in params.items()}
        by_key.update({o.get_key_element(): o.input_line for o in parsed})  # the command line wins, as in Hydra
        every = parser.parse_overrides(list(by_key.values()))

        def groups_of(chosen: list[str]) -> dict:
            return _groups(compose(config_name="train", overrides=chosen))

        if FRONTIER in str(base.hydra.sweeper.get("_target_", "")):
            return _frontier(every, base, groups_of), base
        return _grid(every, groups_of), base


def _dense_jobs(groups: Sequence[dict]) -> tuple[list[Job], list[dict]]:
    parents = {dense_hash(g): g for g in groups}
    return [Job("dense", int(g["train"]["epochs"]), 0) for g in parents.values()], list(parents.values())


def _ticket_epochs(groups: dict) -> int:
    epochs = int(groups["train"]["epochs"]) - int(groups["reset"]["epoch"])
    return epochs * int(groups["prune"]["levels"]) if groups["prune"]["method"] == "imp" else epochs


def _grid(overrides: Sequence, groups_of) -> Sweep:
    axes: list[list[str]] = []
    for override in overrides:
        key = override.get_key_element()
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() \
            else [override.get_value_element_as_str()]
        axes.append([f"{key}={value}" for value in values])
    cells = product(axes)
    composed: dict[tuple[str, ...], dict] = {}
    jobs = []
    for cell in cells:
        signature = tuple(choice for choice in cell if not choice.lstrip("+~").startswith(CHOSEN + "="))
        if signature not in composed:
            composed[signature] = groups_of(list(signature))
        groups = composed[signature]
        jobs.append(Job("ticket", _ticket_epochs(groups), 1))
    dense, parents = _dense_jobs(list(composed.values()))
    return Sweep(dense + jobs, f"grid: {len(jobs)} ticket jobs", parents)


def _frontier(overrides: Sequence, base: DictConfig, groups_of) -> Sweep:
    node = base.hydra.sweeper.frontier
    config = config_of(node)
    axes, replicates = split_axes(overrides)
    lines = make_lines(axes, replicates, groups_of)
    copies = len(product(replicates))
    worst = costliest(config)  # worst case: (probes, of which verifying) per line in each round
    rounds = [probes for probes, _ in worst]
    jobs = [Job("ticket", line.epochs - line.reset_epoch, stage)
            for line in lines for stage, probes in enumerate(rounds, start=1) for _ in range(probes * copies)]
    dense, parents = _dense_jobs([groups_of([*line.overrides, *r]) for line in lines for r in product(replicates)])
    checks = worst[-1][1] if worst else 0
    if not config.verify_steps:
        verify = "; flips are not verified (frontier.verify_steps=0)"
    elif checks:
        verify = f", the last verifying the flip with {checks} probe(s) below it"
    else:  # the worst case ends unresolved: nothing to verify
        verify = ", the flip still unresolved (so not verified) at the end"
    what = (f"frontier sweep: {len(lines)} line(s) x {copies} replicate(s), at most "
            f"{'+'.join(map(str, rounds))} probes per line in {len(rounds)} round(s){verify}: {len(jobs)} ticket jobs "
            f"in the worst case of a line that flips once (hydra.sweeper.frontier: P={config.per_round}, resolution "
            f"{config.resolution:g}); a line that flips several times takes more: up to P x max_rounds = "
            f"{config.per_round * config.max_rounds} narrowing probes, and each winner found by verification reopens "
            f"its search below it")
    return Sweep(dense + jobs, what, parents)


def _logged_epoch(groups: dict) -> tuple[float, float, str] | None:
    """(epoch minutes, overhead minutes, run id) of the finished dense run of `groups`, if MLflow has one."""
    from lth import tracking
    from lth.tracking import schema

    experiment_id = tracking.existing_experiment(str(groups["tracking"]["uri"]), str(groups["tracking"]["experiment"]))
    if experiment_id is None:
        return None
    run = tracking.finished_run(tracking.find_runs(experiment_id, schema.DENSE_ROLE, dense_hash(groups)))
    if run is None:
        return None
    metrics = run.data.metrics
    seconds, epochs = metrics.get(schema.TRAIN_SECONDS), metrics.get(schema.EPOCHS_TRAINED)
    if not seconds or not epochs:
        return None
    wall = ((run.info.end_time or 0) - (run.info.start_time or 0)) / 1000.0
    return seconds / epochs / 60.0, max(wall - seconds, 0.0) / 60.0, run.info.run_id


def main(argv: Sequence[str] | None = None) -> None:
    args, overrides = _arguments(sys.argv[1:] if argv is None else argv)
    sweep, base = _sweep(overrides)
    launcher = base.hydra.launcher
    job_node_gpus = int(launcher.get("gpus_per_node", 1) or 1)  # a job's GPUs on each of its nodes
    job_gpus = args.gpus_per_job or job_node_gpus * int(launcher.get("nodes", 1) or 1)
    node_gpus = args.gpus_per_node or min(job_gpus, job_node_gpus)
    parallel = int(launcher.get("array_parallelism", 0) or 0)
    # Jobs that fit on a node share it; a job wider than a node takes whole nodes.
    slots = args.nodes * (node_gpus // job_gpus) if job_gpus <= node_gpus else args.nodes // -(-job_gpus // node_gpus)
    slots = max(1, min(slots, parallel) if parallel else slots)
    epoch, overhead, source = args.epoch_minutes, args.job_overhead_minutes, "--epoch-minutes"
    logged = [_logged_epoch(parent) for parent in sweep.dense]  # sweep.jobs starts with these parents' jobs
    if epoch is None and (first := next((found for found in logged if found), None)) is not None:
        epoch, logged_overhead, run_id = first
        overhead = logged_overhead if overhead is None else overhead
        source = f"dense run {run_id} (train_seconds / epochs_trained)"
    reused = sum(found is not None for found in logged)
    jobs = [Job(job.kind, 0, job.stage) if i < len(logged) and logged[i] else job  # reused: only its reuse job
            for i, job in enumerate(sweep.jobs)]
    timed = epoch is not None
    result = plan(jobs, Cluster(slots, job_gpus, epoch if timed else 60.0, overhead or 0.0))  # else hours = epochs
    print(f"lth plan: {sweep.what} after {result.dense_jobs} dense parent(s)")
    print(f"  cluster: {args.nodes} node(s) x {node_gpus} GPUs, {job_gpus} GPUs per job"
          f"{f', array_parallelism {parallel}' if parallel else ''}: N = {slots} jobs at once")
    if timed:
        print(f"  epoch: {epoch:.3g} min from {source}; {overhead or 0:.3g} min per job outside training")
    else:
        print("  epoch: not known (no finished dense run of this sweep in MLflow, no --epoch-minutes): times below are "
              "in epochs of one job; S and E do not depend on it")
    if reused:
        print(f"  {reused} of {len(logged)} dense parent(s) already trained: the dense stage only reuses "
              f"{'it' if reused == 1 else 'them'}")
    unit = _hours if timed else _epochs
    print(f"  jobs: {result.dense_jobs} dense + {result.ticket_jobs} tickets; GPU-epochs {result.gpu_epochs:,.0f}"
          + (f"; GPU-hours {result.gpu_hours:,.1f}" if timed else ""))
    print(f"  wall-clock: {unit(result.wall_hours)} (dense stage {unit(result.serial_hours)}, then "
          f"{'+'.join(map(str, result.waves[1:] or result.waves))} wave(s) of tickets); one slot: "
          f"{unit(result.one_slot_hours)}")
    print(f"  speed-up S = {result.speedup:.2f}, efficiency E = S/N = {result.efficiency:.2f} "
          f"(Amdahl's bound with the dense stage serial: {result.amdahl_speedup:.2f})")
    print(f"  {why(result, unit)}")


def _hours(hours: float) -> str:
    return f"{hours:,.1f} h" if hours >= 1 else f"{hours * 60:.1f} min"


def _epochs(hours: float) -> str:
    """Hours computed at 60 minutes an epoch, as epochs."""
    return f"{hours:,.0f} epochs"


if __name__ == "__main__":
    main()
