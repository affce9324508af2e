"""Fixtures for the service tests: a policy to route to, routing keys and API tokens, the WSGI app called
in-process, and the same app under the real HTTP server (uvicorn) on 127.0.0.1 (port 0) in a thread."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict
from sqlalchemy import func, select

from engine.context import AppContext
from engine.db import write_session
from engine.models import Base, IntakeEvent, Person, Policy, PolicyLevel, PolicyTarget
from engine.service.app import ServiceApp
from engine.service.health import ServiceState
from engine.service.keys import CreatedSecret, create_api_token, create_routing_key
from engine.service.server import bound_address, make_server, shutdown_server

TWILIO_TOKEN = "twilio-auth-token-for-tests-0123456789"


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class WsgiClient:
    """Calls the WSGI application directly, the way a server would, with a real byte stream for the body."""

    def __init__(self, app: ServiceApp, host: str = "watchkeeper.test") -> None:
        self.app = app
        self.host = host

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        json_body: Any = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        declare_length: bool = True,
    ) -> Reply:
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = content_type or "application/json"
        body = body or b""
        path, _, query = path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": self.host,
            "SERVER_PORT": "80",
            "HTTP_HOST": self.host,
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(),
        }
        if declare_length:
            environ["CONTENT_LENGTH"] = str(len(body))
        if content_type:
            environ["CONTENT_TYPE"] = content_type
        for name, value in (headers or {}).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        captured: dict[str, Any] = {}

        def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
            captured["status"] = int(status.split()[0])
            captured["headers"] = dict(response_headers)

        chunks = self.app(environ, start_response)
        return Reply(captured["status"], captured["headers"], b"".join(chunks))

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Reply:
        return self.request("POST", path, **kw)


class HttpClient:
    """The same calls over a real socket with urllib. Header names are case-insensitive, as in HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        json_body: Any = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = content_type or "application/json"
        req = urllib.request.Request(self.base_url + path, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Reply(resp.status, CaseInsensitiveDict(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return Reply(exc.code, CaseInsensitiveDict(exc.headers.items()), exc.read())

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Reply:
        return self.request("POST", path, **kw)


def row_counts(ctx: AppContext) -> dict[str, int]:
    """Rows in every table: equal before and after a refused request means nothing was stored."""
    from engine.service.queue import intake_store

    with ctx.sessions() as session:
        counts = {
            table.name: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }
    store = intake_store(ctx)
    if store.separate:  # the SQLite intake spool, a file of its own
        with store.sessions() as session:
            counts["intake spool"] = int(session.scalar(select(func.count()).select_from(IntakeEvent)) or 0)
    return counts


@pytest.fixture
def policy(ctx: AppContext) -> str:
    """A policy "ops": level 1 pages Alice by SMS at once, level 2 pages Bob five minutes later."""
    with write_session(ctx.sessions) as session:
        alice = Person(handle="alice", name="Alice Dlamini", phone="+27820000001", preferred_channel="sms")
        bob = Person(handle="bob", name="Bob van Wyk", phone="+27820000002", preferred_channel="sms")
        session.add_all([alice, bob])
        pol = Policy(name="ops", description="Operations on-call")
        pol.levels = [
            PolicyLevel(level=1, delay_seconds=0, targets=[PolicyTarget(type="person", identifier="alice")]),
            PolicyLevel(level=2, delay_seconds=300, targets=[PolicyTarget(type="person", identifier="bob")]),
        ]
        session.add(pol)
    return "ops"


@pytest.fixture
def routing_key(ctx: AppContext, policy: str) -> CreatedSecret:
    return create_routing_key(ctx, policy=policy, label="alertmanager")


@pytest.fixture
def operator_token(ctx: AppContext) -> str:
    return create_api_token(ctx, label="night-shift-script", role="operator").secret


@pytest.fixture
def supervisor_token(ctx: AppContext) -> str:
    return create_api_token(ctx, label="supervisor-tool", role="supervisor").secret


@pytest.fixture
def app(ctx: AppContext) -> ServiceApp:
    return ServiceApp(ctx, ServiceState(started_at=ctx.clock.now()))


@pytest.fixture
def client(app: ServiceApp) -> WsgiClient:
    return WsgiClient(app)


@pytest.fixture
def live(app: ServiceApp) -> Iterator[HttpClient]:
    """The app under the service's HTTP server on 127.0.0.1, an ephemeral port, in a thread."""
    server = make_server(app, "127.0.0.1", 0)
    host, port = bound_address(server)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield HttpClient(f"http://{host}:{port}")
    finally:
        shutdown_server(server)
        thread.join(timeout=5)


@pytest.fixture
def twilio_token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WATCHKEEPER_SECRET_TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    return TWILIO_TOKEN


def enqueue_body(
    routing_key: str, action: str = "trigger", dedup_key: str | None = "disk-full-db1", **payload: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": action}
    if dedup_key is not None:
        body["dedup_key"] = dedup_key
    if action == "trigger":
        body["payload"] = {
            "summary": "Disk 95% full on db1",
            "source": "db1.example.org",
            "severity": "critical",
            **payload,
        }
    return body


@pytest.fixture
def counts(ctx: AppContext) -> Any:
    """`counts()` → rows per table now."""
    return lambda: row_counts(ctx)


@pytest.fixture
def event_body() -> Any:
    return enqueue_body


class ServeProcess:
    """`python main.py serve` in a subprocess, listening on an ephemeral port; stderr collected."""

    def __init__(
        self, db_url: str, *, env: dict[str, str] | None = None, args: list[str] | None = None
    ) -> None:
        import os
        import queue
        import re
        import subprocess
        import sys
        from pathlib import Path

        root = Path(__file__).resolve().parents[2]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
        full_env.update(
            {
                "WATCHKEEPER_DB": db_url,
                "WATCHKEEPER_HTTP_PORT": "0",
                "WATCHKEEPER_CONFIG": str(Path(os.environ.get("XDG_CONFIG_HOME", "/tmp")) / "none.toml"),
                "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
                "PYTHONUNBUFFERED": "1",
            }
        )
        full_env.update(env or {})
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._port_re = re.compile(r"listening on http://([\d.]+):(\d+)")
        self.proc = subprocess.Popen(
            [sys.executable, str(root / "main.py"), "serve", *(args or [])],
            cwd=str(root),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.base_url = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_listening(self, timeout: float = 30.0) -> str:
        import queue
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"serve exited ({self.proc.wait()}) before listening:\n{self.output}")
            m = self._port_re.search(line)
            if m:
                self.base_url = f"http://{m.group(1)}:{m.group(2)}"
                return self.base_url
        raise AssertionError(f"serve did not start listening within {timeout} s:\n{self.output}")

    def terminate(self, timeout: float = 15.0) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def migrated_url(db_url: str) -> str:
    """An empty database with the full schema, stamped at the head revision, as `db upgrade` leaves it.

    The schema comes from the models and is stamped (not upgraded through the migration scripts), so these
    tests follow the models; tests/engine/test_migrations.py proves the migrations match them."""
    from engine.db import make_engine
    from engine.migrate import stamp

    engine = make_engine(db_url)
    try:
        Base.metadata.create_all(engine)
        stamp(engine)
    finally:
        engine.dispose()
    return db_url


@pytest.fixture
def spawn() -> Iterator[Any]:
    started: list[ServeProcess] = []

    def _spawn(db_url: str, **kw: Any) -> ServeProcess:
        proc = ServeProcess(db_url, **kw)
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        proc.close()
