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

from engine import receipts
from engine.context import AppContext
from engine.db import (
    SQLITE_BUSY_TIMEOUT_MS,
    is_sqlite,
    is_transient,
    make_engine,
    session_factory,
    write_session,
)
from engine.errors import WatchkeeperError
from engine.models import IntakeEvent, IntakeReceipt
from engine.service import integration
from engine.service.intake import (
    EnqueueEvent,
    EnqueueResult,
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
# A node that dies holding a claim leaves its events for this long. Short is safe: an event applied by a slow
# node and claimed again by another is found by its receipt, never applied twice.
CLAIM_SECONDS = 20.0
SUBMIT_TIMEOUT_SECONDS = 15.0
KEEP_DONE_HOURS = 24


class IntakeUnavailable(Exception):
    """The event could not be committed (database away, or the writer is stopping): answer 503."""


class IntakeRefused(Exception):
    """The database refuses this one event as it is (its data, not the database's state): answer 400, for
    trying again cannot help. The events committed with it are not held back by it."""


def _about_the_data(exc: BaseException) -> bool:
    """Whether a failed insert was about the rows themselves rather than the database being away or busy."""
    from sqlalchemy.exc import InterfaceError, StatementError

    if isinstance(exc, OperationalError | InterfaceError) or getattr(exc, "connection_invalidated", False):
        return False
    return isinstance(exc, StatementError | UnicodeError | ValueError | TypeError)


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
                table = metadata.tables[IntakeEvent.__tablename__]
                _add_new_columns(conn, table)
                for index in table.indexes:  # an index a later version added
                    index.create(conn, checkfirst=True)
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
        "uid": uuid.uuid4().hex,
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
        if isinstance(item.error, IntakeRefused):
            raise item.error
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
                    self._close(conn)
                    conn = None  # a fresh connection for the next batch
                    if _about_the_data(exc):
                        # One row the database refuses must not cost the others their answer: each is tried
                        # on its own, and only the refused one fails.
                        conn = self._one_by_one(batch)
                    else:
                        log.warning("could not queue %d event(s): %s", len(batch), type(exc).__name__)
                        for b in batch:
                            b.error = exc
                for b in batch:
                    b.finish()
                if any(b.error is None for b in batch):
                    self.on_commit()
                if stop_seen:
                    return
        finally:
            self._close(conn)

    def _one_by_one(self, batch: list[_Submission]) -> Connection | None:
        conn: Connection | None = None
        for b in batch:
            try:
                conn = self._commit(conn, [b.row])
                with self._count_lock:
                    self.batches += 1
                    self.rows += 1
            except Exception as exc:
                self._close(conn)
                conn = None
                if _about_the_data(exc):
                    first = (
                        str(getattr(exc, "orig", exc)).splitlines()[0][:300]
                        if str(exc)
                        else type(exc).__name__
                    )
                    log.warning("event refused by the database: %s", first)
                    b.error = IntakeRefused(f"the database cannot store this event: {first}")
                else:
                    b.error = exc
        return conn

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


@dataclass(frozen=True)
class _Claimed:
    """A claimed queued event."""

    id: int
    routing_key_id: Any
    policy_name: str
    label: str
    data: dict[str, Any]
    attempts: int
    uid: str
    dedup_key: str


def _target(row: _Claimed) -> RoutingTarget:
    return RoutingTarget(
        routing_key_id=row.routing_key_id or 0, label=row.label, policy_id=0, policy_name=row.policy_name
    )


def _is_trigger(row: _Claimed) -> bool:
    return row.data.get("event_action") == "trigger"


def _outcome(row: _Claimed, applied: EnqueueResult) -> dict[str, Any]:
    return _result(row, "done", applied.outcome, applied.incident_id, None)


def _result(
    row: _Claimed, status: str, outcome: str | None, incident_id: int | None, error: str | None
) -> dict[str, Any]:
    return {
        "b_id": row.id,
        "b_attempts": row.attempts + 1,
        "b_status": status,
        "b_outcome": outcome,
        "b_incident_id": incident_id,
        "b_error": error,
    }


def _set_aside(row: _Claimed, exc: BaseException) -> dict[str, Any]:
    """An event that cannot be applied as it is: set aside with its error (status "failed"), shown in the
    console, /healthz and /metrics, never holding the events behind it back."""
    if isinstance(exc, WatchkeeperError):
        log.warning("queued event %s (%s) set aside: %s", row.id, row.dedup_key, exc)
        error = str(exc)[:2000]
    else:
        log.error("queued event %s (%s) set aside", row.id, row.dedup_key, exc_info=exc)
        first = str(getattr(exc, "orig", exc)).splitlines()
        error = f"{type(exc).__name__}: {first[0] if first else ''}"[:2000]
    return _result(row, "failed", "failed", None, error)


def _later(row: _Claimed, exc: BaseException) -> dict[str, Any]:
    """The database was away or busy: the event waits in the queue and is applied on a later claim."""
    first = str(getattr(exc, "orig", exc)).splitlines()
    return _result(
        row, "pending", None, None, f"will retry: {first[0] if first else type(exc).__name__}"[:2000]
    )


class _DatabaseAway(Exception):
    """Applying stopped because the database is away or busy; the rest of the claim waits for a later one."""


def _apply_one(ctx: AppContext, row: _Claimed) -> dict[str, Any]:
    try:
        applied = process_event(ctx, _event_from(dict(row.data)), _target(row), receipt=row.uid)
    except Exception as exc:
        if is_transient(exc):
            raise _DatabaseAway from exc
        if _already_applied(ctx, exc, row):
            return _outcome(row, _receipt_result(ctx, row))
        return _set_aside(row, exc)
    return _outcome(row, applied)


def _already_applied(ctx: AppContext, exc: BaseException, row: _Claimed) -> bool:
    from sqlalchemy.exc import IntegrityError

    if not isinstance(exc, IntegrityError):
        return False
    with ctx.db.connect() as conn:
        return row.uid in receipts.applied(conn, [row.uid])


def _receipt_result(ctx: AppContext, row: _Claimed) -> EnqueueResult:
    with ctx.db.connect() as conn:
        outcome, incident_id = receipts.applied(conn, [row.uid])[row.uid]
    return EnqueueResult(row.dedup_key, incident_id, outcome)


def _apply_rows(ctx: AppContext, rows: list[_Claimed]) -> list[dict[str, Any]]:
    """Each claimed event's result row, in id order. An event with a receipt was applied already (its
    claim ended before its outcome was recorded): its outcome is taken from the receipt, nothing is applied
    again. Runs of consecutive triggers go through engine.api.trigger_many (one transaction per run, each
    event's receipt in it); acknowledge and resolve go one by one in their place. When the database goes away
    or stays busy part-way, the events not yet applied wait in the queue for a later claim."""
    with ctx.db.connect() as conn:
        done = receipts.applied(conn, [r.uid for r in rows])
    results: list[dict[str, Any]] = []
    todo: list[_Claimed] = []
    for row in rows:
        if row.uid in done:
            outcome, incident_id = done[row.uid]
            results.append(_outcome(row, EnqueueResult(row.dedup_key, incident_id, outcome)))
        else:
            todo.append(row)
    start = 0
    try:
        while start < len(todo):
            if not _is_trigger(todo[start]):
                results.append(_apply_one(ctx, todo[start]))
                start += 1
                continue
            end = start
            while end < len(todo) and _is_trigger(todo[end]):
                end += 1
            results.extend(_apply_triggers(ctx, todo[start:end]))
            start = end
    except _DatabaseAway as away:
        cause = away.__cause__ or away
        log.warning(
            "intake: the database is away or busy (%s); %d event(s) wait",
            type(cause).__name__,
            len(todo) - start,
        )
        results.extend(_later(row, cause) for row in todo[start:])
    return results


def _apply_triggers(ctx: AppContext, run: list[_Claimed]) -> list[dict[str, Any]]:
    """A run of trigger events in one engine.api.trigger_many call (their receipts in its transaction). A
    trigger whose key has an open incident — or one opened by an earlier trigger of the run — joins it
    ("deduplicated"): the engine decides under a lock on the key. If the batch is refused (say a policy was
    deleted meanwhile, or one event's data), the run's events are applied one by one, so the bad one is set
    aside alone."""
    api = integration.api()
    results: list[dict[str, Any] | None] = [None] * len(run)
    requests: list[Any] = []
    sent: list[int] = []  # index in `run` of each request
    for i, row in enumerate(run):
        try:
            event = _event_from(dict(row.data))
            key = event.dedup_key or uuid.uuid4().hex
            request = api.TriggerRequest(**trigger_arguments(event, _target(row), key), receipt=row.uid)
        except Exception as exc:
            results[i] = _set_aside(row, exc)
            continue
        requests.append(request)
        sent.append(i)
    if requests:
        try:
            applied_many = api.trigger_many(ctx, requests)
        except Exception as exc:
            if is_transient(exc):
                raise _DatabaseAway from exc
            log.warning(
                "a batch of %d queued triggers was refused (%s); applying them one by one", len(run), exc
            )
            for i in sent:
                results[i] = _apply_one(ctx, run[i])
            return [r for r in results if r is not None]
        for n, (i, result) in enumerate(zip(sent, applied_many, strict=True)):
            outcome = "deduplicated" if result.deduplicated else "triggered"
            results[i] = _outcome(run[i], EnqueueResult(requests[n].key, int(result.incident_id), outcome))
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
    """Claim and apply up to `limit` queued events; returns how many were applied or set aside (0: nothing to
    claim, or the database is away and they wait)."""
    store = store or intake_store(ctx)
    rows = _claim(ctx, store, limit, claim_seconds)
    if not rows:
        return 0
    results = _apply_rows(ctx, rows)
    done_at = ctx.clock.now()
    for r in results:
        r["b_processed_at"] = done_at if r["b_status"] != "pending" else None
    with write_session(store.sessions) as session:
        session.connection().execute(_RECORD_RESULT, results)
    # Events that wait for the database again are not counted: the caller pauses instead of asking at once.
    return sum(1 for r in results if r["b_status"] != "pending")


_CLAIM_COLUMNS = (
    IntakeEvent.id,
    IntakeEvent.routing_key_id,
    IntakeEvent.policy_name,
    IntakeEvent.source_label,
    IntakeEvent.event,
    IntakeEvent.attempts,
    IntakeEvent.uid,
    IntakeEvent.dedup_key,
)


def _claim(ctx: AppContext, store: IntakeStore, limit: int, claim_seconds: float) -> list[_Claimed]:
    """Up to `limit` pending events for this node, in id order, such that the events of one dedup key are
    applied in the order they came: an event is taken only when every earlier pending event of its key is
    taken with it. One held by another node's claim (or locked by a claim in progress) holds the later ones
    of its key back until it is done, so a resolve is never applied before the trigger it follows."""
    now = ctx.clock.now()
    owner = ctx.node_id[:80]
    with write_session(store.sessions) as session:
        due = (
            select(*_CLAIM_COLUMNS)
            .where(
                IntakeEvent.status == "pending",
                or_(IntakeEvent.claim_expires_at.is_(None), IntakeEvent.claim_expires_at < now),
            )
            .order_by(IntakeEvent.id)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        candidates = session.execute(due).all()
        if not candidates:
            return []
        taken_ids = {r.id for r in candidates}
        top = max(taken_ids)
        keys = sorted({r.dedup_key for r in candidates if r.dedup_key})
        earlier: dict[str, list[int]] = {}
        for start in range(0, len(keys), 500):
            for key, event_id in session.execute(
                select(IntakeEvent.dedup_key, IntakeEvent.id).where(
                    IntakeEvent.dedup_key.in_(keys[start : start + 500]),
                    IntakeEvent.status == "pending",
                    IntakeEvent.id <= top,
                )
            ):
                earlier.setdefault(key, []).append(int(event_id))
        rows: list[_Claimed] = []
        for r in candidates:
            waiting = [i for i in earlier.get(r.dedup_key, ()) if i < r.id and i not in taken_ids]
            if waiting:
                taken_ids.discard(r.id)  # and so every later event of its key, checked in turn
                continue
            uid = r.uid or f"legacy:{store.db.url.database or ''}:{r.id}"
            rows.append(
                _Claimed(
                    r.id,
                    r.routing_key_id,
                    r.policy_name,
                    r.source_label,
                    dict(r.event),
                    r.attempts,
                    uid,
                    r.dedup_key or "",
                )
            )
        if not rows:
            return []
        session.execute(
            update(IntakeEvent)
            .where(IntakeEvent.id.in_([r.id for r in rows]))
            .values(claimed_by=owner, claim_expires_at=now + timedelta(seconds=claim_seconds))
        )
    return rows


def drain(ctx: AppContext, *, max_rounds: int = 10_000, store: IntakeStore | None = None) -> int:
    """Apply every queued event now (tests, `check`-style one-shot runs); returns how many."""
    total = 0
    for _ in range(max_rounds):
        n = apply_pending(ctx, store=store)
        if n == 0:
            break
        total += n
    return total


# Receipts are kept well past the events they vouch for: an event is only ever claimed again within its claim
# time, so a week is ample, and it keeps the receipts table small.
KEEP_RECEIPTS_HOURS = 7 * 24


def purge_done(ctx: AppContext, hours: int = KEEP_DONE_HOURS) -> int:
    """Forget applied events after `hours` (set-aside ones stay until someone looks at them) and receipts
    after KEEP_RECEIPTS_HOURS."""
    cutoff = ctx.clock.now() - timedelta(hours=hours)
    with write_session(intake_store(ctx).sessions) as session:
        result = session.execute(
            delete(IntakeEvent).where(IntakeEvent.status == "done", IntakeEvent.processed_at < cutoff)
        )
        removed = int(getattr(result, "rowcount", 0) or 0)
    with write_session(ctx.sessions) as session:
        session.execute(
            delete(IntakeReceipt).where(
                IntakeReceipt.applied_at < ctx.clock.now() - timedelta(hours=KEEP_RECEIPTS_HOURS)
            )
        )
    return removed


def queue_depth(ctx: AppContext) -> dict[str, int]:
    """Queued events by status (pending, done, failed)."""
    with intake_store(ctx).sessions() as session:
        return {
            str(status): int(n)
            for status, n in session.execute(
                select(IntakeEvent.status, func.count()).group_by(IntakeEvent.status)
            ).all()
        }


def set_aside(ctx: AppContext, limit: int = 50) -> tuple[int, list[dict[str, Any]]]:
    """Events that could not be applied and were set aside (status "failed"): how many, and the newest
    `limit` with their errors, for the console's banner, `watchkeeper intake` and /healthz."""
    with intake_store(ctx).sessions() as session:
        total = int(session.scalar(select(func.count()).where(IntakeEvent.status == "failed")) or 0)
        rows = session.execute(
            select(
                IntakeEvent.id,
                IntakeEvent.received_at,
                IntakeEvent.event_action,
                IntakeEvent.dedup_key,
                IntakeEvent.source_label,
                IntakeEvent.error,
            )
            .where(IntakeEvent.status == "failed")
            .order_by(IntakeEvent.id.desc())
            .limit(limit)
        ).all()
    return total, [
        {
            "id": r.id,
            "received_at": r.received_at.isoformat() if r.received_at else None,
            "action": r.event_action,
            "dedup_key": r.dedup_key,
            "routing_key": r.source_label,
            "error": r.error or "",
        }
        for r in rows
    ]


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
                # Short: once the database is back, the queue moves again within a couple of seconds.
                backoff = min(backoff * 2, 2.0)
                continue
            self._wake.wait(self.idle_seconds)
            self._wake.clear()
