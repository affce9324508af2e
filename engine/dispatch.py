"""The dispatch and poll passes: outbox rows out through the channels, provider answers back in.

dispatch_pass, in three steps, so no transaction is ever open while a provider is on the line:

1. claim (one short write transaction): due pending rows in batches — `FOR UPDATE SKIP LOCKED` on
   PostgreSQL, BEGIN IMMEDIATE on SQLite; honour the master switch, quiet hours and rate limits (held rows
   get a later `next_attempt_at` and a `hold_reason`, never dropped); mark the rest `sending` with a
   `sending_deadline` and our node id; commit.
2. send, outside any transaction, on one thread pool per channel, so a slow provider only slows its own
   channel. A channel whose pool is full is not claimed from until it drains.
3. record (short write transactions, in chunks as results arrive): sent / retry with exponential backoff and
   jitter (Retry-After honoured) / failed; a failed page message moves the person's chain on at once through
   engine.paging.advance_page.

A message still `sending` after its deadline belongs to an engine that died mid-send (or a provider that never
answered). It is re-queued as a retry — counted as an attempt, error "deadline passed", an event on the
timeline — or failed once its attempts are used up. Re-queueing may repeat that one message, which is better
than a page silently lost; the provider's idempotency is not relied on.

Status only moves forward (`status_rank`): a late "sent" callback never overwrites "delivered".

poll_pass fetches delivery status and inbound replies from providers that support it, for sites that cannot
receive webhooks (the default for workstations).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
import weakref
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from engine import hours, switches
from engine.channels import (
    ChannelSet,
    OutgoingMessage,
    Sender,
    SendError,
    SendResult,
    close_senders,
    senders_for,
)
from engine.channels.base import CannotTell, StatusResult
from engine.channels.unavailable import NO_PROVIDER
from engine.claims import lock_incidents
from engine.context import AppContext
from engine.db import write_session
from engine.models import (
    Event,
    InboundMessage,
    MessageStatus,
    OutboxMessage,
    Page,
    PageStatus,
    Person,
    Template,
)
from engine.prices import schedule_price_lookup
from engine.ratelimit import RateLimiter
from engine.targets import webhook_target_names
from engine.timeline import record

log = logging.getLogger(__name__)
_OUTBOX_T: Any = OutboxMessage.__table__

# Forward-only lifecycle. Failures rank above "sent" (a provider may report failure after accepting) but
# below "delivered" and "read" (a delivered message does not become undelivered by a late, reordered callback).
_RANK = {
    MessageStatus.PENDING.value: 0,
    MessageStatus.SENDING.value: 1,
    MessageStatus.SENT.value: 2,
    MessageStatus.FAILED.value: 3,
    MessageStatus.UNDELIVERED.value: 3,
    MessageStatus.DELIVERED.value: 4,
    MessageStatus.READ.value: 5,
    MessageStatus.CANCELLED.value: 6,
}
FAILED_STATUSES = {MessageStatus.FAILED.value, MessageStatus.UNDELIVERED.value}
_OPEN_PAGE = (PageStatus.ACTIVE.value, PageStatus.HELD.value)
# Errors that mean "this channel cannot reach this person here", not "the provider failed": the message is
# skipped (event message_skipped) and the chain moves on at once.
SKIP_CODES = (NO_PROVIDER, "opted_out")
MAX_BACKOFF_SECONDS = 900.0
WHATSAPP_WINDOW = timedelta(hours=24)
# Threads per channel: Twilio takes many parallel requests, an SMTP server a few, the console needs one.
DEFAULT_WORKERS = {"sms": 24, "whatsapp": 16, "voice": 4, "email": 4, "webhook": 16, "console": 2}
# Rows a claim reads beyond the free slots of the channels it last saw work for.
CLAIM_SLACK = 32


def status_rank(status: str) -> int:
    return _RANK.get(status, 0)


def can_move(current: str, new: str) -> bool:
    """May a message go from `current` to `new`? Only forward; nothing leaves cancelled."""
    if current == MessageStatus.CANCELLED.value:
        return False
    return status_rank(new) > status_rank(current)


def backoff_seconds(attempt: int, base: float, retry_after: float | None, rng: random.Random) -> float:
    """Exponential backoff with ±20 % jitter (so a provider outage does not end in a thundering herd), at
    least the provider's Retry-After, at most 15 minutes."""
    delay = min(MAX_BACKOFF_SECONDS, base * (2.0 ** max(0, attempt - 1)))
    delay *= rng.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, MAX_BACKOFF_SECONDS)


# --------------------------------------------------------------------------------------------------------
# The per-context dispatcher: thread pools, in-flight bookkeeping, rate buckets
# --------------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    message_id: int
    attempt: int
    channel: str
    result: SendResult | None = None
    error: SendError | None = None
    simulated: bool = False
    seconds: float = 0.0


