r"""What sparsity buys at inference: size, MACs and latency of every structure (the README's export tables).

Two parts, each a table of structure x sparsity with the forms of `python -m lth.export`:

- `random`: MobileNetV2 1.0 at 224x224, 1000 classes, with its seeded random weights (latency
  does not depend on training): masks of each structure at each sparsity from those weights,
  then every form converted and timed. No MLflow, no data.
- `trained`: the tiny MobileNetV2 (a0.35, 32x32) on the bundled digits: a real search through
  `python -m lth.train -m` (one dense parent, a ticket per structure and sparsity, in MLflow
  under `--workdir`; a rerun reuses them), then `python -m lth.export` of every ticket, as a user would.

Latency: TFLite interpreter with XNNPACK, batch 1, `--threads` threads, median of `--runs` runs (at least;
about a second of calls for a fast model), speed-ups paired round by round with their p10-p90 over rounds,
each ticket's files against its own dense.tflite in the same process; then the same benchmark run
again on the written files (the `rerun` column: what `python -m lth.export <run> --latency-only` does).

Examples:
    python benchmarks/sparse_export.py                         # both parts, the README's run
    python benchmarks/sparse_export.py --part random --thresholds 0.5 0.9 --runs 100
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

# (structure, scope): lamp is the default scope; channel is also shown under layer, whose MACs fall with its weights.
VARIANTS = [("none", "lamp"), ("xnnpack_1x1", "lamp"), ("channel", "lamp"), ("channel", "layer")]
FILES = ("dense.tflite", "sparse.tflite", "compact.tflite", "compact_sparse.tflite")


def _rerun(folder: Path, args: argparse.Namespace) -> dict[str, float]:
    """The export's latency benchmark run again on its files (a fresh process): speed-up per file."""
    from lth.export.latency import measure

    timing = measure([folder / name for name in FILES], runs=args.runs, threads=args.threads)
    return {name: timing[name].speedup_over(timing["dense.tflite"]) for name in FILES}


def _row(structure: str, scope: str, threshold: float, report: dict, rerun: dict[str, float]) -> dict:
    forms = {form["name"]: form for form in report["forms"]}
    masked, compact = forms["masked"]["cost"], forms["compact.keras"]["cost"]
    row = {"structure": structure, "scope": scope, "threshold": threshold,
           "macs_compact": compact["macs"] / masked["macs"], "macs_nonzero": masked["nonzero_macs"] / masked["macs"],
           "params_compact": compact["params"] / masked["params"],
           "accuracy": forms["masked"]["test_accuracy"],
           "accuracies_agree": all(form["disagreements"] in (0, None) for form in report["forms"])}
    for name in FILES:
        row[f"{name}:kib"] = forms[name]["size_bytes"] / 1024
        row[f"{name}:ms"] = forms[name]["latency_ms"]
        row[f"{name}:speedup"] = forms[name]["speedup"]
        row[f"{name}:spread"] = (forms[name].get("speedup_p10"), forms[name].get("speedup_p90"))
        row[f"{name}:rerun"] = rerun[name]
    return row


