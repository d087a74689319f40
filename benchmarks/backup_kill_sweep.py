"""SIGKILLs at many instants inside backup writes: does every killed job resume to the uninterrupted result?

The CI test (tests/integration/test_backup_kill.py) kills once in each phase of a write, at
exactly that phase. This sweep kills from outside, at `--kills` instants spread evenly from the
first instant of an epoch's write to just past its end (alternating epochs 1 and 2: epoch 1's
write has no earlier backup to fall back on, epoch 2's has), as a node crash would land. Each
killed job is then started again; the table gives, per kill, the last phase the job reached,
the epochs the resumed job trained, and whether its final variables equal the uninterrupted run's.

    python benchmarks/backup_kill_sweep.py --kills 20 --model mobilenet_v2_tiny
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "support" / "workers" / "backup_kill.py"
EPOCHS = 3  # the worker's schedule


MODEL = "lenet_300_100"  # the config group model= of the killed jobs (--model)


def _start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "LTH_KILL_MODEL": MODEL}
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)


def _write_windows(folder: Path) -> dict[int, float]:
    """Train uninterrupted once (the reference); return how long each epoch's backup write took."""
    worker = _start("train", str(folder / "reference-backup"), str(folder / "reference.npz"))
    output, _ = worker.communicate(timeout=900)
    if worker.returncode != 0:
        raise SystemExit(f"the uninterrupted run failed:\n{output[-3000:]}")
    marks = {(kind, int(epoch)): float(at) for kind, epoch, at in re.findall(r"save-(begin|end) (\d) ([\d.]+)", output)}
    return {epoch: marks["end", epoch] - marks["begin", epoch] for epoch in (1, 2)}


def _kill_inside_write(backup: Path, epoch: int, delay: float) -> str:
    """Start a job, SIGKILL it `delay` s after its backup of `epoch` began; the last phase it printed."""
    worker = _start("train", str(backup), str(backup.with_suffix(".unused.npz")))
    last = "save-begin"
    try:
        assert worker.stdout is not None
        for line in worker.stdout:
            if line.startswith(f"save-begin {epoch} "):
                time.sleep(delay)
                os.kill(worker.pid, signal.SIGKILL)
                break
        rest, _ = worker.communicate(timeout=60)  # what it printed before the kill landed
        phases = re.findall(rf"^phase {epoch} (\S+) ", rest, flags=re.MULTILINE)
        last = phases[-1] if phases else last
    finally:
        worker.kill()
    if worker.returncode != -signal.SIGKILL:
        raise SystemExit(f"{backup.name}: the job ended before it was killed")
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kill instants, alternating epochs 1 and 2")
    parser.add_argument("--model", default="mobilenet_v2_tiny", help="the network: a conf/model group (default: the tiny "
                        "MobileNetV2 of the digits default, BatchNorm statistics in its backup)")
    arguments = parser.parse_args()
    global MODEL
    MODEL = arguments.model
    with tempfile.TemporaryDirectory(prefix="lth-backup-kill-") as scratch:
        folder = Path(scratch)
        windows = _write_windows(folder)
        print(f"model={MODEL}; backup write of epoch 1: {windows[1] * 1000:.1f} ms, of epoch 2: {windows[2] * 1000:.1f} ms")
        kills = []
        per_epoch = max(arguments.kills // 2 - 1, 1)
        for kill in range(arguments.kills):
            epoch = 1 + kill % 2
            delay = windows[epoch] * 1.1 * (kill // 2) / per_epoch  # from its first instant to just past its end
            backup = folder / f"kill-{kill:02d}-epoch-{epoch}"
            kills.append((backup, epoch, delay, _kill_inside_write(backup, epoch, delay)))
            print(f"killed {backup.name} at {delay * 1000:.1f} ms", flush=True)
        resumed = folder / "resumed"
        resumed.mkdir()
        resumer = _start("resume", str(resumed), *(str(backup) for backup, *_ in kills))
        output, _ = resumer.communicate(timeout=1800)
        trained = dict(re.findall(r"^trained (\S+) (\d+)$", output, flags=re.MULTILINE))
        with np.load(folder / "reference.npz") as archive:
            expected = {name: archive[name] for name in archive.files}
        print("\n| kill | epoch | at ms | last phase printed | epochs trained on resume | equal to uninterrupted |")
        print("|---|---|---|---|---|---|")
        equal_count = 0
        for backup, epoch, delay, phase in kills:
            result = resumed / f"{backup.name}.npz"
            equal = result.exists() and _equal(result, expected)
            equal_count += equal
            print(f"| {backup.name} | {epoch} | {delay * 1000:.1f} | {phase} | {trained.get(backup.name, 'failed')} | "
                  f"{'yes' if equal else 'NO'} |")
        print(f"\n{equal_count} of {len(kills)} killed jobs resumed to the uninterrupted result")


def _equal(path: Path, expected: dict[str, np.ndarray]) -> bool:
    with np.load(path) as archive:
        return sorted(archive.files) == sorted(expected) and all(
            np.array_equal(archive[name], value) for name, value in expected.items())


if __name__ == "__main__":
    main()
