"""The durable intake queue behind `POST /v2/enqueue` in service mode.

Applying an event (a new incident, its escalation, its timeline) takes milliseconds of database work; a
monitoring storm sends thousands a second. So the HTTP answer is given as soon as the validated event is
*committed* to the `intake_event` table — PagerDuty's own Events API answers 202 the same way — and intake
workers apply queued events through engine.api in id order.

* `IntakeWriter` — group commit: request threads hand their row to a writer thread, which inserts whatever
  has gathered (up to a batch) in one transaction and then releases every waiting request. One commit per
  batch, not per event; nothing is acknowledged before it is durable.
* `apply_pending` — claim a batch (PostgreSQL: FOR UPDATE SKIP LOCKED, so several nodes share the queue; SQLite:
  the write lock of BEGIN IMMEDIATE), apply the events — each run of consecutive triggers in one
  engine.api.trigger_many transaction, acknowledge and resolve one by one in their place — and record each
  event's outcome. A claim expires, so a node killed mid-batch leaves its events to the others; a trigger
  applied twice is deduplicated by its key.
* `IntakeWorker` — a thread running apply_pending whenever events were queued (or every second).

Where the queue lives (`intake_store`): on PostgreSQL, the `intake_event` table of the shared database, which
every node claims from. On SQLite, a file of its own beside the database (`watchkeeper.db` ->
`watchkeeper.intake.db`), the *intake spool*: SQLite has one write lock per file, and with the queue in the main
file every HTTP answer waited behind whatever the engine was writing (a batch of triggers, an escalation pass)
— tens of milliseconds. In its own file an event's commit waits only for other queue writes. Every node on that
SQLite database finds the same spool beside it. Events still pending in the main file's `intake_event` table
(queued before the spool existed) are applied first when an intake worker starts.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Index, MetaData, Table, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine.context import AppContext
from engine.db import SQLITE_BUSY_TIMEOUT_MS, is_sqlite, make_engine, session_factory, write_session
from engine.errors import WatchkeeperError
from engine.models import IntakeEvent
from engine.service import integration
from engine.service.intake import (
    EnqueueEvent,
    EnqueueResult,
    open_incidents_by_key,
    process_event,
    trigger_arguments,
)
from engine.service.keys import RoutingTarget

log = logging.getLogger("watchkeeper.service.intake")

MAX_BATCH = 256
# Several writers overlap their commits: on PostgreSQL a commit waits for the WAL flush (milliseconds on
# ordinary disks), so one writer alone would cap the intake at (batch size / flush time).
WRITER_THREADS = 3
# Events applied per claim. Measured at a steady 1,000 events/s on 2 cores: claims of 50 left the engine
# 2,800 events behind by the end of 20 s on SQLite and 11,000 on PostgreSQL; claims of 200 kept SQLite level
# and halved PostgreSQL's backlog. The per-claim costs (claim, look-ups, commit, results) are paid 4x less.
CLAIM_BATCH = 200
CLAIM_SECONDS = 60.0
SUBMIT_TIMEOUT_SECONDS = 15.0
KEEP_DONE_HOURS = 24


class IntakeUnavailable(Exception):
    """The event could not be committed (database away, or the writer is stopping): answer 503."""


@dataclass(frozen=True)
class IntakeStore:
    """The database the intake queue is in: the main one (PostgreSQL) or the SQLite intake spool."""

    db: Engine
    sessions: sessionmaker[Session]
    separate: bool  # True: the SQLite spool file beside the main database


_STORES: weakref.WeakKeyDictionary[Engine, IntakeStore] = weakref.WeakKeyDictionary()
_STORES_LOCK = threading.Lock()


def spool_path(db: Engine) -> Path | None:
    """The SQLite intake spool beside the main database file; None on PostgreSQL and in-memory SQLite."""
    if not is_sqlite(db):
        return None
    database = db.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    main = Path(database)
    return main.with_name(f"{main.stem}.intake{main.suffix or '.db'}")


def _spool_table(metadata: MetaData) -> Table:
    """intake_event as it is in the main schema, without its foreign key (the routing keys are in the other
    file; the key's id is kept for the record)."""
    source: Any = IntakeEvent.__table__
    columns = [
        Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, autoincrement=c.autoincrement)
        for c in source.columns
    ]
    indexes = [Index(ix.name, *[c.name for c in ix.columns]) for ix in source.indexes]
    return Table(source.name, metadata, *columns, *indexes)


