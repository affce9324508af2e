"""`watchkeeper serve`: the engine's passes and the HTTP API in one process, with no window.

The passes are the same EngineRunner the console embeds. The HTTP server is uvicorn (engine.service.asgi)
bound to settings.http_host (127.0.0.1 unless the operator says otherwise). SIGTERM or SIGINT stops the node
gracefully: the HTTP server stops accepting, the runner finishes the pass in hand and releases its leases, the
node's EngineNode row is marked stopped, and the process exits 0. A database that goes away while the node
runs is tried again every half second (the log says so at a growing interval); meanwhile the node reports
itself degraded (EngineNode.status, /healthz 503) and keeps running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from engine.context import AppContext
from engine.db import ping, write_session
from engine.models import EngineNode
from engine.service import integration, queue
from engine.service.app import ServiceApp
from engine.service.asgi import HttpServer
from engine.service.health import ServiceState, health
from engine.service.queue import IntakeWorker, IntakeWriter

log = logging.getLogger("watchkeeper.service")

# How often the serve loop checks the database while all is well and while it is away (a refused connection
# costs nothing, and /healthz must be green within 2 s of the database coming back); the warning in the log
# is repeated at a growing interval instead.
CHECK_INTERVAL_SECONDS = 5.0
RECHECK_LOST_SECONDS = 0.5
BACKOFF_START_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0


def _version() -> str:
    try:
        from engine.cli import version

        return str(version())
    except Exception:
        from engine import __version__

        return str(__version__)


class _Node:
    """This process's EngineNode row: registered at start, status changes, stopped at the end."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.status = "running"

    def upsert(self, status: str) -> None:
        now = self.ctx.clock.now()
        with write_session(self.ctx.sessions) as session:
            node = session.get(EngineNode, self.ctx.node_id)
            if node is None:
                node = EngineNode(
                    id=self.ctx.node_id,
                    hostname=socket.gethostname()[:255],
                    pid=os.getpid(),
                    mode="serve",
                    version=_version()[:32],
                    status=status,
                    started_at=now,
                    heartbeat_at=now,
                    last_pass={},
                )
                session.add(node)
            else:
                node.status = status
                node.heartbeat_at = now
        self.status = status

    def try_set(self, status: str) -> bool:
        try:
            self.upsert(status)
            return True
        except SQLAlchemyError as exc:
            log.debug("could not record node status %s: %s", status, type(exc).__name__)
            return False


class _Runner:
    """The engine's EngineRunner, started and stopped; absent runner: HTTP only, said loudly."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.runner: Any = None

    def start(self) -> None:
        try:
            runner_cls = integration.runner().EngineRunner
        except Exception as exc:
            log.error("the engine passes are not available in this build (%s); serving HTTP only", exc)
            return
        self.runner = (
            runner_cls(self.ctx, mode="serve") if _accepts_mode(runner_cls) else runner_cls(self.ctx)
        )
        self.runner.start()

    def stop(self) -> None:
        if self.runner is None:
            return
        stop: Callable[..., Any] = self.runner.stop
        try:
            stop(timeout=STOP_TIMEOUT_SECONDS)
        except TypeError:
            stop()

    def set_status(self, status: str) -> None:
        """Make the runner's heartbeat carry this status (it would otherwise write "running" over it)."""
        if self.runner is None:
            return
        setter = getattr(self.runner, "set_status", None)
        if callable(setter):
            setter(status)
            return
        scheduler = getattr(self.runner, "scheduler", None)
        if scheduler is not None:
            try:
                scheduler.modify_job("heartbeat", kwargs={"status": status})
            except Exception:
                log.debug("could not pass status %s to the heartbeat", status, exc_info=True)

    def passes(self) -> dict[str, Any]:
        if self.runner is None:
            return {}
        for name in ("last_pass", "last_passes", "pass_stats"):
            value = getattr(self.runner, name, None)
            if callable(value):
                value = value()
            if isinstance(value, dict) and value:
                return value
        return {}


def _accepts_mode(cls: Any) -> bool:
    import inspect

    try:
        return "mode" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def _describe_db(ctx: AppContext) -> str:
    try:
        from engine.bootstrap import describe_database

        return describe_database(ctx.db.url)
    except Exception:
        return f"{ctx.db.dialect.name} database"


def _reason(exc: BaseException) -> str:
    """The driver's first line, with any known secret redacted (engine.bootstrap's wording when present)."""
    try:
        from engine.bootstrap import error_reason

        return str(error_reason(exc, None))
    except ImportError:
        from engine.logs import redact

        orig = getattr(exc, "orig", None) or exc
        lines = str(orig).strip().splitlines()
        return redact(lines[0].strip() if lines else type(orig).__name__)


