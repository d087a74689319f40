r"""Does `python -m lth.plan` predict a real SLURM sweep? Plan, then run, at array_parallelism 1 and 2.

On the project's own single-node SLURM (`sudo tools/slurm_localhost.sh start`; 4 GPUs on the node):
1. calibration: one cell, `cluster=slurm`, trains the family's dense parent and one ticket; the
   per-job time outside training is that ticket job's SLURM elapsed time minus its epochs at the
   dense run's epoch time (what `lth.plan` reads from MLflow);
2. for P in 1, 2: print `lth.plan` for a 3-threshold x 2-reset sweep of 2-GPU jobs (two fit on the
   node) with `hydra.launcher.array_parallelism=P`, then run that sweep and time it end to end.
Every job uses one CPU thread (TF_NUM_INTRAOP_THREADS=1 in `hydra.launcher.setup`), as a
`cpus_per_task=1` job should, so two jobs side by side on the 2 cores do not slow each other.

    python benchmarks/plan_vs_slurm.py [--epochs 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THREADS = "hydra.launcher.setup=['export TF_NUM_INTRAOP_THREADS=1','export TF_NUM_INTEROP_THREADS=1']"
JOBS = ["cluster=slurm", "tracking=server", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
        "hydra.launcher.gpus_per_node=2", "hydra.launcher.partition=low", "lth.verbose=0", THREADS]


def _environment() -> dict[str, str]:
    return ({k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
            | {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)})


def _run(folder: Path, module: str, arguments: list[str]) -> tuple[str, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", module, *arguments], cwd=folder, env=_environment(),
                          capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{module} {' '.join(arguments)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout + done.stderr, seconds


def _elapsed_s(job: str) -> float:
    done = subprocess.run(["sacct", "-j", job, "-X", "-n", "-P", "-o", "ElapsedRaw"], capture_output=True, text=True,
                          check=True)
    return float(done.stdout.split()[0])


def main() -> None:
    from tests.support.mlflow_server import start_mlflow_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="train.epochs of every job (digits, 1,437 images)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reproduction" / "plan_vs_slurm.json")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lth-plan-"))
    server = start_mlflow_server(folder / "server")
    common = [*JOBS, f"tracking.uri={server.uri}", f"train.epochs={args.epochs}", "lth.keep_epochs=[0,1]"]
    try:
        output, _ = _run(folder, "lth.train", ["-m", *common, "prune.threshold=0.5", "reset.epoch=1"])
        ticket_job = re.search(r"ticket jobs in SLURM array (\d+)", output).group(1)  # one task: its only line
        plan, _ = _run(folder, "lth.plan", [*common, "--nodes", "1", "--gpus-per-node", "4"])
        epoch_minutes = float(re.search(r"epoch: ([\d.e-]+) min", plan).group(1))
        overhead_s = _elapsed_s(ticket_job) - (args.epochs - 1) * epoch_minutes * 60
        print(f"calibration: epoch {epoch_minutes * 60:.2f} s (dense run), a ticket job spends {overhead_s:.1f} s "
              f"outside training (SLURM elapsed of job {ticket_job})", flush=True)
        rows = []
        for parallel, thresholds in ((1, "0.3,0.6,0.9"), (2, "0.35,0.65,0.95")):
            sweep = [*common, f"hydra.launcher.array_parallelism={parallel}", f"prune.threshold={thresholds}",
                     "reset.epoch=0,1"]
            plan, _ = _run(folder, "lth.plan", [*sweep, "--nodes", "1", "--gpus-per-node", "4",
                                                "--job-overhead-minutes", f"{overhead_s / 60:.4f}"])
            print(plan, flush=True)
            found = re.search(r"wall-clock: ([\d.,]+) (min|h)", plan)
            predicted = float(found.group(1).replace(",", "")) * (60 if found.group(2) == "min" else 3600)
            _, measured = _run(folder, "lth.train", ["-m", *sweep])
            error = measured / predicted - 1
            rows.append({"array_parallelism": parallel, "predicted_s": predicted, "measured_s": measured,
                         "error": error})
            print(f"array_parallelism={parallel}: planned {predicted:.0f} s, measured {measured:.0f} s "
                  f"({100 * error:+.1f}%)", flush=True)
        ratio = rows[0]["measured_s"] / rows[1]["measured_s"]
        print(f"measured speed-up of P=2 over P=1: {ratio:.2f}x; planned "
              f"{rows[0]['predicted_s'] / rows[1]['predicted_s']:.2f}x")
        args.out.write_text(json.dumps({"epochs": args.epochs, "epoch_s": epoch_minutes * 60,
                                        "overhead_s": overhead_s, "runs": rows}, indent=2))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
