r"""Instability analysis on Fashion-MNIST: error barrier against reset epoch k (Frankle et al., ICML 2020).

Trains through `python -m lth.train -m ... stability=on` (everything lands in MLflow under
`--workdir`; a rerun reuses every finished run, copy and analysis), then reads every
`stability` run back and prints, and writes as Markdown, JSON and a figure, the barrier of
- MobileNetV2 a0.35 at 32x32 (experiment=mobilenet_fashion_rewind): the dense network and
  one-shot LAMP tickets (default 80%) at each reset epoch k, under both BatchNorm modes
  (recompute, then interpolate: the copies are reused, only the paths are walked again);
- LeNet-300-100 (experiment=lenet_fashion_imp's recipe, one-shot instead of IMP) at k = 0.

Examples:
    python benchmarks/stability_fashion.py                       # the README's run
    python benchmarks/stability_fashion.py --models mobilenet --reset-epochs 0 2 --epochs 3 --train-limit 2000
    python benchmarks/stability_fashion.py --report-only         # tabulate what --workdir already holds
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

PRESETS = {"mobilenet": "mobilenet_fashion_rewind", "lenet": "lenet_fashion_imp"}
EXTRA = {"lenet": ["prune.method=magnitude", "prune.layer_rates=null"]}  # one-shot: stability analyses no IMP job


def _sweep(workdir: Path, model: str, thresholds: list[float], resets: list[int], bn: str,
           args: argparse.Namespace) -> float:
    """Run one stability sweep; returns its wall seconds."""
    keep = sorted(set(resets))
    command = [sys.executable, "-m", "lth.train", "-m", f"experiment={PRESETS[model]}", "stability=on",
               f"stability.bn={bn}", f"prune.threshold={','.join(map(str, thresholds))}",
               f"reset.epoch={','.join(map(str, resets))}", f"lth.keep_epochs=[{','.join(map(str, keep))}]",
               "lth.verbose=0", f"hydra.sweep.dir={workdir}/multirun/{model}-{bn}", *EXTRA.get(model, [])]
    if args.epochs is not None:
        command.append(f"train.epochs={args.epochs}")
    if args.train_limit is not None:
        command.append(f"data.train_limit={args.train_limit}")
    print("$", " ".join(command[1:]), flush=True)
    started = time.monotonic()
    subprocess.run(command, cwd=workdir, check=True, env={"PYTHONPATH": str(ROOT), **_environment()})
    return time.monotonic() - started


def _environment() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {"TF_CPP_MIN_LOG_LEVEL": "2"}


def _collect(workdir: Path) -> list[dict[str, object]]:
    """Every finished stability analysis in the work directory's store."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from lth.tracking import schema

    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")
    client = MlflowClient()
    experiment = client.get_experiment_by_name("lth")
    rows = []
    for run in client.search_runs([experiment.experiment_id], f"tags.`{schema.ROLE}` = '{schema.STABILITY_ROLE}'",
                                  max_results=5000):
        if run.info.status != schema.FINISHED:
            continue
        analysed = client.get_run(run.data.tags[schema.ANALYSED_RUN])
        dense_params = client.get_run(run.data.tags[schema.DENSE_RUN]).data.params
        errors = [m.value for m in sorted(client.get_metric_history(run.info.run_id, schema.PATH_ERROR),
                                          key=lambda m: m.step)]
        rows.append({"model": dense_params.get("model.name"), "bn": run.data.params.get("stability.bn"),
                     "threshold": float(run.data.tags[schema.THRESHOLD]), "k": int(run.data.tags[schema.RESET_EPOCH]),
                     "barrier": run.data.metrics[schema.BARRIER], "val_barrier": run.data.metrics.get(schema.VAL_BARRIER),
                     # lth.stable is validation's; an analysis without a validation barrier was judged on test
                     "stable": (run.data.tags.get(schema.STABLE) == "true"
                                if schema.VAL_BARRIER in run.data.metrics else None),
                     "end_errors": [errors[0], errors[-1]], "max_error": max(errors),
                     "analysed_test_accuracy": analysed.data.metrics.get(schema.TEST_ACCURACY),
                     "epochs": int(dense_params.get("train.epochs", 0))})
    return sorted(rows, key=lambda r: (str(r["model"]), str(r["bn"]), r["threshold"], r["k"]))


def _markdown(rows: list[dict[str, object]]) -> str:
    lines = ["| model | BatchNorm | network | k | test barrier | validation barrier | stable on validation (< 2%) "
             "| test error at the ends | max test error on the path |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        network = "dense" if r["threshold"] == 0 else f"{100 * float(r['threshold']):.0f}% pruned"
        ends = ", ".join(f"{100 * e:.2f}%" for e in r["end_errors"])  # type: ignore[union-attr]
        val = "" if r["val_barrier"] is None else f"{100 * float(r['val_barrier']):.2f}%"  # type: ignore[arg-type]
        lines.append(f"| {r['model']} | {r['bn']} | {network} | {r['k']} | {100 * float(r['barrier']):.2f}% | {val} | "
                     f"{'' if r['stable'] is None else 'yes' if r['stable'] else 'no'} | {ends} | "
                     f"{100 * float(r['max_error']):.2f}% |")
    return "\n".join(lines) + "\n"


def _figure(rows: list[dict[str, object]], path: Path) -> None:
    from lth.stability.path_figures import barrier_figure, save

    lines: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r["model"] != "mobilenet_v2":
            continue
        network = "dense" if r["threshold"] == 0 else f"{100 * float(r['threshold']):.0f}% pruned"
        lines.setdefault(f"{network}, BN {r['bn']}", []).append((int(r["k"]), float(r["barrier"])))
    if lines:
        save(barrier_figure(lines, 0.02, "MobileNetV2 a0.35 on Fashion-MNIST: error barrier against reset epoch"), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("stability-fashion"))
    parser.add_argument("--models", nargs="+", default=["mobilenet", "lenet"], choices=sorted(PRESETS))
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.0, 0.8])
    parser.add_argument("--reset-epochs", nargs="+", type=int, default=[0, 1, 2, 4, 9])
    parser.add_argument("--bn", nargs="+", default=["recompute", "interpolate"])
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs (a reduced check)")
    parser.add_argument("--train-limit", type=int, default=None, help="override data.train_limit")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "reproduction" / "stability_fashion")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.workdir = args.workdir.resolve()
    seconds = {}
    if not args.report_only:
        for model in args.models:
            resets = args.reset_epochs if model == "mobilenet" else [0]
            for bn in args.bn if model == "mobilenet" else ["recompute"]:  # LeNet has no BatchNorm
                seconds[f"{model}-{bn}"] = round(_sweep(args.workdir, model, args.thresholds, resets, bn, args), 1)
    rows = _collect(args.workdir)
    table = _markdown(rows)
    print(table)
    print("sweep seconds:", seconds)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".md").write_text(table)
    args.output.with_suffix(".json").write_text(json.dumps({"rows": rows, "sweep_seconds": seconds}, indent=2))
    _figure(rows, args.output.with_suffix(".png"))


if __name__ == "__main__":
    main()
