"""Elephas' synchronous SparkModel against lth's `cluster=spark`: one LeNet-300-100 ticket, digits, 2 executors.

The seed project meant to use "Elephas on Spark to accelerate batch training". This trains
the same ticket both ways on Spark `local-cluster[2,1,2048]` (2 executor JVMs, 1 core each):

    .venv/bin/python benchmarks/elephas_comparison.py --json elephas.jsonl   # 5-6 min on 2 cores

1. lth: `python -m lth.train cluster=spark ... train.backend=jax` in a temp folder: a dense parent,
   then the ticket (layer-wise magnitude mask at `--threshold`, reset to epoch 0), both trained by
   2 barrier tasks as one JAX DataParallel run. Read from its MLflow store: images/s =
   optimizer_iterations x batch / `train_seconds` (lth's time of `model.fit`: the first epoch's
   tracing, every epoch's validation and checkpoint logging included), `test_accuracy`, and the
   masked positions non-zero in `weights/final.npz`.
2. Elephas 7.3.0 (benchmarks/elephas_side.py) trains lth's own ticket: `build_model` on TensorFlow,
   the ticket's `weights/start.npz` and `mask.npz` (without the lth side: lth's TF init and
   `prune_masks` of it), lth's digits arrays, `build_optimizer`. Images/s = train images x epochs /
   the driver's wall time of `SparkModel.fit` (after a warm-up job has started both executors'
   Python workers and imported TensorFlow there; each epoch still broadcasts the weights, rebuilds
   and compiles the model from JSON and traces its step on every worker); `worker img/s` counts the
   workers' time inside Keras' `fit` only. Test accuracy is the driver's `evaluate` of the averaged
   weights, leaks the masked positions non-zero in them. Three mask variants:
   `shipped` (MaskConstraint attached and passed as `custom_objects`), `unshipped` (attached, not
   passed) and `driver` (no constraint: masked weights zeroed on the driver before training).

Matched: model, data split, initial weights and mask (lth's ticket's), epochs, optimizer (SGD 0.05,
momentum 0.9, decoupled weight decay 5e-4), and a constant rate (`train.lr_schedule=constant` on both
sides: Elephas deserialises a fresh optimizer on every worker every epoch, so a schedule of the step
count would restart each epoch). Batch: lth's 64 is global (32 rows per task, one all-reduced step);
Elephas' `batch_size` is each worker's, so it gets 64 / 2 = 32: 2 x 32 images per parallel step, the
same steps per epoch. What Elephas cannot match: it averages the workers' weights once per epoch
(model averaging) instead of their gradients every step, its workers' momentum restarts every epoch,
Keras shuffles each partition itself, and it trains the partial last batch (1,293 images an epoch,
lth 1,280).

Elephas pins tensorflow<2.20, numpy<2, pyspark<=4.0.0, flask==2.3.3, h5py==3.11.0 and cython==0.29.33,
so it never enters lth's dependencies: the script makes a throwaway venv (`--without-pip`, from this
interpreter) in the work folder, whose `.pth` file puts this venv's site-packages on its path, and
installs `pip install --no-deps elephas==7.3.0` into it with this venv's pip. What it really needs
(measured by importing `elephas.spark_model` with each pinned module blocked): flask and h5py, at
import time even in synchronous mode (`elephas.parameter.server` imports flask, reached from
`spark_model` and from `worker`, so on the executors too; `spark_model` imports h5py for `save`);
cython not at all; and `tensorflow.python.keras.utils.generic_utils`, which TF 2.21 still ships. With
lth's TF 2.21, Keras 3.15, numpy 2, pyspark 4.3 and flask 3.1 (mlflow's) it trains Keras 3 models.

Masks under Elephas (leaks: masked positions non-zero in the averaged weights on the driver):
`shipped` keeps them exactly 0, since every worker rebuilds the MaskConstraint from the JSON (its
config carries the mask, packed) and applies it after each step, and the average of zeros is zero.
`unshipped` does not train: `model_from_json` fails on the workers with "Could not interpret
constraint identifier" (Keras 3 does not import the `module` a config names), unless that reused
Python worker had imported lth before, which registers the class; so the warm-up imports Elephas
only. `driver`: most masked weights come back non-zero; those that stay 0 never had a gradient
(inputs from always-blank pixels, weights of ReLU units that never fire).

Measured on 2 cores shared with a CI suite (load 2-5), 5 epochs, t=0.8, two full runs: lth's ticket
1,348-1,500 img/s, test accuracy 0.9583, 0 leaks; Elephas `shipped` 322-428 img/s (its workers inside
`fit`: 854-1,312), 0.950-0.958, 0 leaks; `driver` 381-396 img/s, 0.931-0.939, 176,384-176,501 of
212,960 masked weights leaked; `unshipped` failed as above.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIDE = Path(__file__).with_name("elephas_side.py")


def _env(**extra: str) -> dict[str, str]:
    """This environment with lth from this checkout first and no MLflow settings (the default store is used)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", SPARK_LOCAL_IP="127.0.0.1",
               MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", **extra)
    return env