@dataclass
class Dispatcher:
    ctx_ref: weakref.ref[AppContext]
    limiter: RateLimiter
    executors: dict[str, ThreadPoolExecutor] = field(default_factory=dict)
    inflight: dict[str, int] = field(default_factory=dict)
    inflight_ids: set[int] = field(default_factory=set)
    results: queue.Queue[Outcome] = field(default_factory=queue.Queue)
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(default_factory=random.Random)
    workers: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_WORKERS))
    recent_channels: set[str] = field(default_factory=set)

    def capacity(self, channel: str) -> int:
        return self.workers.get(channel, 4) * 4

    def saturated(self) -> list[str]:
        with self.lock:
            return [ch for ch, n in self.inflight.items() if n >= self.capacity(ch)]

    def free_slots(self, channel: str) -> int:
        with self.lock:
            return self.capacity(channel) - self.inflight.get(channel, 0)

    def claim_limit(self, limit: int) -> int:
        """How many due rows a claim should read: no more than the free slots of the channels that had work
        last time (plus some, to see channels that have work now), so a pass does not load hundreds of rows
        only to leave them for later because their pools are full."""
        with self.lock:
            channels = self.recent_channels or set(self.workers)
            free = sum(max(0, self.capacity(ch) - self.inflight.get(ch, 0)) for ch in channels)
        return max(1, min(limit, free + CLAIM_SLACK))

    def submit(self, sender: Sender, message: OutgoingMessage, attempt: int) -> Future[None]:
        with self.lock:
            pool = self.executors.get(message.channel)
            if pool is None:
                pool = ThreadPoolExecutor(
                    max_workers=self.workers.get(message.channel, 4),
                    thread_name_prefix=f"send-{message.channel}",
                )
                self.executors[message.channel] = pool
            self.inflight[message.channel] = self.inflight.get(message.channel, 0) + 1
            self.inflight_ids.add(message.id)
        return pool.submit(self._send, sender, message, attempt)

    def _send(self, sender: Sender, message: OutgoingMessage, attempt: int) -> None:
        started = time.monotonic()
        outcome = Outcome(message.id, attempt, message.channel, simulated=sender.simulated)
        try:
            outcome.result = sender.send(message)
        except SendError as exc:
            outcome.error = exc
        except Exception as exc:  # a bug in a sender must not lose the message: retry it
            outcome.error = SendError(f"{type(exc).__name__} in the {message.channel} sender", retryable=True)
            log.exception("sender %s raised", message.channel)
        outcome.seconds = time.monotonic() - started
        with self.lock:
            self.inflight[message.channel] -= 1
            self.inflight_ids.discard(message.id)
        self.results.put(outcome)

    def shutdown(self) -> None:
        for pool in self.executors.values():
            pool.shutdown(wait=True)
        self.executors.clear()


_DISPATCHERS: dict[int, Dispatcher] = {}
_DISPATCHERS_LOCK = threading.Lock()


def dispatcher_for(ctx: AppContext) -> Dispatcher:
    with _DISPATCHERS_LOCK:
        found = _DISPATCHERS.get(id(ctx))
        if found is not None and found.ctx_ref() is ctx:
            return found
        settings = ctx.settings
        dispatcher = Dispatcher(
            ctx_ref=weakref.ref(ctx),
            limiter=RateLimiter(settings.rate_per_channel_per_second, settings.rate_per_recipient_per_minute),
        )
        _DISPATCHERS[id(ctx)] = dispatcher
        for key, other in list(_DISPATCHERS.items()):
            if other.ctx_ref() is None:
                other.shutdown()
                del _DISPATCHERS[key]
        return dispatcher


def shutdown(ctx: AppContext) -> None:
    """Wait for sends in flight and stop this context's threads (service stop, test teardown)."""
    with _DISPATCHERS_LOCK:
        dispatcher = _DISPATCHERS.pop(id(ctx), None)
    if dispatcher is not None:
        dispatcher.shutdown()
        outcomes = _drain(dispatcher)
        if outcomes:
            with _DISPATCHERS_LOCK:
                _DISPATCHERS[id(ctx)] = dispatcher
            try:
                _record_outcomes(ctx, outcomes)
            finally:
                with _DISPATCHERS_LOCK:
                    _DISPATCHERS.pop(id(ctx), None)
    close_senders(ctx)


# --------------------------------------------------------------------------------------------------------
# Paging hooks (engine.paging belongs to the escalation part)
# --------------------------------------------------------------------------------------------------------


def _advance_page(session: Session, page_id: int, now: datetime, reason: str, step: int | None) -> None:
    """The person's chain moves to its next channel at once (once: a late report for a step the page has
    already left does nothing, see paging.advance_page's from_step)."""
    page = session.get(Page, page_id)
    if page is None or page.status not in (PageStatus.ACTIVE.value, PageStatus.HELD.value):
        return
    try:
        from engine import paging
    except ImportError:  # pragma: no cover - only while the escalation part is being built
        record(
            session,
            "page_fallback_unavailable",
            now,
            incident_id=page.incident_id,
            escalation_id=page.escalation_id,
            message=f"page {page.id}: {reason}; engine.paging is not installed",
        )
        return
    paging.advance_page(session, page, now, reason, from_step=step)


# --------------------------------------------------------------------------------------------------------
# Step 1: claim
# --------------------------------------------------------------------------------------------------------


@dataclass
class ClaimStats:
    claimed: int = 0
    held_quiet: int = 0
    held_rate: int = 0
    withdrawn: int = 0
    # Due rows left for later because their channel's pool was full, or the claim read as many as it asked for:
    # more is due than was claimed.
    more_due: bool = False
    departed: list[int] = field(default_factory=list)  # pages of people deleted or made inactive
    # Claimed messages that must not go out on their channel for this person any more (opted out or disabled
    # since the chain was built): recorded as skipped, and the chain moves on.
    skipped: dict[int, SendError] = field(default_factory=dict)


# What a claim reads of each due message (plain rows, not ORM objects: a claim reads hundreds a second).
_CLAIM_COLUMNS = [
    _OUTBOX_T.c[name]
    for name in (
        "id",
        "channel",
        "address",
        "body",
        "subject",
        "body_html",
        "kind",
        "idempotency_key",
        "incident_id",
        "escalation_id",
        "page_id",
        "person_id",
        "template_id",
        "critical",
        "attempts",
        "level",
    )
]


def _due(query: Any, now: datetime, exclude: Iterable[str]) -> Any:
    """`query` narrowed to pending messages due by `now`, on channels not in `exclude`."""
    t = _OUTBOX_T
    query = query.where(
        t.c.status == MessageStatus.PENDING.value,
        or_(t.c.next_attempt_at.is_(None), t.c.next_attempt_at <= now),
    )
    excluded = list(exclude)
    return query.where(t.c.channel.not_in(excluded)) if excluded else query


