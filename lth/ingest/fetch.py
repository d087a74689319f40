"""Reading the bytes of one input: a file, a byte range of a tar, or a URL.

Downloads use requests with urllib3's `Retry` (connection errors, read timeouts and 429/5xx
are retried with exponential backoff; a 404 is final), a connect/read timeout, a total
deadline per image so a server that trickles bytes cannot hold a task forever, a size cap,
and a politeness interval between two requests to the same host from one Spark task.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from lth.ingest.images import RejectedInput
from lth.ingest.inventory import Locator


@dataclass(frozen=True)
class DownloadSettings:
    """The `download` group of conf/ingest.yaml."""

    connect_timeout_s: float  # waiting for a connection
    read_timeout_s: float  # waiting for the next bytes of a response
    total_timeout_s: float  # the whole download of one image, retries excluded
    retries: int  # further attempts after a connection error, read timeout, 429 or 5xx
    backoff_s: float  # backoff factor: waits backoff_s * 2**(attempt-1) between attempts
    per_host_interval_s: float  # at least this long between two requests to one host, per Spark task
    max_bytes: int  # larger responses are rejected (a page, a video, a misconfigured server)
    user_agent: str  # sent with every request, so site owners can see who is fetching


class HostPacer:
    """Spaces requests to the same host by at least `interval_s` (one per Spark task)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last_request: dict[str, float] = {}

    def wait(self, host: str) -> None:
        """Sleep until `host` may be asked again, then note the request."""
        last = self._last_request.get(host)
        if last is not None:
            time.sleep(max(0.0, last + self.interval_s - time.monotonic()))
        self._last_request[host] = time.monotonic()


class Fetcher:
    """Reads input bytes; one per Spark task, so its HTTP session and pacing are per task."""

    def __init__(self, settings: DownloadSettings) -> None:
        self.settings = settings
        self.pacer = HostPacer(settings.per_host_interval_s)
        self._session: requests.Session | None = None

    def _http(self) -> requests.Session:
        if self._session is None:  # created lazily: file and tar sources never need one
            retry = Retry(total=self.settings.retries, connect=self.settings.retries, read=self.settings.retries,
                          status=self.settings.retries, backoff_factor=self.settings.backoff_s,
                          status_forcelist=(429, 500, 502, 503, 504), allowed_methods=("GET",),
                          raise_on_status=False, respect_retry_after_header=True)
            session = requests.Session()
            session.mount("http://", HTTPAdapter(max_retries=retry))
            session.mount("https://", HTTPAdapter(max_retries=retry))
            session.headers["User-Agent"] = self.settings.user_agent
            self._session = session
        return self._session

    def read(self, locator: Locator) -> bytes:
        """The bytes of one input.

        Raises:
            RejectedInput: The input cannot be read (missing file, short tar, HTTP error, timeout).
        """
        if locator.kind == "file":
            try:
                with open(locator.path, "rb") as handle:
                    return handle.read()
            except OSError as error:
                raise RejectedInput(f"cannot read file: {error.strerror or error}") from None
        if locator.kind == "member":
            with open(locator.path, "rb") as handle:
                handle.seek(locator.offset)
                data = handle.read(locator.size)
            if len(data) != locator.size:
                raise RejectedInput(f"archive ends inside this member ({len(data)} of {locator.size} bytes)")
            return data
        if locator.kind == "url":
            return self._download(locator.path)
        raise ValueError(f"unknown input kind {locator.kind!r}")

    def _download(self, url: str) -> bytes:
        settings = self.settings
        self.pacer.wait(urlsplit(url).netloc)
        started = time.monotonic()
        try:
            with self._http().get(url, stream=True, timeout=(settings.connect_timeout_s, settings.read_timeout_s)) as reply:
                if reply.status_code != 200:
                    raise RejectedInput(f"HTTP {reply.status_code} {reply.reason or ''}".rstrip())
                chunks, size = [], 0
                for chunk in reply.iter_content(chunk_size=65536):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > settings.max_bytes:
                        raise RejectedInput(f"larger than download.max_bytes={settings.max_bytes}")
                    if time.monotonic() - started > settings.total_timeout_s:
                        raise RejectedInput(f"download took longer than download.total_timeout_s={settings.total_timeout_s}")
                return b"".join(chunks)
        except requests.exceptions.RetryError as error:
            raise RejectedInput(f"gave up after {settings.retries} retries: {error}") from None
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as error:
            kind = "timed out" if "timed out" in str(error).lower() else "connection failed"
            raise RejectedInput(f"{kind} after {settings.retries} retries: {type(error).__name__}") from None
        except requests.exceptions.RequestException as error:
            raise RejectedInput(f"download failed: {type(error).__name__}: {error}") from None
