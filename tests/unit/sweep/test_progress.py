"""The sweep's progress line: its counts, its ETA from finished jobs, in place on a terminal, periodic otherwise."""

from __future__ import annotations

import io

from lth.sweep.progress import Counts, ProgressLine, duration, eta_s, line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_line_counts_every_state_and_the_eta_comes_from_finished_jobs() -> None:
    counts = Counts(done=12, running=8, pending=79, failed=1)
    assert counts.total == 100
    # 87 jobs left at 8 at a time: 11 rounds of the 300 s the finished jobs took on average.
    assert eta_s(counts, [200.0, 400.0], parallel=8) == 3300.0
    assert line("tickets", counts, 3300.0) == (
        "lth: tickets 12/100 done, 8 running, 79 pending, 1 failed; ETA 55 min 00 s")
    assert eta_s(counts, [], parallel=8) is None
    assert line("tickets", counts, None).endswith("; ETA after the first job")
    assert line("tickets", Counts(99, 0, 0, 1), 0.0) == "lth: tickets 99/100 done, 0 running, 0 pending, 1 failed"
    assert eta_s(Counts(1, 0, 3, 0), [10.0], parallel=0) == 30.0  # nothing running now: one at a time
    assert (duration(45), duration(725), duration(12000)) == ("45 s", "12 min 05 s", "3 h 20 min")


def test_off_a_terminal_a_line_is_printed_when_the_counts_change_or_a_period_passed() -> None:
    stream = io.StringIO()
    progress = ProgressLine("tickets", stream, every_s=3600.0)
    progress.show(Counts(0, 2, 2, 0), None)
    progress.show(Counts(0, 2, 2, 0), None)  # nothing moved: not printed again within the period
    progress.show(Counts(1, 2, 1, 0), 60.0)
    assert stream.getvalue().splitlines() == [
        "lth: tickets 0/4 done, 2 running, 2 pending, 0 failed; ETA after the first job",
        "lth: tickets 1/4 done, 2 running, 1 pending, 0 failed; ETA 1 min 00 s"]
    every_time = io.StringIO()
    periodic = ProgressLine("tickets", every_time, every_s=0.0)
    for _ in range(3):
        periodic.show(Counts(0, 1, 0, 0), None)
    assert len(every_time.getvalue().splitlines()) == 3


def test_on_a_terminal_the_line_is_rewritten_in_place_and_cleared_for_other_output() -> None:
    stream = Terminal()
    progress = ProgressLine("tickets", stream)
    assert progress.in_place
    progress.show(Counts(0, 10, 10, 0), None)
    progress.show(Counts(20, 0, 0, 0), 0.0)
    first = "lth: tickets 0/20 done, 10 running, 10 pending, 0 failed; ETA after the first job"
    last = "lth: tickets 20/20 done, 0 running, 0 pending, 0 failed"
    assert stream.getvalue() == "\r" + first + "\r" + last.ljust(len(first))  # no newline: one line, rewritten
    progress.clear()
    assert stream.getvalue().endswith("\r" + " " * len(last) + "\r")
    progress.show(Counts(20, 0, 0, 0), 0.0)
    progress.close()
    assert stream.getvalue().endswith(last + "\n")
