"""`python tools/ingest.py hydra/launcher=submitit_slurm` really runs the Spark ingest as a SLURM job."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.jobs import lth_env
from tests.support.paths import REPO_ROOT
from tests.support.small_imagenet import BAD_TRAIN, make_small_imagenet

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


def test_the_ingest_runs_as_a_slurm_job_and_writes_its_manifest(tmp_path: Path) -> None:
    imagenet = make_small_imagenet(tmp_path / "imagenet")
    output = tmp_path / "shards"
    command = [sys.executable, str(REPO_ROOT / "tools" / "ingest.py"), "hydra/launcher=submitit_slurm",
               "hydra.launcher.partition=low", "hydra.launcher.cpus_per_task=2", "hydra.launcher.mem_gb=4",
               "hydra.launcher.timeout_min=30", f"hydra.sweep.dir={tmp_path / 'sweep'}",
               "source=tree", f"source.root={imagenet.tree}", f"source.val_labels={imagenet.val_labels}",
               f"output={output}", "shards.train=3", "shards.val=1", "spark.master='local[2]'",
               "+spark.conf.spark.ui.enabled=false"]
    done = subprocess.run(command, cwd=tmp_path, env=lth_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["splits"]["train"]["images"] == imagenet.good_train
    assert sorted(item["key"] for item in manifest["rejected"]) == sorted(BAD_TRAIN)
    job_ids = {path.name for path in (tmp_path / "sweep" / ".submitit").iterdir() if re.fullmatch(r"\d+(_\d+)?", path.name)}
    assert len(job_ids) == 1, job_ids
    job = job_ids.pop().split("_")[0]
    for _ in range(60):  # the result is back before slurmd has reported the job's end to the accounting
        accounting = subprocess.run(["sacct", "-j", job, "-X", "-n", "-P", "-o", "JobName,State"],
                                    capture_output=True, text=True, check=True, timeout=60).stdout.split()
        if accounting != ["ingest|RUNNING"]:
            break
        time.sleep(0.5)
    assert accounting == ["ingest|COMPLETED"]
