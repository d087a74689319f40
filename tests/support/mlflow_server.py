"""A real `mlflow server` on 127.0.0.1 for the tests, on a port no other process holds.

`mlflow server` takes its port on the command line, so the port is chosen the only way it can be
from outside: the kernel names a free one, which is released for the server to bind. Another
process (a test session in another checkout, a client's outgoing connection) may take it in
between. Then either the server cannot bind (it logs "address already in use" and exits, with
status 0), or, worse, another server answers /health on that port. So a start counts only when the
server on the port lists a marker file that only this server's artifact folder holds, and a server
that found its port taken is started again on another, a few times.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

ATTEMPTS = 5  # starts on fresh ports before giving up; one collision is already rare
START_TIMEOUT_S = 180  # one start; measured 20-50 s on 2 busy cores (imports, database migrations)
_MARKER = "lth-test-server-*"


@dataclass(frozen=True)
class MlflowServer:
    """A running `mlflow server` with its store in `folder`."""

    process: subprocess.Popen[bytes]  # leads its own process group (the server and its uvicorn worker)
    port: int
    folder: Path  # mlflow.db, artifacts/ and one log per start, server-<port>.log

    @property
    def uri(self) -> str:
        """The tracking URI of the server."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def store_uri(self) -> str:
        """Its backend store, to read directly once it is stopped."""
        return f"sqlite:///{self.folder / 'mlflow.db'}"

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        """Stop the server and its workers (SIGTERM shuts down gracefully; SIGKILL when nothing is left to keep)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, how)
        self.process.wait(timeout=60)


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _lists_marker(uri: str, marker: str) -> bool:
    """Whether the server at `uri` answers and its artifact root holds `marker`, i.e. it is the one started here."""
    try:
        with urllib.request.urlopen(f"{uri}/api/2.0/mlflow-artifacts/artifacts", timeout=5) as response:
            files = json.loads(response.read()).get("files", [])
    except (OSError, ValueError):
        return False
    return any(entry.get("path") == marker for entry in files)


def _started(server: MlflowServer, marker: str, log: Path) -> bool:
    """Wait until `server` answers (True) or exits because its port was taken (False).

    Raises:
        AssertionError: It exited for another reason, or did not answer within START_TIMEOUT_S.
    """
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _lists_marker(server.uri, marker):
        if server.process.poll() is not None:
            if "address already in use" in log.read_text().lower():
                return False
            raise AssertionError(f"mlflow server exited:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            server.stop(signal.SIGKILL)
            raise AssertionError(f"mlflow server did not start in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return True


def start_mlflow_server(folder: Path) -> MlflowServer:
    """Start `mlflow server` on a free port with its store in `folder` (a store already there is reused).

    Raises:
        AssertionError: The server did not start (with its log's end), or every port tried was taken.
    """
    artifacts = folder / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    markers = sorted(artifacts.glob(_MARKER))  # a restart on the same store keeps its marker
    marker = markers[0] if markers else artifacts / _MARKER.replace("*", uuid.uuid4().hex)
    marker.touch()
    mlflow = Path(sys.executable).with_name("mlflow")
    for _ in range(ATTEMPTS):
        port = _unused_port()
        log = folder / f"server-{port}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                 "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(artifacts)],
                cwd=folder, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        server = MlflowServer(process, port, folder)
        if _started(server, marker.name, log):
            return server
    raise AssertionError(f"mlflow server found its port taken {ATTEMPTS} times in a row (logs in {folder})")
