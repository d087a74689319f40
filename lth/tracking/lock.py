"""Cross-process exclusion for work that must happen once (a dense parent, a ticket).

An OS file lock (flock) is released by the kernel when its holder dies, so a job that
crashed never blocks the sweep: the next waiter takes over and resumes the work.
The lock folder must be on a filesystem every job of a sweep sees.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger("lth")


@contextlib.contextmanager
def exclusive(state_dir: Path, name: str, timeout_min: float, what: str) -> Iterator[None]:
    """Hold the lock `<state_dir>/locks/<name>.lock` for the duration of the block.

    Args:
        state_dir: The sweep's shared state folder (`lth.state_dir`).
        name: Lock name, unique per piece of work.
        timeout_min: Give up waiting after this many minutes.
        what: Human-readable description for the waiting message.

    Raises:
        TimeoutError: If another job held the lock for longer than `timeout_min`.
    """
    path = state_dir / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for %s: another job is working on it (lock %s)", what, path)
        try:
            lock.acquire(timeout=timeout_min * 60)
        except Timeout as error:
            raise TimeoutError(f"gave up after {timeout_min} min waiting for {what} (lock {path})") from error
    try:
        yield
    finally:
        lock.release()