def _tail(log: Path) -> str:
    """The last line of a log that names an error (else its last line)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "rror" in line]
    return (errors or lines or ["(no output)"])[-1][:300]


def overrides(args: argparse.Namespace) -> list[str]:
    """The cell both sides train, as lth's Hydra overrides."""
    return ["model=lenet_300_100", "data=digits", f"train.epochs={args.epochs}", f"train.batch_size={args.batch}",
            "train.lr_schedule=constant", f"prune.threshold={args.threshold}", "prune.scope=layer", "reset.epoch=0"]


def lth_side(args: argparse.Namespace, work: Path) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Run lth's `cluster=spark` on the cell; its dense and ticket rows, and the ticket's files by artifact name."""
    from lth.tracking import schema

    folder = work / "lth"
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "lth.train", "cluster=spark", f"spark.master={args.master}",
               f"spark.workers={args.workers}", "train.backend=jax", *overrides(args), "lth.verbose=2"]
    log = work / "lth.log"
    load = round(os.getloadavg()[0], 2)  # a shared machine: what else was running shows here
    started = time.perf_counter()
    with log.open("wb") as handle:
        done = subprocess.run(command, cwd=folder, env=_env(), stdout=handle, stderr=subprocess.STDOUT,
                              timeout=args.timeout, check=False)
    wall = round(time.perf_counter() - started, 1)
    # A command that failed after its runs finished (e.g. while leaving the JAX group) still has figures.
    failure = {} if done.returncode == 0 else {"command_error": f"exit {done.returncode}: {_tail(log)}"}
    import numpy as np
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lth")
    found = client.search_runs([experiment.experiment_id]) if experiment else []
    rows: list[dict[str, Any]] = []
    files: dict[str, Path] = {}
    for role in (schema.DENSE_ROLE, schema.TICKET_ROLE):
        stage = [run for run in found if run.data.tags.get(schema.ROLE) == role]
        if len(stage) != 1 or stage[0].info.status != schema.FINISHED:
            states = [run.info.status for run in stage]
            rows.append({"impl": f"lth_spark_{role}", "error": f"{role} runs in MLflow: {states}, expected one "
                         f"FINISHED; {failure.get('command_error', '')}"})
            continue
        run, metrics = stage[0], stage[0].data.metrics
        images = metrics[schema.OPTIMIZER_ITERATIONS] * args.batch  # global batches the run stepped through
        row = {"impl": f"lth_spark_{role}", "epochs": int(metrics[schema.EPOCHS_TRAINED]), "batch": str(args.batch),
               "img_per_s": round(images / metrics[schema.TRAIN_SECONDS], 1),
               "train_s": round(metrics[schema.TRAIN_SECONDS], 2), "test_accuracy": round(metrics[schema.TEST_ACCURACY], 4),
               "processes": run.data.tags.get("lth.processes"), "command_wall_s": wall, "run_id": run.info.run_id,
               "load_avg": load, **failure}
        if role == schema.TICKET_ROLE:
            files = {name: Path(client.download_artifacts(run.info.run_id, name, str(work / "ticket")))
                     for name in (schema.MASK, schema.START_WEIGHTS, schema.FINAL_WEIGHTS)}
            with np.load(files[schema.MASK]) as masks, np.load(files[schema.FINAL_WEIGHTS]) as final:
                row["masked"] = int(sum((~masks[n]).sum() for n in masks.files))
                row["leaks"] = sum(int(np.count_nonzero(final[f"{n}/kernel"][~masks[n]])) for n in masks.files)
        rows.append(row)
    return rows, files


def elephas_venv(work: Path, version: str) -> Path:
    """A throwaway venv with Elephas (no dependencies) that sees this venv's packages; returns its interpreter."""
    where = work / "elephas-venv"
    python = where / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # A path line in a .pth is appended to sys.path: Elephas is found in this venv, everything else in
    # ours (lth itself comes from PYTHONPATH, first). Its pip (`python -m pip` finds ours) installs here.
    Path(site, "lth_project.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", f"elephas=={version}"], check=True)
    return python


