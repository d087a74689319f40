"""The groups that never change a result, each key declared once: stability, lth (state), tracking, cluster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lth.config.declare import key


@dataclass(frozen=True)
class StabilityConfig:
    """The `stability` group: instability analysis (linear mode connectivity, Frankle et al. ICML 2020)."""

    enabled: bool = key("analyse this cell's ticket (or, at threshold 0, the dense network)", False)
    data_seeds: tuple[int, ...] | None = key("data seeds of copies 2..n; null = [the run's data seed + 1]", None)
    points: int = key("α values on the path from the copy (α=0) to copy 1 (α=1), both ends included", 30,
                      bounds="[2, inf)")
    bn: Literal["recompute", "interpolate"] = key("BatchNorm statistics at each α: recompute (from bn_batches "
                                                  "training batches) or interpolate (like every weight)",
                                                  "recompute")
    bn_batches: int = key("training batches BatchNorm statistics are recomputed from at each α", 32,
                          bounds="[1, inf)")
    threshold: float = key("stable: error barrier (max error on the path minus the ends' mean) below this", 0.02,
                           bounds="(0, 1)")
    reference: Literal["dense", "cell"] = key("reset.epoch=auto: the earliest candidate from which on the dense "
                                              "network (dense) or this cell's ticket (cell) is stable", "dense")
    candidates: tuple[int, ...] = key("the reset epochs reset.epoch=auto chooses from, analysed latest first",
                                      (0, 1, 2, 4))
    reference_seed: int = key("reset.epoch=auto: the train.seed whose reference decides k for every replicate of "
                              "a cell", 0, bounds="[0, inf)")


@dataclass(frozen=True)
class StateConfig:
    """The `lth` group: shared state, locks, kept epochs and what a sweep writes at its end."""

    state_dir: Path = key("locks and resumable training state; shared by every job of a sweep", Path(".lth"))
    keep_epochs: tuple[int, ...] | Literal["all"] = key("dense epochs kept as reset candidates: all, or a list "
                                                        "like [0, 1, 2, 4, 6]", "all")
    lock_timeout_min: float = key("how long a job waits for another training the same run", 720.0,
                                  bounds="(0, inf)")
    verbose: str | int = key("Keras progress: auto (a bar on a terminal, a line per epoch otherwise), 0, 1 or 2",
                             "auto")
    report_dir: Path = key("a sweep ends by writing its lottery-ticket report here", Path("reports"))
    report_tolerance: float = key("a ticket wins if its mean validation accuracy is at most this far below its "
                                  "dense parents' (and it beats its controls)", 0.01, bounds="[0, 1]")


@dataclass(frozen=True)
class TrackingConfig:
    """The `tracking` group: where runs are logged, and MLflow's HTTP retries (null: MLflow's default)."""

    uri: str = key("MLflow tracking URI")
    experiment: str = key("the MLflow experiment of dense parents and tickets")
    http_retries: int | None = key("retries of one request", None, bounds="[0, inf)")
    http_backoff_factor: float | None = key("seconds, a whole number", None, bounds="[0, inf)")
    http_backoff_jitter_s: float | None = key("random extra wait per retry", None, bounds="[0, inf)")
    http_timeout_s: float | None = key("a request without an answer by then is retried", None, bounds="(0, inf)")


@dataclass(frozen=True)
class ClusterConfig:
    """The `cluster` group as a run sees it (the launcher's own keys live under `hydra.launcher`)."""

    name: str = key("where jobs run: local, slurm or spark (tagged on every run)", "local")
