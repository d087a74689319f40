"""The end-to-end search: a 3 x 2 multirun via subprocess against a fresh default MLflow store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.jobs import FAST, run_lth
from tests.support.store import artifact, by_role, runs

THRESHOLDS = (0.5, 0.8, 0.9)
GLOBAL = ["prune.scope=global", "prune.min_density=0"]  # plain global magnitude, recomputed independently below
RESETS = (0, 1)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    cwd = tmp_path_factory.mktemp("sweep")
    done = run_lth(cwd, "-m", "prune.threshold=" + ",".join(map(str, THRESHOLDS)),
                   "reset.epoch=" + ",".join(map(str, RESETS)), *FAST, *GLOBAL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return cwd, done.stdout + done.stderr


def test_one_dense_parent_and_six_finished_tickets_grouped_under_it(sweep: tuple[Path, str]) -> None:
    cwd, _ = sweep
    all_runs = runs(cwd)
    dense, tickets = by_role(all_runs)
    assert len(dense) == 1 and len(tickets) == 6
    assert {r.info.status for r in all_runs} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in tickets} == {dense[0].info.run_id}
    cells = {(float(r.data.tags["lth.threshold"]), int(r.data.tags["lth.reset_epoch"])) for r in tickets}
    assert cells == {(t, k) for t in THRESHOLDS for k in RESETS}
    assert {r.info.run_name for r in tickets} == {f"t={t:.2f} k={k}" for t in THRESHOLDS for k in RESETS}
    assert all(r.data.tags["lth.dense_hash"] == dense[0].data.tags["lth.key"] for r in tickets)
    assert (cwd / "mlflow.db").is_file() and (cwd / "mlruns").is_dir()  # MLflow's own default, for `mlflow ui`


def test_each_ticket_is_exactly_the_pruned_rewound_dense_network(sweep: tuple[Path, str]) -> None:
    cwd, _ = sweep
    all_runs = runs(cwd)
    dense = next(r for r in all_runs if r.data.tags["lth.role"] == "dense")
    final = artifact(cwd, dense, "weights/final.npz")
    kernels = [path for path in final if path.endswith("/kernel")]  # every Conv2D, DepthwiseConv2D, Dense
    magnitudes = np.concatenate([np.abs(final[path]).ravel() for path in kernels])
    for ticket in (r for r in all_runs if r.data.tags["lth.role"] == "ticket"):
        t, k = float(ticket.data.tags["lth.threshold"]), int(ticket.data.tags["lth.reset_epoch"])
        mask = artifact(cwd, ticket, "mask.npz")
        assert sorted(mask) == sorted(path.removesuffix("/kernel") for path in kernels)
        # Independent recomputation: keep what is above the n-th smallest magnitude (no ties in trained floats).
        cutoff = np.sort(magnitudes)[round(t * magnitudes.size) - 1]
        for path in kernels:
            np.testing.assert_array_equal(mask[path.removesuffix("/kernel")], np.abs(final[path]) > cutoff)
        kept = sum(int(m.sum()) for m in mask.values())
        assert kept == magnitudes.size - round(t * magnitudes.size)
        assert ticket.data.metrics["sparsity"] == pytest.approx(t, abs=1 / magnitudes.size)
        start = artifact(cwd, ticket, "weights/start.npz")
        checkpoint = artifact(cwd, dense, f"checkpoints/epoch_{k:03d}.npz")
        for path, value in checkpoint.items():
            expected = value * mask[path.removesuffix("/kernel")] if path in kernels else value
            np.testing.assert_array_equal(start[path], expected, err_msg=path)
        trained = artifact(cwd, ticket, "weights/final.npz")
        for path in kernels:
            assert np.count_nonzero(trained[path][~mask[path.removesuffix("/kernel")]]) == 0
        assert ticket.data.metrics["epochs_trained"] == 3 - k


def test_runs_carry_config_metrics_and_artifacts(sweep: tuple[Path, str]) -> None:
    from mlflow.tracking import MlflowClient

    cwd, _ = sweep
    ticket = next(r for r in runs(cwd) if r.data.tags["lth.role"] == "ticket" and r.data.tags["lth.reset_epoch"] == "1")
    assert ticket.data.params["train.epochs"] == "3" and ticket.data.params["prune.scope"] == "global"
    assert {"test_accuracy", "weights_remaining", "device_epochs", "sparsity.Conv_1"} <= set(ticket.data.metrics)
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    history = client.get_metric_history(ticket.info.run_id, "loss")
    assert [point.step for point in history] == [2, 3]  # epochs k+1..E, aligned with the dense run's steps
    names = {a.path for a in client.list_artifacts(ticket.info.run_id)}
    assert {"mask.npz", "sparsity.json", "weights", "hydra"} <= names
    hydra_files = {a.path for a in client.list_artifacts(ticket.info.run_id, "hydra")}
    assert "hydra/config.yaml" in hydra_files


def test_sweep_prints_a_line_per_job_and_a_results_table(sweep: tuple[Path, str]) -> None:
    _, output = sweep
    assert output.count("lth: job ") == 6
    progress = [line for line in output.splitlines() if line.startswith("lth: jobs ")]  # between jobs, one each
    assert progress[0].startswith("lth: jobs 1/6 done, 0 running, 5 pending, 0 failed; ETA ")
    assert progress[-1] == "lth: jobs 6/6 done, 0 running, 0 pending, 0 failed" and len(progress) == 6
    assert "threshold  reset epoch  weights remaining  test accuracy  dense accuracy" in output
    assert "mlflow ui" in output


def test_rerun_reuses_every_finished_run(sweep: tuple[Path, str]) -> None:
    cwd, _ = sweep
    before = {r.info.run_id for r in runs(cwd)}
    again = run_lth(cwd, "-m", "prune.threshold=" + ",".join(map(str, THRESHOLDS)),
                    "reset.epoch=" + ",".join(map(str, RESETS)), *FAST, *GLOBAL)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {r.info.run_id for r in runs(cwd)} == before
    output = again.stdout + again.stderr
    assert output.count("reusing finished ticket") == 6 and "Epoch 1/3" not in output
