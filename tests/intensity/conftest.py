"""A loopback HTTP server that plays recorded-shape provider answers, and helpers to configure against it.

Each test routes URL paths to a sequence of replies (the last one repeats) and then inspects the
requests the server saw. Retry waits are recorded instead of slept.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import urllib3.util.retry

from slurm_plugin import config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "intensity"
TOKEN = "em-test-token-do-not-log-7f3a"
STALL_LIMIT_S = 10.0  # a stalled reply is released at teardown at the latest; never reached normally


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    stall: bool = False  # hold the answer back until the test ends (client timeout tests)


@dataclass(frozen=True)
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def reply_json(data: Any, status: int = 200, **headers: str) -> Reply:
    """A JSON reply from a fixture file name or from data."""
    body = (FIXTURES / data).read_bytes() if isinstance(data, str) else json.dumps(data).encode()
    return Reply(status, body, {"Content-Type": "application/json", **headers})


class FakeApi:
    """Routes by longest matching path prefix; records every request."""

    def __init__(self) -> None:
        self.url = ""
        self.routes: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.counts: dict[str, int] = {}
        self.release = threading.Event()
        self._lock = threading.Lock()

    def route(self, prefix: str, *replies: Reply) -> None:
        self.routes[prefix] = list(replies)
        self.counts[prefix] = 0

    def hits(self, path: str | None = None) -> list[Seen]:
        """Requests seen, all or those for exactly `path`."""
        return [seen for seen in self.seen if path is None or seen.path == path]

    def answer(self, seen: Seen) -> Reply:
        """The next reply for this request's route; unrouted paths get a 404."""
        with self._lock:
            self.seen.append(seen)
            matches = [p for p in self.routes if seen.path.startswith(p)]
            if not matches:
                return Reply(404, b'{"error": "no route"}')
            prefix = max(matches, key=len)
            self.counts[prefix] += 1
            replies = self.routes[prefix]
            return replies[min(self.counts[prefix], len(replies)) - 1]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        seen = Seen(parts.path, dict(parse_qsl(parts.query)), {k.lower(): v for k, v in self.headers.items()})
        reply = self.server.api.answer(seen)
        if reply.stall:
            self.server.api.release.wait(STALL_LIMIT_S)
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            pass  # the client gave up (timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: FakeApi


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.api = FakeApi()
    server.api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server.api
    server.api.release.set()
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Waits urllib3's Retry would sleep (backoff and Retry-After), recorded instead of slept."""
    waits: list[float] = []

    class _Clock:
        time = staticmethod(urllib3.util.retry.time.time)
        sleep = staticmethod(waits.append)

    monkeypatch.setattr(urllib3.util.retry, "time", _Clock)
    return waits


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "electricitymaps.token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def intensity_cfg(**changes: Any) -> config.Intensity:
    """Short timeouts and few retries, so failing tests stay fast."""
    return config.Intensity(**{"timeout_s": 2.0, "max_retries": 2, **changes})


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (bound, then closed, so it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
