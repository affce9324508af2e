"""`watchkeeper serve` as a real process: it starts, answers /healthz, stops cleanly on SIGTERM (exit 0, node
marked stopped), refuses to start with a clear message when the database is unreachable, and rides out a lost
database connection reporting itself degraded."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import make_url, select

from engine.db import make_engine, session_factory
from engine.models import EngineNode


def _get(url: str, timeout: float = 10.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def _nodes(url: str) -> list[EngineNode]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return list(session.scalars(select(EngineNode)).all())
    finally:
        engine.dispose()


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def test_serve_answers_healthz_and_stops_on_sigterm_with_exit_0(migrated_url: str, spawn: Any) -> None:
    proc = spawn(migrated_url)
    base = proc.wait_listening()
    status, report = _wait_for(
        lambda: (lambda r: r if r[0] == 200 else None)(_get(base + "/healthz")), 20, "200"
    )
    assert status == 200
    assert report["database"] == "ok"
    node_id = report["node"]
    _wait_for(lambda: "escalate" in _get(base + "/healthz")[1]["passes"], 20, "an escalate pass")
    [node] = _nodes(migrated_url)
    assert node.id == node_id and node.mode == "serve" and node.status == "running"
    started = time.monotonic()
    assert proc.terminate(timeout=15) == 0
    assert time.monotonic() - started < 10
    [node] = _nodes(migrated_url)
    assert node.status == "stopped"
    assert "stopping after the pass in hand" in proc.output


def test_serve_stops_on_sigint_too(migrated_url: str, spawn: Any) -> None:
    proc = spawn(migrated_url)
    proc.wait_listening()
    proc.proc.send_signal(signal.SIGINT)
    assert proc.proc.wait(timeout=15) == 0


def test_serve_logs_json_lines_and_to_a_file_when_configured(
    migrated_url: str, spawn: Any, tmp_path: Any
) -> None:
    log_file = tmp_path / "logs" / "watchkeeper.log"
    proc = spawn(migrated_url, env={"WATCHKEEPER_LOG_FORMAT": "json", "WATCHKEEPER_LOG_FILE": str(log_file)})
    proc.wait_listening()
    assert proc.terminate() == 0
    parsed = [json.loads(line) for line in proc.lines if line.startswith("{")]
    assert any("listening on" in p["message"] for p in parsed)
    assert "listening on" in log_file.read_text()


@pytest.mark.parametrize(
    "url",
    ["postgresql://watchkeeper@127.0.0.1:1/watchkeeper", "sqlite:////proc/no-such-dir/watchkeeper.db"],
    ids=["postgresql-refused", "sqlite-unwritable"],
)
def test_serve_exits_non_zero_with_a_clear_message_when_the_database_is_unreachable(
    spawn: Any, url: str
) -> None:
    proc = spawn(url)
    code = proc.proc.wait(timeout=30)
    proc._reader.join(timeout=5)
    assert code != 0
    assert "error:" in proc.output
    assert "cannot" in proc.output
    assert "Traceback" not in proc.output


class TcpProxy:
    """A loopback TCP proxy in front of PostgreSQL that the test can cut and restore."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.closed = False
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        self.up.clear()
        with self.lock:
            for conn in self.conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()
                except OSError:
                    pass
            self.conns.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


@pytest.fixture
def pg_proxy(migrated_url: str) -> Iterator[tuple[TcpProxy, str]]:
    url = make_url(migrated_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("a network cut needs a database behind a socket: PostgreSQL only")
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxy.close()


def test_lost_database_makes_the_node_degraded_and_it_recovers_without_exiting(
    pg_proxy: tuple[TcpProxy, str], spawn: Any
) -> None:
    proxy, url = pg_proxy
    proc = spawn(url)
    base = proc.wait_listening()
    _wait_for(lambda: _get(base + "/healthz")[0] == 200, 20, "healthy")
    proxy.cut()
    _, report = _wait_for(
        lambda: (lambda r: r if r[0] == 503 else None)(_get(base + "/healthz")), 30, "503 while cut"
    )
    assert report["status"] == "degraded"
    assert report["database"] == "unreachable"
    # Long enough that a doubling backoff would be sleeping 8 s or more by now.
    time.sleep(8)
    assert proc.proc.poll() is None, "serve must keep running while the database is away"
    proxy.restore()
    back = time.monotonic()
    _wait_for(lambda: _get(base + "/healthz")[0] == 200, 60, "healthy again")
    # The operations guide promises green within about a second of the database's return.
    assert time.monotonic() - back < 3.0
    assert "database unreachable" in proc.output
    assert proc.terminate() == 0
