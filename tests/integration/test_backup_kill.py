"""A SIGKILL in any phase of a backup write leaves a backup that a new job resumes from, bit-identically.

Keras' BackupAndRestore overwrites its weights file in place and then its epoch file, so
a kill inside the write leaves a half-written HDF5 file, or new weights beside the old
epoch. lth's backup writes each generation whole before it replaces the last one.

Each killed job kills itself at one phase of one epoch's write (tests/support/workers/backup_kill.py),
so every phase is hit exactly, whatever the machine's load. Kills at random instants inside the
write, many of them: benchmarks/backup_kill_sweep.py.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.jobs import lth_env

pytestmark = pytest.mark.slow  # 11 short training processes of LeNet-300-100 (the worker's default)

WORKER = Path(__file__).parents[1] / "support" / "workers" / "backup_kill.py"
EPOCHS = 3  # the worker's schedule
BEFORE_RENAME = ("folder-made", "weights-cut", "weights-written", "metadata-written", "flushed")
AFTER_RENAME = ("renamed", "done")
# Epoch 2's write has an earlier backup to fall back on: every phase. Epoch 1's has none: one phase on each side.
KILLS = [(2, phase) for phase in BEFORE_RENAME + AFTER_RENAME] + [(1, "weights-cut"), (1, "renamed")]


def _worker(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(WORKER), *args], env=lth_env(), text=True, capture_output=True,
                          timeout=timeout, check=False)


def _resumed_from(epoch: int, phase: str) -> int:
    """The epoch a job killed in `phase` of epoch `epoch`'s write must resume from: the rename is the commit."""
    return epoch if phase in AFTER_RENAME else epoch - 1


def test_a_job_killed_in_any_phase_of_a_backup_write_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    reference = _worker("train", str(tmp_path / "reference-backup"), str(tmp_path / "reference.npz"), timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]
    phases = re.findall(r"^phase (\d) (\S+) ", reference.stdout, flags=re.MULTILINE)
    assert [(int(e), p) for e, p in phases if p != "weights-cut"] == [
        (epoch, phase) for epoch in range(1, EPOCHS + 1) for phase in BEFORE_RENAME + AFTER_RENAME
        if phase != "weights-cut"]  # every phase is reached, in order, in every epoch's write

    backups = []
    for epoch, phase in KILLS:
        backups.append(tmp_path / f"killed-epoch-{epoch}-{phase}")
        killed = _worker("train", str(backups[-1]), str(tmp_path / "unused.npz"), str(epoch), phase, timeout=600)
        assert killed.returncode == -signal.SIGKILL, f"{backups[-1].name}: {killed.stderr[-2000:]}"
        assert killed.stdout.rstrip().splitlines()[-1].startswith(f"phase {epoch} {phase} ") or phase == "weights-cut"

    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    resumer = _worker("resume", str(resumed_dir), *map(str, backups), timeout=900)
    assert resumer.returncode == 0, resumer.stderr[-3000:]
    trained = {name: int(epochs) for name, epochs in re.findall(r"^trained (\S+) (\d+)$", resumer.stdout, re.MULTILINE)}
    with np.load(tmp_path / "reference.npz") as archive:
        expected = {name: archive[name] for name in archive.files}
    wrong = re.findall(r"^failed .*$", resumer.stdout, flags=re.MULTILINE)
    for (epoch, phase), backup in zip(KILLS, backups):
        # A job that threw its backup away and trained from epoch 0 would end bit-identical too: count its epochs.
        if trained.get(backup.name) != EPOCHS - _resumed_from(epoch, phase):
            wrong.append(f"{backup.name}: trained {trained.get(backup.name)} epochs, not "
                         f"{EPOCHS - _resumed_from(epoch, phase)} (resumed from epoch {_resumed_from(epoch, phase)})")
        result = resumed_dir / f"{backup.name}.npz"
        if result.exists():
            with np.load(result) as archive:
                differ = [name for name in expected if not np.array_equal(archive[name], expected[name])]
                if differ or sorted(archive.files) != sorted(expected):
                    wrong.append(f"{backup.name}: {len(differ)} of {len(expected)} variables differ, e.g. {differ[:3]}")
    assert not wrong, f"{len(wrong)} of {len(KILLS)} killed jobs did not resume as they must:\n" + "\n".join(wrong)
