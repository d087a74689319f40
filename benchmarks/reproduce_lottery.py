r"""Reproduce a published lottery-ticket result offline, and measure MobileNetV2's own.

Both modes train through `python -m lth.train -m` (everything lands in MLflow under
`--workdir`, and a rerun reuses every finished run), then read the runs back and print
one table per measure, write them as Markdown and JSON, and draw the figure.

lenet      Frankle & Carbin (ICLR 2019), LeNet-300-100 on Fashion-MNIST
           (experiment=lenet_fashion_imp): iterative pruning, 20% per layer per level and
           10% of the output layer, reset to the initialisation. At every level: the
           ticket, the reinit control (the ticket's mask, fresh weights) and the
           random-mask control (the ticket's counts per layer at random positions).
           Accuracy is test accuracy at the early-stop epoch (minimum validation loss),
           as in the paper; the final-epoch figures follow in a second table.
mobilenet  MobileNetV2 a0.35 at 32x32 on Fashion-MNIST (experiment=mobilenet_fashion_rewind):
           one-shot LAMP tickets at several sparsities and reset epochs k, each with its
           reinit control (Frankle et al. 2020: late resetting).

Examples:
    python benchmarks/reproduce_lottery.py lenet                 # the README's run: 3 seeds, 12 levels
    python benchmarks/reproduce_lottery.py lenet --seeds 0 --levels 2 --epochs 2 --train-limit 3000   # a reduced check
    python benchmarks/reproduce_lottery.py mobilenet             # 2 seeds, t in {0.8, 0.9, 0.95}, k in {0, 1, 2}
    python benchmarks/reproduce_lottery.py mobilenet --seeds 0 --thresholds 0.9 --reset-epochs 0 1 \
        --epochs 3 --train-limit 4000                            # a reduced check
    python benchmarks/reproduce_lottery.py lenet --report-only   # tabulate what --workdir already holds
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

PRESETS = {"lenet": "lenet_fashion_imp", "mobilenet": "mobilenet_fashion_rewind"}
CONTROLS = {"lenet": ("none", "reinit", "random_mask"), "mobilenet": ("none", "reinit")}
KIND_NAMES = {"imp": "ticket", "imp_reinit": "reinit", "imp_random_mask": "random", "ticket": "ticket",
              "reinit": "reinit", "random_mask": "random"}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("mode", choices=sorted(PRESETS), help="lenet (Frankle & Carbin IMP) or mobilenet (rewinding)")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: lenet 0 1 2, mobilenet 0 1)")
    parser.add_argument("--levels", type=int, help="lenet: IMP levels (default 12: 6.95%% of weights remain)")
    parser.add_argument("--epochs", type=int, help="epochs per training (default: the preset's)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.8, 0.9, 0.95], help="mobilenet: sparsities")
    parser.add_argument("--reset-epochs", type=int, nargs="+", default=[0, 1, 2], help="mobilenet: reset epochs k")
    parser.add_argument("--train-limit", type=int, help="training images kept (default: the preset's)")
    parser.add_argument("--backend", choices=["tensorflow", "jax"], help="Keras backend (default: tensorflow)")
    parser.add_argument("--workdir", type=Path, help="MLflow store, state and outputs (default: reproduce/<mode>)")
    parser.add_argument("--override", nargs="*", default=[], help="more Hydra overrides, e.g. data.path=DIR")
    parser.add_argument("--report-only", action="store_true", help="train nothing; tabulate the finished runs")
    return parser.parse_args()


def _overrides(args: argparse.Namespace, workdir: Path) -> list[str]:
    """The overrides every job shares (no sweep axes), pointing all state at `workdir`."""
    values = [f"experiment={PRESETS[args.mode]}", f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}",
              f"tracking.experiment={PRESETS[args.mode]}", f"lth.state_dir={workdir / '.lth'}",
              f"lth.report_dir={workdir / 'reports'}", "lth.verbose=2"]
    optional = {"prune.levels": args.levels, "train.epochs": args.epochs, "data.train_limit": args.train_limit,
                "train.backend": args.backend}
    return values + [f"{key}={value}" for key, value in optional.items() if value is not None] + list(args.override)


def _sweep(args: argparse.Namespace) -> list[str]:
    """The sweep axes, seeds outermost, so each finished seed is a complete replicate."""
    axes = [f"train.seed={','.join(str(seed) for seed in args.seeds)}"]
    if args.mode == "mobilenet":
        axes += [f"prune.threshold={','.join(str(t) for t in args.thresholds)}",
                 f"reset.epoch={','.join(str(k) for k in args.reset_epochs)}"]
    return axes + [f"prune.control={','.join(CONTROLS[args.mode])}"]


def _compose(overrides: list[str]) -> object:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def _collect(args: argparse.Namespace, shared: list[str]) -> tuple[list, list, object]:
    """(dense runs, sparse points of the requested cells, the seed-0 config) from the workdir's store."""
    import mlflow

    from lth.report.collect import collect
    from lth.tracking.identity import cell_key, family_hash

    cfg = _compose(shared + [f"train.seed={args.seeds[0]}"])
    mlflow.set_tracking_uri(str(cfg.tracking.uri))
    experiment = mlflow.get_experiment_by_name(str(cfg.tracking.experiment))
    if experiment is None:
        raise SystemExit(f"no runs in {cfg.tracking.uri}: run without --report-only first")
    family = collect(experiment.experiment_id, family_hash(cfg))
    if args.mode == "lenet":
        cells = {cell_key(cfg)}
    else:
        cells = {cell_key(_compose(shared + [f"prune.threshold={t}", f"reset.epoch={k}"]))
                 for t in args.thresholds for k in args.reset_epochs}
    seeds = set(args.seeds)
    points = [p for p in family.points if p.cell in cells and p.seed in seeds
              and (args.mode == "mobilenet" or p.level is not None and p.level <= int(cfg.prune.levels))]
    return [d for d in family.dense if d.seed in seeds], points, cfg


