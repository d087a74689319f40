"""`stability=on` on a real SLURM cluster: one analysis per cell, each in its own array task; a rerun trains nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.jobs import lth_env
from tests.support.slurm import FAST, command, runs

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster"), pytest.mark.timeout(1800)]


def test_a_stability_sweep_gives_one_analysis_per_cell_and_a_rerun_trains_nothing(
    tmp_path: Path, tracking_server: str, experiment: str
) -> None:
    sweep = command(tracking_server, experiment, "stability=on", "prune.threshold=0,0.8", "reset.epoch=0,2",
                       *FAST)
    done = subprocess.run(sweep, cwd=tmp_path, env=lth_env(), capture_output=True, text=True, timeout=1500)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    all_runs = runs(tracking_server, experiment)
    role = {run.info.run_id: run.data.tags["lth.role"] for run in all_runs}
    analyses = [r for r in all_runs if role[r.info.run_id] == "stability"]
    copies = [r for r in all_runs if role[r.info.run_id] == "stability_copy"]
    cells = sorted((float(r.data.tags["lth.threshold"]), int(r.data.tags["lth.reset_epoch"])) for r in analyses)
    assert cells == [(0.0, 0), (0.0, 2), (0.8, 0), (0.8, 2)]  # one analysis per cell
    # One copy per analysis, and at k=2 the dense network's copy 1 too (its run kept its momentum through epoch 2).
    assert len(copies) == 5 and sum(1 for r in role.values() if r == "ticket") == 2
    assert all(r.info.status == "FINISHED" for r in all_runs)
    jobs = [r.data.tags["lth.slurm_job_id"] for r in analyses]
    assert len(set(jobs)) == 4 and all("_" in job for job in jobs)  # each in its own array task
    assert all(0.0 <= r.data.metrics[split] <= 1.0 for r in analyses for split in ("barrier", "val_barrier"))

    again = subprocess.run(sweep, cwd=tmp_path, env=lth_env(), capture_output=True, text=True, timeout=1500)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert {r.info.run_id for r in runs(tracking_server, experiment)} == set(role)  # nothing new was trained
