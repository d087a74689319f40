"""TFLite files of a Keras model, their outputs on a test set, and their latency under XNNPACK.

Two conversions: plain float32, and float32 with `tf.lite.Optimize.EXPERIMENTAL_SPARSITY`,
which stores each weight tensor that is sparse enough in a compressed sparse format (a
DENSIFY op in the file). TensorFlow's Python interpreter applies the XNNPACK delegate to float
models by default; XNNPACK unpacks such weights when it loads the file, and a file with sparse
weights is what makes it *consider* sparse (NCHW) inference (`XNN_FLAG_HINT_SPARSE_INFERENCE`).
Whether it uses it is XNNPACK's decision: among other conditions, its x86 sparse kernels are
SSE only, so on a CPU with AVX it always runs the dense kernels (`sparse_kernels_possible`).
"""

from __future__ import annotations

import contextlib
import logging
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np


@contextlib.contextmanager
def _quiet_tensorflow() -> Iterator[None]:
    # The SavedModel writer logs "Assets written to ..." at INFO for every conversion.
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _quiet_deprecation() -> Iterator[None]:
    # tf.lite.Interpreter warns that LiteRT replaces it; it is still TF 2.21's own interpreter.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated.*")
        yield


def convert(model: keras.Model, sparse: Sequence[bool] = (False, True)) -> list[bytes]:
    """The model as float32 TFLite flatbuffers, one per entry of `sparse` (True: sparse weights stored compressed).

    One SavedModel export serves every conversion (it takes as long as a conversion).
    """
    import tensorflow as tf

    flatbuffers = []
    with tempfile.TemporaryDirectory(prefix="lth-saved-model-") as folder, _quiet_tensorflow():
        model.export(folder, format="tf_saved_model", verbose=False)  # Keras 3's own SavedModel export
        for compressed in sparse:
            converter = tf.lite.TFLiteConverter.from_saved_model(folder)
            if compressed:
                converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
            flatbuffers.append(bytes(converter.convert()))
    return flatbuffers


def interpreter(flatbuffer: bytes, threads: int, batch: int | None = None) -> object:
    """A TFLite interpreter with the default delegates (XNNPACK), tensors allocated, at `batch` if given."""
    import tensorflow as tf

    with _quiet_deprecation():
        runner = tf.lite.Interpreter(model_content=flatbuffer, num_threads=threads)
    if batch is not None:
        details = runner.get_input_details()[0]
        runner.resize_tensor_input(details["index"], [batch, *details["shape"][1:]], strict=False)
    runner.allocate_tensors()
    return runner


def sparse_tensors(flatbuffer: bytes) -> int:
    """How many tensors of the file are stored in a sparse format."""
    runner = interpreter(flatbuffer, threads=1)
    return sum(1 for tensor in runner.get_tensor_details() if tensor.get("sparsity_parameters"))


def logits(flatbuffer: bytes, images: np.ndarray, batch: int = 256, threads: int = 2) -> np.ndarray:
    """The model's outputs for `images`, in batches of `batch` (the last one resized to fit)."""
    outputs = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        runner = interpreter(flatbuffer, threads, batch=len(chunk))
        runner.set_tensor(runner.get_input_details()[0]["index"], chunk)
        runner.invoke()
        outputs.append(np.array(runner.get_tensor(runner.get_output_details()[0]["index"])))
    return np.concatenate(outputs)


@dataclass(frozen=True)
class Latency:
    """Wall-clock time of one `invoke()` at batch 1."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    round_medians_ms: list[float]  # the median of each interleaved round, in round order

    def speedups_over(self, baseline: Latency) -> tuple[float, float, float]:
        """(median, p10, p90) over rounds of baseline / this, each round against the same round's baseline.

        Pairing by round cancels what a slow spell of the machine does to a whole round; on 2
        shared cores a run-wide median ratio of two identical files drifted up to 3x. The p10-p90
        spread over rounds is the noise within one run; a rerun in a new process adds its own.
        """
        ratios = [b / t for b, t in zip(baseline.round_medians_ms, self.round_medians_ms)]
        return (float(statistics.median(ratios)), float(np.percentile(ratios, 10)), float(np.percentile(ratios, 90)))

    def speedup_over(self, baseline: Latency) -> float:
        """The median over rounds of baseline / this (see `speedups_over`)."""
        return self.speedups_over(baseline)[0]


def latencies(files: Mapping[str, bytes], runs: int = 100, threads: int = 2, rounds: int = 20, seed: int = 0,
              warmup_s: float = 0.3, min_seconds: float = 1.0, max_runs: int = 20000) -> dict[str, Latency]:
    """Median latency of each file at batch 1, measured in interleaved rounds.

    Every round times the same number of invocations of every file, the files in a fresh random
    order each round, so a slow spell of the machine falls on all of them alike, and ratios are
    taken round by round (`Latency.speedups_over`). Each file runs at least `runs` times, and
    more for a fast model, until each has been timed for about `min_seconds` (at most
    `max_runs`): 200 calls of a 50 us model last 10 ms, which one hiccup of a shared machine
    spoils. Each file first runs for `warmup_s` seconds (at least 10 times), and a few untimed
    calls open every round of a file: switching interpreters (each has its own thread pool)
    slows the next calls, by up to 20% in the median of 20 calls on 2 cores.
    """
    runners = {name: interpreter(flatbuffer, threads, batch=1) for name, flatbuffer in files.items()}
    rng = np.random.default_rng(seed)
    warm: list[float] = []
    for runner in runners.values():
        details = runner.get_input_details()[0]
        image = rng.integers(0, 255, details["shape"]).astype(details["dtype"])
        runner.set_tensor(details["index"], image)
        started, calls = time.perf_counter(), 0
        while calls < 10 or time.perf_counter() - started < warmup_s:
            runner.invoke()
            calls += 1
        warm.append((time.perf_counter() - started) / calls)
    wanted = min(max_runs, max(runs, int(min_seconds / max(statistics.median(warm), 1e-7))))
    times: dict[str, list[list[float]]] = {name: [] for name in files}
    per_round = max(1, -(-wanted // rounds))
    settle = max(3, per_round // 5)
    names = list(runners)
    for _ in range(rounds):
        for index in rng.permutation(len(names)):
            runner = runners[names[index]]
            for _ in range(settle):  # untimed: the first calls after another interpreter ran are slower
                runner.invoke()
            spent = []
            for _ in range(per_round):
                started = time.perf_counter()
                runner.invoke()
                spent.append(time.perf_counter() - started)
            times[names[index]].append(spent)
    result = {}
    for name, by_round in times.items():
        every = [seconds for spent in by_round for seconds in spent]
        result[name] = Latency(statistics.median(every) * 1e3, float(np.percentile(every, 10)) * 1e3,
                               float(np.percentile(every, 90)) * 1e3, len(every),
                               [statistics.median(spent) * 1e3 for spent in by_round])
    return result


def sparse_kernels_possible() -> tuple[bool, str]:
    """Whether XNNPACK can run sparse kernels on this CPU at all, and why (from its hardware config)."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "i386", "i686"):
        return True, f"{machine}: XNNPACK's sparse kernels are available; it chooses them per model"
    flags = ""
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text()
    if " avx" in flags:
        return False, ("x86 with AVX: XNNPACK's x86 sparse kernels are SSE only and it runs dense kernels on any CPU "
                       "with AVX, so a sparse file here only saves space")
    return True, "x86 without AVX: XNNPACK may run sparse (NCHW) kernels for sparse 1x1 convolutions"
