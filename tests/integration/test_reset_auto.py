"""`reset.epoch=auto` as a user runs it: one k for every seed of a cell, and the report's "stable from" agrees.

The reference's analyses are put in the store before the sweep, with validation barriers chosen so that
the earliest stable candidate (k=0) is not stable from there on (k=1 is unstable again, k=2 is stable):
real analyses cannot be steered there. They are logged as a job logs them (claimed by their identity,
lth.stability.analysis.analysis_key), so `reset.epoch=auto` reuses them as it would a job's. The dense
parents, tickets, sweep and report are real.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.jobs import lth_env, run_lth
from tests.support.store import runs

# LeNet-300-100 on 256 digits, E = 3: a dense parent in seconds.
LENET = ["model=lenet_300_100", "train.optimizer=adam", "train.learning_rate=0.0012", "train.weight_decay=0",
         "train.epochs=3", "data.train_limit=256", "lth.verbose=0", "prune.threshold=0.5"]
BARRIERS = {0: 0.010, 1: 0.050, 2: 0.012}  # validation barriers; stable below 2% at k=0 and k=2, not at k=1
AUTO = ["reset.epoch=auto", "stability.candidates=[0,1,2]"]


def _log_reference_analyses(cwd: Path) -> None:
    """Finished analyses of seed 0's dense network at each candidate, with BARRIERS, under their identities."""
    import mlflow
    from hydra import compose, initialize_config_dir

    from lth import tracking
    from lth.config.cell import Cell
    from lth.data.splits import DataSplits
    from lth.stability.analysis import analysis_key
    from lth.stability.copies import dense_subject
    from lth.stages.dense import ensure_dense
    from lth.tracking import schema
    from lth.tracking.claim import claim
    from tests.support.paths import CONFIG_DIR

    previous = mlflow.get_tracking_uri()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=[*LENET, f"tracking.uri=sqlite:///{cwd / 'mlflow.db'}",
                                                          f"lth.state_dir={cwd / '.lth'}"])
        cell = Cell.of(cfg)
        experiment_id = tracking.connect(cell.tracking.uri, cell.tracking.experiment)
        splits = DataSplits(train=None, val=None, test=None, steps_per_epoch=4, summary="", epoch=None)
        dense = ensure_dense(cell, experiment_id, splits)
        assert dense.reused  # trained by the job before: this only reads it
        for k, barrier in BARRIERS.items():
            at = cell.with_reset_epoch(k)
            subject = dense_subject(at, dense)
            tags = {**subject.tags(at, dense), schema.SCOPE: at.prune.scope, schema.SEED: "0", schema.CONTROL: "none"}
            with claim(at.state, experiment_id, schema.STABILITY_ROLE, analysis_key(at, subject),
                       f"stability {subject.label}", tags, dense.run_id) as stage, tracking.active_run(stage.run_id):
                tracking.log_params({"stability.data_seeds": "[1]", "stability.points": 30, "stability.bn": "recompute",
                                     "stability.bn_batches": 32, "stability.threshold": 0.02, "train.data_seed": 0})
                tracking.set_tags({schema.STABLE: str(barrier < 0.02).lower()})
                tracking.log_to_run(stage.run_id, series={schema.BARRIER: {0: barrier}, schema.VAL_BARRIER: {0: barrier}})
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    cwd = tmp_path_factory.mktemp("auto")
    where = [f"tracking.uri=sqlite:///{cwd / 'mlflow.db'}", f"lth.state_dir={cwd / '.lth'}"]
    first = run_lth(cwd, *LENET, *where, "reset.epoch=0")  # seed 0's dense parent (and a ticket at k=0)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    _log_reference_analyses(cwd)
    sweep = run_lth(cwd, "-m", *LENET, *where, *AUTO, "train.seed=1,0")  # seed 1's job first: it waits for no one
    assert sweep.returncode == 0, (sweep.stdout + sweep.stderr)[-4000:]
    report = subprocess.run([sys.executable, "-m", "lth.report", f"tracking.uri=sqlite:///{cwd / 'mlflow.db'}"],
                            cwd=cwd, env=lth_env(), capture_output=True, text=True, check=False, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    (text,) = [path.read_text() for path in (cwd / "reports").glob("*/report.md")]
    return cwd, sweep.stdout + sweep.stderr, text


def _tickets_by_seed(cwd: Path) -> dict[int, list]:
    found: dict[int, list] = {}
    for run in runs(cwd):
        if run.data.tags.get("lth.role") == "ticket" and "lth.reset_choice" in run.data.tags:
            found.setdefault(int(run.data.tags["lth.seed"]), []).append(run)
    return found


def test_every_seed_of_a_cell_trains_at_the_k_its_reference_seed_decides(swept: tuple[Path, str, str]) -> None:
    cwd, output, _ = swept
    tickets = _tickets_by_seed(cwd)
    assert sorted(tickets) == [0, 1] and all(len(found) == 1 for found in tickets.values())
    assert {found[0].data.tags["lth.reset_epoch"] for found in tickets.values()} == {"2"}
    for (ticket,) in tickets.values():  # the tag says how k was decided, for every replicate alike
        choice = ticket.data.tags["lth.reset_choice"]
        assert choice.startswith("reset.epoch=auto chose k=2 from train.seed=0's dense network")
        assert "for every replicate of this cell" in choice and "stable from k=2 onwards, and k=1 is not" in choice
        assert "2 of 2 analyses reused" in choice  # from the latest down: k=0's was never needed
    assert output.count("reset.epoch=auto chose k=2 from train.seed=0's dense network") >= 2  # in both job lines
    # Seed 1's own dense network was never analysed: its job read seed 0's analyses.
    analysed = {run.data.tags["lth.analysed_run"] for run in runs(cwd) if run.data.tags.get("lth.role") == "stability"}
    dense = {int(run.data.tags["lth.seed"]): run.info.run_id for run in runs(cwd)
             if run.data.tags.get("lth.role") == "dense"}
    assert sorted(dense) == [0, 1] and analysed == {dense[0]}


def test_auto_s_choice_and_the_report_s_stable_from_agree(swept: tuple[Path, str, str]) -> None:
    cwd, _, report = swept
    (ticket, *_) = _tickets_by_seed(cwd)[0]
    chosen = int(re.match(r"reset\.epoch=auto chose k=(\d+)", ticket.data.tags["lth.reset_choice"]).group(1))
    found = re.search(r"dense: stable from k=(\d+)", report)
    assert found is not None, report
    assert int(found.group(1)) == chosen == 2  # not k=0, the earliest stable candidate: k=1 is unstable again
    assert "dense: stable from k=2 (also at k=0)" in report


def test_a_sweep_without_its_reference_replicate_is_refused_before_anything_trains(tmp_path: Path) -> None:
    done = run_lth(tmp_path, "-m", *LENET, *AUTO, "train.seed=1,2")
    assert done.returncode != 0
    (line,) = [text for text in done.stderr.splitlines() if text.startswith("lth: error")]
    assert "from train.seed=0 with its data in its own order" in line and "train.seed=0" in line
    assert "stability.reference_seed to one of its seeds [1, 2]" in line
    assert not (tmp_path / "mlflow.db").exists() or not runs(tmp_path)  # nothing was trained or logged