def elephas_side(args: argparse.Namespace, work: Path, python: Path, variant: str,
                 ticket: dict[str, Path]) -> dict[str, Any]:
    """One Elephas training in its own process and Spark application (benchmarks/elephas_side.py)."""
    from lth.tracking import schema

    out, log = work / f"elephas_{variant}.json", work / f"elephas_{variant}.log"
    command = [str(python), str(SIDE), "--out", str(out), "--variant", variant, "--workers", str(args.workers),
               "--master", args.master, "--threshold", str(args.threshold)]
    if ticket:
        command += ["--start", str(ticket[schema.START_WEIGHTS]), "--mask", str(ticket[schema.MASK])]
    env = _env(PYSPARK_PYTHON=str(python), PYSPARK_DRIVER_PYTHON=str(python))
    load = round(os.getloadavg()[0], 2)
    with log.open("wb") as handle:
        done = subprocess.run([*command, "--", *overrides(args)], cwd=work, env=env, stdout=handle,
                              stderr=subprocess.STDOUT, timeout=args.timeout, check=False)
    if not out.exists():
        return {"impl": f"elephas_{variant}", "error": f"exit {done.returncode}: {_tail(log)}", "load_avg": load}
    return {**json.loads(out.read_text()), "load_avg": load}


def table(rows: list[dict[str, Any]]) -> str:
    """The figures as a plain-text table (an error row shows its one line)."""
    head = f"{'side':<20} {'img/s':>8} {'train s':>8} {'worker img/s':>12} {'test acc':>8} {'leaks / masked':>16} " \
           f"{'epochs':>6} {'batch':>6} {'load':>5}"
    lines = [head, "-" * len(head)]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['impl']:<20} failed: {row['error']}")
            continue
        leaks = f"{row['leaks']} / {row['masked']}" if "leaks" in row else "(dense)"
        lines.append(f"{row['impl']:<20} {row['img_per_s']:>8.1f} {row['train_s']:>8.2f} "
                     f"{row.get('worker_img_per_s', ''):>12} {row['test_accuracy']:>8.4f} {leaks:>16} "
                     f"{row['epochs']:>6} {row['batch']:>6} {row['load_avg']:>5}")
    lines += [f"lth: the command failed after its runs finished: {error}"
              for error in dict.fromkeys(row["command_error"] for row in rows if "command_error" in row)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64, help="global batch (Elephas: batch / workers per worker)")
    parser.add_argument("--threshold", type=float, default=0.8, help="fraction of the weights the mask removes")
    parser.add_argument("--workers", type=int, default=2, help="Spark tasks training at once")
    parser.add_argument("--master", default="local-cluster[2,1,2048]")
    parser.add_argument("--sides", nargs="+", choices=["lth", "elephas"], default=["lth", "elephas"])
    parser.add_argument("--variants", nargs="+", choices=["shipped", "unshipped", "driver"],
                        default=["shipped", "unshipped", "driver"], help="Elephas' mask variants")
    parser.add_argument("--elephas-version", default="7.3.0")
    parser.add_argument("--work-dir", type=Path, help="keep the venv, stores and logs here (default: a temp folder)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds for each training process")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON lines here")
    args = parser.parse_args()
    if args.batch % args.workers:
        parser.error(f"--batch {args.batch} does not split over {args.workers} workers")
    sys.path.insert(0, str(ROOT))  # lth from this checkout (its schema names)
    with tempfile.TemporaryDirectory(prefix="elephas-comparison-") as temporary:
        work = (args.work_dir or Path(temporary)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        ticket: dict[str, Path] = {}
        if "lth" in args.sides:
            try:
                rows, ticket = lth_side(args, work)
            except Exception as error:  # e.g. a store without the artifacts: a row that says so, Elephas still runs
                rows = [{"impl": "lth_spark", "error": f"{type(error).__name__}: {error}"[:300]}]
        if "elephas" in args.sides:
            python = elephas_venv(work, args.elephas_version)
            rows += [elephas_side(args, work, python, variant, ticket) for variant in args.variants]
    print(table(rows))
    if args.json:
        args.json.write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    main()
