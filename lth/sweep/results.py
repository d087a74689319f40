"""Sweep results as text: the per-job line and the end-of-sweep table.

The full report (figure, winning tickets, controls, IMP) reads the same records;
this module stays dependency-free so the submitting process never imports TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lth.tracking import schema
from lth.training.chance import chance_text, dense_at_chance

Record = Mapping[str, Any]


def kind(record: Record) -> str:
    """ticket, imp, the control's name (lth.tracking.schema.kind, as the report reads runs), or dense.

    `dense`: a stability=on cell at threshold 0, whose analysed network is the dense parent.
    """
    if record.get("ticket_run_id") is not None and record.get("ticket_run_id") == record.get("dense_run_id"):
        return "dense"
    return schema.kind(str(record.get("method", "magnitude")), str(record.get("control", "none")))


def scope(record: Record) -> str:
    """`lamp`, or `lamp, channel` for a structured mask (lth.pruning.structure)."""
    structure = record.get("structure", "none")
    return str(record.get("scope", "global")) + ("" if structure == "none" else f", {structure}")


def _barriers(record: Record) -> str:
    """`, error barrier 1.20% on test, 0.69% on validation (analysis reused)`."""
    val = record.get("stability_val_barrier")
    work = record.get("stability_work")
    return (f", error barrier {100 * record['stability_barrier']:.2f}% on test"
            + (f", {100 * val:.2f}% on validation" if val is not None else "") + (f" ({work})" if work else ""))


def _chance(record: Record, num_classes: int | None) -> str:
    """`; WARNING: dense parent at chance (...)` when it is (lth.training.chance); empty when not, or classes unknown."""
    dense = record["dense_test_accuracy"]
    if num_classes is None or not dense_at_chance(dense, num_classes):
        return ""
    return f"; WARNING: dense parent at chance ({chance_text(dense, num_classes)}): its tickets mean nothing"


def job_line(record: Record, num_classes: int | None = None) -> str:
    """One line for a finished job; with the job's `data.num_classes`, it warns of a dense parent at chance."""
    origin = "reused" if record["reused"] else f"trained {record['epochs_trained']} epochs"
    seed = f" seed={record['seed']}" if record.get("seed", 0) else ""
    accuracy = ("DIVERGED (no accuracy)" if record["test_accuracy"] is None
                else f"test accuracy {record['test_accuracy']:.4f}")
    return (
        f"{kind(record)} [{scope(record)}] t={record['threshold']:.2f} k={record['reset_epoch']}{seed}: "
        f"{100 * record['weights_remaining']:.1f}% weights, {accuracy} "
        f"(dense {record['dense_test_accuracy']:.4f}), {origin}, run {record['ticket_run_id']}"
        + (_barriers(record) if record.get("stability_barrier") is not None else "")
        + (f"; {record['reset_choice']}" if record.get("reset_choice") else "")
        + _chance(record, num_classes)
    )


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every `result.json` written by the jobs of a sweep."""
    return [json.loads(path.read_text()) for path in sorted(sweep_dir.glob("**/result.json"))]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def table(records: Sequence[Record]) -> str:
    """A fixed-width table, sorted by reset epoch then threshold (with each barrier under stability=on)."""
    barriers = any(r.get("stability_barrier") is not None for r in records)
    header = ("kind", "scope", "seed", "threshold", "reset epoch", "weights remaining", "test accuracy", "dense accuracy",
              *(("val barrier", "test barrier") if barriers else ()), "run")
    rows = [
        (
            kind(r),
            scope(r),
            str(r.get("seed", 0)),
            f"{r['threshold']:.3f}",
            str(r["reset_epoch"]),
            f"{100 * r['weights_remaining']:.2f}%",
            "diverged" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}",
            f"{r['dense_test_accuracy']:.4f}",
            *((_percent(r.get("stability_val_barrier")), _percent(r.get("stability_barrier"))) if barriers else ()),
            ("reused " if r["reused"] else "") + str(r["ticket_run_id"])[:12],
        )
        for r in sorted(records, key=lambda r: (kind(r), scope(r), r["reset_epoch"], r["threshold"],
                                                r.get("seed", 0)))
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: Iterable[str]) -> str:
        return "  ".join(cell.rjust(width) for cell, width in zip(cells, widths)).rstrip()

    return "\n".join([line(header), line("-" * w for w in widths), *(line(row) for row in rows)])