def _due_query(now: datetime, limit: int, exclude: Iterable[str], pages_only: bool) -> Any:
    t = _OUTBOX_T
    query = _due(select(*_CLAIM_COLUMNS), now, exclude)
    if pages_only:
        query = query.where(t.c.kind == "page")
    return query.order_by(t.c.id).limit(limit).with_for_update(skip_locked=True)


def _nothing_due(ctx: AppContext, now: datetime, full: list[str]) -> bool:
    """SQLite: no message is due on a channel whose pool has room, by a plain read. The pass is woken after
    every acknowledgement and every escalate run; on SQLite's single write lock a claim that takes it only to
    find nothing would make the next trigger or acknowledgement wait for it. PostgreSQL's claim locks rows, not the database: no peek."""
    if ctx.db.dialect.name != "sqlite":
        return False
    with ctx.db.connect() as conn:
        row = conn.execute(_due(select(_OUTBOX_T.c.id), now, full).limit(1)).first()
    return row is None


def _whatsapp_last_inbound(session: Session, rows: list[Any]) -> dict[int, datetime]:
    """Last WhatsApp message from each person (by person id), for the 24-hour session window."""
    person_ids = {r.person_id for r in rows if r.channel == "whatsapp" and r.person_id is not None}
    if not person_ids:
        return {}
    found = session.execute(
        select(InboundMessage.person_id, func.max(InboundMessage.received_at))
        .where(InboundMessage.channel == "whatsapp", InboundMessage.person_id.in_(person_ids))
        .group_by(InboundMessage.person_id)
    ).all()
    out: dict[int, datetime] = {}
    for person_id, at in found:
        if person_id is not None and at is not None:
            out[int(person_id)] = at
    return out


def _content_sids(session: Session, rows: list[Any]) -> dict[tuple[str, int | None], str]:
    """WhatsApp content template SIDs: by the row's template, else the active one for its kind."""
    wanted = [r for r in rows if r.channel == "whatsapp"]
    if not wanted:
        return {}
    templates = session.execute(
        select(Template.id, Template.kind, Template.whatsapp_content_sid).where(
            Template.channel == "whatsapp",
            Template.active.is_(True),
            Template.whatsapp_content_sid.is_not(None),
        )
    ).all()
    by_id = {tid: sid for tid, _kind, sid in templates if sid}
    by_kind: dict[str, str] = {}
    for _tid, kind, sid in templates:
        if sid:
            by_kind.setdefault(kind, sid)
    out: dict[tuple[str, int | None], str] = {}
    for r in wanted:
        sid = by_id.get(r.template_id) if r.template_id else None
        sid = sid or by_kind.get(r.kind)
        if sid:
            out[(r.kind, r.template_id)] = sid
    return out


def _claim(
    ctx: AppContext, dispatcher: Dispatcher, now: datetime, limit: int
) -> tuple[list[tuple[OutgoingMessage, int]], ClaimStats]:
    settings = ctx.settings
    stats = ClaimStats()
    out: list[tuple[OutgoingMessage, int]] = []
    deadline = now + timedelta(seconds=settings.send_deadline_seconds)
    # A channel left out because its pool is full may have more due: the pass claims again as its sends
    # finish (it sends nothing more only once no pool is full and a claim comes back short).
    full = dispatcher.saturated()
    if _nothing_due(ctx, now, full):
        dispatcher.recent_channels = set()
        stats.more_due = bool(full)
        return out, stats
    with write_session(ctx.sessions) as session:
        pages_only = not switches.notifications_enabled(session)
        wanted = dispatcher.claim_limit(limit)
        rows = list(session.execute(_due_query(now, wanted, full, pages_only)))
        dispatcher.recent_channels = {r.channel for r in rows}
        stats.more_due = len(rows) >= wanted or bool(full)
        if not rows:
            return out, stats
        page_ids = {r.page_id for r in rows if r.page_id is not None}
        pages = (
            {p.id: p for p in session.execute(select(Page).where(Page.id.in_(page_ids))).scalars()}
            if page_ids
            else {}
        )
        person_ids = {r.person_id for r in rows if r.person_id is not None}
        persons = (
            {p.id: p for p in session.execute(select(Person).where(Person.id.in_(person_ids))).scalars()}
            if person_ids
            else {}
        )
        last_whatsapp = _whatsapp_last_inbound(session, rows)
        content_sids = _content_sids(session, rows)
        webhook_targets = webhook_target_names(
            session, [(r.id, r.escalation_id, r.level, r.address) for r in rows if r.channel == "webhook"]
        )
        free = {ch: dispatcher.free_slots(ch) for ch in {r.channel for r in rows}}
        sending_ids: list[int] = []
        withdrawn: list[int] = []
        departed: list[Page] = []
        holds: list[dict[str, Any]] = []
        public = settings.public_base_url.rstrip("/")
        for row in rows:
            page = pages.get(row.page_id) if row.page_id is not None else None
            person = persons.get(row.person_id) if row.person_id is not None else None
            if page is not None and page.status not in _OPEN_PAGE:
                # The page ended (acknowledged, confirmed, exhausted) after this message was queued, e.g. a
                # retry: it is withdrawn, never sent after the incident was taken.
                withdrawn.append(row.id)
                continue
            if page is not None and (person is None or not person.active):
                departed.append(page)  # deleted or made inactive since: its chain stops (after the claim)
                continue
            # Quiet hours: a non-critical page waits until they end; critical pages go through.
            if row.kind == "page" and not row.critical and person is not None and person.quiet_start:
                quiet_end = hours.quiet_hours_end(now, person.quiet_start, person.quiet_end, person.timezone)
                if quiet_end is not None:
                    _hold(session, row, quiet_end, "quiet_hours", now)
                    holds.append({"b_id": row.id, "b_until": quiet_end, "b_reason": "quiet_hours"})
                    stats.held_quiet += 1
                    continue
            if free.get(row.channel, 0) <= 0:
                stats.more_due = True
                continue  # this channel's pool is full: leave the row due until a send finishes
            decision = dispatcher.limiter.check(row.channel, row.address, now)
            if not decision.allowed:
                until = now + timedelta(seconds=max(decision.wait_seconds, 0.001))
                holds.append({"b_id": row.id, "b_until": until, "b_reason": "rate_limit"})
                stats.held_rate += 1
                continue
            free[row.channel] -= 1
            # Marked `sending` below in one UPDATE for the whole batch.
            attempts = (row.attempts or 0) + 1
            sending_ids.append(row.id)
            if row.kind == "page" and person is not None:
                off = {str(c) for c in (person.opted_out_channels or [])}
                if row.channel in off or row.channel in {str(c) for c in (person.disabled_channels or [])}:
                    why = "opted out (STOP)" if row.channel in off else "disabled for this person"
                    stats.skipped[row.id] = SendError(
                        f"{person.name} cannot be reached by {row.channel} any more: {why}",
                        retryable=False,
                        code="opted_out",
                    )
            reply_code = page.reply_code if page is not None else None
            session_open = True
            content_sid = None
            if row.channel == "whatsapp":
                last = last_whatsapp.get(row.person_id) if row.person_id is not None else None
                session_open = last is not None and now - last < WHATSAPP_WINDOW
                content_sid = content_sids.get((row.kind, row.template_id))
            ack_url = None
            if public and row.incident_id is not None and reply_code:
                ack_url = f"{public}/ack?incident={row.incident_id}&code={reply_code}"
            out.append(
                (
                    OutgoingMessage(
                        id=row.id,
                        channel=row.channel,
                        address=row.address,
                        body=row.body,
                        subject=row.subject,
                        body_html=row.body_html,
                        kind=row.kind,
                        idempotency_key=row.idempotency_key,
                        incident_id=row.incident_id,
                        escalation_id=row.escalation_id,
                        page_id=row.page_id,
                        person_id=row.person_id,
                        critical=row.critical,
                        reply_code=reply_code,
                        content_sid=content_sid,
                        content_variables={"1": row.body},
                        whatsapp_session_open=session_open,
                        ack_url=ack_url,
                        language=person.language if person is not None and person.language else "en",
                        target=webhook_targets.get(row.id),
                    ),
                    attempts,
                )
            )
            stats.claimed += 1
        if withdrawn:
            session.connection().execute(
                update(_OUTBOX_T)
                .where(_OUTBOX_T.c.id.in_(withdrawn))
                .values(status=MessageStatus.CANCELLED.value, hold_reason=None, updated_at=now)
            )
            stats.withdrawn += len(withdrawn)
        if holds:
            session.connection().execute(_HOLD, [{**h, "b_now": now} for h in holds])
        stats.departed = [p.id for p in departed]
        if sending_ids:
            session.connection().execute(
                update(_OUTBOX_T)
                .where(_OUTBOX_T.c.id.in_(sending_ids))
                .values(
                    status=MessageStatus.SENDING.value,
                    attempts=func.coalesce(_OUTBOX_T.c.attempts, 0) + 1,
                    sending_deadline=deadline,
                    claimed_by=ctx.node_id,
                    hold_reason=None,
                    updated_at=now,
                )
            )
    return out, stats


