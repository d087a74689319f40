"""A masked model in every deployable form, each one measured against the masked model itself.

The forms, all written to one folder:

| file | what it is |
|---|---|
| `compact.keras` | the compacted Keras model (lth.export.compact): dead channels removed, constants folded |
| `dense.tflite` | float32 TFLite of the masked model, zeros stored: what the dense network costs, the baseline |
| `sparse.tflite` | the masked model with `EXPERIMENTAL_SPARSITY`: sparse weights stored compressed |
| `compact.tflite` | float32 TFLite of the compacted model |
| `compact_sparse.tflite` | the compacted model with `EXPERIMENTAL_SPARSITY` |

Each form gets its file size, parameters and MACs (lth.export.cost), its test accuracy and
largest logit difference from the masked Keras model, and (the TFLite files) its latency at
batch 1 under XNNPACK, measured in one interleaved run against `dense.tflite`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from lth.export import tflite
from lth.export.compact import compact_model
from lth.export.cost import Cost, model_cost
from lth.export.latency import measure

log = logging.getLogger("lth")

BASELINE = "dense.tflite"  # the latency every form is compared with
TFLITE_FORMS: dict[str, tuple[str, bool]] = {  # file -> (the Keras model it comes from, sparse weights)
    "dense.tflite": ("masked", False),
    "sparse.tflite": ("masked", True),
    "compact.tflite": ("compact", False),
    "compact_sparse.tflite": ("compact", True),
}


@dataclass(frozen=True)
class TestSet:
    """Images (uint8, the model's input) and their labels."""

    __test__ = False  # a data class, not a pytest test class, despite its name
    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Form:
    """One form of the model, measured."""

    name: str  # `masked` (the Keras ticket), `compact.keras` or a TFLite file name
    size_bytes: int | None  # the file's size; None for the masked model, which is not written here
    cost: Cost
    test_accuracy: float | None
    max_logit_diff: float | None  # largest |logit - the masked model's logit| over the test set
    disagreements: int | None  # test images whose predicted class differs from the masked model's
    sparse_tensors: int | None = None  # tensors stored sparse (TFLite files)
    latency_ms: float | None = None  # median at batch 1
    latency_p10_ms: float | None = None
    latency_p90_ms: float | None = None
    speedup: float | None = None  # dense.tflite's latency / this one's, paired round by round (Latency.speedups_over)
    speedup_p10: float | None = None  # the spread of that ratio over rounds: the noise within this run
    speedup_p90: float | None = None


@dataclass(frozen=True)
class Export:
    """Every form of one model, and how they were measured."""

    forms: list[Form]
    removed_channels: int
    folded_layers: list[str]
    threads: int
    runs: int
    sparse_kernels: str  # whether XNNPACK can run sparse kernels on this CPU, and why
    test_images: int


def _outputs(predict: Callable[[np.ndarray], np.ndarray], test: TestSet | None,
             reference: np.ndarray | None) -> tuple[float | None, float | None, int | None, np.ndarray | None]:
    """(accuracy, max logit difference, disagreements, logits) of one form on the test set."""
    if test is None:
        return None, None, None, None
    outputs = np.asarray(predict(test.images), dtype=np.float64)
    accuracy = float(np.mean(outputs.argmax(axis=1) == test.labels))
    if reference is None:
        return accuracy, 0.0, 0, outputs
    return (accuracy, float(np.abs(outputs - reference).max()),
            int(np.count_nonzero(outputs.argmax(axis=1) != reference.argmax(axis=1))), outputs)


def export_forms(masked: keras.Model, folder: Path, test: TestSet | None, runs: int = 200, threads: int = 2,
                 progress: Callable[[str], None] = log.info) -> Export:
    """Write every form of `masked` into `folder` and measure them.

    Args:
        masked: The ticket: a Keras model whose pruned weights are exactly zero.
        folder: Where the files go (created).
        test: The test set every form is evaluated on; None skips accuracy.
        runs: Timed invocations per TFLite file (the median is reported).
        threads: Interpreter threads.
        progress: Called with a line before each long step.
    """
    folder.mkdir(parents=True, exist_ok=True)
    progress("evaluating the masked model")
    predict = {"masked": lambda images: masked.predict(images, batch_size=256, verbose=0)}
    accuracy, _, _, reference = _outputs(predict["masked"], test, None)
    forms = [Form("masked", None, model_cost(masked), accuracy, 0.0 if test else None, 0 if test else None)]
    progress("compacting")
    compaction = compact_model(masked)
    compact = compaction.model
    compact.save(folder / "compact.keras")
    predict["compact"] = lambda images: compact.predict(images, batch_size=256, verbose=0)
    forms.append(Form("compact.keras", (folder / "compact.keras").stat().st_size, model_cost(compact),
                      *_outputs(predict["compact"], test, reference)[:3]))
    files: dict[str, bytes] = {}
    for source, model in (("masked", masked), ("compact", compact)):
        names = [name for name, (origin, _) in TFLITE_FORMS.items() if origin == source]
        progress(f"converting {' and '.join(names)}")
        for name, flatbuffer in zip(names, tflite.convert(model, [TFLITE_FORMS[name][1] for name in names])):
            files[name] = flatbuffer
            (folder / name).write_bytes(flatbuffer)
    progress(f"timing {len(files)} TFLite files at batch 1, {runs} runs each, {threads} threads (a fresh process)")
    timing = measure([folder / name for name in files], runs=runs, threads=threads)
    baseline = timing[BASELINE]
    for name, (source, _) in TFLITE_FORMS.items():
        flatbuffer = files[name]
        accuracy, difference, disagreements, _ = _outputs(
            lambda images, flatbuffer=flatbuffer: tflite.logits(flatbuffer, images, threads=threads), test, reference)
        forms.append(Form(name, len(files[name]), model_cost(masked if source == "masked" else compact), accuracy,
                          difference, disagreements, tflite.sparse_tensors(files[name]), timing[name].median_ms,
                          timing[name].p10_ms, timing[name].p90_ms, *timing[name].speedups_over(baseline)))
    return Export(forms, compaction.removed_channels, compaction.folded_layers, threads, timing[BASELINE].runs,
                  tflite.sparse_kernels_possible()[1], 0 if test is None else len(test.labels))
