"""Bad input fails in one line before training; a failing run ends FAILED with its error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.jobs import run_lth
from tests.support.store import runs


def test_bad_sweep_cell_stops_the_sweep_before_any_job(tmp_path: Path) -> None:
    done = run_lth(tmp_path, "-m", "prune.threshold=0.5,1.5", "reset.epoch=0")
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("lth: error")]
    assert errors == ["lth: error in sweep cell [prune.threshold=1.5 reset.epoch=0]: "
                      "prune.threshold must be in [0, 1) (the fraction of weights removed), got 1.5"]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_reset_after_the_end_is_refused_in_a_single_run(tmp_path: Path) -> None:
    done = run_lth(tmp_path, "reset.epoch=99")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "lth: error: reset.epoch=99 is after the end of training (train.epochs=15)")
    assert not (tmp_path / "mlflow.db").exists()


def test_unknown_ignored_layer_is_refused_before_the_dense_run(tmp_path: Path) -> None:
    done = run_lth(tmp_path, "prune.ignore=[Conv1,no_such_layer]", "data.train_limit=128")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("lth: error: prune.ignore names layers that are not prunable") and "no_such_layer" in last
    assert runs(tmp_path) == []


def test_a_floor_that_ceilings_past_the_threshold_is_refused_before_the_dense_run(tmp_path: Path) -> None:
    # 0.00995 < 1 - 0.99 passes the static check, but ceil(0.00995 * size) rounds MobileNetV2's small
    # layers up to a whole weight each, more than the 1% the threshold leaves: known once the model is built.
    done = run_lth(tmp_path, "prune.threshold=0.99", "prune.min_density=0.00995", "data.train_limit=128")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("lth: error: prune.min_density=0.00995 keeps ") and "lower prune.min_density" in last
    assert all(r.data.tags.get("lth.role") != "dense" for r in runs(tmp_path))  # nothing trained


def test_a_failing_run_ends_failed_with_the_exception_logged(tmp_path: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from lth import tracking

    experiment = tracking.connect(f"sqlite:///{tmp_path / 'mlflow.db'}", "lth")
    run_id = tracking.create_run(experiment, "ticket", "key", "t=0.50 k=1", {})
    with pytest.raises(ZeroDivisionError):
        with tracking.active_run(run_id):
            mlflow.log_metric("loss", 1.0)
            _ = 1 / 0
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["lth.error"] == "ZeroDivisionError: division by zero"
    assert "error.txt" in {a.path for a in MlflowClient().list_artifacts(run_id)}
    assert tracking.finished_run(tracking.find_runs(experiment, "ticket", "key")) is None


def test_a_failed_job_still_leaves_a_table_of_what_finished(tmp_path: Path, compose) -> None:
    from filelock import FileLock

    from lth.tracking.identity import dense_hash

    fast = ["train.epochs=2", "data.train_limit=128", "lth.verbose=0", "lth.lock_timeout_min=0.01"]
    blocked = dense_hash(compose(*fast, "train.seed=1"))
    lock_path = tmp_path / ".lth" / "locks" / f"dense-{blocked}.lock"
    lock_path.parent.mkdir(parents=True)
    with FileLock(str(lock_path)):  # another "job" holds seed 1's dense parent for longer than the timeout
        done = run_lth(tmp_path, "-m", "train.seed=0,1", *fast)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "lth: job 1 FAILED" in output and "gave up after 0.01 min waiting for dense parent" in output
    assert "1 of 2 jobs did not finish" in output
    assert re.search(r"lth: report \S+lottery\.png", output)  # the partial sweep still gets its report
    assert len(re.findall(r"ticket\s+lamp\s+0\s+0\.800\s+1\s+20\.00%", output)) == 1  # the finished cell's table row


def test_a_dense_parent_trained_on_other_replicas_with_per_replica_batchnorm_is_not_reused(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    tiny = ["train.epochs=1", "data.train_limit=128", "lth.verbose=0", "reset.epoch=0"]
    first = run_lth(tmp_path, "prune.threshold=0.5", *tiny)
    assert first.returncode == 0, first.stderr[-2000:]
    dense = next(r for r in runs(tmp_path) if r.data.tags["lth.role"] == "dense")
    assert dense.data.tags["lth.replicas"] == "1"
    # As if it had trained on a 4-GPU node (TensorFlow, sync_bn off): BatchNorm saw quarter batches there.
    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").set_tag(dense.info.run_id, "lth.replicas", "4")
    again = run_lth(tmp_path, "prune.threshold=0.8", *tiny)
    assert again.returncode != 0
    assert again.stderr.strip().splitlines()[-1].startswith(
        f"lth: error: dense parent {dense.info.run_id} was trained on 4 replica(s) and this job has 1")
    assert len([r for r in runs(tmp_path) if r.data.tags["lth.role"] == "ticket"]) == 1  # no ticket from it


@pytest.mark.slow  # two dense parents and two tickets: 76 s, and the default suite measured 21:12 with it
def test_tickets_of_a_deleted_dense_parent_are_not_reused_by_its_replacement(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    tiny = ["train.epochs=1", "data.train_limit=128", "lth.verbose=0", "reset.epoch=0", "prune.threshold=0.5"]
    assert run_lth(tmp_path, *tiny).returncode == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    old_dense = next(r for r in runs(tmp_path) if r.data.tags["lth.role"] == "dense")
    old_ticket = next(r for r in runs(tmp_path) if r.data.tags["lth.role"] == "ticket")
    assert old_ticket.data.tags["lth.dense_run"] == old_dense.info.run_id
    client.delete_run(old_dense.info.run_id)  # e.g. refused for its data order: the message says to delete it
    again = run_lth(tmp_path, *tiny)
    assert again.returncode == 0, again.stderr[-2000:]
    output = again.stdout + again.stderr
    assert "ignoring 1 ticket run(s) of this identity rewound from another dense run" in output
    new_dense = next(r for r in runs(tmp_path) if r.data.tags["lth.role"] == "dense")
    tickets = [r for r in runs(tmp_path) if r.data.tags["lth.role"] == "ticket"]
    assert new_dense.info.run_id != old_dense.info.run_id and len(tickets) == 2  # the old ticket is left, not reused
    fresh = next(r for r in tickets if r.info.run_id != old_ticket.info.run_id)
    assert fresh.data.tags["lth.dense_run"] == new_dense.info.run_id and fresh.info.status == "FINISHED"
