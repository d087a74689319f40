"""The report's instability section: barrier against reset epoch, from which k each network is stable.

Reads the `stability` runs of a family (lth.stability.analysis). Analyses are grouped by what
they measured: the network (the dense network at sparsity 0, or a ticket cell: its sparsity,
scope and every setting of its cell, such as prune.structure and the floor) and the analysis's
own settings (BatchNorm mode, copies' data seeds, points, BatchNorm batches). Analyses of one
group at one k are replicates (seed, data seed), and each point is their mean barrier; groups
are never averaged together, and a line's label names what tells it from the others.

Validation decides what is stable, as `lth.stable` and `reset.epoch=auto` do, with the one
definition of lth.stability.verdict: stable at k and at every later analysed k. A line's verdict
compares the same replicates at every k: those analysed at all its k (auto analyses only its
reference replicate's candidates). The test barrier is reported beside it, as the paper does. An
analysis logged before validation was walked has no validation barrier: it is drawn, but judged
nowhere (a job that reuses it walks it again).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mlflow.entities import Run

from lth.stability.verdict import stable_from, unstable_again
from lth.tracking import schema

DEFAULT_THRESHOLD = 0.02  # an analysis logged without its stability.threshold param
DEFAULT_COPIES = "next data seed"  # stability.data_seeds=null: copy 2 trains on copy 1's data seed + 1
Barriers = dict[str, dict[int, dict[tuple[int, int | None], float]]]  # label -> k -> replicate -> barrier


@dataclass(frozen=True)
class Analysis:
    """One finished instability analysis, as the report reads it."""

    threshold: float  # sparsity of the analysed network; 0 = the dense network
    reset_epoch: int
    scope: str
    seed: int
    control: str
    bn: str
    barrier: float  # on test
    stable_below: float  # its stability.threshold
    run_id: str
    val_barrier: float | None = None  # on validation, which decides; None: logged before validation was walked
    data_seed: int | None = None  # copy 1's data seed: with the seed, which replicate this analysis is
    copies: str = DEFAULT_COPIES  # copies 2..n: DEFAULT_COPIES, or `data seeds [5, 6]`
    points: int = 30
    bn_batches: int = 32  # read only under bn=recompute
    analysed_run: str = ""
    cell: str = ""  # the analysed ticket's report cell (lth.cell); "" for the dense network or when unknown
    cell_label: str = ""  # the settings that tell that cell from the family's others, e.g. min_density=0.01

    @property
    def network(self) -> str:
        """`dense`, or `80% pruned`."""
        return "dense" if self.threshold == 0 else f"{100 * self.threshold:g}% pruned"

    @property
    def replicate(self) -> tuple[int, int | None]:
        return self.seed, self.data_seed

    @property
    def setting(self) -> tuple[tuple[str, str], ...]:
        """What the analysis measured besides the network: (name, value) pairs that change its numbers."""
        found = [("BN", self.bn), ("copies", self.copies), ("points", str(self.points))]
        if self.bn == "recompute":
            found.append(("BN batches", str(self.bn_batches)))
        return tuple(found)

    def describe(self) -> str:
        """`BN recompute, copies next data seed, 30 points, 32 BN batches`."""
        return ", ".join(f"{name} {value}" for name, value in self.setting)


def superseded(analysis: Analysis) -> bool:
    """An analysis of the dense network at k > 0 logged before copies started from one state.

    Its copy 1 was the dense run, which kept its SGD momentum through epoch k, so its barrier mixes a
    momentum reset with data-order noise. It has no validation barrier, and no job reuses it (the dense
    subject's identity changed): the report leaves it out.
    """
    return analysis.threshold == 0 and analysis.reset_epoch > 0 and analysis.val_barrier is None


def _copies(params: Mapping[str, str]) -> str:
    """stability.data_seeds as set: the default (copy 1's data seed + 1) or the list given."""
    seeds, first = params.get("stability.data_seeds", ""), params.get("train.data_seed", "")
    if not seeds or (first.lstrip("-").isdigit() and seeds == f"[{int(first) + 1}]"):
        return DEFAULT_COPIES
    return f"data seeds {seeds}"


def read_analysis(run: Run) -> Analysis | None:
    """The analysis of a FINISHED `stability` run; None for an unfinished one."""
    if run.info.status != schema.FINISHED or schema.BARRIER not in run.data.metrics:
        return None
    tags, params = run.data.tags, run.data.params
    first = params.get("train.data_seed", "")
    return Analysis(float(tags[schema.THRESHOLD]), int(tags[schema.RESET_EPOCH]), tags.get(schema.SCOPE, ""),
                    int(tags.get(schema.SEED, 0)), tags.get(schema.CONTROL, "none"), params.get("stability.bn", "recompute"),
                    float(run.data.metrics[schema.BARRIER]), float(params.get("stability.threshold", DEFAULT_THRESHOLD)),
                    run.info.run_id, run.data.metrics.get(schema.VAL_BARRIER),
                    int(first) if first.lstrip("-").isdigit() else None, _copies(params),
                    int(params.get("stability.points", 30)), int(params.get("stability.bn_batches", 32)),
                    tags.get(schema.ANALYSED_RUN, ""))


def of_cells(analyses: Sequence[Analysis], cells: Mapping[str, tuple[str, str]]) -> list[Analysis]:
    """Each analysis with its analysed ticket's report cell and label (run id -> (lth.cell, settings label)).

    The label keeps the settings that tell cells apart (structure, floor, ...), not the `cell <id>` the
    table may add: that id changes with k, and a line runs across k.
    """
    def settings(label: str) -> str:
        return ", ".join(part for part in label.split(", ") if part and not part.startswith("cell "))

    return [replace(a, cell=cells[a.analysed_run][0], cell_label=settings(cells[a.analysed_run][1]))
            if a.threshold and a.analysed_run in cells else a for a in analyses]


def _label(analysis: Analysis, varies: Mapping[str, bool]) -> str:
    parts = [analysis.network]
    if analysis.threshold and varies["scope"]:
        parts.append(analysis.scope)
    if analysis.threshold and analysis.cell_label:
        parts.append(analysis.cell_label)
    parts += [f"{name} {value}" for name, value in analysis.setting if varies[name]]
    return ", ".join(parts)


def _barrier(analysis: Analysis, split: str) -> float | None:
    return analysis.val_barrier if split == "val" else analysis.barrier


def grouped(analyses: Sequence[Analysis], split: str = "test") -> Barriers:
    """Label -> k -> replicate -> barrier on `split`; dense first, then by sparsity. Controls are left out,
    and so, on `val`, are analyses logged before validation was walked."""
    tickets = [a for a in analyses if a.control == "none"]
    settings = [dict(a.setting) for a in tickets]
    names = {name for found in settings for name in found}
    varies = {"scope": len({a.scope for a in tickets if a.threshold}) > 1,
              **{name: len({found[name] for found in settings if name in found}) > 1 for name in names}}
    found: Barriers = defaultdict(lambda: defaultdict(dict))
    for analysis in sorted(tickets, key=lambda a: (a.threshold, a.scope, a.cell_label, a.setting, a.reset_epoch)):
        if (barrier := _barrier(analysis, split)) is not None:
            found[_label(analysis, varies)][analysis.reset_epoch][analysis.replicate] = barrier
    return {label: dict(by_k) for label, by_k in found.items()}


def barrier_lines(analyses: Sequence[Analysis], split: str = "test") -> dict[str, list[tuple[int, float]]]:
    """Label -> (k, mean barrier on `split` over the replicates analysed there) in k order."""
    return {label: [(k, statistics.fmean(by_k[k].values())) for k in sorted(by_k)]
            for label, by_k in grouped(analyses, split).items()}


def judged(by_k: Mapping[int, Mapping[tuple[int, int | None], float]]) -> tuple[dict[int, float], str]:
    """A line's barriers as its verdict compares them: the mean over the replicates analysed at every k.

    Returns:
        k -> barrier, and a note naming the replicates left out ("" when none is).
    """
    every = set.intersection(*(set(found) for found in by_k.values())) if by_k else set()
    if not every:  # no replicate at every k: each k's mean, said so
        return {k: statistics.fmean(found.values()) for k, found in by_k.items()}, \
            " (no replicate was analysed at every k: each k averages its own)"
    left = sorted({r for found in by_k.values() for r in found} - every)
    note = (f" (judged on seed(s) {', '.join(str(seed) for seed, _ in sorted(every))}, analysed at every k; "
            f"{len(left)} other replicate(s) only at some)") if left else ""
    return {k: statistics.fmean(found[r] for r in every) for k, found in by_k.items()}, note


def stable_sentence(analyses: Sequence[Analysis], threshold: float) -> str:
    """One sentence: from which analysed k each network is stable on validation (lth.stability.verdict)."""
    parts = []
    for label, by_k in grouped(analyses, "val").items():
        barriers, note = judged(by_k)
        ks = sorted(barriers)
        onwards = stable_from(barriers, threshold)
        if onwards is None:
            parts.append(f"{label}: not stable at any analysed k ({', '.join(map(str, ks))}){note}")
            continue
        before = unstable_again(barriers, threshold)  # stable there, unstable again later
        also = f" (also at k={', '.join(map(str, before))})" if before else ""
        earliest = ", the earliest analysed" if onwards == ks[0] else ""
        parts.append(f"{label}: stable from k={onwards}{earliest}{also}{note}")
    return (f"Stable on validation (error barrier below {100 * threshold:g}% at k and every later analysed k): "
            + "; ".join(parts) + "." if parts else "")


def stable_cells(analyses: Sequence[Analysis]) -> dict[str, tuple[str, ...]]:
    """Report cell (lth.cell) -> the analysis settings under which its mean validation barrier is below threshold.

    Analyses of one cell in different settings are judged apart, never averaged.
    """
    cells: dict[tuple[str, tuple[tuple[str, str], ...]], list[Analysis]] = defaultdict(list)
    for analysis in analyses:
        if analysis.control == "none" and analysis.threshold and analysis.cell and analysis.val_barrier is not None:
            cells[(analysis.cell, analysis.setting)].append(analysis)
    found: dict[str, list[str]] = defaultdict(list)
    for (cell, _), group in sorted(cells.items()):
        if statistics.fmean(a.val_barrier for a in group if a.val_barrier is not None) < group[0].stable_below:
            found[cell].append(group[0].describe())
    return {cell: tuple(labels) for cell, labels in found.items()}


def write_stability(analyses: Sequence[Analysis], title: str, folder: Path) -> tuple[Path | None, str]:
    """`stability.png` (test barrier vs k) in `folder` and the report's paragraph; (None, "") without analyses."""
    left_out = sum(superseded(a) for a in analyses)
    analyses = [a for a in analyses if not superseded(a)]
    lines, on_val = barrier_lines(analyses), barrier_lines(analyses, "val")
    if not lines:
        return None, ""
    from lth.stability.path_figures import barrier_figure, save

    threshold = min(a.stable_below for a in analyses)
    path = save(barrier_figure(lines, threshold, f"Instability of {title} (test barrier)"), folder / "stability.png")
    epochs = sorted({k for points in lines.values() for k, _ in points})
    rows = ["| network | split | " + " | ".join(f"k={k}" for k in epochs) + " |", "|---|---|" + "---|" * len(epochs)]
    for label, points in lines.items():
        for split, found in (("validation", dict(on_val.get(label, []))), ("test", dict(points))):
            rows.append(f"| {label} | {split} | "
                        + " | ".join(f"{100 * found[k]:.2f}%" if k in found else "" for k in epochs) + " |")
    unjudged = sum(a.val_barrier is None for a in analyses)
    legacy = " ".join(filter(None, [
        f"{unjudged} analysis(es) were logged before paths were walked on validation: they are drawn and tabled on "
        "test, judged nowhere; a job that reuses one walks it on validation." if unjudged else "",
        f"{left_out} analysis(es) of the dense network at k > 0 were logged before every copy started from one "
        "state (their copy 1 kept the dense run's momentum): left out; rerun their cells." if left_out else ""]))
    text = "\n".join(["## Instability (linear mode connectivity)", "", stable_sentence(analyses, threshold), legacy, "",
                      "Error barrier (max error on the linear path between copies trained under different data "
                      "order, minus the mean of the ends), mean over seeds; validation decides, test is reported:", "",
                      *rows, "", "![barrier](stability.png)"])
    return path, text