_HOLD = (
    update(_OUTBOX_T)
    .where(_OUTBOX_T.c.id == bindparam("b_id"))
    .values(
        next_attempt_at=bindparam("b_until"), hold_reason=bindparam("b_reason"), updated_at=bindparam("b_now")
    )
)


def _hold(session: Session, row: Any, until: datetime, reason: str, now: datetime) -> None:
    """The timeline event of keeping a message for later (never dropping it); the row itself is moved by
    _HOLD with the rest of the claim. The page's confirmation window is engine.paging's business: its
    confirm pass sees the message unsent and waits for it."""
    record(
        session,
        "message_held",
        now,
        incident_id=row.incident_id,
        escalation_id=row.escalation_id,
        message=f"{row.channel} to {row.address} held until {until.isoformat()} ({reason})",
        data={"message_id": row.id, "reason": reason, "until": until.isoformat()},
    )


# --------------------------------------------------------------------------------------------------------
# Step 3: record
# --------------------------------------------------------------------------------------------------------


@dataclass
class RecordStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    simulated: int = 0
    late: int = 0
    latencies: list[float] = field(default_factory=list)


def _drain(dispatcher: Dispatcher, limit: int = 1000) -> list[Outcome]:
    out: list[Outcome] = []
    while len(out) < limit:
        try:
            out.append(dispatcher.results.get_nowait())
        except queue.Empty:
            break
    return out