def _summary(values: list[float]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation and count of the learned seeds' values."""
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def _rows(mode: str, dense: list, points: list, measure: str) -> list[dict[str, object]]:
    """One row per level (lenet) or per (sparsity, k) (mobilenet): each kind's summary and early-stop epoch."""
    accuracy = (lambda run: run.early_stop_test_accuracy) if measure == "early_stop" else (lambda run: run.test_accuracy)
    finished = [d for d in dense if d.status == "FINISHED" and accuracy(d) is not None]
    reference = {"dense": _summary([accuracy(d) for d in finished]),
                 "dense_stop": _summary([d.early_stop_epoch for d in finished if d.early_stop_epoch is not None])}
    groups: dict[tuple, list] = {}
    for point in points:
        key = (point.level,) if mode == "lenet" else (point.threshold, point.reset_epoch)
        groups.setdefault(key, []).append(point)
    rows = []
    for key in sorted(groups):
        members = groups[key]
        row: dict[str, object] = {"key": list(key), "weights_remaining": max(p.weights_remaining or 0 for p in members)}
        for kind in ("ticket", "reinit", "random"):
            learned = [p for p in members if KIND_NAMES[p.kind] == kind and p.learned and accuracy(p) is not None]
            row[kind] = _summary([accuracy(p) for p in learned])
            row[f"{kind}_stop"] = _summary([p.early_stop_epoch for p in learned if p.early_stop_epoch is not None])
            row[f"{kind}_failed"] = sum(1 for p in members if KIND_NAMES[p.kind] == kind and not p.learned)
        # ticket - control, paired by replicate: (seed, data-order seed), as the report pairs them
        by_replicate = {(KIND_NAMES[p.kind], p.replicate): accuracy(p) for p in members
                        if p.learned and accuracy(p) is not None}
        for control in ("reinit", "random"):
            row[f"gap_{control}"] = _summary([by_replicate[("ticket", rep)] - by_replicate[(control, rep)]
                                              for rep in sorted({rep for _, rep in by_replicate})
                                              if ("ticket", rep) in by_replicate and (control, rep) in by_replicate])
        rows.append(row | reference)
    return rows


def _cell(summary: dict, digits: int = 4, sign: str = "") -> str:
    if not summary["n"]:
        return "-"
    spread = f" ± {summary['std']:.{digits}f}" if summary["n"] > 1 else ""
    return f"{summary['mean']:{sign}.{digits}f}{spread} ({summary['n']})"


def _markdown(mode: str, rows: list[dict], kinds: tuple[str, ...]) -> str:
    first = ["level", "weights remaining"] if mode == "lenet" else ["sparsity t", "k", "weights remaining"]
    controls = [kind for kind in kinds if kind != "ticket"]
    header = (first + [*kinds, "dense"] + [f"ticket − {kind}" for kind in controls]
              + [f"{kind} stop epoch" for kind in (*kinds, "dense")])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(k) for k in row["key"]] + [f"{100 * row['weights_remaining']:.2f}%"]
        cells += [_cell(row[kind]) for kind in (*kinds, "dense")]
        cells += [_cell(row[f"gap_{kind}"], sign="+") for kind in controls]
        cells += [_cell(row[f"{kind}_stop"], 1) for kind in (*kinds, "dense")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _figure(mode: str, rows: list[dict], kinds: tuple[str, ...], path: Path) -> None:
    """Accuracy and early-stop epoch against weights remaining, log x falling left to right (the paper's Figure 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (stop_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"ticket": ("tab:blue", "-"), "reinit": ("tab:orange", "--"), "random": ("tab:green", ":")}
    series = [(kind, None) for kind in kinds] if mode == "lenet" else [
        (kind, k) for k in sorted({row["key"][1] for row in rows}) for kind in kinds]
    markers = {None: "o", 0: "o", 1: "s", 2: "^"}
    for kind, k in series:
        chosen = [row for row in rows if (k is None or row["key"][1] == k) and row[kind]["n"]]
        x = [100 * row["weights_remaining"] for row in chosen]
        color, line = styles[kind]
        label = kind if k is None else f"{kind} k={k}"
        for axis, field in ((accuracy_axis, kind), (stop_axis, f"{kind}_stop")):
            axis.errorbar(x, [row[field]["mean"] for row in chosen], yerr=[row[field]["std"] for row in chosen],
                          color=color, linestyle=line, marker=markers.get(k, "v"), markersize=4, capsize=2,
                          label=label, alpha=1.0 if k in (None, 0) else 0.75)
    if rows and rows[0]["dense"]["n"]:
        for axis, field in ((accuracy_axis, "dense"), (stop_axis, "dense_stop")):
            axis.axhline(rows[0][field]["mean"], color="black", linewidth=1, label="dense")
    title = "LeNet-300-100, Fashion-MNIST, IMP" if mode == "lenet" else "MobileNetV2 a0.35, Fashion-MNIST, LAMP"
    ticks = sorted({round(100 * row["weights_remaining"], 1) for row in rows} | {100.0}, reverse=True)
    for axis, label in ((accuracy_axis, "test accuracy at early stop"), (stop_axis, "early-stop epoch")):
        axis.set_xscale("log")
        axis.set_xticks(ticks, [f"{tick:g}" for tick in ticks], fontsize=7)
        axis.minorticks_off()
        axis.set_xlim(110, min(ticks) * 0.9)  # falling left to right, dense (100%) at the left edge
        axis.set_xlabel("weights remaining (%)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3, which="both")
    accuracy_axis.legend(fontsize=7)
    figure.suptitle(f"{title} (mean ± std over seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> None:
    args = _arguments()
    args.seeds = args.seeds or ([0, 1, 2] if args.mode == "lenet" else [0, 1])
    workdir = (args.workdir or Path("reproduce") / args.mode).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    shared = _overrides(args, workdir)
    if not args.report_only:
        started = time.monotonic()
        command = [sys.executable, "-m", "lth.train", "-m", *shared, *_sweep(args), f"hydra.sweep.dir={workdir}/multirun"]
        print("lth:", " ".join(command[1:]), flush=True)
        subprocess.run(command, cwd=workdir, check=True)
        print(f"lth: trained in {(time.monotonic() - started) / 60:.1f} min", flush=True)
    dense, points, cfg = _collect(args, shared)
    kinds = ("ticket", "reinit", "random") if args.mode == "lenet" else ("ticket", "reinit")
    settings = (f"{args.mode}: seeds {args.seeds}, {int(cfg.train.epochs)} epochs, batch {int(cfg.train.batch_size)}, "
                f"{cfg.train.optimizer} lr {cfg.train.learning_rate}, data {cfg.data.name} "
                f"train_limit={cfg.data.train_limit}, backend {cfg.train.backend}")
    report = {"settings": settings, "tables": {}}
    markdown = [f"Settings: {settings}.", ""]
    for measure, title in (("early_stop", "test accuracy at the early-stop epoch"), ("final", "final test accuracy")):
        rows = _rows(args.mode, dense, points, measure)
        report["tables"][measure] = rows
        table = _markdown(args.mode, rows, kinds)
        markdown += [f"**{title}** (mean ± std over learned seeds, count in brackets; gaps paired by seed):", "",
                     table, ""]
        print(f"\n{title}\n{table}")
        if measure == "early_stop":
            _figure(args.mode, rows, kinds, workdir / f"{args.mode}.png")
    (workdir / f"{args.mode}.md").write_text("\n".join(markdown))
    (workdir / f"{args.mode}.json").write_text(json.dumps(report, indent=2))
    print(f"\nlth: wrote {workdir / args.mode}.png, .md and .json")


if __name__ == "__main__":
    main()
