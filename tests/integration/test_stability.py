"""Instability analysis end to end: `python -m lth.train -m stability=on ...` as a user runs it, read back from MLflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.jobs import run_lth
from tests.support.store import artifact, runs

pytestmark = pytest.mark.slow  # about 4 minutes of tiny MobileNetV2 training on 2 cores

# Tiny MobileNetV2 on 256 digits, E = 4: the dense network and an 80% ticket at k = 0 and k = E - 1.
SWEEP = ["data.train_limit=256", "train.epochs=4", "lth.verbose=0", "stability=on", "prune.threshold=0,0.8",
         "reset.epoch=0,3"]


def _role(all_runs: list, role: str) -> list:
    return [run for run in all_runs if run.data.tags.get("lth.role") == role]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    cwd = tmp_path_factory.mktemp("stability")
    done = run_lth(cwd, "-m", *SWEEP)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return cwd, done.stdout + done.stderr


def _barriers(cwd: Path) -> dict[tuple[float, int], float]:
    return {(float(r.data.tags["lth.threshold"]), int(r.data.tags["lth.reset_epoch"])): r.data.metrics["barrier"]
            for r in _role(runs(cwd), "stability")}


def test_one_analysis_and_one_copy_per_cell_logged_under_the_analysed_run(sweep: tuple[Path, str]) -> None:
    cwd, output = sweep
    all_runs = runs(cwd)
    dense, tickets = _role(all_runs, "dense"), _role(all_runs, "ticket")
    analyses, copies = _role(all_runs, "stability"), _role(all_runs, "stability_copy")
    # Threshold 0 trains no ticket; the dense network at k=3 trains copy 1 afresh (its run kept its momentum).
    assert (len(dense), len(tickets), len(analyses), len(copies)) == (1, 2, 4, 5)
    assert all(r.info.status == "FINISHED" for r in all_runs)
    analysed = {r.info.run_id for r in dense + tickets}
    for run in analyses + copies:
        assert run.data.tags["mlflow.parentRunId"] == run.data.tags["lth.analysed_run"]
        assert run.data.tags["lth.analysed_run"] in analysed
    for analysis in analyses:
        metrics = analysis.data.metrics
        assert 0.0 <= metrics["barrier"] <= 1.0 and 0.0 <= metrics["val_barrier"] <= 1.0
        threshold = float(analysis.data.params["stability.threshold"])
        assert analysis.data.tags["lth.stable"] == str(metrics["val_barrier"] < threshold).lower()  # validation decides
    assert sorted(_barriers(cwd)) == [(0.0, 0), (0.0, 3), (0.8, 0), (0.8, 3)]
    assert output.count("on validation (analysis new") >= 4  # in every job line, both splits' barriers


def test_the_path_is_evaluated_at_30_points_and_the_curve_and_figure_are_on_the_analysed_run(
        sweep: tuple[Path, str]) -> None:
    from mlflow.tracking import MlflowClient

    cwd, _ = sweep
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    for analysis in _role(runs(cwd), "stability"):
        k = int(analysis.data.tags["lth.reset_epoch"])
        subject = analysis.data.tags["lth.analysed_run"]
        for prefix in ("", "val_"):  # the test path (reported) and the validation path (decides)
            curve = client.get_metric_history(analysis.info.run_id, f"{prefix}error")
            assert sorted(m.step for m in curve) == list(range(30))
            errors = [m.value for m in sorted(curve, key=lambda m: m.step)]
            assert analysis.data.metrics[f"{prefix}barrier"] == pytest.approx(
                max(errors) - (errors[0] + errors[-1]) / 2, abs=1e-6)
            assert len(client.get_metric_history(subject, f"stability_{prefix}error_k{k}")) == 30
            assert {m.step for m in client.get_metric_history(subject, f"stability_{prefix}barrier")} >= {k}
        assert [f.path for f in client.list_artifacts(subject, f"stability/k{k}")] == [f"stability/k{k}/stability.png"]


def test_the_barrier_is_larger_when_copies_split_at_initialisation_than_one_epoch_before_the_end(
        sweep: tuple[Path, str]) -> None:
    barriers = _barriers(sweep[0])
    assert barriers[(0.0, 0)] > barriers[(0.0, 3)]
    assert barriers[(0.8, 0)] > barriers[(0.8, 3)]


def test_a_ticket_copy_keeps_the_mask_and_starts_where_the_ticket_did(sweep: tuple[Path, str]) -> None:
    cwd, _ = sweep
    all_runs = runs(cwd)
    tickets = {r.info.run_id: r for r in _role(all_runs, "ticket")}
    (dense,) = _role(all_runs, "dense")
    checked = {"ticket": 0, "dense": 0}
    for copy in _role(all_runs, "stability_copy"):
        start = artifact(cwd, copy, "weights/start.npz")
        final = artifact(cwd, copy, "weights/final.npz")
        assert copy.data.tags["lth.data_seed"] in ("0", "1")  # "0": copy 1 of the dense network at k=3
        ticket = tickets.get(copy.data.tags["lth.analysed_run"])
        if ticket is None:  # a copy of the dense network starts from its checkpoint at k
            assert copy.data.tags["lth.analysed_run"] == dense.info.run_id
            expected_start = artifact(cwd, dense, f"checkpoints/epoch_{int(copy.data.tags['lth.reset_epoch']):03d}.npz")
            checked["dense"] += 1
        else:
            masks = artifact(cwd, ticket, "mask.npz")
            assert all(np.all(final[f"{name}/kernel"][~mask.astype(bool)] == 0.0) for name, mask in masks.items())
            expected_start = artifact(cwd, ticket, "weights/start.npz")
            ticket_final = artifact(cwd, ticket, "weights/final.npz")
            assert not np.array_equal(final["Conv1/kernel"], ticket_final["Conv1/kernel"])  # other SGD noise
            checked["ticket"] += 1
        assert sorted(start) == sorted(expected_start)
        for path, value in expected_start.items():  # every variable, BatchNorm statistics included
            np.testing.assert_array_equal(start[path], value, err_msg=f"{copy.info.run_name}: {path}")
    assert checked == {"ticket": 2, "dense": 3}  # t=0.8 at k=0 and k=3; dense: k=0, and copies 1 and 2 at k=3


def test_every_copy_of_a_subject_starts_from_one_state_optimizer_slots_included(sweep: tuple[Path, str]) -> None:
    """Copies differ in data order only: at k=3 the dense run (momentum kept through epoch 3) is not copy 1."""
    cwd, _ = sweep
    all_runs = runs(cwd)
    (dense,) = _role(all_runs, "dense")
    copies = [r for r in _role(all_runs, "stability_copy")
              if r.data.tags["lth.analysed_run"] == dense.info.run_id and r.data.tags["lth.reset_epoch"] == "3"]
    assert sorted(r.data.tags["lth.data_seed"] for r in copies) == ["0", "1"]  # copy 1 trained afresh, and copy 2
    states = [(artifact(cwd, r, "weights/start.npz"), artifact(cwd, r, "weights/start_optimizer.npz")) for r in copies]
    (weights, optimizer), (other_weights, other_optimizer) = states
    assert sorted(weights) == sorted(other_weights) and sorted(optimizer) == sorted(other_optimizer)
    for path in weights:
        np.testing.assert_array_equal(weights[path], other_weights[path], err_msg=path)
    for path in optimizer:
        np.testing.assert_array_equal(optimizer[path], other_optimizer[path], err_msg=path)
    slots = [path for path in optimizer if not path.endswith(("iteration", "iterations", "learning_rate"))]
    assert slots and all(not np.any(optimizer[path]) for path in slots)  # fresh slots: no momentum carried in
    steps = next(value for path, value in optimizer.items() if path.endswith(("iteration", "iterations")))
    assert int(steps) == 3 * (256 // 64)  # the dense run's step count after epoch 3 (256 images, batches of 64)


def test_a_copy_with_the_runs_own_data_seed_is_the_run_itself_and_the_barrier_is_exactly_zero(
        sweep: tuple[Path, str]) -> None:
    cwd, _ = sweep
    before = len(runs(cwd))
    done = run_lth(cwd, "-m", *SWEEP[:-2], "prune.threshold=0.8", "reset.epoch=0", "stability.data_seeds=[0]")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    analyses = [r for r in _role(runs(cwd), "stability") if r.data.params.get("stability.data_seeds") == "[0]"]
    assert len(analyses) == 1 and analyses[0].data.metrics["barrier"] == analyses[0].data.metrics["val_barrier"] == 0.0
    assert len(runs(cwd)) == before + 1  # the analysis only: no copy trained
    # The ticket was reused and its analysis is new: the job line says both, not "trained 4 epochs".
    (line,) = [line for line in done.stdout.splitlines() if "error barrier" in line and "(analysis" in line]
    assert ", reused, run " in line and "on validation (analysis new: paths walked, no copy trained)" in line


def test_a_rerun_trains_nothing(sweep: tuple[Path, str]) -> None:
    cwd, _ = sweep
    before = {r.info.run_id for r in runs(cwd)}
    done = run_lth(cwd, "-m", *SWEEP)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert {r.info.run_id for r in runs(cwd)} == before
    assert "starting" not in done.stdout + done.stderr.replace("starting a sweep", "")
    assert done.stdout.count(", reused, ") == 4


def test_reset_epoch_auto_picks_the_epoch_the_analysis_calls_stable_from(sweep: tuple[Path, str]) -> None:
    cwd, _ = sweep
    val = {(float(r.data.tags["lth.threshold"]), int(r.data.tags["lth.reset_epoch"])): r.data.metrics["val_barrier"]
           for r in _role(runs(cwd), "stability")}
    assert val[(0.0, 0)] > val[(0.0, 3)]
    between = (val[(0.0, 0)] + val[(0.0, 3)]) / 2  # stable at k=3 only, on validation, by the analyses logged
    for threshold, expected in ((between, 3), (0.999, 0)):
        done = run_lth(cwd, *SWEEP[:-3], "prune.threshold=0.8", "reset.epoch=auto", "stability=off",
                       "stability.candidates=[0,3]", f"stability.threshold={threshold}")
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        text = done.stdout + done.stderr
        rule = "stable from k=3 onwards, and k=0 is not" if expected == 3 else "stable from k=0 onwards, the earliest"
        assert f"reset.epoch=auto chose k={expected} from train.seed=0's dense network" in text and rule in text
        ticket = next(r for r in _role(runs(cwd), "ticket") if r.data.tags["lth.reset_epoch"] == str(expected))
        choice = ticket.data.tags["lth.reset_choice"]
        assert choice.startswith(f"reset.epoch=auto chose k={expected}")
        # It names the split that chose, and what the threshold is in images of it (digits: 144 validation images).
        assert choice.endswith(f"chosen on the validation split (144 images: the {100 * threshold:g}% threshold is "
                               f"about {threshold * 144:.0f} images)")
        assert f"validation barriers k=0: {100 * val[(0.0, 0)]:.2f}%" in choice
    assert len(_role(runs(cwd), "stability")) == 5  # the candidates' analyses were reused (plus data_seeds=[0]'s)


def test_an_analysis_logged_before_validation_is_walked_again_on_validation_without_retraining(
        sweep: tuple[Path, str]) -> None:
    """An analysis with no validation barrier (logged before it existed) is not reused as if it had one."""
    import sqlite3

    from mlflow.tracking import MlflowClient

    cwd, _ = sweep
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    (analysis,) = [r for r in _role(runs(cwd), "stability")
                   if r.data.tags["lth.threshold"] == "0.8" and r.data.tags["lth.reset_epoch"] == "0"
                   and r.data.params.get("stability.data_seeds") == "[1]"]
    logged, subject = analysis.data.metrics["val_barrier"], analysis.data.tags["lth.analysed_run"]
    # What an analysis logged before validation holds: no val_* metrics here or on the analysed run, and a
    # verdict of its own (made the opposite of validation's, so the test sees it judged again).
    with sqlite3.connect(cwd / "mlflow.db") as store:
        for table in ("metrics", "latest_metrics"):
            store.execute(f"DELETE FROM {table} WHERE run_uuid = ? AND key LIKE 'val_%'", (analysis.info.run_id,))
            store.execute(f"DELETE FROM {table} WHERE run_uuid = ? AND key LIKE 'stability_val_%'", (subject,))
    expected = str(logged < float(analysis.data.params["stability.threshold"])).lower()
    client.set_tag(analysis.info.run_id, "lth.stable", {"true": "false", "false": "true"}[expected])
    before = {r.info.run_id for r in runs(cwd)}
    done = run_lth(cwd, "-m", *SWEEP[:-2], "prune.threshold=0.8", "reset.epoch=0")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "walked it on validation from its copies' weights (nothing retrained)" in done.stdout + done.stderr
    assert "(analysis reused, walked again on validation)" in done.stdout
    assert {r.info.run_id for r in runs(cwd)} == before  # no copy, no ticket, no new analysis
    walked = next(r for r in runs(cwd) if r.info.run_id == analysis.info.run_id)
    assert walked.data.metrics["val_barrier"] == pytest.approx(logged, abs=1e-9)
    assert walked.data.tags["lth.stable"] == expected
    history = client.get_metric_history(subject, "stability_val_barrier")  # on the analysed run, once, at k = 0
    assert [(m.step, m.value) for m in history] == [(0, pytest.approx(logged, abs=1e-9))]
    assert len(client.get_metric_history(subject, "stability_val_error_k0")) == 30
