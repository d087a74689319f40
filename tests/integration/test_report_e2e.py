"""`python -m lth.report` on a real MLflow store written the way lth writes it (no TensorFlow), and one real sweep.

The hand-made store holds exactly the tags, params, metrics and `sparsity.json` artifact that
lth.stages.dense, lth.stages.tickets and lth.stages.imp log, so every rule of the report is checked on numbers
chosen to make it bite, through the same subprocess a user runs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from tests.support.jobs import lth_env, run_lth
from tests.support.store import by_role, runs

FAMILY = "f0a1b2c3d4e5f6a7"
LAYERS = (("Conv1", 864), ("block_1_depthwise", 864), ("Conv_1", 143360), ("predictions", 12810))


def _hash(payload: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class Store:
    """A family of runs in a real sqlite store under `root`, logged as lth logs them."""

    def __init__(self, root: Path, data: dict[str, str] | None = None) -> None:
        self.root = root
        self.client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
        self.experiment = self.client.create_experiment("lth", artifact_location=(root / "mlruns").as_uri())
        self.data = data or {"data.name": "digits", "data.val_fraction": "0.1", "data.test_fraction": "0.2"}
        self.dense_ids: dict[int, str] = {}

    def _run(self, name: str, tags: dict[str, str], params: dict[str, str], metrics: dict[str, float],
             per_epoch: dict[str, list[float]], status: str, sparsity: float | None = None,
             emptied: tuple[str, ...] = ()) -> str:
        run_id = self.client.create_run(self.experiment, tags={"mlflow.runName": name, **tags}, run_name=name).info.run_id
        history = [Metric(key, value, 0, step) for key, values in per_epoch.items()
                   for step, value in enumerate(values, start=1)]
        self.client.log_batch(run_id, metrics=history + [Metric(k, v, 0, 0) for k, v in metrics.items()],
                              params=[Param(k, v) for k, v in params.items()])
        if sparsity is not None:  # lth.tracking.artifacts.log_masks: sparsity.json with the per-layer counts
            kept = [0 if layer in emptied else max(1, round((1 - sparsity) * size)) for layer, size in LAYERS]
            report = {"layers": [{"layer": layer, "weights": size, "kept": k, "density": k / size,
                                  "sparsity": 1 - k / size, "channels": 1, "dead_channels": 0}
                                 for (layer, size), k in zip(LAYERS, kept)]}
            path = self.root / "sparsity.json"
            path.write_text(json.dumps(report))
            self.client.log_artifact(run_id, str(path))
        self.client.set_terminated(run_id, status)
        return run_id

    def dense(self, seed: int, val: float, test: float, status: str = "FINISHED") -> str:
        """A dense parent (lth.stages.dense): its config as params, per-epoch val_accuracy, a final test_accuracy."""
        key = _hash({"family": FAMILY, "seed": seed})
        params = {**self.data, "model.alpha": "0.35", "train.epochs": "2", "train.seed": str(seed)}
        run_id = self._run(f"dense {key[:8]}", {"lth.role": "dense", "lth.key": key, "lth.dense_hash": key,
                                                "lth.family": FAMILY, "lth.seed": str(seed), "lth.keep_epochs": "0 1 2"},
                           params, {"test_accuracy": test, "test_loss": 0.2} if status == "FINISHED" else {},
                           {"val_accuracy": [val - 0.1, val], "val_loss": [0.9, 0.3]}, status)
        self.dense_ids[seed] = run_id
        return run_id

    def sparse(self, seed: int, threshold: float, val: float | None, test: float | None, *, reset: int = 1,
               control: str = "none", scope: str = "lamp", min_density: float = 0.002, diverged: str | None = None,
               status: str = "FINISHED", role: str = "ticket", level: int | None = None,
               parent: str | None = None, with_params: bool = True, rate: float = 0.2, levels: int = 3,
               collapsed: str | None = None, emptied: tuple[str, ...] = (), before_floor_tag: bool = False) -> str:
        """A one-shot ticket or control (lth.stages.tickets), an IMP job (role ticket, method imp) or level (imp_level)."""
        method = "imp" if role == "imp_level" or level == 0 else "magnitude"
        prune = {"method": method, "threshold": threshold if method == "magnitude" else 0.8, "scope": scope,
                 "min_density": min_density, "on_collapse": "warn", "ignore": "[]", "levels": levels, "rate": rate}
        identity = {k: v for k, v in prune.items() if k not in (("levels", "rate") if method == "magnitude"
                                                               else ("threshold",))}
        cell = _hash({"dense": FAMILY, "prune": identity, "reset": reset})
        tags = {"lth.role": role, "lth.key": _hash({"cell": cell, "seed": seed, "control": control, "level": level}),
                "mlflow.parentRunId": parent or self.dense_ids[seed], "lth.dense_hash": _hash({"seed": seed}),
                "lth.family": FAMILY, "lth.threshold": f"{threshold}", "lth.reset_epoch": str(reset),
                "lth.scope": scope, "lth.method": method, "lth.control": control, "lth.seed": str(seed),
                "lth.cell": cell}
        if role == "imp_level":
            tags["lth.level"] = str(level)
        if diverged:
            tags.update({"lth.diverged": diverged, "lth.diverged_epoch": "2"})
        if collapsed:
            tags["lth.collapsed_layers"] = collapsed
        params = {**self.data, "train.seed": str(seed), "reset.epoch": str(reset), "prune.control": control,
                  "prune.control_seed": "0", **{f"prune.{k}": str(v) for k, v in prune.items()}}
        metrics = {"weights_remaining": 1 - threshold, "sparsity": threshold, "dense_test_accuracy": 0.95,
                   "epochs_trained": 1.0, **({} if before_floor_tag else {"dead_channels": 0.0})}
        if status == "FINISHED":
            metrics["test_accuracy" if diverged is None else "diverged_test_accuracy"] = test if test is not None else 0.1
        per_epoch = {"val_accuracy": [val]} if val is not None else {}
        name = f"t={threshold:.2f} k={reset}" + (f" {control}" if control != "none" else "")
        return self._run(name, tags, params if with_params else {}, metrics, per_epoch, status, threshold, emptied)


def _report(cwd: Path, *overrides: str) -> tuple[str, Path]:
    """Run `python -m lth.report` in `cwd`; returns (its output, the family's folder)."""
    done = subprocess.run([sys.executable, "-m", "lth.report", *overrides], cwd=cwd, env=lth_env(),
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr, cwd / "reports" / FAMILY


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def _row(rows: list[dict[str, str]], **match: str) -> dict[str, str]:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, f"{len(found)} rows match {match}: {rows}"
    return found[0]


def test_a_cell_with_a_diverged_seed_shows_it_and_cannot_win(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.dense(0, val=0.95, test=0.94)
    store.dense(1, val=0.96, test=0.95)
    for seed, val in ((0, 0.955), (1, 0.958)):
        store.sparse(seed, 0.5, val, val - 0.01)
    store.sparse(0, 0.9, 0.97, 0.96)  # alone it would win: its one survivor is the best run of all
    store.sparse(1, 0.9, None, 0.1, diverged="chance")
    store.sparse(0, 0.95, 0.99, 0.98)  # sparser still, but seed 1 never finished
    store.sparse(1, 0.95, None, None, status="FAILED")
    output, folder = _report(tmp_path)
    assert f"lth: report reports/{FAMILY}/lottery.png" in output
    rows = _rows(folder)
    diverged = _row(rows, kind="ticket", threshold="0.900000")
    assert (diverged["seeds_learned"], diverged["seeds_run"], diverged["winner"]) == ("1", "2", "0")
    assert diverged["test_accuracy_mean"] == "0.9600"  # the seed that learned, shown as such
    incomplete = _row(rows, kind="ticket", threshold="0.950000")
    assert (incomplete["seeds_learned"], incomplete["seeds_run"], incomplete["seeds_missing"]) == ("1", "1", "1")
    assert incomplete["winner"] == "0"
    assert _row(rows, kind="ticket", threshold="0.500000")["winner"] == "1"
    markdown = (folder / "report.md").read_text()
    assert "k=1: t=0.9 not eligible: 1/2 seeds learned (1 diverged: chance)" in markdown
    assert "k=1: t=0.95 not eligible: incomplete (1 of 2 seeds missing)" in markdown
    assert "- ticket t=0.95 k=1 seed=1: FAILED" in markdown  # a FAILED run is missing, not a result
    assert "Winners chosen on validation split `val`" in markdown


def test_a_ticket_below_its_reinit_control_is_not_a_winner_and_the_csv_carries_the_gap(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.dense(0, val=0.95, test=0.94)
    store.dense(1, val=0.96, test=0.95)
    for seed, ticket, reinit, shuffled in ((0, 0.955, 0.970, 0.90), (1, 0.957, 0.965, 0.91)):
        store.sparse(seed, 0.8, ticket, 0.95)  # matches dense (0.955 on the same seeds) ...
        store.sparse(seed, 0.8, reinit, 0.95, control="reinit")  # ... but the reinit control does better
        store.sparse(seed, 0.8, shuffled, 0.90, control="random_mask")
        store.sparse(seed, 0.5, 0.956 + seed / 1000, 0.95)
        store.sparse(seed, 0.5, 0.93, 0.93, control="reinit")
    _, folder = _report(tmp_path)
    rows = _rows(folder)
    below = _row(rows, kind="ticket", threshold="0.800000")
    assert (below["gap_reinit_mean"], below["gap_reinit_min"], below["gap_reinit_max"]) == ("-0.0115", "-0.0150",
                                                                                            "-0.0080")
    assert (below["gap_random_mask_mean"], below["gap_random_mask_min"], below["gap_random_mask_max"]) == (
        "0.0510", "0.0470", "0.0550")
    assert below["winner"] == "0"
    above = _row(rows, kind="ticket", threshold="0.500000")
    assert (above["winner"], above["gap_reinit_mean"], above["gap_random_mask_mean"]) == ("1", "0.0265", "")
    assert _row(rows, kind="reinit", threshold="0.800000")["winner"] == "0"
    markdown = (folder / "report.md").read_text()
    assert "k=1: t=0.8 not eligible: not above reinit (gap -0.0115, min -0.0150, max -0.0080)" in markdown


def test_cells_that_differ_only_in_min_density_are_two_labelled_rows(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for seed in (0, 1):
        store.dense(seed, val=0.95, test=0.94)
        store.sparse(seed, 0.8, 0.95, 0.94, min_density=0.002)
        store.sparse(seed, 0.8, 0.90, 0.89, min_density=0.01)
    _, folder = _report(tmp_path)
    rows = _rows(folder)
    assert sorted((r["settings"], r["seeds_run"], r["test_accuracy_mean"]) for r in rows) == [
        ("min_density=0.002", "2", "0.9400"), ("min_density=0.01", "2", "0.8900")]
    assert len({r["cell"] for r in rows}) == 2
    assert "| ticket | lamp | min_density=0.01 | 1 |" in (folder / "report.md").read_text()


def test_runs_tagged_collapsed_before_the_floor_tag_existed_are_judged_by_their_mask(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for seed in (0, 1):
        store.dense(seed, val=0.95, test=0.94)
        store.sparse(seed, 0.5, 0.95, 0.94)
    # Both were tagged by the old rule (empty or at the floor); only seed 1's mask really emptied Conv_1.
    store.sparse(0, 0.9, 0.95, 0.94, collapsed="Conv_1", before_floor_tag=True)
    store.sparse(1, 0.9, 0.10, 0.10, collapsed="Conv_1", emptied=("Conv_1",), before_floor_tag=True)
    _, folder = _report(tmp_path)
    row = _row(_rows(folder), threshold="0.900000")
    assert (row["seeds_learned"], row["seeds_run"], row["failures"], row["floor_runs"]) == ("1", "2", "1 collapsed",
                                                                                            "1")


def test_every_kind_is_reported_and_logged_under_each_dense_parent(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for seed in (0, 1):
        store.dense(seed, val=0.95, test=0.94)
        for control in ("none", "reinit", "random_mask"):
            store.sparse(seed, 0.8, 0.95, 0.94, control=control)
        job = store.sparse(seed, 0.36, 0.95, 0.94, level=0, rate=0.2, levels=2)  # the IMP job (role ticket)
        for level, threshold in ((1, 0.2), (2, 0.36)):  # its levels log no params: the job holds them
            store.sparse(seed, threshold, 0.95, 0.94, role="imp_level", level=level, parent=job, with_params=False,
                         rate=0.2, levels=2)
        control_job = store.sparse(seed, 0.36, 0.9, 0.9, level=0, rate=0.2, levels=2, control="reinit")
        for level, threshold in ((1, 0.2), (2, 0.36)):
            store.sparse(seed, threshold, 0.9, 0.9, role="imp_level", level=level, parent=control_job,
                         with_params=False, rate=0.2, levels=2, control="reinit")
    output, folder = _report(tmp_path)
    rows = _rows(folder)
    assert {r["kind"] for r in rows} == {"ticket", "reinit", "random_mask", "imp", "imp_reinit"}
    assert sorted(r["level"] for r in rows if r["kind"] == "imp") == ["1", "2"]
    # The IMP reinit job is drawn by its levels only, never as a one-shot reinit point of its own.
    assert sorted(r["level"] for r in rows if r["kind"] == "imp_reinit") == ["1", "2"]
    assert [r["threshold"] for r in rows if r["kind"] == "reinit"] == ["0.800000"]
    assert all(r["seeds_run"] == "2" for r in rows)
    for run_id in store.dense_ids.values():
        logged = {a.path for a in store.client.list_artifacts(run_id, "report")}
        assert logged == {"report/lottery.png", "report/report.md", "report/results.csv", "report/densities.png"}


@pytest.mark.slow
def test_a_real_sweep_writes_its_report_and_logs_it_under_the_dense_parent(tmp_path: Path) -> None:
    done = run_lth(tmp_path, "-m", "prune.threshold=0.5", "reset.epoch=1", "prune.control=none,reinit",
                   "train.epochs=2", "data.train_limit=128", "lth.verbose=0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "lth: report reports/" in done.stdout + done.stderr  # the sweep wrote the report itself
    dense, tickets = by_role(runs(tmp_path))
    assert len(dense) == 1 and len(tickets) == 2
    assert all("lth.cell" in r.data.tags for r in tickets)  # the contract this report relies on
    folder = tmp_path / "reports" / dense[0].data.tags["lth.family"]
    rows = _rows(folder)
    assert sorted(r["kind"] for r in rows) == ["reinit", "ticket"]
    assert all((r["seeds_run"], r["seeds_missing"]) == ("1", "0") for r in rows)
    assert _row(rows, kind="ticket")["gap_reinit_mean"] != ""  # paired with its control through lth.cell
    logged = {a.path for a in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").list_artifacts(
        dense[0].info.run_id, "report")}
    assert logged == {"report/lottery.png", "report/report.md", "report/results.csv", "report/densities.png",
                      "report/early_bird.png"}  # one ticket mask: no overlap to draw; no stability analysed


def test_log_tags_are_what_the_store_builder_writes() -> None:
    """The builder above must not drift from lth's own tag names."""
    from lth.tracking import schema

    assert (schema.ROLE, schema.KEY, schema.FAMILY, schema.PARENT) == (
        "lth.role", "lth.key", "lth.family", "mlflow.parentRunId")
