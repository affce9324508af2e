"""The pass runner: every engine pass on an APScheduler BackgroundScheduler, woken at once when work arrives.

Each pass is a short idempotent transaction (or a few) over the database, which is the only record of what is
due; a pass that raises is logged and simply runs again at its next tick, so the scheduler never dies with it.
`wake(name)` runs a pass now instead of at its next tick: api calls it (through `ctx.wake`) after a commit
that created due work, and on PostgreSQL a listener thread turns NOTIFY "watchkeeper_work" from other
processes into the same call. A pass never runs twice at once in one process; while it runs, wakes are
remembered and it runs again straight after. The escalate pass also keeps pace with the due times themselves:
after each run the runner looks up when the next escalation falls due; while a backlog is due it runs the next
batch at once instead of waiting for the tick, and a due time before the next tick gets a wake of its own at
that moment, so due→outbox lag is bounded by the engine's throughput, not by the interval. The EngineNode row is this engine's heartbeat, with the time and
duration of each pass's last run, for the health page and the console's status bar.

Passes owned by other parts are imported lazily (engine.dispatch, engine.prices, engine.sla, engine.overdue); a build without
one simply does not run it. `run_once(ctx)` runs every pass once, in order: the `check` command, a cron job's
alternative to a resident service; a pass that fails there is reported as failed (and `check` exits 1).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import delete, select, update

from engine import checkpoint, wakeup
from engine.claims import acquire_lease, dialect_name, release_lease
from engine.context import AppContext
from engine.db import write_session
from engine.models import EngineNode, Event, Lease

log = logging.getLogger(__name__)

VERSION = "0.1.0"
NOTIFY_CHANNEL = "watchkeeper_work"
# A pass keeps running while it finds full batches or is woken again, but yields after this long.
PASS_BUDGET_SECONDS = 5.0
# Work due that this engine could not take (another engine holds it, the database was busy): look again after.
DUE_RETRY_SECONDS = 0.5
# While work trickles in (a trigger every millisecond, each waking the escalate pass), a pass that has just
# run waits this long before it runs again, so that it takes what arrived meanwhile in one batch instead of
# one row per run — each run fighting the callers for the write lock and the interpreter. A pass woken after
# a quiet moment runs at once, and so does the run after one that did GATHER_BELOW rows or more (a backlog,
# which it works through batch by batch); under a trickle, a page is written at most this much later.
PASS_GATHER_SECONDS = {"escalate": 0.1}
GATHER_BELOW = 250


def _pass_escalate(ctx: AppContext) -> Any:
    from engine.escalation import escalate_pass

    return escalate_pass(ctx)


def _next_escalate_due(ctx: AppContext) -> datetime | None:
    from engine.escalation import next_due

    return next_due(ctx)


def _next_dispatch_due(ctx: AppContext) -> datetime | None:
    from engine.dispatch import next_due

    return next_due(ctx)


def _pass_confirm(ctx: AppContext) -> Any:
    from engine.paging import confirm_pass

    return confirm_pass(ctx)


def _lazy(module: str, func: str, **kwargs: Any) -> Callable[[AppContext], Any] | None:
    """The pass `module.func`, or None when that part of the engine is not installed."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise
    fn = getattr(mod, func, None)
    if fn is None:
        return None

    def run(ctx: AppContext) -> Any:
        return fn(ctx, **kwargs)

    return run


def housekeeping_pass(ctx: AppContext) -> dict[str, Any]:
    """Once across all engines per run (lease): forget dead nodes and expired leases; delete events,
    notifications, handled inbound messages and closed workflow items older than `retention_days`."""
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        if not acquire_lease(session, "housekeeping", ctx.node_id, now, 600):
            return {"skipped": "another engine is doing it"}
    try:
        return _housekeep(ctx, now)
    finally:  # a failed run does not keep the others waiting for the lease to expire
        with write_session(ctx.sessions) as session:
            release_lease(session, "housekeeping", ctx.node_id)


