"""The ingest checks for the Java runtime Spark needs before it lists a file or starts a session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lth.config.vocabulary import ConfigError
from lth.ingest.java import require_java

REPO_ROOT = Path(__file__).resolve().parents[3]
INSTALL_HINT = "apt-get install openjdk-17-jre-headless"


@pytest.fixture
def no_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with nothing on it and no JAVA_HOME: a machine without Java, as far as Spark can tell."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    return empty


@pytest.mark.usefixtures("no_java")
def test_missing_java_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="`java` is not on PATH.*openjdk-17"):
        require_java()


def test_a_java_home_without_java_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))  # Spark would run $JAVA_HOME/bin/java, which is not there
    with pytest.raises(ConfigError, match=f"JAVA_HOME={tmp_path} has no executable bin/java.*openjdk-17"):
        require_java()


@pytest.mark.skipif(shutil.which("java") is None and not os.environ.get("JAVA_HOME"), reason="no Java here")
def test_the_installed_java_is_read_and_its_version_compared() -> None:
    version = require_java(min_major=1)
    assert version and version[0].isdigit()
    with pytest.raises(ConfigError, match=f"Spark needs Java 999\\+, found {version} at .*openjdk-999"):
        require_java(min_major=999)


def test_the_ingest_refuses_to_start_without_java_in_one_line(no_java: Path, tmp_path: Path) -> None:
    output = tmp_path / "shards"
    # The real entry point, in a process that sees no Java (python itself by its full path).
    done = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "ingest.py"), f"output={output}",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                          cwd=tmp_path, env=os.environ | {"PATH": str(no_java)}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("lth: error: Spark needs Java 17+, but `java` is not on PATH: ") and INSTALL_HINT in last
    assert "Traceback" not in done.stderr and "Py4J" not in done.stderr
    assert not output.exists()  # refused before the listing wrote anything
