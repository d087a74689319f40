"""README claims end to end: a crashed dense parent resumed in its run, divergence as a status, a refused collapse.

One store and one dense parent serve every test: the first job is killed during the dense run,
the same sweep is started again (it resumes the dense parent, then trains a ticket that cannot
learn), and a refusing job reuses the parent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.support.jobs import kill_lth_at, run_lth
from tests.support.store import artifact, by_role, runs

pytestmark = pytest.mark.slow  # three jobs on the full digits: about two minutes on 2 cores

EPOCHS = 4
# The full digits, so the dense parent learns well above 2/num_classes in 4 epochs (measured: 0.79).
# The chance verdict is judged only for a ticket whose parent learned; a parent at chance
# (e.g. 256 images, where BatchNorm's statistics have not settled) would make it mean nothing.
DENSE = [f"train.epochs={EPOCHS}", "lth.verbose=2"]  # verbose 2: one "Epoch n/E" line per epoch, to watch
# Global magnitude without a floor empties MobileNetV2's head at 99%: the ticket predicts one class.
EMPTY_HEAD = ["prune.scope=global", "prune.min_density=0", "reset.epoch=1"]
DIVERGING = [*EMPTY_HEAD, "prune.threshold=0.99"]
# on_collapse is not part of a ticket's identity, so the refused cell must differ from the diverging one.
REFUSED = [*EMPTY_HEAD, "prune.threshold=0.98", "prune.on_collapse=refuse"]
PER_EPOCH = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


@dataclass(frozen=True)
class Resumed:
    """A store whose dense parent was killed mid-run and resumed by the next job."""

    cwd: Path
    killed_log: str
    killed_run_id: str  # the dense run the killed job started
    steps_at_kill: set[int]  # epochs whose loss the killed job had logged
    status_at_kill: str
    rerun_output: str


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> Resumed:
    cwd = tmp_path_factory.mktemp("claims")
    # Killed where epoch 2 begins ("Epoch 2/E" is printed then): epoch 1's metrics and backup are written by then.
    killed_log = kill_lth_at(cwd, "-m", *DENSE, *DIVERGING, text=f"Epoch 2/{EPOCHS}", log=cwd / "killed.log")
    assert f"Epoch 2/{EPOCHS}" in killed_log, killed_log[-3000:]
    assert "starting ticket" not in killed_log, "the job was killed after the dense run, not during it"
    found = re.search(r"starting dense parent (\w+)", killed_log)
    assert found, killed_log[-3000:]
    [dense] = by_role(runs(cwd))[0]
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    steps = {m.step for m in client.get_metric_history(dense.info.run_id, "loss")}
    rerun = run_lth(cwd, "-m", *DENSE, *DIVERGING)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    return Resumed(cwd, killed_log, found.group(1), steps, dense.info.status, rerun.stdout + rerun.stderr)


def test_a_crashed_dense_parent_is_resumed_in_the_same_run(resumed: Resumed) -> None:
    assert resumed.status_at_kill == "RUNNING" and 1 in resumed.steps_at_kill  # killed unfinished, epoch 1 logged
    output = resumed.rerun_output
    assert f"resuming unfinished dense parent {resumed.killed_run_id}" in output
    backup = re.search(rf"resumed from the backup of epoch (\d+); training epochs (\d+)\.\.{EPOCHS}", output)
    assert backup, output[-3000:]
    epoch = int(backup.group(1))
    assert 1 <= epoch <= max(resumed.steps_at_kill) and int(backup.group(2)) == epoch + 1
    assert f"Epoch 1/{EPOCHS}" not in output  # the dense run did not start over (the ticket starts at epoch 2)
    dense, _ = by_role(runs(resumed.cwd))
    assert [r.info.run_id for r in dense] == [resumed.killed_run_id]  # one dense run, the one the killed job began
    assert dense[0].info.status == "FINISHED" and "lth.error" not in dense[0].data.tags
    client = MlflowClient(f"sqlite:///{resumed.cwd / 'mlflow.db'}")
    for metric in PER_EPOCH:
        assert {m.step for m in client.get_metric_history(dense[0].info.run_id, metric)} == set(range(1, EPOCHS + 1))
    assert dense[0].data.metrics["epochs_trained"] == EPOCHS and "test_accuracy" in dense[0].data.metrics


def test_a_ticket_stuck_at_chance_is_tagged_diverged_and_reports_no_accuracy(resumed: Resumed) -> None:
    _, [ticket] = by_role(runs(resumed.cwd))
    mask = artifact(resumed.cwd, ticket, "mask.npz")
    assert int(mask["predictions"].sum()) == 0 and int(mask["Conv_1"].sum()) == 0  # the head is empty
    tags, metrics = ticket.data.tags, ticket.data.metrics
    assert metrics["dense_test_accuracy"] > 2 / 10  # the parent learned, so "chance" is a verdict
    assert ticket.info.status == "FINISHED"
    assert tags["lth.diverged"] == "chance" and tags["lth.diverged_epoch"] == str(EPOCHS)  # judged on the last epoch
    assert "test_accuracy" not in metrics and metrics["diverged_test_accuracy"] <= 1.5 / 10
    line = re.search(r"lth: job 0: ticket \[global\] t=0\.99 k=1: [\d.]+% weights, (.*)", resumed.rerun_output)
    assert line and line.group(1).startswith("DIVERGED (no accuracy)"), resumed.rerun_output[-3000:]


def test_refuse_fails_a_run_whose_mask_empties_a_layer_before_training(resumed: Resumed) -> None:
    done = run_lth(resumed.cwd, *DENSE, *REFUSED)
    assert done.returncode != 0
    assert "CollapsedMaskError" in done.stderr and "(prune.on_collapse=refuse)" in done.stderr, done.stderr[-3000:]
    assert "reusing finished dense parent" in done.stdout + done.stderr
    dense, tickets = by_role(runs(resumed.cwd))
    [refused] = [r for r in tickets if r.data.tags["lth.threshold"] == "0.98"]
    assert len(dense) == 1 and refused.info.status == "FAILED"
    mask = artifact(resumed.cwd, refused, "mask.npz")
    empty = {layer for layer, kept in mask.items() if not kept.any()}
    assert "predictions" in empty and set(refused.data.tags["lth.collapsed_layers"].split(",")) == empty
    trained = {"test_accuracy", "test_loss", "epochs_trained", "train_seconds", *PER_EPOCH}
    assert not trained & set(refused.data.metrics), refused.data.metrics  # only the mask's sparsity was logged
    client = MlflowClient(f"sqlite:///{resumed.cwd / 'mlflow.db'}")
    assert [f.path for f in client.list_artifacts(refused.info.run_id, "weights")] == []  # not even a start


def test_refuse_does_not_reuse_a_collapsed_ticket_trained_under_warn(resumed: Resumed) -> None:
    # on_collapse is not in the ticket's identity: refuse finds the warn run of the same cell and must not return it.
    _, before = by_role(runs(resumed.cwd))
    [warned] = [r for r in before if r.data.tags["lth.threshold"] == "0.99"]
    assert warned.data.tags["lth.collapsed_layers"]
    done = run_lth(resumed.cwd, *DENSE, *DIVERGING, "prune.on_collapse=refuse")
    assert done.returncode != 0
    assert f"ticket {warned.info.run_id} (trained earlier with prune.on_collapse=warn)" in done.stderr, \
        done.stderr[-3000:]
    _, after = by_role(runs(resumed.cwd))
    assert len(after) == len(before) and next(r for r in after if r.info.run_id == warned.info.run_id).info.status \
        == "FINISHED"  # nothing new trained, the earlier run left as it was