def _housekeep(ctx: AppContext, now: datetime) -> dict[str, Any]:
    stale = now - timedelta(days=1)
    with write_session(ctx.sessions) as session:
        nodes = session.execute(delete(EngineNode).where(EngineNode.heartbeat_at < stale)).rowcount  # type: ignore[attr-defined]
        session.execute(
            update(EngineNode)
            .where(EngineNode.heartbeat_at < now - timedelta(minutes=2), EngineNode.status == "running")
            .values(status="stopped")
        )
        leases = session.execute(
            delete(Lease).where(Lease.expires_at < now, Lease.name != "housekeeping")
        ).rowcount  # type: ignore[attr-defined]
    retention = max(1, int(ctx.settings.retention_days))
    cutoff = now - timedelta(days=retention)
    removed = 0
    for _ in range(100):  # in chunks, so the write lock is never held long
        with write_session(ctx.sessions) as session:
            ids = list(
                session.scalars(
                    select(Event.id).where(Event.at < cutoff, Event.incident_id.is_(None)).limit(5000)
                )
            )
            if ids:
                session.execute(delete(Event).where(Event.id.in_(ids)))
        removed += len(ids)
        if len(ids) < 5000:
            break
    from engine.overdue import retention_cleanup

    cleaned = retention_cleanup(ctx, retention)
    return {
        "nodes_forgotten": nodes,
        "leases_expired": leases,
        "events_removed": removed,
        **{f"{name}_removed": count for name, count in cleaned.items()},
    }


def available_passes() -> dict[str, Callable[[AppContext], Any] | None]:
    """Every pass in the order `check` runs them; None for a part not installed."""
    return {
        "escalate": _pass_escalate,
        "dispatch": _lazy("engine.dispatch", "dispatch_pass"),
        "confirm": _pass_confirm,
        "poll": _lazy("engine.dispatch", "poll_pass"),
        "price": _lazy("engine.prices", "price_pass"),
        "sla": _lazy("engine.sla", "sla_pass"),
        "overdue": _lazy("engine.overdue", "overdue_pass"),
        "housekeeping": housekeeping_pass,
    }


def _interval(ctx: AppContext, name: str) -> float:
    return float(getattr(ctx.settings, f"{name}_interval_seconds", 60.0))


def _count(result: Any) -> int:
    if isinstance(result, bool):
        return int(result)
    if isinstance(result, int):
        return result
    if isinstance(result, dict):
        return sum(v for v in result.values() if isinstance(v, int) and not isinstance(v, bool))
    return 0


def _jsonable(result: Any) -> Any:
    if isinstance(result, dict):
        return {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool)) or v is None}
    if isinstance(result, (int, float, str, bool)) or result is None:
        return result
    return str(result)


def failure_reason(exc: BaseException) -> str:
    """One line saying why a pass failed: the database driver's own first line when it is a database error
    (not the SQL statement SQLAlchemy appends), with every known secret value masked."""
    from engine.logs import redact

    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    first = lines[0].strip() if lines else ""
    return redact(first or type(orig).__name__)


def failed_passes(result: dict[str, Any]) -> dict[str, str]:
    """The passes of a `run_once` result that failed, with the reason of each."""
    return {
        name: str(value["error"])
        for name, value in result.items()
        if isinstance(value, dict) and value.get("failed") is True
    }


def run_once(ctx: AppContext) -> dict[str, Any]:
    """Run every pass once (the `check` command); what each did, or why it did not run.

    A pass that raises does not stop the others; its entry is {"failed": True, "error": reason} so the caller
    (the `check` command) can exit non-zero naming it: cron and monitors must see a pass that cannot run.
    """
    out: dict[str, Any] = {}
    for name, fn in available_passes().items():
        if fn is None:
            out[name] = "not installed"
            continue
        started = time.perf_counter()
        try:
            result = fn(ctx)
        except Exception as exc:
            # The caller prints the one-line reason (the CLI's stderr shows warnings and up); the traceback
            # goes to the log file, at the level a service's log records passes at.
            log.info("pass %s failed", name, exc_info=True)
            out[name] = {"failed": True, "error": failure_reason(exc)}
            continue
        ms = round((time.perf_counter() - started) * 1000, 1)
        summary = _jsonable(result)
        out[name] = summary if isinstance(summary, dict) else {"done": summary, "ms": ms}
        if isinstance(out[name], dict):
            out[name].setdefault("ms", ms)
    return out


