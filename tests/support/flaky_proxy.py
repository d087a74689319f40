"""An HTTP proxy on 127.0.0.1 that fails chosen requests, records every request with its time, and passes the rest.

It stands between an lth job and a real `mlflow server`, so a test can see MLflow's client retry one
request (the same method, path and body, again and again) and measure the waits between the attempts.
It runs in threads of the test process, is bounded in lifetime and in requests, and stops by itself.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

# Headers that belong to one connection, never forwarded (RFC 9110 7.6.1); bodies are re-framed by length.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                        "upgrade", "content-length"})
Matcher = Callable[[str, str, bytes], bool]  # (method, path, body) -> whether this request is one to fail


@dataclass(frozen=True)
class Exchange:
    """One request as the proxy saw it."""

    arrived: float  # time.monotonic() when the request's headers were read
    method: str
    path: str
    body: bytes
    status: int | None  # what the client got: the scripted failure, the server's status, or None (connection dropped)


def log_batch_with_metric(metric: str) -> Matcher:
    """Matches MLflow's `runs/log-batch` requests that log `metric` (an epoch's metrics, not params or tags)."""

    def matches(method: str, path: str, body: bytes) -> bool:
        if method != "POST" or not path.startswith("/api/2.0/mlflow/runs/log-batch"):
            return False
        return any(item.get("key") == metric for item in json.loads(body or b"{}").get("metrics", []))

    return matches


class FlakyProxy:
    """Forwards to `upstream`, except the first `failures` requests that `matching` selects, answered `answer`.

    A request whose upstream cannot be reached (the server is down) is answered by dropping the
    connection, as a server that died mid-request would.

    Args:
        upstream_port: Port of the real server on 127.0.0.1.
        matching: Selects the requests to fail.
        failures: How many of the selected requests fail; later ones pass.
        answer: HTTP status of a scripted failure, or None to drop the connection without answering.
        lifetime_s: The proxy shuts itself down after this long, whatever the test does.
        max_requests: ...or after this many requests (a runaway client cannot keep it busy).
    """

    def __init__(self, upstream_port: int, matching: Matcher = lambda *_: False, failures: int = 0,
                 answer: int | None = 503, lifetime_s: float = 900, max_requests: int = 5000) -> None:
        self.upstream_port, self.matching, self.answer = upstream_port, matching, answer
        self.failures_left, self.max_requests = failures, max_requests
        self._exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True  # a handler stuck on a dead upstream never blocks the test's exit
        self._serving = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._deadline = threading.Timer(lifetime_s, self.stop)
        self._deadline.daemon = True

    @property
    def url(self) -> str:
        """The address to give the client instead of the server's."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def exchanges(self) -> list[Exchange]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._exchanges)

    def forward_to(self, upstream_port: int) -> None:
        """Forward later requests to this port (the server came back on another one)."""
        self.upstream_port = upstream_port  # each request reads it once, as it connects upstream

    def __enter__(self) -> FlakyProxy:
        self._serving.start()
        self._deadline.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving (idempotent; also called by the lifetime timer and the request cap)."""
        self._deadline.cancel()
        if self._serving.is_alive():
            threading.Thread(target=self._server.shutdown, daemon=True).start()  # shutdown() blocks: never in a handler
            self._serving.join(timeout=10)
        self._server.server_close()

    def _decide(self, method: str, path: str, body: bytes) -> tuple[bool, bool]:
        """(fail this request, over the request cap), atomically across handler threads."""
        with self._lock:
            over = len(self._exchanges) >= self.max_requests
            fail = self.failures_left > 0 and self.matching(method, path, body)
            if fail:
                self.failures_left -= 1
            return fail, over

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # what MLflow's client speaks; every answer still closes its connection

            def log_message(self, format: str, *args: object) -> None:
                pass  # the test reads `exchanges`, not stderr

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")  # the client never reuses a connection we may drop later
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def _exchange(self) -> None:
                arrived = time.monotonic()
                body = self._body()
                fail, over = proxy._decide(self.command, self.path, body)
                if over:
                    proxy.stop_soon()
                if fail or over:
                    status = proxy.answer if fail else 503
                    proxy._record(Exchange(arrived, self.command, self.path, body, status))
                    if status is None:
                        self.close_connection = True  # no answer at all: the client sees the connection drop
                        return
                    self._reply(status, [("Content-Type", "application/json")],
                                json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "flaky proxy"}).encode())
                    return
                headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    answer = response.read()
                except OSError:  # refused, reset or cut off: the server is down
                    proxy._record(Exchange(arrived, self.command, self.path, body, None))
                    self.close_connection = True
                    return
                finally:
                    upstream.close()
                proxy._record(Exchange(arrived, self.command, self.path, body, response.status))
                self._reply(response.status, response.getheaders(), answer)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _exchange

        return Handler

    def stop_soon(self) -> None:
        """Stop from inside a handler thread (stop() would wait for the handler itself)."""
        threading.Thread(target=self.stop, daemon=True).start()