class InProcessEngine:
    """The passes (EngineRunner) and the intake worker as threads of this process."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.runner = _Runner(ctx)
        self.worker = IntakeWorker(ctx)

    def start(self) -> None:
        self.runner.start()
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.runner.stop()

    def wake_intake(self) -> None:
        self.worker.wake()

    def set_status(self, status: str) -> None:
        self.runner.set_status(status)

    def passes(self) -> dict[str, Any]:
        passes = self.runner.passes()
        if self.worker.last_run:
            passes = {**passes, "intake": dict(self.worker.last_run)}
        return passes

    def check(self) -> None:
        return None


class ForkedEngine:
    """The passes and the intake worker in a child process, so HTTP intake and the engine use two cores.

    Forked before any thread starts; the child shares this node's id (one EngineNode row, written by its
    heartbeat). A pipe carries "work queued", "degraded"/"running" and "stop" to the child; its end of file
    (this process gone, even by SIGKILL) stops the child too. A child that dies unexpectedly is replaced by
    the same engine running in this process, with an error in the log.
    """

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.pid = 0
        self.write_fd = -1
        self.fallback: InProcessEngine | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            os.close(write_fd)
            code = 1
            try:
                code = _engine_child(self.ctx, read_fd)
            except BaseException:
                log.exception("the engine process failed")
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(read_fd)
        os.set_blocking(write_fd, False)
        self.pid, self.write_fd = pid, write_fd
        log.info("engine passes running in process %d", pid)

    def _send(self, byte: bytes) -> None:
        with self._lock:
            if self.write_fd < 0:
                return
            with contextlib.suppress(OSError):  # a full pipe: the child has wake-ups enough already
                os.write(self.write_fd, byte)

    def wake_intake(self) -> None:
        if self.fallback is not None:
            self.fallback.wake_intake()
        else:
            self._send(b"w")

    def set_status(self, status: str) -> None:
        if self.fallback is not None:
            self.fallback.set_status(status)
        else:
            self._send(b"d" if status == "degraded" else b"r")

    def passes(self) -> dict[str, Any]:
        return self.fallback.passes() if self.fallback is not None else {}

    def _reap(self, block_for: float = 0.0) -> int | None:
        """The child's exit code once it has ended (None while it runs)."""
        deadline = time.monotonic() + block_for
        while True:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return 0
            if pid == self.pid:
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def check(self) -> None:
        if self.fallback is not None or not self.pid:
            return
        code = self._reap()
        if code is None:
            return
        log.error(
            "the engine process %d ended unexpectedly (exit %s); running the passes in this process",
            self.pid,
            code,
        )
        self._close_pipe()
        self.pid = 0
        fallback = InProcessEngine(self.ctx)
        try:
            fallback.start()
        except Exception:
            log.exception("the engine passes cannot run; serving HTTP only (the node reports degraded)")
            return
        self.fallback = fallback

    def _close_pipe(self) -> None:
        with self._lock:
            if self.write_fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self.write_fd)
                self.write_fd = -1

    def stop(self) -> None:
        if self.fallback is not None:
            self.fallback.stop()
            return
        if not self.pid:
            return
        self._send(b"q")
        self._close_pipe()
        code = self._reap(block_for=STOP_TIMEOUT_SECONDS + 5)
        if code is None:
            log.warning("the engine process %d did not stop in time; killing it", self.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            code = self._reap(block_for=5)
        elif code != 0:
            log.warning("the engine process %d stopped with exit code %s", self.pid, code)


def _engine_child(ctx: AppContext, read_fd: int) -> int:
    """The engine process: passes and intake worker until the parent says stop (or disappears)."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())
    ctx.db.dispose(close=False)  # the parent's pooled connections are not ours to use
    queue.after_fork(ctx)
    engine = InProcessEngine(ctx)

    def _listen() -> None:
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                data = b""
            if not data:  # the parent is gone
                stop.set()
                return
            for byte in data:
                if byte == ord("w"):
                    engine.wake_intake()
                elif byte == ord("d"):
                    engine.set_status("degraded")
                elif byte == ord("r"):
                    engine.set_status("running")
                elif byte == ord("q"):
                    stop.set()

    engine.start()
    threading.Thread(target=_listen, name="watchkeeper-parent", daemon=True).start()
    stop.wait()
    engine.stop()
    return 0


def _make_engine(ctx: AppContext) -> InProcessEngine | ForkedEngine:
    if hasattr(os, "fork") and threading.active_count() == 1 and (os.cpu_count() or 1) > 1:
        return ForkedEngine(ctx)
    return InProcessEngine(ctx)


def make_server(app: ServiceApp, host: str, port: int) -> HttpServer:
    """The HTTP server, bound now (so port 0 gets its real port); run it with .run(), stop with
    shutdown_server."""
    return HttpServer(app, host, port)


def shutdown_server(server: HttpServer, timeout: float = 10.0) -> None:
    """Stop gracefully: stop accepting, let requests in hand finish and their answers go out."""
    server.close(timeout)


def bound_address(server: HttpServer) -> tuple[str, int]:
    return server.address()


def serve(ctx: AppContext, host: str, port: int) -> int:
    """Run the passes and the HTTP API until SIGTERM/SIGINT; returns the process exit code."""
    if not logging.getLogger().handlers:
        from engine.logs import configure_logging

        configure_logging(ctx.settings, "service")
    # APScheduler logs every run of every pass at INFO: a line a second that buries what matters.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("uvicorn").setLevel(max(logging.WARNING, logging.getLogger().level))
    label = _describe_db(ctx)
    try:
        ping(ctx.db)
    except SQLAlchemyError as exc:
        message = f"cannot reach the {label}: {_reason(exc)}"
        log.error("%s", message)
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()
        return 1

    stop = threading.Event()
    state = ServiceState(started_at=ctx.clock.now(), expect_passes=True)
    node = _Node(ctx)
    try:
        node.upsert("running")
    except SQLAlchemyError as exc:
        message = f"cannot register this node in the {label}: {_reason(exc)}"
        log.error("%s", message)
        sys.stderr.write(f"error: {message}\n")
        return 1
    engine = _make_engine(ctx)
    engine.start()  # forks first, while this process has no other thread
    if isinstance(engine, InProcessEngine):
        state.pass_source = engine.passes
    writer = IntakeWriter(ctx, on_commit=engine.wake_intake)
    app = ServiceApp(ctx, state, intake=writer)
    try:
        server = make_server(app, host, port)
    except OSError as exc:
        message = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        log.error("%s", message)
        sys.stderr.write(f"error: {message}\n")
        engine.stop()
        node.try_set("stopped")
        return 1

    previous: dict[signal.Signals, Any] = {}

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        if not stop.is_set():
            log.info("received %s: stopping after the pass in hand", signal.Signals(signum).name)
        stop.set()
        state.wakeup.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _on_signal)

    http_thread = threading.Thread(target=_run_server, args=(server,), name="watchkeeper-http", daemon=True)
    try:
        writer.start()
        http_thread.start()
        bound_host, bound_port = bound_address(server)
        log.info(
            "watchkeeper serve: node %s on the %s, listening on http://%s:%d",
            ctx.node_id,
            label,
            bound_host,
            bound_port,
        )
        _watch(ctx, state, node, engine, stop)
    finally:
        log.info("stopping: HTTP server")
        try:
            shutdown_server(server)
            http_thread.join(timeout=5)
        except Exception:
            log.exception("error closing the HTTP server")
        log.info("stopping: intake queue and engine passes")
        try:
            writer.stop()
        except Exception:
            log.exception("error stopping the intake queue")
        try:
            engine.stop()
        except Exception:
            log.exception("error stopping the engine passes")
        if node.try_set("stopped"):
            log.info("node %s stopped", ctx.node_id)
        else:
            log.warning("node %s stopped, but the database did not take its status", ctx.node_id)
        if in_main_thread:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return 0


def _run_server(server: HttpServer) -> None:
    try:
        server.run()
    except Exception:  # closing the sockets during shutdown ends run() with an error on some platforms
        log.debug("HTTP server loop ended", exc_info=True)


def _watch(
    ctx: AppContext,
    state: ServiceState,
    node: _Node,
    runner: InProcessEngine | ForkedEngine,
    stop: threading.Event,
) -> None:
    """Until stopped: check the database; on loss retry every half second and report degraded, never exit."""
    backoff = BACKOFF_START_SECONDS
    lost_since: float | None = None
    next_warning = 0.0
    last_problems: list[str] = []
    while not stop.is_set():
        runner.check()
        try:
            ping(ctx.db)
            ok, error = True, ""
        except SQLAlchemyError as exc:
            ok, error = False, _reason(exc)
        if ok:
            if lost_since is not None:
                log.warning("database connection restored after %.0f s", time.monotonic() - lost_since)
                lost_since = None
                backoff = BACKOFF_START_SECONDS
                next_warning = 0.0
            state.set_database(True)
            code, report = health(ctx, state)
            wanted = "running" if code == 200 else "degraded"
            problems = list(report.get("problems", []))
            if problems and problems != last_problems:
                log.warning("node degraded: %s", "; ".join(problems))
            elif not problems and last_problems:
                log.info("node healthy again")
            last_problems = problems
            if node.status != wanted:
                runner.set_status(wanted)
                node.try_set(wanted)
            state.wakeup.wait(CHECK_INTERVAL_SECONDS)
            state.wakeup.clear()
            continue
        if lost_since is None:
            lost_since = time.monotonic()
        state.set_database(False, error)
        if node.status != "degraded":
            runner.set_status("degraded")
            node.status = "degraded"  # written to the database as soon as it answers again
        if time.monotonic() >= next_warning:
            log.warning("database unreachable (%s); node degraded, retrying", error)
            next_warning = time.monotonic() + backoff
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
        stop.wait(RECHECK_LOST_SECONDS)
        state.wakeup.clear()
