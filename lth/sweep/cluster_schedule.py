"""How long a sweep takes on a cluster, and why it is not N times faster on N slots (Amdahl).

A sweep runs in stages: its dense parents first (no ticket can start before its parent's
weights exist), then its tickets, all at once for a grid or round by round for a frontier
sweep. Within a stage, jobs are placed longest first on the first free slot (a slot is a
place one job runs: nodes x jobs per node, capped by the array's parallelism), which is
what a scheduler with free nodes does; a stage ends when its last job does.

Against one slot running every job in turn, the speed-up S is limited twice:
- the dense stage is serial work (Amdahl's law: S <= 1 / (f + (1 - f) / N) for a serial fraction f);
- a stage with more jobs than slots runs in waves, and its last wave may leave slots idle.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    """One SLURM job of the sweep."""

    kind: str  # dense or ticket
    epochs: int  # epochs it trains (a ticket at reset epoch k: E - k; an IMP job: levels x (E - k))
    stage: int  # 0: the dense parents; 1, 2, ...: ticket stages (a grid has one, a frontier one per round)


@dataclass(frozen=True)
class Cluster:
    """Where the jobs run and how fast."""

    slots: int  # jobs that run at once
    gpus_per_job: int
    epoch_minutes: float  # one epoch of one job on its GPUs
    overhead_minutes: float = 0.0  # per job: start-up, data loading, evaluation and logging

    def minutes(self, job: Job) -> float:
        return job.epochs * self.epoch_minutes + self.overhead_minutes


@dataclass(frozen=True)
class Plan:
    """The predicted cost of a sweep."""

    dense_jobs: int
    ticket_jobs: int
    gpu_epochs: float  # GPUs x epochs over every job
    gpu_hours: float
    serial_hours: float  # the dense stage's wall-clock
    serial_work_hours: float  # the dense stage's jobs one after the other (several seeds' parents run side by side)
    wall_hours: float  # every stage, one after the other
    one_slot_hours: float  # every job one after the other on one slot
    waves: tuple[int, ...]  # per stage: ceil(jobs / slots)
    slots: int

    @property
    def serial_fraction(self) -> float:
        """f: the share of the one-slot time that is the dense stage."""
        return self.serial_hours / self.one_slot_hours if self.one_slot_hours else 0.0

    @property
    def amdahl_speedup(self) -> float:
        """T1 / (dense wall-clock + the rest of T1 / N): the speed-up if every ticket split perfectly over the slots.

        With one dense parent this is Amdahl's 1 / (f + (1 - f) / N); several seeds' parents run side
        by side, so the serial part is the dense stage's wall-clock, and only the tickets' work divides.
        """
        rest = self.one_slot_hours - self.serial_work_hours
        bound = self.serial_hours + rest / self.slots
        return self.one_slot_hours / bound if bound else float(self.slots)

    @property
    def speedup(self) -> float:
        """S: one slot's time over the scheduled wall-clock (waves included)."""
        return self.one_slot_hours / self.wall_hours if self.wall_hours else 0.0

    @property
    def efficiency(self) -> float:
        """E = S / N."""
        return self.speedup / self.slots


def makespan(minutes: Sequence[float], slots: int) -> float:
    """When the last of `minutes` ends, placed longest first on the first free of `slots`."""
    free = [0.0] * min(slots, len(minutes))
    heapq.heapify(free)
    for duration in sorted(minutes, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free, default=0.0)


def plan(jobs: Sequence[Job], cluster: Cluster) -> Plan:
    """The predicted wall-clock, GPU-hours and speed-up of `jobs` on `cluster`."""
    if cluster.slots < 1:
        raise ValueError(f"a cluster needs at least one slot, got {cluster.slots}")
    stages = sorted({job.stage for job in jobs})
    stage_minutes = {s: makespan([cluster.minutes(j) for j in jobs if j.stage == s], cluster.slots) for s in stages}
    total = sum(cluster.minutes(job) for job in jobs)
    epochs = sum(job.epochs for job in jobs)
    return Plan(
        dense_jobs=sum(job.kind == "dense" for job in jobs), ticket_jobs=sum(job.kind == "ticket" for job in jobs),
        gpu_epochs=epochs * cluster.gpus_per_job, gpu_hours=total * cluster.gpus_per_job / 60,
        serial_hours=stage_minutes.get(0, 0.0) / 60,
        serial_work_hours=sum(cluster.minutes(job) for job in jobs if job.stage == 0) / 60,
        wall_hours=sum(stage_minutes.values()) / 60,
        one_slot_hours=total / 60,
        waves=tuple(math.ceil(sum(j.stage == s for j in jobs) / cluster.slots) for s in stages), slots=cluster.slots)


def why(result: Plan, hours: Callable[[float], str] = lambda h: f"{h:.1f} h") -> str:
    """Why S falls short of N, in one paragraph (`hours` formats a duration)."""
    if result.speedup >= result.slots * (1 - 1e-9):
        return f"S = N = {result.slots}: every stage fills every slot for as long as it lasts."
    reasons = []
    if result.serial_hours:
        reasons.append(f"the dense stage ({hours(result.serial_hours)}) must finish before any ticket starts: a serial "
                       f"fraction f = {100 * result.serial_fraction:.1f}%, so Amdahl's law caps S at "
                       f"{result.amdahl_speedup:.2f} on {result.slots} slots")
    ticket_waves = result.waves[1:] if result.dense_jobs else result.waves  # the dense stage is stage 0
    if any(w > 1 for w in ticket_waves) or len(ticket_waves) > 1:
        reasons.append(f"the tickets run in {'+'.join(map(str, ticket_waves))} wave(s) of at most {result.slots} jobs, "
                       f"and a wave lasts as long as its longest job")
    if not reasons:
        return "Nothing serial and one wave: S equals the number of jobs."
    return f"S = {result.speedup:.2f} < N = {result.slots} because " + "; and ".join(reasons) + "."
