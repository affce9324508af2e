"""The durable intake queue behind `POST /v2/enqueue` in service mode.

Applying an event (a new incident, its escalation, its timeline) takes milliseconds of database work; a
monitoring storm sends thousands a second. So the HTTP answer is given as soon as the validated event is
*committed* to the `intake_event` table — PagerDuty's own Events API answers 202 the same way — and intake
workers apply queued events through engine.api in id order.

* `IntakeWriter` — group commit: request threads hand their row to one writer thread, which inserts whatever
  has gathered (up to a batch) in one transaction and then releases every waiting request. One commit per
  batch, not per event; nothing is acknowledged before it is durable.
* `apply_pending` — claim a batch (PostgreSQL: FOR UPDATE SKIP LOCKED, so several nodes share the queue; SQLite:
  the write lock of BEGIN IMMEDIATE), apply each event, record the outcome. A claim expires, so a node killed
  mid-batch leaves its events to the others; a trigger applied twice is deduplicated by its key.
* `IntakeWorker` — a thread running apply_pending whenever events were queued (or every second).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import DBAPIError

from engine.context import AppContext
from engine.db import write_session
from engine.errors import WatchkeeperError
from engine.models import IntakeEvent
from engine.service.intake import EnqueueEvent, process_event
from engine.service.keys import RoutingTarget

log = logging.getLogger("watchkeeper.service.intake")

MAX_BATCH = 256
# Several writers overlap their commits: on PostgreSQL a commit waits for the WAL flush (milliseconds on
# ordinary disks), so one writer alone would cap the intake at (batch size / flush time).
WRITER_THREADS = 3
CLAIM_BATCH = 50
CLAIM_SECONDS = 60.0
SUBMIT_TIMEOUT_SECONDS = 15.0
KEEP_DONE_HOURS = 24


class IntakeUnavailable(Exception):
    """The event could not be committed (database away, or the writer is stopping): answer 503."""


def queue_row(ctx: AppContext, event: EnqueueEvent, target: RoutingTarget, dedup_key: str) -> dict[str, Any]:
    data = asdict(event)
    data.pop("routing_key", None)  # a secret: never stored
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


class IntakeWriter:
    """One thread committing queued events in batches; `submit` returns once the row is durable."""

    def __init__(
        self, ctx: AppContext, on_commit: Callable[[], None] | None = None, threads: int = WRITER_THREADS
    ) -> None:
        self.ctx = ctx
        self.threads = max(1, threads)
        self.on_commit = on_commit or (lambda: None)
        self._queue: queue.Queue[_Submission | None] = queue.Queue()
        self._workers: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._count_lock = threading.Lock()
        self.batches = 0
        self.rows = 0

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

    def _run(self) -> None:
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
                with write_session(self.ctx.sessions) as session:
                    session.execute(insert(IntakeEvent), [b.row for b in batch])
                with self._count_lock:
                    self.batches += 1
                    self.rows += len(batch)
            except Exception as exc:
                log.warning("could not queue %d event(s): %s", len(batch), type(exc).__name__)
                for b in batch:
                    b.error = exc
            for b in batch:
                b.done.set()
            if any(b.error is None for b in batch):
                self.on_commit()
            if stop_seen:
                return


def _event_from(data: dict[str, Any]) -> EnqueueEvent:
    known = {f for f in EnqueueEvent.__dataclass_fields__}
    values = {k: v for k, v in data.items() if k in known}
    values["routing_key"] = ""
    return EnqueueEvent(**values)


def apply_pending(ctx: AppContext, *, limit: int = CLAIM_BATCH, claim_seconds: float = CLAIM_SECONDS) -> int:
    """Claim and apply up to `limit` queued events; returns how many were applied (0: queue empty)."""
    now = ctx.clock.now()
    owner = ctx.node_id[:80]
    with write_session(ctx.sessions) as session:
        due = (
            select(IntakeEvent.id)
            .where(
                IntakeEvent.status == "pending",
                or_(IntakeEvent.claim_expires_at.is_(None), IntakeEvent.claim_expires_at < now),
            )
            .order_by(IntakeEvent.id)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        ids = list(session.scalars(due).all())
        if not ids:
            return 0
        session.execute(
            update(IntakeEvent)
            .where(IntakeEvent.id.in_(ids))
            .values(claimed_by=owner, claim_expires_at=now + timedelta(seconds=claim_seconds))
        )
        rows = [
            (r.id, r.routing_key_id, r.policy_name, r.source_label, dict(r.event), r.attempts)
            for r in session.scalars(
                select(IntakeEvent).where(IntakeEvent.id.in_(ids)).order_by(IntakeEvent.id)
            )
        ]
    results: list[dict[str, Any]] = []
    for row_id, key_id, policy_name, label, data, attempts in rows:
        target = RoutingTarget(routing_key_id=key_id or 0, label=label, policy_id=0, policy_name=policy_name)
        result: dict[str, Any] = {"id": row_id, "attempts": attempts + 1}
        try:
            applied = process_event(ctx, _event_from(data), target)
            result.update(status="done", outcome=applied.outcome, incident_id=applied.incident_id, error=None)
        except DBAPIError:
            raise  # the database itself: the claim expires and the events are applied later
        except WatchkeeperError as exc:
            log.warning("queued event %s (%s) not applied: %s", row_id, data.get("dedup_key"), exc)
            result.update(status="failed", outcome="failed", incident_id=None, error=str(exc)[:2000])
        except Exception as exc:
            log.exception("queued event %s (%s) failed", row_id, data.get("dedup_key"))
            result.update(status="failed", outcome="failed", incident_id=None, error=type(exc).__name__)
        results.append(result)
    done_at = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        for r in results:
            session.execute(
                update(IntakeEvent)
                .where(IntakeEvent.id == r["id"])
                .values(
                    status=r["status"],
                    outcome=r["outcome"],
                    incident_id=r["incident_id"],
                    error=r["error"],
                    attempts=r["attempts"],
                    processed_at=done_at,
                    claimed_by=None,
                    claim_expires_at=None,
                )
            )
    return len(results)


def drain(ctx: AppContext, *, max_rounds: int = 10_000) -> int:
    """Apply every queued event now (tests, `check`-style one-shot runs); returns how many."""
    total = 0
    for _ in range(max_rounds):
        n = apply_pending(ctx)
        if n == 0:
            break
        total += n
    return total


def purge_done(ctx: AppContext, hours: int = KEEP_DONE_HOURS) -> int:
    cutoff = ctx.clock.now() - timedelta(hours=hours)
    with write_session(ctx.sessions) as session:
        result = session.execute(
            delete(IntakeEvent).where(IntakeEvent.status == "done", IntakeEvent.processed_at < cutoff)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def queue_depth(session: Any) -> dict[str, int]:
    from sqlalchemy import func

    return {
        str(status): int(n)
        for status, n in session.execute(
            select(IntakeEvent.status, func.count()).group_by(IntakeEvent.status)
        ).all()
    }


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
        while not self._stopping.is_set():
            try:
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
