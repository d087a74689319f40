"""`python -m lth.export`: bad input ends in one line, before any TensorFlow work."""

from __future__ import annotations

from pathlib import Path

import pytest

from lth.export.__main__ import main


def test_a_missing_store_is_one_line_and_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "mlflow.db"
    assert main(["0123456789abcdef", "--tracking-uri", f"sqlite:///{store}"]) == 2
    assert capsys.readouterr().err.startswith(f"lth: error: no MLflow store at sqlite:///{store}")
    assert not store.exists()  # MLflow would have made an empty store here


@pytest.mark.parametrize("latency_only", [False, True])
def test_an_unknown_run_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], latency_only: bool) -> None:
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=store).search_experiments()  # an empty store, as a fresh sweep's folder has
    argv = ["0123456789abcdef0123456789abcdef", "--tracking-uri", store, "--out", str(tmp_path / "none")]
    assert main(argv + (["--latency-only"] if latency_only else [])) == 2
    error = capsys.readouterr().err
    last = error.strip().splitlines()[-1]  # (MLflow logs its own lines when it opens a store)
    assert "Traceback" not in error and last.startswith("lth: error:") and "0123456789abcdef0123456789abcdef" in last


def test_a_test_limit_below_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["abc", "--test-limit", "0"])
    assert stop.value.code == 2
    assert "--test-limit must be at least 1" in capsys.readouterr().err
