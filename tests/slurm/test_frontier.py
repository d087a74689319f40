"""`hydra/sweeper=lth_frontier` with `cluster=slurm`: its dense parent's job once, then one array per round."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.jobs import lth_env
from tests.support.slurm import FAST, command, runs, sacct

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster"), pytest.mark.timeout(1800)]


def test_a_frontier_sweep_trains_its_dense_parent_once_then_submits_one_array_per_round(
    tmp_path: Path, tracking_server: str, experiment: str
) -> None:
    sweep_dir = tmp_path / "sweep"
    done = subprocess.run(
        command(tracking_server, experiment, "hydra/sweeper=lth_frontier", "reset.epoch=1",
                 "hydra.sweeper.frontier.per_round=2", "hydra.sweeper.frontier.max_rounds=2",
                 f"hydra.sweep.dir={sweep_dir}", *FAST),
        cwd=tmp_path, env=lth_env(), capture_output=True, text=True, timeout=1500)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    rounds = [int(jobs) for _, jobs in re.findall(r"lth: frontier round (\d+): (\d+) ticket jobs", output)]
    arrays = re.findall(r"lth: (\d+) ticket jobs in SLURM array (\d+)", output)
    assert len(rounds) == 2 and [int(jobs) for jobs, _ in arrays] == rounds  # one sbatch --array per round
    assert len({array for _, array in arrays}) == 2
    assert len(re.findall(r"dense parent\(s\) first, as SLURM job\(s\) (\d+)", output)) == 1  # round 1 only
    for jobs, array in arrays:
        tasks = sacct(array)
        assert len(tasks) == int(jobs) and all(task["state"] == "COMPLETED" for task in tasks), tasks

    all_runs = runs(tracking_server, experiment)
    dense = [r for r in all_runs if r.data.tags["lth.role"] == "dense"]
    tickets = [r for r in all_runs if r.data.tags["lth.role"] == "ticket"]
    assert len(dense) == 1 and len(tickets) == sum(rounds)
    assert len({r.data.tags["lth.threshold"] for r in tickets}) == sum(rounds)  # no threshold probed twice
    jobs_of = {r.data.tags["lth.slurm_job_id"].split("_")[0] for r in tickets}
    assert jobs_of == {array for _, array in arrays}
    found = json.loads((sweep_dir / "frontier.json").read_text())
    assert [line["rounds"] for line in found["lines"]] == [2] and found["lines"][0]["jobs"] == sum(rounds)
    from mlflow.tracking import MlflowClient

    logged = {a.path for a in MlflowClient(tracking_uri=tracking_server).list_artifacts(dense[0].info.run_id, "frontier")}
    assert logged == {"frontier/frontier.json", "frontier/frontier.png"}
