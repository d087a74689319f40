"""One progress line for a running sweep: done / running / pending / failed, and an ETA.

On a terminal the line is rewritten in place at every update; otherwise (a log file, CI,
`nohup`) it is printed as a new line when the counts change, and at most every
`every_s` seconds when they do not, so a log shows the sweep moving without flooding.

The ETA comes from the finished jobs' own times: the mean time a job took, times the
rounds of work left at the parallelism seen so far (SLURM's array throttle, free nodes).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class Counts:
    """Where the jobs of a sweep stand."""

    done: int
    running: int
    pending: int
    failed: int

    @property
    def total(self) -> int:
        """Every job of the sweep."""
        return self.done + self.running + self.pending + self.failed


def duration(seconds: float) -> str:
    """`45 s`, `12 min 05 s`, `3 h 20 min`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def eta_s(counts: Counts, job_seconds: list[float], parallel: int) -> float | None:
    """Seconds until the sweep ends, from the finished jobs' times; None before any job finished.

    Args:
        counts: Where the jobs stand now.
        job_seconds: How long each finished job took.
        parallel: The most jobs seen running at once (at least 1 is assumed).
    """
    if not job_seconds:
        return None
    mean = sum(job_seconds) / len(job_seconds)
    rounds = math.ceil((counts.pending + counts.running) / max(parallel, counts.running, 1))
    return mean * rounds


def line(label: str, counts: Counts, eta: float | None) -> str:
    """The progress line, e.g. `lth: tickets 12/100 done, 8 running, 79 pending, 1 failed; ETA 1 h 02 min`."""
    finished = counts.done + counts.failed
    when = "" if finished == counts.total else f"; ETA {duration(eta)}" if eta is not None else "; ETA after the first job"
    return (f"lth: {label} {counts.done}/{counts.total} done, {counts.running} running, {counts.pending} pending, "
            f"{counts.failed} failed{when}")


class ProgressLine:
    """Shows a sweep's progress on `stream`: in place on a terminal, as periodic lines otherwise."""

    def __init__(self, label: str, stream: TextIO | None = None, every_s: float = 60.0,
                 in_place: bool | None = None) -> None:
        """Args:
            label: What the jobs are, e.g. `tickets`.
            stream: Where to show it (standard error by default).
            every_s: Off a terminal, the longest wait between two lines that say the same.
            in_place: Rewrite one line; None: when `stream` is a terminal.
        """
        self.label, self.stream, self.every_s = label, stream or sys.stderr, every_s
        self.in_place = self.stream.isatty() if in_place is None else in_place
        self._last: tuple[str, float] | None = None  # (counts part of the last line, when it was printed)
        self._width = 0

    def show(self, counts: Counts, eta: float | None) -> None:
        """Show the sweep as it stands now."""
        text = line(self.label, counts, eta)
        if self.in_place:
            # \r rewrites the line; the padding clears what a longer previous line left behind.
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            counted = text.split(";")[0]
            now = time.monotonic()
            if self._last is not None and self._last[0] == counted and now - self._last[1] < self.every_s:
                return
            self._last = (counted, now)
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Wipe the line in place, so another message prints cleanly (it is shown again at the next update)."""
        if self.in_place and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def close(self) -> None:
        """End the line in place, so what is printed next starts on a line of its own."""
        if self.in_place and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