def _record_outcomes(
    ctx: AppContext, outcomes: list[Outcome], stats: RecordStats | None = None
) -> RecordStats:
    stats = stats or RecordStats()
    if not outcomes:
        return stats
    settings = ctx.settings
    dispatcher = dispatcher_for(ctx)
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        # The common case, one "sent" answer per message, needs a few columns and is written in bulk; only
        # messages that fail, retry, carry an event or have more than one answer here are loaded as objects.
        seen: set[int] = set()
        need_objects: set[int] = set()
        for o in outcomes:
            if o.message_id in seen or o.result is None or o.result.event_kind:
                need_objects.add(o.message_id)
            seen.add(o.message_id)
        plain = list(seen - need_objects)
        rows: dict[int, Any] = (
            {r.id: r for r in session.execute(select(*_RECORD_COLUMNS).where(_OUTBOX_T.c.id.in_(plain)))}
            if plain
            else {}
        )
        if need_objects:
            rows.update(
                (r.id, r)
                for r in session.execute(
                    select(OutboxMessage).where(OutboxMessage.id.in_(list(need_objects)))
                ).scalars()
            )
        # A failure moves the person's chain on (pages, a new message): the incidents are locked first, the
        # lock order every writer of pages keeps (engine.claims.lock_incidents).
        lock_incidents(
            session,
            [
                getattr(rows[o.message_id], "incident_id", None)
                for o in outcomes
                if o.error is not None
                and o.message_id in rows
                and getattr(rows[o.message_id], "page_id", None)
            ],
        )
        sent_updates: list[dict[str, Any]] = []
        sent_events: list[dict[str, Any]] = []
        bulk_ids: set[int] = set()
        for outcome in outcomes:
            row = rows.get(outcome.message_id)
            if row is None:
                continue
            if row.id in bulk_ids:  # a second answer for a message recorded as sent just now
                stats.late += 1
                continue
            ours = (
                row.status == MessageStatus.SENDING.value
                and row.claimed_by == ctx.node_id
                and row.attempts == outcome.attempt
            )
            result = outcome.result
            if result is not None:
                new_status = result.status if result.status in _RANK else MessageStatus.SENT.value
                if not ours and not can_move(row.status, MessageStatus.SENT.value):
                    stats.late += 1
                    continue
                if result.event_kind:
                    _apply_success(session, row, result, new_status, now)
                else:  # the common case: written in bulk with the rest of the chunk below
                    bulk_ids.add(row.id)
                    sent_updates.append(_success_params(row, result, new_status, now))
                    sent_events.append(_sent_event(row, result, new_status, now))
                stats.sent += 1
                stats.simulated += int(result.simulated)
                stats.latencies.append(outcome.seconds)
                continue
            error = outcome.error or SendError("no result", retryable=True)
            if not ours:
                stats.late += 1
                continue
            row.error_code = (error.code or "")[:40] or None
            row.error_text = error.text
            row.updated_at = now
            row.sending_deadline = None
            if error.retryable and row.attempts < settings.send_max_attempts:
                delay = backoff_seconds(
                    row.attempts, settings.send_backoff_seconds, error.retry_after, dispatcher.rng
                )
                row.status = MessageStatus.PENDING.value
                row.next_attempt_at = now + timedelta(seconds=delay)
                row.hold_reason = None
                record(
                    session,
                    "message_retry",
                    now,
                    incident_id=row.incident_id,
                    escalation_id=row.escalation_id,
                    message=f"{row.channel} to {row.address}: {error.text}; retry in {delay:.0f} s",
                    data={"message_id": row.id, "attempt": row.attempts, "error_code": error.code},
                )
                stats.retried += 1
            else:
                why = (
                    error.text
                    if not error.retryable
                    else f"{error.text} (gave up after {row.attempts} attempts)"
                )
                _fail(session, row, why, now)
                stats.failed += 1
        if sent_updates:
            # One UPDATE and one INSERT for the whole chunk (executemany), not two ORM writes per message.
            # These rows are not touched through the ORM in this transaction, so the two never disagree.
            conn = session.connection()
            conn.execute(_MARK_SENT, sent_updates)
            conn.execute(_INSERT_EVENT, sent_events)
    return stats


# What recording a plain "sent" answer reads of a message (see _success_params and _sent_event).
_RECORD_COLUMNS = [
    _OUTBOX_T.c[name]
    for name in (
        "id",
        "status",
        "claimed_by",
        "attempts",
        "incident_id",
        "escalation_id",
        "channel",
        "address",
        "kind",
        "delivered_at",
    )
]
_MARK_SENT = (
    update(_OUTBOX_T)
    .where(_OUTBOX_T.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        provider_id=bindparam("b_provider_id"),
        simulated=bindparam("b_simulated"),
        segments=bindparam("b_segments"),
        encoding=bindparam("b_encoding"),
        price=bindparam("b_price"),
        currency=bindparam("b_currency"),
        sent_at=bindparam("b_now"),
        delivered_at=bindparam("b_delivered_at"),
        sending_deadline=None,
        error_code=None,
        error_text=None,
        hold_reason=None,
        updated_at=bindparam("b_now"),
    )
)
_INSERT_EVENT = insert(Event)


def _success_params(row: Any, result: SendResult, status: str, now: datetime) -> dict[str, Any]:
    """_apply_success's changes as parameters of _MARK_SENT (the row object itself is left as loaded)."""
    delivered = status in (MessageStatus.DELIVERED.value, MessageStatus.READ.value)
    return {
        "b_id": row.id,
        "b_status": status,
        "b_provider_id": result.provider_id,
        "b_simulated": result.simulated,
        "b_segments": result.segments,
        "b_encoding": result.encoding,
        "b_price": result.price,
        "b_currency": result.currency,
        "b_now": now,
        "b_delivered_at": now if delivered else row.delivered_at,
    }


def _sent_event(row: Any, result: SendResult, status: str, now: datetime) -> dict[str, Any]:
    """The "message_sent" timeline event of _apply_success, as a row for _INSERT_EVENT."""
    label = "simulated " if result.simulated else ""
    return {
        "kind": "message_sent",
        "at": now,
        "incident_id": row.incident_id,
        "escalation_id": row.escalation_id,
        "actor": "system",
        "message": f"{label}{row.channel} to {row.address}: {status}",
        "data": {
            "message_id": row.id,
            "channel": row.channel,
            "provider_id": result.provider_id,
            "status": status,
            "simulated": result.simulated,
            "kind": row.kind,
        },
    }


def _apply_success(
    session: Session, row: OutboxMessage, result: SendResult, status: str, now: datetime
) -> None:
    row.status = status
    row.provider_id = result.provider_id
    row.simulated = result.simulated
    row.segments = result.segments
    row.encoding = result.encoding
    row.price = result.price
    row.currency = result.currency
    row.sent_at = now
    if status in (MessageStatus.DELIVERED.value, MessageStatus.READ.value):
        row.delivered_at = now
    row.sending_deadline = None
    row.error_code = None
    row.error_text = None
    row.hold_reason = None
    row.updated_at = now
    label = "simulated " if result.simulated else ""
    record(
        session,
        "message_sent",
        now,
        incident_id=row.incident_id,
        escalation_id=row.escalation_id,
        message=f"{label}{row.channel} to {row.address}: {status}",
        data={
            "message_id": row.id,
            "channel": row.channel,
            "provider_id": result.provider_id,
            "status": status,
            "simulated": result.simulated,
            "kind": row.kind,
        },
    )
    if result.event_kind:
        record(
            session,
            result.event_kind,
            now,
            incident_id=row.incident_id,
            escalation_id=row.escalation_id,
            message=row.subject or row.body[:200],
            data={"message_id": row.id, "address": row.address, "body": row.body, "critical": row.critical},
        )


