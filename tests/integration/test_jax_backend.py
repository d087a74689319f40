"""`train.backend=jax`: the whole search on Keras-on-JAX, with TensorFlow made unimportable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.jobs import lth_env
from tests.support.store import artifact, by_role, runs

pytestmark = pytest.mark.slow

# `python -m lth.train ARGS` in a process where `import tensorflow` fails, as on a machine without it.
WITHOUT_TENSORFLOW = """
import runpy, sys

class NoTensorFlow:  # an import finder that refuses TensorFlow, as if it were not installed
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoTensorFlow())
sys.argv = ["lth.train", *sys.argv[1:]]
runpy.run_module("lth.train", run_name="__main__")
"""


def test_a_ticket_trains_on_jax_without_tensorflow(tmp_path: Path) -> None:
    overrides = ["train.backend=jax", "data=synthetic", "data.num_classes=10", "data.train_size=256",
                 "data.val_size=64", "data.test_size=64", "train.epochs=2", "reset.epoch=1", "prune.threshold=0.8",
                 "prune.scope=layer", "lth.verbose=0"]
    done = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, *overrides], cwd=tmp_path, env=lth_env(),
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    dense, tickets = by_role(runs(tmp_path))
    assert len(dense) == 1 and len(tickets) == 1
    assert all(run.info.status == "FINISHED" for run in dense + tickets)
    assert tickets[0].data.params["train.backend"] == "jax"
    assert tickets[0].data.metrics["sparsity"] == pytest.approx(0.8, abs=1e-3)
    final = artifact(tmp_path, tickets[0], "weights/final.npz")
    masks = artifact(tmp_path, tickets[0], "mask.npz")
    assert sum(int(np.count_nonzero(final[f"{name}/kernel"][~mask])) for name, mask in masks.items()) == 0
