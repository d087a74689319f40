"""Structured tickets trained by `python -m lth.train`, exported by `python -m lth.export` as a user would."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lth.export.forms import TFLITE_FORMS
from tests.support.jobs import lth_env, run_lth
from tests.support.store import artifact, by_role, runs
from tests.support.tflite import tflite_logits

pytestmark = pytest.mark.slow  # trains three tickets, then converts and times four TFLite files
FAST = ["train.epochs=2", "data.train_limit=128", "lth.verbose=0"]  # what is checked needs no accuracy
STRUCTURES = ("xnnpack_1x1", "channel")  # none: every other test trains it


def _export(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lth.export", *args], cwd=cwd, env=lth_env(), capture_output=True,
                          text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """One dense parent and a 50% ticket of each structure but none; the channel ticket exported."""
    cwd = tmp_path_factory.mktemp("export")
    sweep = run_lth(cwd, "-m", f"prune.structure={','.join(STRUCTURES)}", "prune.threshold=0.5", "reset.epoch=1",
                    *FAST)  # each structure's default scope, as a user gets it
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    _, tickets = by_role(runs(cwd))
    by_structure = {ticket.data.params["prune.structure"]: ticket for ticket in tickets}
    assert sorted(by_structure) == sorted(STRUCTURES)
    assert {s: t.data.params["prune.scope"] for s, t in by_structure.items()} == {"xnnpack_1x1": "lamp",
                                                                                  "channel": "layer"}
    done = _export(cwd, by_structure["channel"].info.run_id, "--runs", "100")
    assert done.returncode == 0, done.stderr[-3000:]
    return cwd, by_structure


def test_structures_mask_what_they_promise(searched: tuple[Path, dict[str, object]]) -> None:
    cwd, tickets = searched
    xnnpack, channel = (artifact(cwd, tickets[s], "mask.npz") for s in STRUCTURES)
    assert all(mask.shape[:2] == (1, 1) for mask in xnnpack.values())  # the 1x1 convolutions only
    assert "Conv1" not in xnnpack and "predictions" not in xnnpack and "block_1_depthwise" not in xnnpack
    assert int(sum(m.sum() for m in xnnpack.values())) == sum(m.size for m in xnnpack.values()) - round(
        0.5 * sum(m.size for m in xnnpack.values()))  # exactly half of the 1x1 weights
    expand, depthwise = channel["block_1_expand"], channel["block_1_depthwise"]
    dead = ~expand.reshape(-1, expand.shape[-1]).any(axis=0)
    assert dead.any() and np.array_equal(dead, ~depthwise.any(axis=(0, 1, 3)))  # whole channels, through the depthwise
    assert not channel["block_1_project"][..., dead, :].any()
    final = artifact(cwd, tickets["channel"], "weights/final.npz")
    assert all(np.count_nonzero(final[f"{name}/kernel"][~mask]) == 0 for name, mask in channel.items())
    remaining = float(tickets["channel"].data.metrics["weights_remaining"])
    assert abs(remaining - 0.5) < 0.01


def test_every_exported_form_gives_the_tickets_test_accuracy(searched: tuple[Path, dict[str, object]]) -> None:
    import keras
    import mlflow

    from lth import load_ticket
    from lth.export.__main__ import test_set

    cwd, tickets = searched
    ticket = tickets["channel"]
    folder = cwd / "exports" / ticket.info.run_id
    report = json.loads((folder / "export.json").read_text())
    masked = report["forms"][0]
    assert masked["name"] == "masked"
    assert masked["test_accuracy"] == pytest.approx(ticket.data.metrics["test_accuracy"], abs=1e-6)
    # Every written file run here by its own runtime on the ticket's test split, against the masked ticket as
    # MLflow holds it: the export's own comparison is not the judge.
    previous = mlflow.get_tracking_uri()
    try:
        loaded = load_ticket(ticket.info.run_id, f"sqlite:///{cwd / 'mlflow.db'}")
    finally:
        mlflow.set_tracking_uri(previous)  # this worker's later tests keep their own store
    test = test_set(loaded.config, None)
    reference = np.asarray(loaded.model.predict(test.images, verbose=0), np.float64)
    outputs = {"compact.keras": keras.saving.load_model(folder / "compact.keras").predict(test.images, verbose=0)}
    outputs.update({name: tflite_logits(folder / name, test.images) for name in TFLITE_FORMS})
    assert float(np.mean(reference.argmax(axis=1) == test.labels)) == pytest.approx(
        ticket.data.metrics["test_accuracy"], abs=1e-6)
    for name, logits in outputs.items():
        assert np.array_equal(np.argmax(logits, axis=1), reference.argmax(axis=1)), name
        assert float(np.abs(logits - reference).max()) < 1e-4, name
    for form in report["forms"]:
        assert form["test_accuracy"] == masked["test_accuracy"] and form["disagreements"] == 0, form["name"]
        assert form["max_logit_diff"] < 1e-4, form["name"]
    compact = next(form for form in report["forms"] if form["name"] == "compact.keras")
    assert 0.35 < compact["cost"]["macs"] / masked["cost"]["macs"] < 0.65  # a 50% channel ticket: about half
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    logged = {item.path for item in client.list_artifacts(ticket.info.run_id, "export")}
    assert logged == {f"export/{name}" for name in ("compact.keras", "dense.tflite", "sparse.tflite",
                                                     "compact.tflite", "compact_sparse.tflite", "export.json",
                                                     "export.md")}


def test_the_latency_benchmark_reruns_from_the_logged_files(searched: tuple[Path, dict[str, object]]) -> None:
    from mlflow.tracking import MlflowClient

    cwd, tickets = searched
    run_id = tickets["channel"].info.run_id
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    logged = Path(client.download_artifacts(run_id, "export", str(cwd / "logged")))
    digests = {name: hashlib.sha256((logged / name).read_bytes()).hexdigest() for name in TFLITE_FORMS}
    # The local export folder drifts from what the run logged: only the logged files may be timed.
    local = cwd / "exports" / run_id
    (local / "sparse.tflite").write_bytes((local / "dense.tflite").read_bytes())
    done = _export(cwd, run_id, "--latency-only", "--out", str(cwd / "elsewhere"), "--runs", "100")
    assert done.returncode == 0, done.stderr[-3000:]
    timed = dict(re.findall(r"^lth: timing (\S+): \d+ bytes, sha256 ([0-9a-f]{64})$", done.stdout, re.MULTILINE))
    assert timed == digests
    assert f"Latency of the 'export/' artifacts of run {run_id}:" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and ".tflite" in line]
    assert [row.split("|")[1].strip() for row in rows] == ["dense.tflite", "sparse.tflite", "compact.tflite",
                                                           "compact_sparse.tflite"]
    assert rows[0].split("|")[5].strip().startswith("1.00×")


def test_an_unknown_run_is_one_line(searched: tuple[Path, dict[str, object]]) -> None:
    cwd, _ = searched
    done = _export(cwd, "0123456789abcdef0123456789abcdef", "--no-log")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        "lth: error: cannot load ticket 0123456789abcdef0123456789abcdef")