def _add_new_columns(conn: Connection, table: Table) -> None:
    """The spool is not under `db upgrade`: a column a later version added to intake_event is added here."""
    present = {row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({table.name})")}
    for column in table.columns:
        if column.name not in present:
            kind = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")


def intake_store(ctx: AppContext) -> IntakeStore:
    """Where this context's intake queue lives (opened, and on SQLite created, on first use)."""
    path = spool_path(ctx.db)
    if path is None:
        # Not cached: a cached store holding ctx.db would keep the weak key alive for good.
        return IntakeStore(ctx.db, ctx.sessions, separate=False)
    with _STORES_LOCK:
        store = _STORES.get(ctx.db)
        if store is not None:
            return store
        spool = make_engine(f"sqlite:///{path}")
        metadata = MetaData()
        _spool_table(metadata)
        # Under BEGIN IMMEDIATE so two nodes opening a new spool at once cannot both create the table.
        with spool.connect() as conn:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                metadata.create_all(conn, checkfirst=True)
                _add_new_columns(conn, metadata.tables[IntakeEvent.__tablename__])
        store = IntakeStore(spool, session_factory(spool), separate=True)
        _STORES[ctx.db] = store
        return store


def after_fork(ctx: AppContext) -> None:
    """In a forked child: leave the parent's pooled spool connections alone (SQLite connections must not be
    shared across a fork); the child opens its own."""
    with _STORES_LOCK:
        store = _STORES.get(ctx.db)
        if store is not None and store.separate:
            store.db.dispose(close=False)


_EVENT_FIELDS = tuple(f for f in EnqueueEvent.__dataclass_fields__ if f != "routing_key")


def queue_row(ctx: AppContext, event: EnqueueEvent, target: RoutingTarget, dedup_key: str) -> dict[str, Any]:
    # A shallow copy of the fields: the event was decoded from this request's body and nothing else holds it,
    # so dataclasses.asdict's deep copy is pure cost here. The routing key is a secret: never stored.
    data = {name: getattr(event, name) for name in _EVENT_FIELDS}
    data["dedup_key"] = dedup_key
    return {
        "routing_key_id": target.routing_key_id,
        "policy_name": target.policy_name,
        "source_label": target.label,
        "event_action": event.event_action,
        "dedup_key": dedup_key,
        "event": data,
        "status": "pending",
        "attempts": 0,
        "received_at": ctx.clock.now(),
    }


@dataclass
class _Submission:
    row: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    # Called from the writer thread once the row is committed (None) or could not be (the error).
    callback: Callable[[BaseException | None], None] | None = None

    def finish(self) -> None:
        self.done.set()
        if self.callback is not None:
            try:
                self.callback(self.error)
            except Exception:  # the waiting side's problem; the writer carries on
                log.exception("intake writer: a commit callback failed")


_INTAKE_T: Any = IntakeEvent.__table__
_INSERT_INTAKE = insert(_INTAKE_T)
SQLITE_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
# While another process (the engine) holds SQLite's write lock, the writer asks again this often rather than
# through SQLite's busy handler, whose sleeps grow to 100 ms: a waiting HTTP answer wants the lock the moment
# it is free.
SQLITE_RETRY_SECONDS = (0.0005, 0.001, 0.002, 0.003)


def _sqlite_busy(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlite_errorcode", None)
    return code in SQLITE_BUSY_CODES or "database is locked" in str(orig)


class IntakeWriter:
    """Writer threads committing queued events in batches; `submit` returns once the row is durable.

    Each writer keeps one connection of its own (no pool checkout or pre-ping per batch) and inserts with one
    Core executemany. PostgreSQL gets several writers so their commits (each a WAL flush) overlap; SQLite has
    one write lock, so one writer, which takes the lock with a short, fast retry instead of the busy handler.
    """

    def __init__(
        self, ctx: AppContext, on_commit: Callable[[], None] | None = None, threads: int | None = None
    ) -> None:
        self.ctx = ctx
        self.sqlite = is_sqlite(ctx.db)
        if threads is None:
            threads = 1 if self.sqlite else WRITER_THREADS
        self.threads = max(1, threads)
        self.on_commit = on_commit or (lambda: None)
        self._queue: queue.Queue[_Submission | None] = queue.Queue()
        self._workers: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._count_lock = threading.Lock()
        self.batches = 0
        self.rows = 0
        self.lock_retries = 0

    def start(self) -> None:
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"watchkeeper-intake-writer-{n}", daemon=True)
            thread.start()
            self._workers.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what was handed in so far, then end the threads."""
        self._stopping.set()
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._workers:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))

    def submit(self, row: dict[str, Any], timeout: float = SUBMIT_TIMEOUT_SECONDS) -> None:
        if self._stopping.is_set() or not self._workers:
            raise IntakeUnavailable("the node is stopping")
        item = _Submission(row)
        self._queue.put(item)
        if not item.done.wait(timeout):
            raise IntakeUnavailable("the database did not take the event in time")
        if item.error is not None:
            raise IntakeUnavailable(type(item.error).__name__)

    def submit_nowait(self, row: dict[str, Any], callback: Callable[[BaseException | None], None]) -> None:
        """Queue the row and return at once; `callback(None)` runs once it is durable, `callback(error)` if it
        cannot be (IntakeUnavailable when stopping). The HTTP server's event loop waits this way, with no
        thread held per request."""
        if self._stopping.is_set() or not self._workers:
            callback(IntakeUnavailable("the node is stopping"))
            return
        self._queue.put(_Submission(row, callback=callback))

    def _run(self) -> None:
        conn: Connection | None = None
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return  # one stop token per writer thread; what was queued before it is committed
                batch = [first]
                stop_seen = False
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop_seen = True
                        break
                    batch.append(item)
                try:
                    conn = self._commit(conn, [b.row for b in batch])
                    with self._count_lock:
                        self.batches += 1
                        self.rows += len(batch)
                except Exception as exc:
                    log.warning("could not queue %d event(s): %s", len(batch), type(exc).__name__)
                    for b in batch:
                        b.error = exc
                    self._close(conn)
                    conn = None  # a fresh connection for the next batch
                for b in batch:
                    b.finish()
                if any(b.error is None for b in batch):
                    self.on_commit()
                if stop_seen:
                    return
        finally:
            self._close(conn)

    def _commit(self, conn: Connection | None, rows: list[dict[str, Any]]) -> Connection:
        """Insert on the kept connection; one that the database dropped meanwhile (a restart, an idle cut) is
        replaced and the batch tried once more on the new one. Returns the connection to keep."""
        if conn is not None:
            try:
                self._insert(conn, rows)
                return conn
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                log.info("intake writer: the database dropped its connection; reconnecting")
                self._close(conn)
        fresh = self._connect()
        try:
            self._insert(fresh, rows)
        except BaseException:
            self._close(fresh)
            raise
        return fresh

    def _connect(self) -> Connection:
        conn = intake_store(self.ctx).db.connect()
        if self.sqlite:
            conn.execution_options(sqlite_begin="IMMEDIATE")
            # Fail at once on a held lock; _insert retries on its own schedule.
            conn.connection.driver_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
        return conn

    def _close(self, conn: Connection | None) -> None:
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if self.sqlite and not conn.invalidated:
                conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}"
                )
        with contextlib.suppress(Exception):
            conn.close()

    def _insert(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        give_up = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        tries = 0
        while True:
            try:
                with conn.begin():
                    conn.execute(_INSERT_INTAKE, rows)
                return
            except OperationalError as exc:
                # BEGIN IMMEDIATE takes the lock first, so a busy lock means nothing was written: try again.
                if not (self.sqlite and _sqlite_busy(exc)) or time.monotonic() >= give_up:
                    raise
            self.lock_retries += 1
            time.sleep(SQLITE_RETRY_SECONDS[min(tries, len(SQLITE_RETRY_SECONDS) - 1)])
            tries += 1


def _event_from(data: dict[str, Any]) -> EnqueueEvent:
    known = {f for f in EnqueueEvent.__dataclass_fields__}
    values = {k: v for k, v in data.items() if k in known}
    values["routing_key"] = ""
    return EnqueueEvent(**values)


_RESULT_COLUMNS = ("status", "outcome", "incident_id", "error", "attempts", "processed_at")
_RECORD_RESULT = (
    update(_INTAKE_T)
    .where(_INTAKE_T.c.id == bindparam("b_id"))
    .values(
        {
            **{name: bindparam(f"b_{name}") for name in _RESULT_COLUMNS},
            "claimed_by": None,
            "claim_expires_at": None,
        }
    )
)


# A claimed row: id, routing key id, policy name, routing key label, the event, attempts so far.
_Claimed = tuple[int, Any, str, str, dict[str, Any], int]


def _target(row: _Claimed) -> RoutingTarget:
    _row_id, key_id, policy_name, label, _data, _attempts = row
    return RoutingTarget(routing_key_id=key_id or 0, label=label, policy_id=0, policy_name=policy_name)


def _key(row: _Claimed) -> str:
    return str(row[4].get("dedup_key") or "")


def _is_trigger(row: _Claimed) -> bool:
    return row[4].get("event_action") == "trigger"


def _outcome(row: _Claimed, applied: EnqueueResult) -> dict[str, Any]:
    return {
        "b_id": row[0],
        "b_attempts": row[5] + 1,
        "b_status": "done",
        "b_outcome": applied.outcome,
        "b_incident_id": applied.incident_id,
        "b_error": None,
    }


def _failure(row: _Claimed, exc: Exception) -> dict[str, Any]:
    if isinstance(exc, WatchkeeperError):
        log.warning("queued event %s (%s) not applied: %s", row[0], _key(row), exc)
        error = str(exc)[:2000]
    else:
        log.error("queued event %s (%s) failed", row[0], _key(row), exc_info=exc)
        error = type(exc).__name__
    return {
        "b_id": row[0],
        "b_attempts": row[5] + 1,
        "b_status": "failed",
        "b_outcome": "failed",
        "b_incident_id": None,
        "b_error": error,
    }


def _apply_one(ctx: AppContext, row: _Claimed, *, known_closed: bool) -> dict[str, Any]:
    try:
        applied = process_event(ctx, _event_from(dict(row[4])), _target(row), known_closed=known_closed)
    except DBAPIError:
        raise  # the database itself: the claim expires and the events are applied later
    except Exception as exc:
        return _failure(row, exc)
    return _outcome(row, applied)


def _apply_rows(ctx: AppContext, rows: list[_Claimed]) -> list[dict[str, Any]]:
    """Each claimed event's result row, in id order. Runs of consecutive triggers go through
    engine.api.trigger_many (one transaction per run); acknowledge and resolve go one by one in their place,
    since each may change what a later trigger of its key does."""
    # One look-up for the batch: keys with no open incident now need no look-up per event. A key that does
    # have one, or that an earlier event of this batch touched, is looked up again when its turn comes.
    open_ids = open_incidents_by_key(ctx, [_key(r) for r in rows if _is_trigger(r) and _key(r)])
    touched: set[str] = set()
    results: list[dict[str, Any]] = []
    start = 0
    while start < len(rows):
        if not _is_trigger(rows[start]):
            row = rows[start]
            key = _key(row)
            results.append(
                _apply_one(ctx, row, known_closed=bool(key) and key not in open_ids and key not in touched)
            )
            touched.add(key)
            start += 1
            continue
        end = start
        while end < len(rows) and _is_trigger(rows[end]):
            end += 1
        run = rows[start:end]
        stale = {_key(r) for r in run} & (touched | set(open_ids))
        if stale:  # what earlier events of the batch (or anyone since the look-up) did to these keys
            fresh = open_incidents_by_key(ctx, stale)
            open_ids = {k: v for k, v in open_ids.items() if k not in stale} | fresh
        results.extend(_apply_triggers(ctx, run, open_ids))
        touched.update(_key(r) for r in run)
        start = end
    return results


def _apply_triggers(ctx: AppContext, run: list[_Claimed], open_ids: dict[str, int]) -> list[dict[str, Any]]:
    """A run of trigger events in one engine.api.trigger_many call, with the outcomes applying them one by
    one would have had: a trigger whose key has an open incident (`open_ids`, or opened by an earlier trigger
    of the run) is "deduplicated" and sent nowhere: it neither opens a second incident nor pages. If the
    batch is refused (say a policy was deleted meanwhile), the run's events are applied one by one, so the
    bad one fails alone."""
    api = integration.api()
    results: list[dict[str, Any] | None] = [None] * len(run)
    requests: list[Any] = []
    sent: list[int] = []  # index in `run` of each request
    joins: list[tuple[int, int]] = []  # (index in `run`, index of the request that opens its incident)
    opened: dict[str, int] = {}  # key -> index of the request that opens it
    for i, row in enumerate(run):
        try:
            event = _event_from(dict(row[4]))
            key = event.dedup_key or uuid.uuid4().hex
            if event.dedup_key and key in open_ids:
                applied = EnqueueResult(dedup_key=key, incident_id=open_ids[key], outcome="deduplicated")
                results[i] = _outcome(row, applied)
                continue
            if event.dedup_key and key in opened:
                joins.append((i, opened[key]))
                continue
            request = api.TriggerRequest(**trigger_arguments(event, _target(row), key))
        except Exception as exc:
            results[i] = _failure(row, exc)
            continue
        if event.dedup_key:
            opened[key] = len(requests)
        requests.append(request)
        sent.append(i)
    if requests:
        try:
            applied_many = api.trigger_many(ctx, requests)
        except DBAPIError:
            raise
        except Exception as exc:
            log.warning(
                "a batch of %d queued triggers was refused (%s); applying them one by one", len(run), exc
            )
            return [_apply_one(ctx, row, known_closed=False) for row in run]
        for n, (i, result) in enumerate(zip(sent, applied_many, strict=True)):
            outcome = "deduplicated" if result.deduplicated else "triggered"
            results[i] = _outcome(run[i], EnqueueResult(requests[n].key, int(result.incident_id), outcome))
        for i, n in joins:
            incident_id = int(applied_many[n].incident_id)
            results[i] = _outcome(run[i], EnqueueResult(requests[n].key, incident_id, "deduplicated"))
    return [r for r in results if r is not None]


def main_store(ctx: AppContext) -> IntakeStore:
    """The `intake_event` table of the main database (the queue itself on PostgreSQL)."""
    return IntakeStore(ctx.db, ctx.sessions, separate=False)


def apply_pending(
    ctx: AppContext,
    *,
    limit: int = CLAIM_BATCH,
    claim_seconds: float = CLAIM_SECONDS,
    store: IntakeStore | None = None,
) -> int:
    """Claim and apply up to `limit` queued events; returns how many were applied (0: queue empty)."""
    store = store or intake_store(ctx)
    now = ctx.clock.now()
    owner = ctx.node_id[:80]
    with write_session(store.sessions) as session:
        due = (
            select(
                IntakeEvent.id,
                IntakeEvent.routing_key_id,
                IntakeEvent.policy_name,
                IntakeEvent.source_label,
                IntakeEvent.event,
                IntakeEvent.attempts,
            )
            .where(
                IntakeEvent.status == "pending",
                or_(IntakeEvent.claim_expires_at.is_(None), IntakeEvent.claim_expires_at < now),
            )
            .order_by(IntakeEvent.id)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        rows: list[_Claimed] = [tuple(r) for r in session.execute(due).all()]
        if not rows:
            return 0
        session.execute(
            update(IntakeEvent)
            .where(IntakeEvent.id.in_([r[0] for r in rows]))
            .values(claimed_by=owner, claim_expires_at=now + timedelta(seconds=claim_seconds))
        )
    results = _apply_rows(ctx, rows)
    done_at = ctx.clock.now()
    for r in results:
        r["b_processed_at"] = done_at
    with write_session(store.sessions) as session:
        session.connection().execute(_RECORD_RESULT, results)
    return len(results)


def drain(ctx: AppContext, *, max_rounds: int = 10_000, store: IntakeStore | None = None) -> int:
    """Apply every queued event now (tests, `check`-style one-shot runs); returns how many."""
    total = 0
    for _ in range(max_rounds):
        n = apply_pending(ctx, store=store)
        if n == 0:
            break
        total += n
    return total


def purge_done(ctx: AppContext, hours: int = KEEP_DONE_HOURS) -> int:
    cutoff = ctx.clock.now() - timedelta(hours=hours)
    with write_session(intake_store(ctx).sessions) as session:
        result = session.execute(
            delete(IntakeEvent).where(IntakeEvent.status == "done", IntakeEvent.processed_at < cutoff)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def queue_depth(ctx: AppContext) -> dict[str, int]:
    """Queued events by status (pending, done, failed)."""
    with intake_store(ctx).sessions() as session:
        return {
            str(status): int(n)
            for status, n in session.execute(
                select(IntakeEvent.status, func.count()).group_by(IntakeEvent.status)
            ).all()
        }


def oldest_pending(ctx: AppContext) -> Any:
    """When the oldest event still waiting was received (None: nothing waits)."""
    with intake_store(ctx).sessions() as session:
        return session.scalar(
            select(func.min(IntakeEvent.received_at)).where(IntakeEvent.status == "pending")
        )


def apply_left_in_main(ctx: AppContext) -> int:
    """SQLite: apply events still pending in the main file's queue table, where they were queued before the
    intake spool existed (none are added there any more); returns how many."""
    if not intake_store(ctx).separate:
        return 0
    with ctx.sessions() as session:
        waiting = session.scalar(
            select(func.count()).select_from(IntakeEvent).where(IntakeEvent.status == "pending")
        )
    if not waiting:
        return 0
    applied = drain(ctx, store=main_store(ctx))
    log.info("applied %d event(s) left in the main database's intake queue", applied)
    return applied


class IntakeWorker:
    """Applies queued events whenever some were committed (here or, within a second, on another node)."""

    def __init__(self, ctx: AppContext, idle_seconds: float = 1.0) -> None:
        self.ctx = ctx
        self.idle_seconds = idle_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied = 0
        self.last_run: dict[str, Any] = {}

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="watchkeeper-intake", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 20.0) -> None:
        """Finish the batch in hand (its claims are released by recording the results), then end."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        backoff = 1.0
        last_purge = 0.0
        # First, before anything else (even when stopped at once): events left in the main file's queue.
        left_in_main = True
        try:
            self.applied += apply_left_in_main(self.ctx)
            left_in_main = False
        except Exception as exc:
            log.warning("intake worker: %s; events left in the main database's queue are tried again", exc)
        while not self._stopping.is_set():
            try:
                if left_in_main:
                    self.applied += apply_left_in_main(self.ctx)
                    left_in_main = False
                started = time.perf_counter()
                n = apply_pending(self.ctx)
                self.applied += n
                if n:
                    self.last_run = {
                        "at": self.ctx.clock.now().isoformat(),
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                        "count": n,
                    }
                backoff = 1.0
                if time.monotonic() - last_purge > 600:
                    last_purge = time.monotonic()
                    purge_done(self.ctx)
                if n:
                    continue  # more may be waiting
            except Exception as exc:
                log.warning("intake worker: %s; retrying in %.0f s", type(exc).__name__, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            self._wake.wait(self.idle_seconds)
            self._wake.clear()