def _fail(session: Session, row: OutboxMessage, why: str, now: datetime) -> None:
    row.status = MessageStatus.FAILED.value
    row.error_text = why
    row.sending_deadline = None
    row.updated_at = now
    skipped = row.error_code in SKIP_CODES
    record(
        session,
        "message_skipped" if skipped else "message_failed",
        now,
        incident_id=row.incident_id,
        escalation_id=row.escalation_id,
        message=f"{row.channel} to {row.address} {'skipped' if skipped else 'failed'}: {why}",
        data={"message_id": row.id, "channel": row.channel, "error_code": row.error_code},
    )
    if row.page_id is not None:
        what = "skipped" if skipped else "failed"
        _advance_page(session, row.page_id, now, f"{row.channel} {what}: {why}", row.chain_step)


def _end_departed(ctx: AppContext, page_ids: list[int], now: datetime) -> None:
    """Pages of people deleted or made inactive since their chain started: they stop, in a transaction of
    their own that locks the incidents first (the claim's row locks come in the other order)."""
    from engine import paging

    with write_session(ctx.sessions) as session:
        pages = list(session.scalars(select(Page).where(Page.id.in_(page_ids))))
        lock_incidents(session, [p.incident_id for p in pages])
        for page in pages:
            session.refresh(page)
            if page.status in _OPEN_PAGE:
                paging.end_departed_page(session, page, now)


# Channels whose receiver drops a message it already has (a webhook carries the message's id): sent again.
RESENDABLE = ("webhook", "console")
# How far a provider's clock may be behind ours when matching a message it created to one we sent.
CLAIM_SKEW = timedelta(seconds=5)
_STUCK_COLUMNS = [
    _OUTBOX_T.c[name]
    for name in (
        "id",
        "channel",
        "address",
        "body",
        "subject",
        "kind",
        "idempotency_key",
        "incident_id",
        "page_id",
        "claimed_by",
        "sending_deadline",
    )
]


def _verdict(ctx: AppContext, senders: ChannelSet, row: Any) -> tuple[str, SendResult | None] | None:
    """What became of a message left `sending` by an engine that stopped: ("sent", result) when the provider
    has it, ("not_taken", None) when the provider provably does not, ("resend", None) for a receiver that
    drops duplicates, ("unknown", None) when nobody can tell; None when the provider cannot be asked now."""
    sender = senders.senders.get(row.channel)
    ask = getattr(sender, "find_sent", None)
    if ask is None:
        return ("resend", None) if row.channel in RESENDABLE else ("unknown", None)
    claimed_at = row.sending_deadline - timedelta(seconds=ctx.settings.send_deadline_seconds)
    message = OutgoingMessage(
        id=row.id,
        channel=row.channel,
        address=row.address,
        body=row.body,
        subject=row.subject,
        kind=row.kind,
        idempotency_key=row.idempotency_key,
    )
    try:
        found = ask(message, claimed_at - CLAIM_SKEW)
    except CannotTell:
        return ("unknown", None)
    except Exception:  # the provider cannot be asked now: the row waits for the next pass
        log.warning("could not ask %s whether it has message %s; asking again later", row.channel, row.id)
        return None
    return ("sent", found) if found is not None else ("not_taken", None)


def _recover_stuck(ctx: AppContext, dispatcher: Dispatcher, senders: ChannelSet, now: datetime) -> int:
    """Messages left `sending` past their deadline by an engine that stopped (or never heard back).

    A message handed to a provider is handed again only when the provider provably did not take it: Twilio
    is asked for it first (recipient, sender, exact body, since the claim) — found, it is recorded as sent;
    not found, it is sent again (an attempt used). A webhook is sent again (its receiver drops a duplicate id).
    Where nobody can tell (a call, an e-mail), the message is not sent again: it is recorded as of unknown
    outcome and the person's chain moves on to their next channel, so nobody is lost and nobody paged twice."""
    settings = ctx.settings
    # Nearly always there is nothing to recover: a plain read says so without taking SQLite's write lock.
    with ctx.db.connect() as conn:
        rows = conn.execute(
            select(*_STUCK_COLUMNS)
            .where(
                _OUTBOX_T.c.status == MessageStatus.SENDING.value,
                _OUTBOX_T.c.sending_deadline < now,
            )
            .order_by(_OUTBOX_T.c.id)
            .limit(200)
        ).all()
    if not rows:
        return 0
    with dispatcher.lock:
        mine = set(dispatcher.inflight_ids)
    verdicts: dict[int, tuple[str, SendResult | None]] = {}
    for row in rows:
        if row.id in mine and row.claimed_by == ctx.node_id:
            continue  # still on the line in this process: its own result will come
        verdict = _verdict(ctx, senders, row)
        if verdict is not None:
            verdicts[row.id] = verdict
    if not verdicts:
        return 0
    recovered = 0
    with write_session(ctx.sessions) as session:
        # A chain may move on: the incidents first (engine.claims.lock_incidents), then the messages.
        lock_incidents(session, [r.incident_id for r in rows if r.id in verdicts and r.page_id is not None])
        stuck = session.execute(
            select(OutboxMessage)
            .where(
                OutboxMessage.id.in_(list(verdicts)),
                OutboxMessage.status == MessageStatus.SENDING.value,
                OutboxMessage.sending_deadline < now,
            )
            .order_by(OutboxMessage.id)
            .with_for_update(skip_locked=True)
        ).scalars()
        for msg in stuck:
            what, result = verdicts[msg.id]
            who = msg.claimed_by or "an engine"
            if what == "sent" and result is not None:
                _apply_success(session, msg, result, result.status or MessageStatus.SENT.value, now)
                record(
                    session,
                    "message_found_sent",
                    now,
                    incident_id=msg.incident_id,
                    escalation_id=msg.escalation_id,
                    message=f"{msg.channel} to {msg.address}: {who} stopped while sending; "
                    f"{msg.channel} has it ({result.provider_id}), so it is not sent again",
                    data={"message_id": msg.id, "claimed_by": msg.claimed_by},
                )
            elif what == "unknown":
                msg.error_code = "outcome_unknown"
                _fail(
                    session,
                    msg,
                    f"{who} stopped while sending and {msg.channel} cannot be asked whether it arrived; "
                    "not sent again, so nobody gets it twice",
                    now,
                )
            else:
                msg.error_code = "deadline"
                msg.error_text = f"deadline passed: no result from {who} while sending"
                msg.sending_deadline = None
                msg.updated_at = now
                if msg.attempts < settings.send_max_attempts:
                    msg.status = MessageStatus.PENDING.value
                    msg.next_attempt_at = now
                    proof = (
                        "the provider does not have it"
                        if what == "not_taken"
                        else "its receiver drops a copy"
                    )
                    record(
                        session,
                        "message_deadline_passed",
                        now,
                        incident_id=msg.incident_id,
                        escalation_id=msg.escalation_id,
                        message=f"{msg.channel} to {msg.address}: {msg.error_text}; {proof}: sending again",
                        data={"message_id": msg.id, "claimed_by": msg.claimed_by, "attempt": msg.attempts},
                    )
                else:
                    _fail(session, msg, msg.error_text, now)
            recovered += 1
    return recovered


