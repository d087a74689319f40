"""Latency of TFLite files, always in a process of its own: `python -m lth.export.latency FILE... [--runs N]`.

The export times its files by starting this module, and `python -m lth.export <run> --latency-only`
runs the same code, so a rerun measures exactly what the export measured, under the same
conditions: a process that holds only the interpreters (not the Keras models, TensorFlow's
converter and their threads), so the ratios between files are reproducible.
Prints one JSON object: file name -> median, p10 and p90 in ms, and the number of runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from lth.export.tflite import Latency


def measure(paths: Sequence[Path], runs: int, threads: int) -> dict[str, Latency]:
    """Time every file (named by its file name) in a fresh Python process; see `lth.export.tflite.latencies`."""
    command = [sys.executable, "-m", "lth.export.latency", *map(str, paths), "--runs", str(runs),
               "--threads", str(threads)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"timing the TFLite files failed:\n{done.stderr[-3000:]}")
    return {name: Latency(**figures) for name, figures in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Time the files given on the command line and print the JSON."""
    parser = argparse.ArgumentParser(prog="python -m lth.export.latency", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="TFLite files")
    parser.add_argument("--runs", type=int, default=100, help="timed runs per file")
    parser.add_argument("--threads", type=int, default=2, help="interpreter threads")
    arguments = parser.parse_args(argv)
    from lth.export.tflite import latencies  # TensorFlow only now: --help stays fast

    timing = latencies({path.name: path.read_bytes() for path in arguments.files}, runs=arguments.runs,
                       threads=arguments.threads)
    print(json.dumps({name: dataclasses.asdict(figures) for name, figures in timing.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