def random_part(args: argparse.Namespace) -> list[dict]:
    """MobileNetV2 1.0 at 224 with random weights: every structure and sparsity, exported and timed."""
    import keras

    from lth.config.cell import ModelConfig
    from lth.export.forms import export_forms
    from lth.export.measured_report import write
    from lth.pruning.channels import channel_masks
    from lth.pruning.scopes import prune_masks
    from lth.pruning.structure import layout
    from lth.training.models import build_model

    model = build_model(ModelConfig("mobilenet_v2", 224, 1000, alpha=1.0), seed=0)
    initial = [weight.numpy() for weight in model.weights]
    rows = []
    for structure, scope in VARIANTS:
        plan = layout(model, structure)
        for threshold in args.thresholds:
            folder = args.workdir / "random" / f"{structure}-{scope}-{threshold}"
            if (folder / "export.json").exists():  # exported before: only the latency is measured again
                rows.append(_row(structure, scope, threshold, json.loads((folder / "export.json").read_text()),
                                 _rerun(folder, args)))
                continue
            for variable, value in zip(model.weights, initial):
                variable.assign(value)
            kernels = {name: model.get_layer(name).kernel.numpy() for name in plan.names}
            masks = channel_masks(kernels, plan.groups, threshold, scope, 0.002) if structure == "channel" else \
                prune_masks(kernels, threshold, scope, min_density=0.002)
            for name, mask in masks.items():
                model.get_layer(name).kernel.assign(kernels[name] * mask)
            started = time.monotonic()
            export = export_forms(model, folder, None, runs=args.runs, threads=args.threads, progress=lambda _: None)
            title = f"MobileNetV2 1.0 at 224, random weights, {structure} ({scope}) at {threshold:.0%}"
            report, _ = write(export, folder, title)
            rows.append(_row(structure, scope, threshold, json.loads(report.read_text()), _rerun(folder, args)))
            print(f"{title}: {time.monotonic() - started:.0f} s", flush=True)
    keras.backend.clear_session()
    return rows


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {
        "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}


def trained_part(args: argparse.Namespace) -> list[dict]:
    """The tiny MobileNetV2 on digits: tickets of every structure trained by lth.train, exported by lth.export."""
    workdir = args.workdir / "trained"
    workdir.mkdir(parents=True, exist_ok=True)
    thresholds = ",".join(map(str, args.thresholds))
    for structure, scope in VARIANTS:
        command = [sys.executable, "-m", "lth.train", "-m", f"prune.structure={structure}", f"prune.scope={scope}",
                   f"prune.threshold={thresholds}", "reset.epoch=1", "lth.verbose=0",
                   f"hydra.sweep.dir={workdir}/multirun/{structure}-{scope}"]
        print("$", " ".join(command[1:]), flush=True)
        subprocess.run(command, cwd=workdir, check=True, env=_environment())
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lth")
    rows = []
    for run in client.search_runs([experiment.experiment_id], "tags.`lth.role` = 'ticket'", max_results=1000):
        structure, scope = run.data.params.get("prune.structure", "none"), run.data.params["prune.scope"]
        threshold = float(run.data.params["prune.threshold"])
        if (structure, scope) not in VARIANTS or threshold not in args.thresholds:
            continue
        folder = workdir / "exports" / run.info.run_id
        if not (folder / "export.json").exists():
            command = [sys.executable, "-m", "lth.export", run.info.run_id, "--out", str(folder), "--runs",
                       str(args.runs), "--threads", str(args.threads)]
            print("$", " ".join(command[1:]), flush=True)
            subprocess.run(command, cwd=workdir, check=True, env=_environment(), capture_output=True)
        rows.append(_row(structure, scope, threshold, json.loads((folder / "export.json").read_text()),
                         _rerun(folder, args)))
    return sorted(rows, key=lambda r: ([v for v in VARIANTS].index((r["structure"], r["scope"])), r["threshold"]))


def table(rows: list[dict], title: str) -> str:
    """The README's table: sizes, MACs, latency and speed-up against dense.tflite, per structure and sparsity."""
    lines = [f"### {title}", "",
             "| structure (scope) | sparsity | test acc. | MACs compacted | MACs non-zero | dense.tflite | "
             "sparse.tflite | compact.tflite | compact_sparse.tflite | speed-ups rerun (sparse, compact) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = [f"{row[f'{name}:kib']:,.0f} KiB, {row[f'{name}:ms']:.3g} ms, {row[f'{name}:speedup']:.2f}×"
                 + ("" if name == "dense.tflite" else " ({:.2f}-{:.2f})".format(*row[f"{name}:spread"]))
                 for name in FILES]
        accuracy = "–" if row["accuracy"] is None else f"{row['accuracy']:.3f}" + (
            "" if row["accuracies_agree"] else " (forms disagree!)")
        lines.append(f"| {row['structure']} ({row['scope']}) | {row['threshold']:.0%} | {accuracy} | "
                     f"{row['macs_compact']:.3f} | {row['macs_nonzero']:.3f} | {' | '.join(cells)} | "
                     f"{row['sparse.tflite:rerun']:.2f}×, {row['compact.tflite:rerun']:.2f}× |")
    return "\n".join(lines)


def figure(rows: list[dict], title: str, path: Path) -> None:
    """Speed-up and file size against sparsity, a line per structure and form: what the tables say, at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (speed, size) = plt.subplots(1, 2, figsize=(11, 4.2))
    for index, (structure, scope) in enumerate(VARIANTS):
        mine = sorted((r for r in rows if (r["structure"], r["scope"]) == (structure, scope)),
                      key=lambda r: r["threshold"])
        if not mine:
            continue
        x = [100 * r["threshold"] for r in mine]
        colour = f"C{index}"
        for name, style in (("compact.tflite", "-"), ("sparse.tflite", ":")):
            label = f"{structure} ({scope}), {name}"
            speed.plot(x, [r[f"{name}:speedup"] for r in mine], style, marker="o", color=colour, label=label)
            size.plot(x, [r[f"{name}:kib"] / 1024 for r in mine], style, marker="o", color=colour, label=label)
    speed.axhline(1.0, color="black", linewidth=0.8)
    speed.set(xlabel="sparsity (%)", ylabel="speed-up over dense.tflite (batch 1)", title="latency")
    size.set(xlabel="sparsity (%)", ylabel="file size (MiB)", title="size (dense.tflite: the top line)", yscale="log")
    size.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2))  # 0.25, 0.5, 1, 2, 4, 8, 16 MiB
    size.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    size.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    size.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["random", "trained", "both"], default="both")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.8, 0.9])
    parser.add_argument("--runs", type=int, default=200, help="timed runs per TFLite file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=ROOT / "reproduce" / "sparse_export")
    parser.add_argument("--table-only", action="store_true", help="tabulate and draw the rows an earlier run saved")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from lth.export.tflite import sparse_kernels_possible

    text = []
    parts = {"random": (random_part, "MobileNetV2 1.0 at 224x224, random weights"),
             "trained": (trained_part, "MobileNetV2 a0.35 at 32x32, digits tickets (k=1)")}
    for name, (measure, title) in parts.items():
        if args.part in (name, "both"):
            saved = args.workdir / f"rows-{name}.json"
            rows = json.loads(saved.read_text()) if args.table_only else measure(args)
            saved.write_text(json.dumps(rows, indent=1))
            text.append(table(rows, title))
            figure(rows, title, args.workdir / f"sparse_export_{name}.png")
    text.append(f"\nLatency: batch 1, {args.threads} threads, median of {args.runs} runs; "
                f"sparse kernels here: {sparse_kernels_possible()[1]}.")
    report = "\n\n".join(text)
    (args.workdir / f"report-{args.part}.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