# --------------------------------------------------------------------------------------------------------
# The passes
# --------------------------------------------------------------------------------------------------------


def _claim_round(
    ctx: AppContext,
    dispatcher: Dispatcher,
    senders: ChannelSet,
    now: datetime,
    batch_size: int,
    max_batches: int,
    total: ClaimStats,
) -> bool:
    """Claim batches while they come back full and the pools have room, and hand each message to its
    sender's pool; whether more is due than was claimed."""
    more = False
    for _ in range(max(1, max_batches)):
        claimed, stats = _claim(ctx, dispatcher, now, batch_size)
        if stats.departed:
            _end_departed(ctx, stats.departed, now)
        total.claimed += stats.claimed
        total.held_quiet += stats.held_quiet
        total.held_rate += stats.held_rate
        for message, attempt in claimed:
            sender = senders.get(message.channel)
            skip = stats.skipped.get(message.id)
            if skip is None and not getattr(sender, "available", True):
                skip = SendError(
                    f"{message.channel} is not set up here: {getattr(sender, 'reason', '')}",
                    retryable=False,
                    code=NO_PROVIDER,
                )
            if skip is not None:
                # No provider can take it: recorded at once (no thread, no wait), and the chain moves on.
                dispatcher.results.put(Outcome(message.id, attempt, message.channel, error=skip))
                continue
            dispatcher.submit(sender, message, attempt)
        more = stats.more_due
        if not claimed or stats.claimed + stats.held_quiet + stats.held_rate < batch_size:
            break
    return more


def dispatch_pass(
    ctx: AppContext,
    *,
    batch_size: int = 200,
    max_batches: int = 10,
    wait: bool = True,
    wait_seconds: float | None = None,
) -> dict[str, Any]:
    """Send what is due. With `wait` the pass goes on claiming as sends finish and free their slots, and
    returns when nothing due is left and its sends are recorded, or after `wait_seconds` (default: twice the
    dispatch interval, at least 2 s), whichever comes first; sends still on the line then (a slow provider)
    are recorded by a later pass, so a slow channel never holds up the scheduler. Without `wait` it claims
    once and records what has finished so far. Returns counts and the send latencies seen (seconds)."""
    dispatcher = dispatcher_for(ctx)
    senders = senders_for(ctx)
    now = ctx.clock.now()
    recovered = _recover_stuck(ctx, dispatcher, senders, now)
    claim_total = ClaimStats()
    recorded = RecordStats()
    budget = max(2.0, 2 * ctx.settings.dispatch_interval_seconds) if wait_seconds is None else wait_seconds
    give_up = time.monotonic() + (budget if wait else 0.0)
    # A backlog drains at the rate the senders and limits allow, not one claim per tick: while rows are due,
    # each batch of finished sends frees slots that the next claim fills, until the pass's time is up.
    more_due = _claim_round(ctx, dispatcher, senders, now, batch_size, max_batches, claim_total)
    while True:
        batch = _drain(dispatcher, 500)
        if batch:
            _record_outcomes(ctx, batch, recorded)
            if more_due and wait and time.monotonic() < give_up:
                more_due = _claim_round(ctx, dispatcher, senders, now, batch_size, max_batches, claim_total)
            continue
        with dispatcher.lock:
            busy = sum(dispatcher.inflight.values())
        if not wait or time.monotonic() >= give_up or (busy == 0 and not more_due):
            break
        if busy == 0:  # due rows, free slots, nothing on the line: claim them now
            more_due = _claim_round(ctx, dispatcher, senders, now, batch_size, max_batches, claim_total)
            continue
        try:
            first = dispatcher.results.get(timeout=min(0.05, max(0.0, give_up - time.monotonic())))
        except queue.Empty:
            continue
        dispatcher.results.put(first)
    dispatcher.limiter.forget_idle(now)
    with dispatcher.lock:
        in_flight = sum(dispatcher.inflight.values())
    return {
        "claimed": claim_total.claimed,
        "sent": recorded.sent,
        "simulated": recorded.simulated,
        "retried": recorded.retried,
        "failed": recorded.failed,
        "held_quiet_hours": claim_total.held_quiet,
        "held_rate_limit": claim_total.held_rate,
        "recovered": recovered,
        "late_results": recorded.late,
        "in_flight": in_flight,
        "latencies": recorded.latencies,
    }