class EngineRunner:
    """All passes for one engine node: start() schedules them, stop() lets the running ones finish."""

    def __init__(
        self,
        ctx: AppContext,
        mode: str = "console",
        *,
        passes: dict[str, Callable[[AppContext], Any] | None] | None = None,
        intervals: dict[str, float] | None = None,
        listen: bool = True,
        heartbeat_seconds: float = 10.0,
    ) -> None:
        self.ctx = ctx
        self.mode = mode
        found = available_passes() if passes is None else passes
        self.passes: dict[str, Callable[[AppContext], Any]] = {
            k: v for k, v in found.items() if v is not None
        }
        self.intervals = {name: (intervals or {}).get(name, _interval(ctx, name)) for name in self.passes}
        self.listen = listen and dialect_name_of(ctx) == "postgresql"
        self.heartbeat_seconds = heartbeat_seconds
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self._locks = {name: threading.Lock() for name in self.passes}
        self._pending = {name: threading.Event() for name in self.passes}
        self._ended: dict[str, float] = {}  # when each pass last finished a run (monotonic)
        self._last: dict[str, dict[str, Any]] = {}
        self._last_lock = threading.Lock()
        self._stopping = threading.Event()
        self._beat_lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._wakeups: wakeup.Listener | None = None
        self._checkpointer: checkpoint.Checkpointer | None = None
        self.listening = threading.Event()  # set while the LISTEN connection is in place (PostgreSQL)
        self._previous_wake = ctx.wake
        # Passes whose work has due times, and how to ask for the next one (see _keep_pace).
        self._next_due: dict[str, Callable[[AppContext], datetime | None]] = {
            name: fn
            for name, fn in (("escalate", _next_escalate_due), ("dispatch", _next_dispatch_due))
            if name in self.passes
        }
        self.errors = 0

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        self._heartbeat(status="running")
        for name, seconds in self.intervals.items():
            self.scheduler.add_job(
                self._run_pass,
                "interval",
                args=[name],
                seconds=max(0.05, seconds),
                id=name,
                # The pass's own lock keeps one run at a time; a tick that finds it busy returns at once
                # instead of APScheduler logging "skipped: maximum number of running instances" each time.
                max_instances=3,
                coalesce=True,
                misfire_grace_time=None,
            )
        self.scheduler.add_job(
            self._heartbeat,
            "interval",
            seconds=self.heartbeat_seconds,
            id="heartbeat",
            max_instances=1,
            coalesce=True,
        )
        self.ctx.wake = self.wake
        if dialect_name_of(self.ctx) == "sqlite":
            url = self.ctx.db.url.render_as_string(hide_password=False)
            self._wakeups = wakeup.listen(url, self.wake)  # other processes on this file wake us
            self._checkpointer = checkpoint.start_for(url)  # the log folded in here, not in a caller's commit
        self.scheduler.start()
        for name in self.passes:  # the first tick at once rather than one interval from now
            if name != "housekeeping":
                self.wake(name)
        if self.listen:
            self._listener = threading.Thread(target=self._listen, name="watchkeeper-listen", daemon=True)
            self._listener.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self.ctx.wake = self._previous_wake
        if self._wakeups is not None:
            self._wakeups.close()
            self._wakeups = None
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        # Not shutdown(wait=True): APScheduler holds its job-store lock while it waits for running jobs, and a
        # pass that is finishing asks for that lock to schedule its next run (_keep_pace): a deadlock. The
        # running passes are waited for below through their own locks.
        with contextlib.suppress(Exception):  # already stopped
            self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + timeout
        for lock in self._locks.values():
            if lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                lock.release()
        if self._listener is not None:
            self._listener.join(timeout=max(0.1, deadline - time.monotonic()))
        try:
            self._heartbeat(status="stopped")
        except Exception:
            log.exception("could not record the engine stop")
        stop_dispatch = _lazy("engine.dispatch", "shutdown")
        if stop_dispatch is not None:
            try:
                stop_dispatch(self.ctx)
            except Exception:
                log.exception("dispatcher shutdown failed")

    # -- running passes ---------------------------------------------------------------------------------

    def wake(self, name: str) -> None:
        """Run pass `name` now (or straight after the run in progress)."""
        pending = self._pending.get(name)
        if pending is None or self._stopping.is_set() or pending.is_set():
            return
        pending.set()
        if self._locks[name].locked():
            return  # the running pass sees the flag and goes round again
        try:
            self.scheduler.add_job(
                self._run_pass, args=[name], id=f"wake-{name}", replace_existing=True, max_instances=3
            )
        except Exception:  # scheduler shutting down; the interval job will catch up
            log.debug("wake %s not scheduled", name, exc_info=True)

    def _run_pass(self, name: str) -> None:
        lock = self._locks[name]
        pending = self._pending[name]
        pending.set()
        while pending.is_set() and not self._stopping.is_set():
            if not lock.acquire(blocking=False):
                return
            try:
                until = time.monotonic() + PASS_BUDGET_SECONDS
                gather = PASS_GATHER_SECONDS.get(name, 0.0)
                while pending.is_set() and not self._stopping.is_set() and time.monotonic() < until:
                    wait = self._ended.get(name, 0.0) + gather - time.monotonic()
                    if wait > 0 and self._stopping.wait(wait):
                        return
                    pending.clear()
                    at = self.ctx.clock.now()
                    result = self.run_pass(name)
                    trickle = _count(result) < GATHER_BELOW
                    self._ended[name] = time.monotonic() if trickle else 0.0
                    self._keep_pace(name, at, result)
            finally:
                lock.release()

    def _keep_pace(self, name: str, started: datetime, result: Any) -> None:
        """After a run of a pass with due times (escalate): run again at once while a backlog is due, or wake
        at the next due time when it comes before the next tick."""
        due_at = self._next_due.get(name)
        if due_at is None or self._stopping.is_set():
            return
        try:
            due = due_at(self.ctx)
        except Exception:  # the tick still runs the pass; this is only a shortcut
            log.debug("next due time of %s not known", name, exc_info=True)
            return
        if due is None:
            return
        delay = (due - self.ctx.clock.now()).total_seconds()
        if delay <= 0:
            # Due now. Go straight on when this run did work (more of the backlog is waiting) or the row fell
            # due after the run began; otherwise another engine holds it (or the database was busy, or the
            # run failed): look again shortly rather than at once.
            if _count(result) > 0 or due > started:
                self._pending[name].set()
                return
            delay = DUE_RETRY_SECONDS
        if delay < self.intervals[name] and not self._stopping.is_set():
            try:
                self.scheduler.add_job(
                    self._run_pass,
                    "date",
                    run_date=datetime.now(UTC) + timedelta(seconds=delay),
                    args=[name],
                    id=f"due-{name}",
                    replace_existing=True,
                    misfire_grace_time=None,
                    max_instances=3,  # as the interval job: the pass's own lock keeps one run at a time
                )
            except Exception:  # scheduler shutting down; the interval job will catch up
                log.debug("due wake of %s not scheduled", name, exc_info=True)

    def run_pass(self, name: str) -> Any:
        """One run of one pass, timed; an error is logged and counted, never raised into the scheduler."""
        started = time.perf_counter()
        at = self.ctx.clock.now()
        try:
            result = self.passes[name](self.ctx)
            ok = True
        except Exception as exc:
            self.errors += 1
            log.exception("engine pass %s failed; it runs again at its next tick", name)
            result, ok = str(exc), False
        ms = round((time.perf_counter() - started) * 1000, 1)
        with self._last_lock:
            self._last[name] = {
                "at": at.isoformat(),
                "ms": ms,
                "ok": ok,
                "count": _count(result) if ok else 0,
            }
        if name in ("escalate", "confirm") and ok and _count(result) > 0:
            self.wake("dispatch")
        return result

    def last_pass(self) -> dict[str, Any]:
        with self._last_lock:
            return {k: dict(v) for k, v in self._last.items()}

    # -- heartbeat and LISTEN ---------------------------------------------------------------------------

    def _heartbeat(self, status: str = "running") -> None:
        # One at a time, and none after the "stopped" one: a scheduled beat still in flight when the runner
        # stops must not mark the node running again.
        with self._beat_lock:
            if status == "running" and self._stopping.is_set():
                return
            self._write_heartbeat(status)

    def _write_heartbeat(self, status: str) -> None:
        now = self.ctx.clock.now()
        try:
            with write_session(self.ctx.sessions) as session:
                node = session.get(EngineNode, self.ctx.node_id)
                if node is None:
                    node = EngineNode(
                        id=self.ctx.node_id,
                        hostname=socket.gethostname()[:255],
                        pid=os.getpid(),
                        mode=self.mode,
                        version=VERSION,
                        started_at=now,
                    )
                    session.add(node)
                node.status = status
                node.heartbeat_at = now
                node.last_pass = self.last_pass()
        except Exception:
            log.exception("engine heartbeat failed")

    def _listen(self) -> None:
        """PostgreSQL: other processes' NOTIFY "watchkeeper_work" wakes our passes (reconnects on failure)."""
        import psycopg

        url = self.ctx.db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stopping.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.listening.set()
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            if note.payload in self.passes:
                                self.wake(note.payload)
            except Exception:
                self.listening.clear()
                if self._stopping.is_set():
                    return
                log.warning("LISTEN connection lost; reconnecting", exc_info=True)
                self._stopping.wait(2.0)


def dialect_name_of(ctx: AppContext) -> str:
    return ctx.db.dialect.name


__all__ = [
    "EngineRunner",
    "available_passes",
    "dialect_name",
    "failed_passes",
    "failure_reason",
    "housekeeping_pass",
    "run_once",
]
