"""Controls, iterative pruning, replicates, the report and load_ticket, end to end via subprocess."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.integration.helpers import artifact, by_role, lth_env, run_lth, runs, start_lth

TINY = ["train.epochs=2", "data.train_limit=128", "lth.verbose=0"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    cwd = tmp_path_factory.mktemp("science")
    sweep = run_lth(cwd, "-m", "prune.threshold=0.5,0.8", "reset.epoch=0,1",
                    "prune.control=none,reinit,random_mask", *TINY)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    imp = run_lth(cwd, "prune.method=imp", "prune.levels=3", "prune.rate=0.2", "reset.epoch=1", *TINY)
    assert imp.returncode == 0, imp.stderr[-3000:]
    return cwd, sweep.stdout + sweep.stderr


def _tickets(cwd: Path, **tags: str) -> list:
    _, tickets = by_role(runs(cwd))
    return [r for r in tickets if all(r.data.tags.get(f"lth.{k}") == v for k, v in tags.items())]


def test_controls_change_exactly_one_ingredient(searched: tuple[Path, str]) -> None:
    cwd, _ = searched
    dense = by_role(runs(cwd))[0][0]
    ticket = _tickets(cwd, control="none", threshold="0.8", reset_epoch="1")[0]
    reinit = _tickets(cwd, control="reinit", threshold="0.8", reset_epoch="1")[0]
    shuffled = _tickets(cwd, control="random_mask", threshold="0.8", reset_epoch="1")[0]
    mask, checkpoint = artifact(cwd, ticket, "mask.npz"), artifact(cwd, dense, "checkpoints/epoch_001.npz")
    reinit_mask, reinit_start = artifact(cwd, reinit, "mask.npz"), artifact(cwd, reinit, "weights/start.npz")
    assert all(np.array_equal(reinit_mask[n], mask[n]) for n in mask)  # same mask
    assert not np.array_equal(reinit_start["Conv1/kernel"], checkpoint["Conv1/kernel"] * mask["Conv1"])  # new weights
    assert np.count_nonzero(reinit_start["Conv1/kernel"][~mask["Conv1"]]) == 0
    random_mask, random_start = artifact(cwd, shuffled, "mask.npz"), artifact(cwd, shuffled, "weights/start.npz")
    assert all(int(random_mask[n].sum()) == int(mask[n].sum()) for n in mask)  # same count per layer
    assert not all(np.array_equal(random_mask[n], mask[n]) for n in mask)  # other positions
    np.testing.assert_array_equal(random_start["Conv_1/kernel"], checkpoint["Conv_1/kernel"] * random_mask["Conv_1"])


def test_imp_nests_masks_and_ends_at_exactly_0512_kept(searched: tuple[Path, str]) -> None:
    cwd, _ = searched
    job = _tickets(cwd, method="imp")[0]
    levels = sorted((r for r in runs(cwd) if r.data.tags["lth.role"] == "imp_level"),
                    key=lambda r: int(r.data.tags["lth.level"]))
    assert [int(r.data.tags["lth.level"]) for r in levels] == [1, 2, 3]
    assert {r.data.tags["mlflow.parentRunId"] for r in levels} == {job.info.run_id}
    masks = [artifact(cwd, level, "mask.npz") for level in levels]
    total = sum(m.size for m in masks[0].values())
    for level, mask in enumerate(masks, start=1):
        assert sum(int(m.sum()) for m in mask.values()) == total - round((1 - 0.8**level) * total)
    for earlier, later in zip(masks, masks[1:]):
        assert all(not np.any(later[n] & ~earlier[n]) for n in later)
    assert job.data.metrics["weights_remaining"] == pytest.approx(0.512, abs=1 / total)


def test_report_draws_lines_controls_and_names_winners(searched: tuple[Path, str]) -> None:
    from mlflow.tracking import MlflowClient

    cwd, output = searched
    assert "lth: report reports/" in output  # the sweep wrote the report itself
    done = subprocess.run([sys.executable, "-m", "lth.report", "report.tolerance=0.5"], cwd=cwd, env=lth_env(),
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    folder = next((cwd / "reports").iterdir())
    assert (folder / "lottery.png").read_bytes()[:4] == b"\x89PNG"
    markdown = (folder / "report.md").read_text()
    assert "| 0 | ticket at " in markdown and "| 1 | ticket at " in markdown or "| 1 | imp at " in markdown
    kinds = {line.split(",")[0] for line in (folder / "results.csv").read_text().splitlines()[1:]}
    assert kinds == {"ticket", "reinit", "random_mask", "imp"}
    dense = by_role(runs(cwd))[0][0]
    logged = {a.path for a in MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}").list_artifacts(dense.info.run_id, "report")}
    assert logged == {"report/lottery.png", "report/report.md", "report/results.csv", "report/densities.png"}


def test_load_ticket_reproduces_the_logged_accuracy(searched: tuple[Path, str]) -> None:
    import mlflow

    import lth
    from lth.data import load_data

    cwd, _ = searched
    mlflow.set_tracking_uri(f"sqlite:///{cwd / 'mlflow.db'}")
    for run in (_tickets(cwd, control="none", threshold="0.8", reset_epoch="0")[0], _tickets(cwd, method="imp")[0]):
        ticket = lth.load_ticket(run.info.run_id)
        for name, mask in ticket.masks.items():
            assert np.count_nonzero(ticket.model.get_layer(name).kernel.numpy()[~mask]) == 0
        data = load_data(ticket.config.data, int(ticket.config.train.batch_size), int(ticket.config.train.seed))
        _, accuracy = ticket.model.evaluate(data.test, verbose=0)
        assert accuracy == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)


def test_killed_imp_job_resumes_at_the_first_unfinished_level(tmp_path: Path) -> None:
    args = ("prune.method=imp", "prune.levels=3", "prune.rate=0.3", "reset.epoch=1", *TINY)
    log = tmp_path / "first.log"
    process = start_lth(tmp_path, *args, log=log)
    deadline = time.monotonic() + 600
    # Watch the log, not the store: a second client on a SQLite file that is still being created races its migration.
    while time.monotonic() < deadline and process.poll() is None and "IMP level 2 of 3" not in log.read_text():
        time.sleep(0.2)
    process.kill()  # level 1 is FINISHED in MLflow before level 2 announces itself
    process.wait(timeout=60)
    assert "IMP level 2 of 3" in log.read_text()
    first_level = next(r for r in runs(tmp_path) if r.data.tags.get("lth.level") == "1")
    again = run_lth(tmp_path, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    output = again.stdout + again.stderr
    assert f"reusing finished IMP level {first_level.info.run_id}" in output
    assert "IMP level 1 of 3" not in output and "IMP level 3 of 3" in output
    levels = [r for r in runs(tmp_path) if r.data.tags.get("lth.role") == "imp_level"]
    assert sorted(r.data.tags["lth.level"] for r in levels) == ["1", "2", "3"]
    assert {r.info.status for r in levels} == {"FINISHED"}


def test_seed_replicates_are_aggregated(tmp_path: Path) -> None:
    done = run_lth(tmp_path, "-m", "train.seed=0,1", "prune.threshold=0.5", "reset.epoch=1", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    dense, tickets = by_role(runs(tmp_path))
    assert len(dense) == 2 and len(tickets) == 2
    assert len({r.data.tags["lth.family"] for r in dense}) == 1
    folder = next((tmp_path / "reports").iterdir())
    with (folder / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["kind"], r["scope"], r["seeds"]) for r in rows] == [("ticket", "lamp", "2")]  # one cell, two seeds
    assert "2 seeds" in (folder / "report.md").read_text()
