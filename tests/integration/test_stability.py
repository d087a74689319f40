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
    assert (len(dense), len(tickets), len(analyses), len(copies)) == (1, 2, 4, 4)  # threshold 0 trains no ticket
    assert all(r.info.status == "FINISHED" for r in all_runs)
    analysed = {r.info.run_id for r in dense + tickets}
    for run in analyses + copies:
        assert run.data.tags["mlflow.parentRunId"] == run.data.tags["lth.analysed_run"]
        assert run.data.tags["lth.analysed_run"] in analysed
    for analysis in analyses:
        assert len(analysis.data.metrics) >= 3 and 0.0 <= analysis.data.metrics["barrier"] <= 1.0
        threshold = float(analysis.data.params["stability.threshold"])
        assert analysis.data.tags["lth.stable"] == str(analysis.data.metrics["barrier"] < threshold).lower()
    assert sorted(_barriers(cwd)) == [(0.0, 0), (0.0, 3), (0.8, 0), (0.8, 3)]
    assert output.count("error barrier") >= 4  # in every job line


def test_the_path_is_evaluated_at_30_points_and_the_curve_and_figure_are_on_the_analysed_run(
        sweep: tuple[Path, str]) -> None:
    from mlflow.tracking import MlflowClient

    cwd, _ = sweep
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    for analysis in _role(runs(cwd), "stability"):
        curve = client.get_metric_history(analysis.info.run_id, "error")
        assert sorted(m.step for m in curve) == list(range(30))
        errors = [m.value for m in sorted(curve, key=lambda m: m.step)]
        assert analysis.data.metrics["barrier"] == pytest.approx(max(errors) - (errors[0] + errors[-1]) / 2, abs=1e-6)
        k = int(analysis.data.tags["lth.reset_epoch"])
        subject = analysis.data.tags["lth.analysed_run"]
        assert len(client.get_metric_history(subject, f"stability_error_k{k}")) == 30
        assert {m.step for m in client.get_metric_history(subject, "stability_barrier")} >= {k}
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
        assert copy.data.tags["lth.data_seed"] == "1"
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
    assert checked == {"ticket": 2, "dense": 2}  # t=0.8 at k=0 and k=3, the dense network at k=0 and k=3


def test_a_copy_with_the_runs_own_data_seed_is_the_run_itself_and_the_barrier_is_exactly_zero(
        sweep: tuple[Path, str]) -> None:
    cwd, _ = sweep
    before = len(runs(cwd))
    done = run_lth(cwd, "-m", *SWEEP[:-2], "prune.threshold=0.8", "reset.epoch=0", "stability.data_seeds=[0]")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    analyses = [r for r in _role(runs(cwd), "stability") if r.data.params.get("stability.data_seeds") == "[0]"]
    assert len(analyses) == 1 and analyses[0].data.metrics["barrier"] == 0.0
    assert len(runs(cwd)) == before + 1  # the analysis only: no copy trained


def test_a_rerun_trains_nothing(sweep: tuple[Path, str]) -> None:
    cwd, _ = sweep
    before = {r.info.run_id for r in runs(cwd)}
    done = run_lth(cwd, "-m", *SWEEP)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert {r.info.run_id for r in runs(cwd)} == before
    assert "starting" not in done.stdout + done.stderr.replace("starting a sweep", "")
    assert done.stdout.count(", reused, ") == 4


def test_reset_epoch_auto_picks_the_earliest_epoch_the_analysis_calls_stable(sweep: tuple[Path, str]) -> None:
    cwd, _ = sweep
    barriers = _barriers(cwd)
    between = (barriers[(0.0, 0)] + barriers[(0.0, 3)]) / 2  # stable at k=3 only, by the analyses already logged
    for threshold, expected in ((between, 3), (0.999, 0)):
        done = run_lth(cwd, *SWEEP[:-3], "prune.threshold=0.8", "reset.epoch=auto", "stability=off",
                       "stability.candidates=[0,3]", f"stability.threshold={threshold}")
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        text = done.stdout + done.stderr
        assert f"reset.epoch=auto chose k={expected}, the earliest of [0, 3] at which the dense network is stable" in text
        ticket = next(r for r in _role(runs(cwd), "ticket") if r.data.tags["lth.reset_epoch"] == str(expected))
        assert ticket.data.tags["lth.reset_choice"].startswith(f"reset.epoch=auto chose k={expected}")
    assert len(_role(runs(cwd), "stability")) == 5  # the candidates' analyses were reused (plus data_seeds=[0]'s)
