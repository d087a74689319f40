"""The export's measured report: `export.json` (every figure) and `export.md` (the table people read)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lth.export.cost import Cost
from lth.export.forms import BASELINE, Export, Form

REPORT_JSON = "export.json"
REPORT_MD = "export.md"


def _number(value: float | None, pattern: str) -> str:
    return "–" if value is None else format(value, pattern)


def _mega(value: int) -> str:
    return f"{value / 1e6:.3f} M" if value >= 1e5 else f"{value / 1e3:.1f} k"


def _size(value: int | None) -> str:
    return "–" if value is None else (f"{value / 2**20:.2f} MiB" if value >= 2**20 else f"{value / 2**10:.0f} KiB")


def _speedup(form: Form) -> str:
    if form.speedup is None:
        return "–"
    spread = "" if form.speedup_p10 is None else f" ({form.speedup_p10:.2f}-{form.speedup_p90:.2f})"
    return f"{form.speedup:.2f}×{spread}"


def table(export: Export) -> str:
    """One row per form: size, parameters, MACs, accuracy against the masked model, latency."""
    masked = export.forms[0].cost
    lines = ["| form | file size | params (non-zero) | MACs (non-zero) | MACs vs masked | test accuracy | "
             "max \\|Δ logit\\| | differing predictions | latency ms (p10-p90) | "
             "speed-up vs dense.tflite (p10-p90 over rounds) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for form in export.forms:
        latency = "–" if form.latency_ms is None else \
            f"{form.latency_ms:.2f} ({form.latency_p10_ms:.2f}-{form.latency_p90_ms:.2f})"
        sparse = f", {form.sparse_tensors} sparse tensors" if form.sparse_tensors else ""
        lines.append(
            f"| {form.name} | {_size(form.size_bytes)}{sparse} | {_mega(form.cost.params)} "
            f"({_mega(form.cost.nonzero_params)}) | {_mega(form.cost.macs)} ({_mega(form.cost.nonzero_macs)}) | "
            f"{form.cost.macs / masked.macs:.3f} | {_number(form.test_accuracy, '.4f')} | "
            f"{_number(form.max_logit_diff, '.2e')} | {'–' if form.disagreements is None else form.disagreements} | "
            f"{latency} | {_speedup(form)} |")
    return "\n".join(lines)


def markdown(export: Export, title: str) -> str:
    """The report: what was removed, the table, how latency was measured and what it means here."""
    compact = next(form for form in export.forms if form.name == "compact.keras")
    masked = export.forms[0]
    agree = all(form.disagreements in (0, None) for form in export.forms)
    return "\n".join([
        f"# {title}", "",
        f"Compaction removed {export.removed_channels} channels and folded constants into "
        f"{len(export.folded_layers)} layers: {compact.cost.params:,} of {masked.cost.params:,} parameters and "
        f"{compact.cost.macs / masked.cost.macs:.1%} of the MACs remain.", "",
        table(export), "",
        f"Accuracy on {export.test_images} test images; every form is compared with the masked Keras model. "
        + ("Every form predicts the same class on every test image." if agree else
           "**Some forms predict another class on some test images** (see the table)."),
        f"Latency: TFLite interpreter with its default XNNPACK delegate, batch 1, {export.threads} threads, median of "
        f"{export.runs} runs per file (at least the runs asked for, and about a second of calls) in 20 interleaved "
        f"rounds; a speed-up is the median over rounds of `{BASELINE}`'s round median over the file's, with its "
        f"p10-p90 over rounds, the noise within this run. `{BASELINE}` is the masked model with its zeros "
        f"stored, i.e. what the dense network costs.",
        f"Sparse kernels on this CPU: {export.sparse_kernels}.", ""])


def write(export: Export, folder: Path, title: str) -> tuple[Path, Path]:
    """Write `export.json` and `export.md` into `folder`; returns both paths."""
    data = dataclasses.asdict(export)
    (folder / REPORT_JSON).write_text(json.dumps({"title": title, **data}, indent=2))
    (folder / REPORT_MD).write_text(markdown(export, title))
    return folder / REPORT_JSON, folder / REPORT_MD


def read(path: Path) -> Export:
    """An export report written by `write`."""
    data: dict[str, Any] = json.loads(path.read_text())
    data.pop("title", None)

    def form(entry: Mapping[str, Any]) -> Form:
        return Form(**{**entry, "cost": Cost(**entry["cost"])})

    return Export(**{**data, "forms": [form(entry) for entry in data["forms"]]})
