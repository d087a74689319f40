"""An xnnpack_1x1 ticket trained by `python -m lth.train` reports the fraction of ALL prunable weights it keeps."""

from __future__ import annotations

from pathlib import Path

from tests.support.jobs import run_lth
from tests.support.store import artifact, by_role, runs


def test_an_xnnpack_ticket_reports_its_share_of_all_prunable_weights(tmp_path: Path) -> None:
    done = run_lth(tmp_path, "prune.structure=xnnpack_1x1", "prune.threshold=0.9", "reset.epoch=1",
                   "train.epochs=2", "data.train_limit=128", "lth.verbose=0")
    assert done.returncode == 0, done.stderr[-3000:]
    _, [ticket] = by_role(runs(tmp_path))
    mask = artifact(tmp_path, ticket, "mask.npz")
    # Every prunable layer's kernel (Conv2D, DepthwiseConv2D, Dense: the only layers with a `kernel` here).
    kernels = {path.removesuffix("/kernel"): value.size
               for path, value in artifact(tmp_path, ticket, "weights/final.npz").items() if path.endswith("/kernel")}
    assert set(mask) < set(kernels) and "Conv1" in kernels and "predictions" in kernels
    kept = sum(int(m.sum()) for m in mask.values()) + sum(size for name, size in kernels.items() if name not in mask)
    metrics = ticket.data.metrics
    assert metrics["weights_remaining"] == kept / sum(kernels.values())  # 18.4%, not the 10% of the 1x1 weights
    assert metrics["sparsity"] == 1 - kept / sum(kernels.values())
    masked = sum(m.size for m in mask.values())
    assert metrics["weights_remaining_of_masked_layers"] == sum(int(m.sum()) for m in mask.values()) / masked
