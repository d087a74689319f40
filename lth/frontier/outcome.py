"""What a frontier sweep found: per line, every probe and the answer, as a table, JSON and a figure."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lth.frontier.answer import Answer, answer
from lth.frontier.bracketing import FrontierConfig, threshold_of

PRIOR_ROUND = 0  # the round of a cell that was already in MLflow when the sweep started


@dataclass(frozen=True)
class Probe:
    """One threshold of one line, as judged."""

    density: float
    round: int  # 1, 2, ...; PRIOR_ROUND: found finished in MLflow
    won: bool
    why_not: str
    chosen_mean: float | None
    dense_mean: float | None
    verifying: bool = False  # probed below a resolved flip to verify it (lth.frontier.bracketing)

    @property
    def threshold(self) -> float:
        return threshold_of(self.density)


@dataclass
class LineRecord:
    """The search of one line."""

    label: str
    reset_epoch: int
    epochs: int
    replicates: int  # jobs per probe
    probes: list[Probe] = field(default_factory=list)
    rounds: int = 0  # rounds in which this line launched probes
    epochs_trained: int = 0  # ticket epochs the jobs really trained (a reused cell trains none)
    narrowed: int = 0  # rounds since the search last opened (a winner found by verification reopens it)

    @property
    def outcomes(self) -> dict[float, bool]:
        return {p.density: p.won for p in self.probes}

    @property
    def jobs(self) -> int:
        """Ticket jobs this sweep launched for the line."""
        return self.replicates * sum(p.round != PRIOR_ROUND for p in self.probes)

    @property
    def ticket_epochs(self) -> int:
        """What the line's jobs cost if none were reused: (E - k) epochs each."""
        return self.jobs * (self.epochs - self.reset_epoch)

    def answer(self, config: FrontierConfig) -> Answer:
        return answer(self.outcomes, config)


def epochs_trained(returned: Mapping[str, Any] | None) -> int:
    """Ticket epochs one job really trained, from what lth.train returned (a reused ticket trained none)."""
    if not returned or returned.get("reused"):
        return 0
    return int(returned.get("epochs_trained", 0) or 0)


def table(records: Sequence[LineRecord], config: FrontierConfig) -> str:
    """One paragraph per line: the answer, then its probes in density order."""
    blocks = []
    for record in records:
        lines = [f"{record.label}: {record.answer(config).sentence(config)}",
                 f"  {record.rounds} round(s), {record.jobs} ticket jobs, {record.ticket_epochs} ticket epochs "
                 f"({record.epochs_trained} trained here)"]
        for probe in sorted(record.probes, key=lambda p: p.density):
            when = "found in MLflow" if probe.round == PRIOR_ROUND else f"round {probe.round}" + (
                ", verifying" if probe.verifying else "")
            dense = "none" if probe.dense_mean is None else f"{probe.dense_mean:.4f}"
            accuracy = "" if probe.chosen_mean is None else f" {probe.chosen_mean:.4f} (dense {dense})"
            verdict = "WON" if probe.won else f"lost: {probe.why_not}"
            lines.append(f"  {100 * probe.density:7.3f}%  t={probe.threshold:<9g} {when:>20}{accuracy}  {verdict}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_json(records: Sequence[LineRecord], config: FrontierConfig, path: Path) -> Path:
    """frontier.json: the search's settings, and per line its answer and probes."""
    payload = {
        "frontier": asdict(config),
        "lines": [{
            "label": r.label, "reset_epoch": r.reset_epoch, "epochs": r.epochs, "replicates": r.replicates,
            "rounds": r.rounds, "jobs": r.jobs, "ticket_epochs": r.ticket_epochs, "epochs_trained": r.epochs_trained,
            "answer": {**asdict(r.answer(config)),
                       "winner_threshold": None if r.answer(config).winner is None
                       else threshold_of(r.answer(config).winner)},
            "probes": [{**asdict(p), "threshold": p.threshold} for p in sorted(r.probes, key=lambda p: p.density)],
        } for r in records],
    }
    path.write_text(json.dumps(payload, indent=2))
    return path


def write_figure(records: Sequence[LineRecord], config: FrontierConfig, path: Path) -> Path:
    """frontier.png: per line, each probe at its density (log) and round; the final bracket shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(records), 1, figsize=(8, 1.2 + 1.1 * len(records)), squeeze=False, sharex=True)
    for axis, record in zip(axes[:, 0], records):
        result = record.answer(config)
        if result.bracket is not None:
            axis.axvspan(100 * result.bracket.sparse, 100 * result.bracket.dense, color="0.85", zorder=0)
        for won, marker, colour, name in ((True, "o", "tab:green", "won"), (False, "x", "tab:red", "lost")):
            chosen = [p for p in record.probes if p.won == won]
            axis.scatter([100 * p.density for p in chosen], [p.round for p in chosen], marker=marker, color=colour,
                         label=name, zorder=2)
        checks = [p for p in record.probes if p.verifying]
        axis.scatter([100 * p.density for p in checks], [p.round for p in checks], marker="s", s=110,
                     facecolors="none", edgecolors="tab:blue", label="verifying a flip", zorder=1)
        if result.winner is not None:
            axis.axvline(100 * result.winner, color="tab:green", linewidth=0.8, linestyle="--")
        axis.set_ylabel(record.label, rotation=0, ha="right", va="center")
        axis.set_yticks(range(0, max(record.rounds, 1) + 1))
        axis.set_ylim(-0.5, max(record.rounds, 1) + 0.5)
        axis.grid(axis="x", which="both", alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize="small")
    axes[0, 0].set_title("Frontier sweep: probes by round (0 = found in MLflow); grey: the final bracket", fontsize=10)
    axes[-1, 0].set_xscale("log")
    axes[-1, 0].set_xlabel("weights remaining (%)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
