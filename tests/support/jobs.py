"""Running `python -m lth.train` as a user would: to the end, in the background, or killed at a chosen line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# Small enough for 2 CPU cores: 4 steps per epoch, 3 epochs.
FAST = ["train.epochs=3", "data.train_limit=256", "lth.verbose=2"]


def lth_env() -> dict[str, str]:
    """The caller's environment without MLflow settings, so the default store is used."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", PYTHONUNBUFFERED="1")
    return env


def run_lth(cwd: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run `python -m lth.train ARGS` in `cwd` and capture its output."""
    return subprocess.run([sys.executable, "-m", "lth.train", *args], cwd=cwd, env=lth_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def start_lth(cwd: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """Start `python -m lth.train ARGS` in the background, output to `log`."""
    handle = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "lth.train", *args], cwd=cwd, env=lth_env(),
                            stdout=handle, stderr=subprocess.STDOUT)


HALTING = Path(__file__).with_name("halting.py")  # the wrapper that halts a job at a text


def kill_lth_at(cwd: Path, *args: str, text: str, log: Path, timeout: float = 600) -> str:
    """Run `python -m lth.train ARGS` in `cwd` until it prints `text`, SIGKILL it there, and return its log.

    The job halts inside the write of `text` (tests/support/halting.py), so the kill lands at
    exactly that point, however busy the machine: polling the log and killing when the line shows
    up would let the job run on, possibly past the stage the test means to interrupt.
    """
    flag = log.with_name(log.name + ".halted")
    with log.open("wb") as handle:
        process = subprocess.Popen([sys.executable, str(HALTING), text, str(flag), "lth.train", *args], cwd=cwd,
                                   env=lth_env(), stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not flag.exists():
            assert process.poll() is None, f"the job ended without printing {text!r}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the job did not print {text!r} in {timeout} s:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGKILL)  # no handler, no cleanup, as a node crash or the OOM killer
        process.wait(timeout=60)
    return log.read_text()
