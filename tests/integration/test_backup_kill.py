"""A SIGKILL at any instant of a backup write leaves a backup a new job resumes from, bit-identically.

Keras' BackupAndRestore overwrites its weights file in place and then its epoch file, so
a kill inside the write leaves a half-written HDF5 file, or new weights beside the old
epoch. lth's backup writes each generation whole before it replaces the last one.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.jobs import lth_env

pytestmark = pytest.mark.slow  # 21 training processes: about 8 minutes on 2 cores

WORKER = Path(__file__).parents[1] / "support" / "workers" / "backup_kill.py"
KILLS = 20


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=lth_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _write_windows(reference: Path, backup: Path) -> dict[int, float]:
    """Train uninterrupted once; return how long each epoch's backup write took, by epoch."""
    worker = _start("train", str(backup), str(reference))
    output, _ = worker.communicate(timeout=600)
    assert worker.returncode == 0, output
    marks = {(kind, int(epoch)): float(at) for kind, epoch, at in re.findall(r"save-(begin|end) (\d) ([\d.]+)", output)}
    return {epoch: marks["end", epoch] - marks["begin", epoch] for epoch in (1, 2)}


def _kill_inside_write(backup: Path, epoch: int, delay: float) -> None:
    """Start a training job and SIGKILL it `delay` seconds after its backup of `epoch` began."""
    worker = _start("train", str(backup), str(backup.with_suffix(".unused.npz")))
    try:
        for line in worker.stdout:
            if line.startswith(f"save-begin {epoch} "):
                time.sleep(delay)
                os.kill(worker.pid, signal.SIGKILL)
                break
        worker.wait(timeout=60)
    finally:
        worker.kill()
    assert worker.returncode == -signal.SIGKILL, "the job ended before it was killed"


def test_a_job_killed_anywhere_in_a_backup_write_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    reference = tmp_path / "reference.npz"
    windows = _write_windows(reference, tmp_path / "reference-backup")
    backups = []
    for kill in range(KILLS):
        epoch = 1 + kill % 2  # epoch 1's write has no earlier backup to fall back on, epoch 2's has
        delay = windows[epoch] * 1.1 * (kill // 2) / (KILLS // 2 - 1)  # from its first instant to just past its end
        backups.append(tmp_path / f"kill-{kill:02d}-epoch-{epoch}-at-{delay:.3f}s")
        _kill_inside_write(backups[-1], epoch, delay)

    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    resumer = _start("resume", str(resumed_dir), *map(str, backups))
    output, _ = resumer.communicate(timeout=900)
    assert resumer.returncode == 0, output[-3000:]
    with np.load(reference) as archive:
        expected = {name: archive[name] for name in archive.files}
    wrong = re.findall(r"^failed .*$", output, flags=re.MULTILINE)
    for backup in backups:
        result = resumed_dir / f"{backup.name}.npz"
        if result.exists():
            with np.load(result) as archive:
                differ = [name for name in expected if not np.array_equal(archive[name], expected[name])]
            if differ or sorted(archive.files) != sorted(expected):
                wrong.append(f"{backup.name}: {len(differ)} of {len(expected)} variables differ, e.g. {differ[:3]}")
    assert not wrong, f"{len(wrong)} of {KILLS} killed jobs did not resume to the uninterrupted result:\n" + "\n".join(wrong)