_NEXT_DUE = select(func.min(_OUTBOX_T.c.next_attempt_at)).where(
    _OUTBOX_T.c.status == MessageStatus.PENDING.value
)


def next_due(ctx: AppContext) -> datetime | None:
    """When the next pending message falls due (possibly already past): the runner keeps pace with it, so a
    backlog is sent pass after pass without waiting for the tick."""
    with ctx.db.connect() as conn:
        due = conn.execute(_NEXT_DUE).scalar()
    if isinstance(due, str):
        due = datetime.fromisoformat(due)
    if due is not None and due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    return due


def apply_status(session: Session, row: OutboxMessage, status: StatusResult, now: datetime, via: str) -> bool:
    """Apply a provider's delivery status (poll or callback) if it moves the message forward."""
    row.status_checked_at = now
    if status.price is not None:
        row.price = status.price
        row.currency = status.currency or row.currency
    if status.segments:
        row.segments = status.segments
    if not can_move(row.status, status.status):
        return False
    row.status = status.status
    row.updated_at = now
    if (
        status.status in (MessageStatus.DELIVERED.value, MessageStatus.READ.value)
        and row.delivered_at is None
    ):
        row.delivered_at = now
    # Twilio prices a message after its final status, and neither callbacks nor polls carry it then.
    schedule_price_lookup(row, now)
    if status.status in FAILED_STATUSES:
        row.error_code = (status.error_code or "")[:40] or None
        row.error_text = status.error_text or f"provider reported {status.status}"
        record(
            session,
            "message_failed",
            now,
            incident_id=row.incident_id,
            escalation_id=row.escalation_id,
            message=f"{row.channel} to {row.address} {status.status} ({via}): {row.error_text}",
            data={"message_id": row.id, "error_code": status.error_code, "via": via},
        )
        if row.page_id is not None:
            _advance_page(session, row.page_id, now, f"{row.channel} {status.status}", row.chain_step)
    else:
        record(
            session,
            "message_status",
            now,
            incident_id=row.incident_id,
            escalation_id=row.escalation_id,
            message=f"{row.channel} to {row.address}: {status.status}",
            data={"message_id": row.id, "status": status.status, "via": via},
        )
    return True


def poll_pass(ctx: AppContext, *, limit: int = 100) -> dict[str, Any]:
    """Delivery status and inbound replies from providers, for sites without webhooks."""
    if not ctx.settings.delivery_polling:
        return {"polled": 0, "updated": 0, "inbound": 0, "errors": 0}
    senders = senders_for(ctx).senders
    pollable = [
        name for name, s in senders.items() if s.capabilities.supports_status_poll and not s.simulated
    ]
    now = ctx.clock.now()
    recheck = now - timedelta(seconds=max(ctx.settings.poll_interval_seconds, 1.0))
    with write_session(ctx.sessions) as session:
        due = [
            (r.id, r.channel, r.provider_id)
            for r in session.execute(
                select(OutboxMessage)
                .where(
                    OutboxMessage.status == MessageStatus.SENT.value,
                    OutboxMessage.provider_id.is_not(None),
                    OutboxMessage.channel.in_(pollable or ["-"]),
                    OutboxMessage.simulated.is_(False),
                    or_(
                        OutboxMessage.status_checked_at.is_(None), OutboxMessage.status_checked_at <= recheck
                    ),
                    OutboxMessage.sent_at >= now - timedelta(days=2),
                )
                .order_by(OutboxMessage.status_checked_at.is_not(None), OutboxMessage.id)
                .limit(limit)
            ).scalars()
        ]
    answers: list[tuple[int, StatusResult]] = []
    errors = 0
    for message_id, channel, provider_id in due:
        try:
            answers.append((message_id, senders[channel].fetch_status(str(provider_id))))
        except SendError as exc:
            errors += 1
            log.warning("status poll for message %s failed: %s", message_id, exc.text)
    updated = 0
    if answers:
        with write_session(ctx.sessions) as session:
            rows = {
                r.id: r
                for r in session.execute(
                    select(OutboxMessage).where(OutboxMessage.id.in_([m for m, _ in answers]))
                ).scalars()
            }
            lock_incidents(
                session,
                [
                    rows[m].incident_id
                    for m, a in answers
                    if m in rows and a.status in FAILED_STATUSES and rows[m].page_id is not None
                ],
            )
            for message_id, answer in answers:
                row = rows.get(message_id)
                if row is not None and apply_status(session, row, answer, now, "poll"):
                    updated += 1
    inbound = 0
    from engine import replies

    for name, sender in senders.items():
        fetch = getattr(sender, "fetch_inbound", None)
        if sender.simulated or not sender.capabilities.supports_inbound or fetch is None:
            continue
        try:
            items = fetch(set(), limit)
        except SendError as exc:
            errors += 1
            log.warning("inbound poll on %s failed: %s", name, exc.text)
            continue
        if not items:
            continue
        with write_session(ctx.sessions) as session:
            known = set(
                session.execute(
                    select(InboundMessage.provider_id).where(
                        InboundMessage.provider_id.in_([i.provider_id for i in items])
                    )
                ).scalars()
            )
        for item in reversed(items):  # oldest first, so "1" acknowledges in the order people answered
            if item.provider_id in known:
                continue
            replies.handle_inbound(
                ctx,
                item.channel,
                item.from_address,
                item.body,
                provider_id=item.provider_id,
                to_address=item.to_address,
            )
            inbound += 1
    return {"polled": len(due), "updated": updated, "inbound": inbound, "errors": errors}
