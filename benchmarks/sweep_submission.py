"""How long a 100-ticket sweep takes to reach the SLURM queue (a benchmark, not a test).

Runs `python -m lth.train cluster=slurm experiment=seed_grid` with a trivially short
schedule in a scratch folder, times each phase from the sweep's own output, counts the
array's tasks in `squeue`, then cancels the array (the point is submission, not training).

    sudo tools/slurm_localhost.sh start
    python benchmarks/sweep_submission.py [--keep]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHORT = ["train.epochs=6", "data.train_limit=64", "train.batch_size=32", "lth.verbose=0",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]


def queued_tasks(array: str) -> int:
    """Tasks of `array` that SLURM lists (pending or running)."""
    done = subprocess.run(["squeue", "-r", "-h", "-j", array, "-o", "%i"], capture_output=True, text=True, check=True)
    return len(done.stdout.split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="let the 100 tasks run instead of cancelling them")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lth-bench-submit-"))
    command = [sys.executable, "-m", "lth.train", "cluster=slurm", "experiment=seed_grid", *SHORT]
    started = time.perf_counter()
    sweep = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marks: dict[str, float] = {}
    array, submit_s = "", 0.0
    for line in sweep.stdout:
        now = time.perf_counter() - started
        if line.startswith("lth: sweep of"):
            marks["sweep validated"] = now
        elif "dense parent(s) first" in line:
            marks["dense job submitted"] = now
        elif found := re.search(r"lth: (\d+) ticket jobs in SLURM array (\d+) \(submitted in ([\d.]+) s\)", line):
            marks["array submitted"] = now
            array, submit_s = found.group(2), float(found.group(3))
            break
    if not array:
        sweep.wait()
        raise SystemExit(f"sweep_submission: the sweep ended before submitting its array; see {folder}")
    tasks = queued_tasks(array)
    print(f"sweep of 100 cells, output in {folder}")
    previous = 0.0
    for phase, at in marks.items():
        print(f"  {phase:<20} at {at:6.1f} s  (+{at - previous:.1f} s)")
        previous = at
    print(f"array {array}: {tasks} tasks queued; sbatch of the array took {submit_s:.2f} s "
          f"({1000 * submit_s / max(tasks, 1):.1f} ms per task)")
    print(f"command to 100 queued tickets, without the dense job's own run time: "
          f"{marks['dense job submitted'] + submit_s:.1f} s (start, validation of 100 cells, sbatch of dense and array)")
    if not args.keep:
        subprocess.run(["scancel", array], check=True)
        sweep.terminate()
        sweep.wait()


if __name__ == "__main__":
    main()
