"""The report's instability section: barrier against reset epoch, from which k each network is stable.

Reads the `stability` runs of a family (lth.stability.analysis): one line per sparsity, the
dense network at sparsity 0, each point the mean barrier over the seeds analysed at that k.
Validation decides what is stable, as `lth.stable` and `reset.epoch=auto` do; the test barrier
is reported beside it, as the paper does. An analysis logged before validation was walked has
no validation barrier: it is drawn, but judged nowhere (a job that reuses it walks it again).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run

from lth.tracking import schema

DEFAULT_THRESHOLD = 0.02  # an analysis logged without its stability.threshold param


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

    @property
    def network(self) -> str:
        """`dense`, or `80% pruned`."""
        return "dense" if self.threshold == 0 else f"{100 * self.threshold:g}% pruned"


def superseded(analysis: Analysis) -> bool:
    """An analysis of the dense network at k > 0 logged before copies started from one state.

    Its copy 1 was the dense run, which kept its SGD momentum through epoch k, so its barrier mixes a
    momentum reset with data-order noise. It has no validation barrier, and no job reuses it (the dense
    subject's identity changed): the report leaves it out.
    """
    return analysis.threshold == 0 and analysis.reset_epoch > 0 and analysis.val_barrier is None


def read_analysis(run: Run) -> Analysis | None:
    """The analysis of a FINISHED `stability` run; None for an unfinished one."""
    if run.info.status != schema.FINISHED or schema.BARRIER not in run.data.metrics:
        return None
    tags, params = run.data.tags, run.data.params
    return Analysis(float(tags[schema.THRESHOLD]), int(tags[schema.RESET_EPOCH]), tags.get(schema.SCOPE, ""),
                    int(tags.get(schema.SEED, 0)), tags.get(schema.CONTROL, "none"), params.get("stability.bn", "recompute"),
                    float(run.data.metrics[schema.BARRIER]), float(params.get("stability.threshold", DEFAULT_THRESHOLD)),
                    run.info.run_id, run.data.metrics.get(schema.VAL_BARRIER))


def _label(analysis: Analysis, scopes: set[str], modes: set[str]) -> str:
    parts = [analysis.network]
    if analysis.threshold and len(scopes) > 1:
        parts.append(analysis.scope)
    if len(modes) > 1:
        parts.append(f"BN {analysis.bn}")
    return ", ".join(parts)


def _barrier(analysis: Analysis, split: str) -> float | None:
    return analysis.val_barrier if split == "val" else analysis.barrier


def barrier_lines(analyses: Sequence[Analysis], split: str = "test") -> dict[str, list[tuple[int, float]]]:
    """Label -> (k, mean barrier on `split` over seeds) in k order; dense first, then by sparsity.

    Controls are left out, and so, on `val`, are analyses logged before validation was walked.
    """
    tickets = [a for a in analyses if a.control == "none"]
    scopes, modes = {a.scope for a in tickets if a.threshold}, {a.bn for a in tickets}
    grouped: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for analysis in sorted(tickets, key=lambda a: (a.threshold, a.scope, a.bn, a.reset_epoch)):
        if (barrier := _barrier(analysis, split)) is not None:
            grouped[_label(analysis, scopes, modes)][analysis.reset_epoch].append(barrier)
    return {label: [(k, statistics.fmean(values)) for k, values in sorted(by_k.items())] for label, by_k in grouped.items()}


def stable_from(lines: dict[str, list[tuple[int, float]]], threshold: float) -> str:
    """One sentence: from which analysed k each network is stable (stable at that k and every later one analysed)."""
    parts = []
    for label, points in lines.items():
        ks = [k for k, _ in points]
        stable = [k for k, barrier in points if barrier < threshold]
        onwards = next((k for k in ks if all(b < threshold for kk, b in points if kk >= k)), None)
        if onwards is None:
            parts.append(f"{label}: not stable at any analysed k ({', '.join(map(str, ks))})")
        elif onwards == ks[0]:
            parts.append(f"{label}: stable from k={onwards}, the earliest analysed")
        else:
            before = [str(k) for k in stable if k < onwards]  # stable there, unstable again later
            also = f" (also at k={', '.join(before)})" if before else ""
            parts.append(f"{label}: stable from k={onwards}{also}")
    return (f"Stable on validation (error barrier below {100 * threshold:g}%): " + "; ".join(parts) + "."
            if parts else "")


def stable_cells(analyses: Sequence[Analysis]) -> frozenset[tuple[float, int, str]]:
    """(threshold, k, scope) of ticket cells whose mean validation barrier over seeds is below their threshold."""
    cells: dict[tuple[float, int, str], list[Analysis]] = defaultdict(list)
    for analysis in analyses:
        if analysis.control == "none" and analysis.threshold and analysis.val_barrier is not None:
            cells[(round(analysis.threshold, 6), analysis.reset_epoch, analysis.scope)].append(analysis)
    return frozenset(key for key, found in cells.items()
                     if statistics.fmean(a.val_barrier for a in found if a.val_barrier is not None)
                     < found[0].stable_below)


def write_stability(analyses: Sequence[Analysis], title: str, folder: Path) -> tuple[Path | None, str]:
    """`stability.png` (test barrier vs k) in `folder` and the report's paragraph; (None, "") without analyses."""
    left_out = sum(superseded(a) for a in analyses)
    analyses = [a for a in analyses if not superseded(a)]
    lines, judged = barrier_lines(analyses), barrier_lines(analyses, "val")
    if not lines:
        return None, ""
    from lth.stability.plot import barrier_figure, save

    threshold = min(a.stable_below for a in analyses)
    path = save(barrier_figure(lines, threshold, f"Instability of {title} (test barrier)"), folder / "stability.png")
    epochs = sorted({k for points in lines.values() for k, _ in points})
    rows = ["| network | split | " + " | ".join(f"k={k}" for k in epochs) + " |", "|---|---|" + "---|" * len(epochs)]
    for label, points in lines.items():
        for split, found in (("validation", dict(judged.get(label, []))), ("test", dict(points))):
            rows.append(f"| {label} | {split} | "
                        + " | ".join(f"{100 * found[k]:.2f}%" if k in found else "" for k in epochs) + " |")
    unjudged = sum(a.val_barrier is None for a in analyses)
    legacy = " ".join(filter(None, [
        f"{unjudged} analysis(es) were logged before paths were walked on validation: they are drawn and tabled on "
        "test, judged nowhere; a job that reuses one walks it on validation." if unjudged else "",
        f"{left_out} analysis(es) of the dense network at k > 0 were logged before every copy started from one "
        "state (their copy 1 kept the dense run's momentum): left out; rerun their cells." if left_out else ""]))
    text = "\n".join(["## Instability (linear mode connectivity)", "", stable_from(judged, threshold), legacy, "",
                      "Error barrier (max error on the linear path between copies trained under different data "
                      "order, minus the mean of the ends), mean over seeds; validation decides, test is reported:", "",
                      *rows, "", "![barrier](stability.png)"])
    return path, text
