"""Reaching one person: their channel chain, one message at a time, until they respond or it runs out.

A Page is one person's share of one paging round (escalation, level, repeat). Its chain is built when the page
starts: the person's preferred channel, then their fallback channels, skipping a channel with no contact
address, one they disabled and one they opted out of (STOP). Each step writes one outbox row; the dispatcher
(engine.dispatch) sends it. A failed send moves to the next step at once (the dispatcher calls `advance_page`);
a sent message that needs confirmation waits its step's window (the person's `confirm_wait_seconds` for the
first channel, `fallback_wait_seconds` after) and then the confirm pass moves on, unless the person responded
— acknowledged, or sent any message after the last attempt. When no channel is left the page is EXHAUSTED and
an event tells operators. Quiet hours: a non-critical message waits in the outbox (`next_attempt_at` = the end
of the person's quiet hours, `hold_reason` "quiet_hours"); a critical one goes at once.

Every outbox key is `page:{escalation}:{level}:{repeat}:{person}:{step}`, written with INSERT … ON CONFLICT
DO NOTHING, so two engines advancing the same page can never send the same step twice.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session, make_transient_to_detached

from engine import timeline
from engine.claims import (
    EscalationRow,
    IncidentRow,
    claim_due_pages,
    insert_ignore,
    insert_ignore_many,
)
from engine.db import write_session
from engine.hours import quiet_hours_end
from engine.models import (
    Channel,
    Escalation,
    EscalationState,
    InboundMessage,
    Incident,
    MessageStatus,
    OutboxMessage,
    Page,
    PageStatus,
    Person,
)
from engine.prepared import Prepared

if TYPE_CHECKING:
    from engine.context import AppContext

log = logging.getLogger(__name__)

# The escalate pass works on plain rows (engine.claims); everything else on ORM instances.
AnyEscalation = Escalation | EscalationRow
AnyIncident = Incident | IncidentRow

OPEN_PAGE_STATUSES = (PageStatus.ACTIVE.value, PageStatus.HELD.value)
# A step whose message has not gone out yet (dispatcher busy, rate limit) is looked at again after this.
UNSENT_RECHECK_SECONDS = 30
SENT_STATUSES = (MessageStatus.SENT.value, MessageStatus.DELIVERED.value, MessageStatus.READ.value)
FAILED_STATUSES = (MessageStatus.FAILED.value, MessageStatus.UNDELIVERED.value, MessageStatus.CANCELLED.value)


# --------------------------------------------------------------------------------------------------------
# The chain
# --------------------------------------------------------------------------------------------------------


def contact_for(person: Person, channel: str) -> str | None:
    """The person's address on `channel`, or None when they have none there."""
    if channel in (Channel.SMS, Channel.VOICE):
        return person.phone or None
    if channel == Channel.WHATSAPP:
        return person.whatsapp or person.phone or None
    if channel == Channel.EMAIL:
        return person.email or None
    if channel == Channel.CONSOLE:
        return person.handle  # a pop-up on the console of whoever signs in as this person
    return None  # webhooks are address targets, not a person's channel


def build_chain(person: Person, critical: bool = False) -> list[dict[str, Any]]:
    """The channels to try for `person`, in order: [{"channel", "address", "wait_seconds"}, …].

    Preferred first, then fallbacks; a channel appears once; no contact, disabled or opted out: skipped.
    `critical` does not bring back an opted-out channel (a STOP is the person's legal choice) — it only lets
    the page through quiet hours (see start_page).
    """
    del critical  # part of the contract; quiet hours are applied per message, not when the chain is built
    disabled = {str(c) for c in (person.disabled_channels or [])}
    opted_out = {str(c) for c in (person.opted_out_channels or [])}
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()
    for channel in [person.preferred_channel, *(person.fallback_channels or [])]:
        channel = str(channel)
        if channel in seen or channel in disabled or channel in opted_out:
            continue
        seen.add(channel)
        address = contact_for(person, channel)
        if not address:
            continue
        wait = person.confirm_wait_seconds if not chain else person.fallback_wait_seconds
        chain.append({"channel": channel, "address": address, "wait_seconds": int(wait)})
    return chain


def page_key(escalation_id: int | None, level: int, repeat_no: int, person_id: int | None, step: int) -> str:
    return f"page:{escalation_id}:{level}:{repeat_no}:{person_id}:{step}"


# --------------------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------------------


def incident_context(incident: AnyIncident) -> dict[str, Any]:
    return {
        "incident_id": incident.id,
        "key": incident.key,
        "summary": incident.summary,
        "details": incident.details,
        "severity": incident.severity,
        "category": incident.category,
        "site": incident.site,
        "status": incident.status,
        "source": incident.source,
    }


def render_message(
    session: Session,
    kind: str,
    channel: str,
    language: str,
    context: dict[str, Any],
    now: datetime | None = None,
) -> tuple[str, str, str | None]:
    """(subject, body, body_html) from engine.templates: an operator's template, else the shipped one, else a
    built-in text, so a broken template never costs a page. With `now`, a template that failed is reported on
    the incident's timeline (`template_error`)."""
    from engine import templates

    subject, body, html, _ = templates.render_template(session, kind, channel, language, context, now=now)
    return str(subject), str(body), html


def _quiet_until(person: Person | None, at: datetime, critical: bool) -> datetime | None:
    """When a non-critical message to `person` must wait for their quiet hours to end, the end; else None."""
    if critical or person is None or not person.quiet_start or not person.quiet_end:
        return None
    try:
        return quiet_hours_end(at, person.quiet_start, person.quiet_end, person.timezone)
    except Exception:  # a bad quiet-hours setting must not stop a page; the config check reports it
        log.warning("ignoring unusable quiet hours for person %s", person.id)
        return None


def write_outbox(
    session: Session,
    *,
    key: str,
    kind: str,
    now: datetime,
    channel: str,
    address: str,
    subject: str,
    body: str,
    body_html: str | None = None,
    incident_id: int | None = None,
    escalation_id: int | None = None,
    page_id: int | None = None,
    person_id: int | None = None,
    level: int | None = None,
    chain_step: int | None = None,
    critical: bool = False,
    send_at: datetime | None = None,
    hold_reason: str | None = None,
) -> int | None:
    """One outbox row, exactly once per key: its id, or None when that key was already written."""
    row = _outbox_values(
        key=key,
        kind=kind,
        now=now,
        channel=channel,
        address=address,
        subject=subject,
        body=body,
        body_html=body_html,
        incident_id=incident_id,
        escalation_id=escalation_id,
        page_id=page_id,
        person_id=person_id,
        level=level,
        chain_step=chain_step,
        critical=critical,
        send_at=send_at,
        hold_reason=hold_reason,
    )
    written = insert_ignore(session, OutboxMessage, [row], ["idempotency_key"], returning=["id"])
    return int(written[0][0]) if written else None


def _outbox_values(
    *,
    key: str,
    kind: str,
    now: datetime,
    channel: str,
    address: str,
    subject: str,
    body: str,
    body_html: str | None,
    incident_id: int | None,
    escalation_id: int | None,
    page_id: int | None,
    person_id: int | None,
    level: int | None,
    chain_step: int | None,
    critical: bool,
    send_at: datetime | None,
    hold_reason: str | None,
) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "kind": kind,
        "incident_id": incident_id,
        "escalation_id": escalation_id,
        "page_id": page_id,
        "person_id": person_id,
        "level": level,
        "chain_step": chain_step,
        "channel": channel,
        "address": address,
        "subject": subject[:500],
        "body": body,
        "body_html": body_html,
        "critical": critical,
        "status": MessageStatus.PENDING.value,
        "next_attempt_at": send_at or now,
        "hold_reason": hold_reason,
        "created_at": now,
        "updated_at": now,
        "attempts": 0,
        "simulated": False,
    }


def _write_step(
    session: Session, page: Page, person: Person | None, incident: AnyIncident, now: datetime
) -> tuple[int | None, datetime | None]:
    """Write the message for the page's current step; (outbox id, held-until)."""
    entry = page.chain[page.step]
    channel, address = str(entry["channel"]), str(entry["address"])
    held_until = _quiet_until(person, now, page.critical)
    context = incident_context(incident) | {
        "level": page.level,
        "repeat_no": page.repeat_no,
        "reply_code": page.reply_code,
        "person_name": person.name if person else "",
        "channel": channel,
    }
    language = person.language if person else incident.reporter_language
    subject, body, html = render_message(session, "page", channel, language, context, now)
    msg_id = write_outbox(
        session,
        key=page_key(page.escalation_id, page.level, page.repeat_no, page.person_id, page.step),
        kind="page",
        now=now,
        channel=channel,
        address=address,
        subject=subject,
        body=body,
        body_html=html,
        incident_id=page.incident_id,
        escalation_id=page.escalation_id,
        page_id=page.id,
        person_id=page.person_id,
        level=page.level,
        chain_step=page.step,
        critical=page.critical,
        send_at=held_until,
        hold_reason="quiet_hours" if held_until else None,
    )
    attempt_at = held_until or now
    page.last_attempt_at = attempt_at
    page.status = PageStatus.HELD.value if held_until else PageStatus.ACTIVE.value
    wait = int(entry.get("wait_seconds", 0))
    # A level that asks for no acknowledgement still has its page looked at once the message should be out:
    # sent, the chain is done (status "sent"); failed, the next channel.
    page.next_check_at = attempt_at + timedelta(seconds=wait) if page.require_confirmation else attempt_at
    if held_until:
        timeline.record(
            session,
            "page_held",
            now,
            incident_id=page.incident_id,
            escalation_id=page.escalation_id,
            message=f"{person.name if person else 'page'}: quiet hours until {held_until.isoformat()}",
            data={"page_id": page.id, "person_id": page.person_id, "until": held_until.isoformat()},
        )
    return msg_id, held_until


def new_reply_code() -> str:
    return f"{secrets.randbelow(900_000) + 100_000}"


def _page_values(
    escalation: AnyEscalation,
    level: int,
    repeat_no: int,
    person: Person,
    now: datetime,
    require_confirmation: bool,
    critical: bool,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    chain = build_chain(person, critical)
    values: dict[str, Any] = {
        "escalation_id": escalation.id,
        "incident_id": escalation.incident_id,
        "person_id": person.id,
        "level": level,
        "repeat_no": repeat_no,
        "chain": chain,
        "step": 0,
        "status": PageStatus.ACTIVE.value if chain else PageStatus.EXHAUSTED.value,
        "require_confirmation": require_confirmation,
        "critical": critical,
        "reply_code": new_reply_code(),
        "created_at": now,
        "last_attempt_at": None,
        "next_check_at": None,
    }
    if chain:  # the first step's timing goes in with the row, so writing its message changes nothing more
        held_until = _quiet_until(person, now, critical)
        attempt_at = held_until or now
        values["status"] = PageStatus.HELD.value if held_until else PageStatus.ACTIVE.value
        values["last_attempt_at"] = attempt_at
        wait = timedelta(seconds=int(chain[0]["wait_seconds"]))
        values["next_check_at"] = attempt_at + wait if require_confirmation else attempt_at
    return chain, values


_PAGE_KEY = ("escalation_id", "level", "repeat_no", "person_id")


class PageConflict(Exception):
    """A buffered page was already in the database (another engine or an earlier pass wrote it)."""


class PageBuffer:
    """Pages (and their first messages) of one escalate batch, written together: a few multi-row INSERTs
    instead of two statements per person. Events keep their place on the timeline: they are recorded when
    the page is buffered and get the page id when the batch is written."""

    CHUNK = 400

    def __init__(self) -> None:
        self._items: list[tuple[dict[str, Any], Person, AnyIncident, Any]] = []
        self._renders: dict[tuple[Any, ...], tuple[str, str, str | None]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(
        self, session: Session, values: dict[str, Any], person: Person, incident: AnyIncident, now: datetime
    ) -> None:
        """Buffer one page (its row values) and, with the batch, its first message."""
        event: dict[str, Any] | None = None  # the data of the event that gets the page id once written
        if not values["chain"]:
            event = _record_exhausted_at_start(
                session,
                values["incident_id"],
                values["escalation_id"],
                None,
                person,
                now,
                int(values["level"]),
            )
        elif values["status"] == PageStatus.HELD.value:
            held_until = values["last_attempt_at"]
            event = timeline.emit(
                session,
                "page_held",
                now,
                incident_id=values["incident_id"],
                escalation_id=values["escalation_id"],
                message=f"{person.name}: quiet hours until {held_until.isoformat()}",
                data={"page_id": None, "person_id": values["person_id"], "until": held_until.isoformat()},
            )
        self._items.append((values, person, incident, event))

    def _render(
        self, session: Session, channel: str, language: str, context: dict[str, Any], now: datetime
    ) -> tuple[str, str, str | None]:
        key = (channel, language, *sorted((k, repr(v)) for k, v in context.items()))
        found = self._renders.get(key)
        if found is None:
            found = render_message(session, "page", channel, language, context, now)
            self._renders[key] = found
        return found

    def flush(self, session: Session, now: datetime) -> int:
        """Write every buffered page and first message; how many pages. PageConflict if any existed."""
        items, self._items = self._items, []
        conn = session.connection()
        key_cols = _PAGE_KEY
        for start in range(0, len(items), self.CHUNK):
            chunk = items[start : start + self.CHUNK]
            ids = self._write_pages(conn, [v for v, _p, _i, _e in chunk])
            for values, _person, _incident, event in chunk:
                if event is not None:
                    event["page_id"] = ids[tuple(values[c] for c in key_cols)]
            # The batch's ORM changes go out now: rendering with a clean session is cheap (the template
            # cache looks at the session's pending changes on every render).
            session.flush()
            outbox: list[dict[str, Any]] = []
            for values, person, incident, _event in chunk:
                page_id = ids[tuple(values[c] for c in key_cols)]
                chain = values["chain"]
                if not chain:
                    continue
                entry = chain[0]
                channel, address = str(entry["channel"]), str(entry["address"])
                held_until = values["last_attempt_at"] if values["status"] == PageStatus.HELD.value else None
                context = incident_context(incident) | {
                    "level": values["level"],
                    "repeat_no": values["repeat_no"],
                    "reply_code": values["reply_code"],
                    "person_name": person.name,
                    "channel": channel,
                }
                subject, body, html = self._render(session, channel, person.language, context, now)
                outbox.append(
                    _outbox_values(
                        key=page_key(
                            values["escalation_id"], values["level"], values["repeat_no"], person.id, 0
                        ),
                        kind="page",
                        now=now,
                        channel=channel,
                        address=address,
                        subject=subject,
                        body=body,
                        body_html=html,
                        incident_id=values["incident_id"],
                        escalation_id=values["escalation_id"],
                        page_id=page_id,
                        person_id=person.id,
                        level=values["level"],
                        chain_step=0,
                        critical=values["critical"],
                        send_at=held_until,
                        hold_reason="quiet_hours" if held_until else None,
                    )
                )
            insert_ignore_many(conn, OutboxMessage, outbox, ["idempotency_key"])
        return len(items)

    def _write_pages(self, conn: Any, rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], int]:
        """Insert the pages; {(escalation, level, repeat, person): page id}. PageConflict if any existed.

        One statement, many rows (executemany: sqlite3 steps one prepared statement per row, psycopg pipelines
        them; both measured faster here than multi-row VALUES); the statement is compiled once per process.
        A page that was already there is skipped by ON CONFLICT DO NOTHING and shows in the row count."""
        if insert_ignore_many(conn, Page, rows, _PAGE_KEY) != len(rows):
            raise PageConflict("a page of this batch was already written")
        return self._existing(conn, sorted({v["escalation_id"] for v in rows}))

    @staticmethod
    def _existing(conn: Any, escalation_ids: list[int]) -> dict[tuple[Any, ...], int]:
        """{(escalation, level, repeat, person): page id} for the pages of these escalations."""
        found = conn.execute(
            select(
                _PAGE.c.id, _PAGE.c.escalation_id, _PAGE.c.level, _PAGE.c.repeat_no, _PAGE.c.person_id
            ).where(_PAGE.c.escalation_id.in_(escalation_ids))
        )
        return {tuple(r[1:]): int(r[0]) for r in found}


def start_page(
    session: Session,
    now: datetime,
    escalation: AnyEscalation,
    level: int,
    repeat_no: int,
    person: Person,
    *,
    incident: AnyIncident | None = None,
    require_confirmation: bool = True,
    critical: bool | None = None,
    buffer: PageBuffer | None = None,
) -> Page | None:
    """Write the Page and its first outbox message; None when this page was already written (another engine,
    or a retried pass). A person with no usable channel gets an EXHAUSTED page and an event.

    With a `buffer` (the escalate pass's batch) nothing is written yet and None is returned: the page and its
    message go in with the rest of the batch at `buffer.flush`, which raises PageConflict when any of them was
    already written (the caller then processes the batch row by row)."""
    incident = incident or escalation.incident
    if critical is None:
        critical = incident.severity == "critical"
    chain, values = _page_values(escalation, level, repeat_no, person, now, require_confirmation, critical)
    if buffer is not None:
        buffer.add(session, values, person, incident, now)
        return None
    written = insert_ignore(
        session, Page, [values], ["escalation_id", "level", "repeat_no", "person_id"], returning=["id"]
    )
    page: Page | None = None
    if written:
        # The row as written, joined to the session without reading it back.
        page = Page(id=int(written[0][0]), **values)
        make_transient_to_detached(page)
        session.add(page)
    if page is None:
        return None
    if not chain:
        _record_exhausted_at_start(session, page.incident_id, page.escalation_id, page.id, person, now, level)
        return page
    _write_step(session, page, person, incident, now)
    return page


def _record_exhausted_at_start(
    session: Session,
    incident_id: int | None,
    escalation_id: int | None,
    page_id: int | None,
    person: Person,
    now: datetime,
    level: int,
) -> dict[str, Any]:
    return timeline.emit(
        session,
        "page_exhausted",
        now,
        incident_id=incident_id,
        escalation_id=escalation_id,
        message=f"{person.name} has no channel that can be used (no contact, disabled or opted out)",
        data={"page_id": page_id, "person_id": person.id, "level": level, "channels": []},
    )


def advance_page(
    session: Session, page: Page, now: datetime, reason: str, *, from_step: int | None = None
) -> OutboxMessage | None:
    """Move the page to its next channel and write that message; EXHAUSTED (and an event) when none is left.

    `from_step` (the chain step of the message that failed or timed out) makes the move happen once: a late
    failure report for a step the page already left does nothing. Returns the new message, or None.
    """
    current = page.step if from_step is None else from_step
    moved = session.execute(
        update(Page)
        .where(Page.id == page.id, Page.step == current, Page.status.in_(OPEN_PAGE_STATUSES))
        .values(step=current + 1)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(page)
        return None
    session.refresh(page)
    old = page.chain[current] if current < len(page.chain) else {}
    person = session.get(Person, page.person_id) if page.person_id is not None else None
    who = person.name if person else "page"
    if page.step >= len(page.chain):
        page.status = PageStatus.EXHAUSTED.value
        page.next_check_at = None
        chain_ended(session, page.escalation_id, now)
        timeline.record(
            session,
            "page_exhausted",
            now,
            incident_id=page.incident_id,
            escalation_id=page.escalation_id,
            message=f"{who}: every channel tried, no confirmation",
            data={
                "page_id": page.id,
                "person_id": page.person_id,
                "level": page.level,
                "reason": reason,
                "channels": [c["channel"] for c in page.chain],
            },
        )
        return None
    incident = session.get(Incident, page.incident_id)
    assert incident is not None
    msg_id, _held = _write_step(session, page, person, incident, now)
    new = page.chain[page.step]
    timeline.record(
        session,
        "page_fallback",
        now,
        incident_id=page.incident_id,
        escalation_id=page.escalation_id,
        message=f"{who}: {old.get('channel', '?')} {reason}; trying {new['channel']}",
        data={
            "page_id": page.id,
            "person_id": page.person_id,
            "from": old.get("channel"),
            "to": new["channel"],
            "step": page.step,
            "reason": reason,
        },
    )
    return session.get(OutboxMessage, msg_id) if msg_id is not None else None


_OUTBOX: Any = OutboxMessage.__table__
_PAGE: Any = Page.__table__
_CANCEL_PAGE_MESSAGES = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.page_id == bindparam("b_page_id"),
        _OUTBOX.c.status == MessageStatus.PENDING.value,
    )
    .values(status=MessageStatus.CANCELLED.value, updated_at=bindparam("b_now"))
)
# Ending all paging for incidents: every open page of every escalation (a chain still running after its
# escalation ran out of levels included), and every page message not yet handed to a provider.
_STOP_PAGES = (
    update(_PAGE)
    .where(
        _PAGE.c.incident_id.in_(bindparam("b_ids", expanding=True)),
        _PAGE.c.status.in_(OPEN_PAGE_STATUSES),
    )
    .values(status=PageStatus.CANCELLED.value, next_check_at=None)
)
_STOP_PAGE_MESSAGES = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.incident_id.in_(bindparam("b_ids", expanding=True)),
        _OUTBOX.c.status == MessageStatus.PENDING.value,
        _OUTBOX.c.kind == "page",
    )
    .values(status=MessageStatus.CANCELLED.value, updated_at=bindparam("b_now"))
)
# Acknowledging one incident is a hot path: these run as driver SQL (engine.prepared).
_STOP_PAGES_RUN = Prepared(_STOP_PAGES)
_STOP_PAGE_MESSAGES_RUN = Prepared(_STOP_PAGE_MESSAGES)
# Incident statuses in which people are paged: acknowledged, in progress, resolved and cancelled end it.
PAGING_STATUSES = ("open", "escalated")
# Ids per statement when stopping many incidents at once (far below SQLite's limit on bound parameters).
_STOP_CHUNK = 1000


def stop_paging(session: Session, incident_ids: Sequence[int], now: datetime) -> None:
    """Acknowledge, resolve or cancel: every open page of these incidents closes and every page message not
    yet handed to a provider is withdrawn, in the caller's transaction (so nothing pages after its commit)."""
    conn = session.connection()
    ids = sorted(set(incident_ids))
    for start in range(0, len(ids), _STOP_CHUNK):
        chunk = ids[start : start + _STOP_CHUNK]
        _STOP_PAGES_RUN.run(conn, {"b_ids": chunk})
        _STOP_PAGE_MESSAGES_RUN.run(conn, {"b_ids": chunk, "b_now": now})


_ESC_T: Any = Escalation.__table__
_NUDGE = (
    update(_ESC_T)
    .where(
        _ESC_T.c.id == bindparam("b_id"),
        _ESC_T.c.levels_done_at.is_not(None),
        _ESC_T.c.state == EscalationState.ACTIVE.value,
    )
    .values(next_action_at=bindparam("b_now"))
)


def chain_ended(session: Session, escalation_id: int | None, now: datetime) -> None:
    """A page's chain ended (confirmed, sent, exhausted): an escalation with no levels left that waits for its
    chains looks again now, so it times out as soon as the last one ends."""
    if escalation_id is not None:
        session.connection().execute(_NUDGE, {"b_id": escalation_id, "b_now": now})


def end_departed_page(session: Session, page: Page, now: datetime) -> None:
    """The person was deleted or made inactive while their chain ran: it stops, and its unsent messages are
    withdrawn (nobody pages someone who has left the centre)."""
    page.status = PageStatus.CANCELLED.value
    page.next_check_at = None
    session.connection().execute(_CANCEL_PAGE_MESSAGES, {"b_page_id": page.id, "b_now": now})
    chain_ended(session, page.escalation_id, now)
    timeline.record(
        session,
        "page_cancelled",
        now,
        incident_id=page.incident_id,
        escalation_id=page.escalation_id,
        message="page stopped: the person paged was deleted or made inactive",
        data={"page_id": page.id, "person_id": page.person_id},
    )


def open_pages(session: Session, escalation_id: int) -> list[int]:
    """Ids of the escalation's pages whose chains are still running (active or held)."""
    return list(
        session.scalars(
            select(Page.id).where(Page.escalation_id == escalation_id, Page.status.in_(OPEN_PAGE_STATUSES))
        )
    )


def next_page_check(session: Session, escalation_id: int) -> datetime | None:
    """The earliest check time of the escalation's open pages."""
    found: datetime | None = session.scalar(
        select(func.min(Page.next_check_at)).where(
            Page.escalation_id == escalation_id, Page.status.in_(OPEN_PAGE_STATUSES)
        )
    )
    if found is not None and found.tzinfo is None:  # SQLite gives an aggregate without the column's type
        found = found.replace(tzinfo=UTC)
    return found


def confirm_page(session: Session, page: Page, now: datetime, method: str) -> bool:
    """The person responded: stop their chain (messages not yet sent are cancelled). False if already closed."""
    done = session.execute(
        update(Page)
        .where(Page.id == page.id, Page.status.in_(OPEN_PAGE_STATUSES))
        .values(
            status=PageStatus.CONFIRMED.value,
            confirmed_at=now,
            confirmation_method=method,
            next_check_at=None,
        )
    )
    session.refresh(page)
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.connection().execute(_CANCEL_PAGE_MESSAGES, {"b_page_id": page.id, "b_now": now})
    chain_ended(session, page.escalation_id, now)
    timeline.record(
        session,
        "page_confirmed",
        now,
        incident_id=page.incident_id,
        escalation_id=page.escalation_id,
        message=f"page confirmed by {method}",
        data={"page_id": page.id, "person_id": page.person_id, "method": method, "step": page.step},
    )
    return True


def has_responded(session: Session, page: Page) -> bool:
    """Any inbound message from the person since the last attempt counts as a response."""
    if page.person_id is None or page.last_attempt_at is None:
        return False
    addresses = [str(c["address"]) for c in page.chain]
    who = or_(InboundMessage.person_id == page.person_id, InboundMessage.from_address.in_(addresses))
    found = session.scalars(
        select(InboundMessage.id).where(who, InboundMessage.received_at >= page.last_attempt_at).limit(1)
    ).first()
    return found is not None


# --------------------------------------------------------------------------------------------------------
# Notices: tell everyone already paged that the incident was acknowledged or resolved
# --------------------------------------------------------------------------------------------------------


_PG, _PS = Page.__table__.c, Person.__table__.c
# Every page of the incident with its person, newest first, in one query (the latest page per person wins).
# Only people a page actually reached are told: someone whose page was still held for quiet hours never
# heard of the incident, and a notice would be the first they hear of it.
REACHED = (
    select(_OUTBOX.c.id)
    .where(
        _OUTBOX.c.incident_id == _PG.incident_id,
        _OUTBOX.c.person_id == _PG.person_id,
        _OUTBOX.c.kind == "page",
        _OUTBOX.c.status.in_(SENT_STATUSES),
    )
    .exists()
)
_NOTICE_QUERY = (
    select(_PG.person_id, _PG.escalation_id, _PG.chain, _PG.step, Person)
    .join(Person, Person.id == _PG.person_id)
    .where(_PG.incident_id == bindparam("incident_id"), _PG.person_id.is_not(None), REACHED)
    .order_by(_PG.id.desc())
)


def notice_row(
    session: Session,
    incident: AnyIncident,
    page: Any,
    person: Person,
    now: datetime,
    *,
    what: str,
    by: str,
    critical: bool,
    base: dict[str, Any],
) -> dict[str, Any] | None:
    """The outbox row telling one paged person (`page`: their latest page's escalation_id, chain and step)
    that the incident was acknowledged or resolved; None for an inactive person or the one who acted."""
    if not person.active or by in (person.handle, person.name):
        return None
    # The step that reached them; a chain that ran out ends on its last channel.
    entry = page.chain[min(page.step, len(page.chain) - 1)]
    channel = str(entry["channel"])
    if channel in (person.opted_out_channels or []) or channel in (person.disabled_channels or []):
        usable = build_chain(person)
        if not usable:
            return None
        entry = usable[0]
        channel = str(entry["channel"])
    held = _quiet_until(person, now, critical)
    context = base | {"by": by, "person_name": person.name, "channel": channel}
    kind = "ack_notice" if what == "ack" else "resolve_notice"
    subject, body, html = render_message(session, kind, channel, person.language, context, now)
    return {
        "idempotency_key": f"notice:{what}:{incident.id}:{person.id}",
        "kind": "notice",
        "incident_id": incident.id,
        "escalation_id": page.escalation_id,
        "page_id": None,
        "person_id": person.id,
        "level": None,
        "chain_step": None,
        "channel": channel,
        "address": str(entry["address"]),
        "subject": subject[:500],
        "body": body,
        "body_html": html,
        "critical": critical,
        "status": MessageStatus.PENDING.value,
        "next_attempt_at": held or now,
        "hold_reason": "quiet_hours" if held else None,
        "created_at": now,
        "updated_at": now,
    }


def write_notices(session: Session, incident: AnyIncident, now: datetime, what: str, by: str) -> int:
    """Tell everyone already paged that the incident was acknowledged (`what` "ack") or resolved, on the
    channel that last reached them; the person who acted is not told what they just did. One query for the
    pages and their people, one INSERT … ON CONFLICT DO NOTHING for all notices (keys
    `notice:{what}:{incident}:{person}`), quiet hours respected. Returns the number of notices offered (a key already written is skipped)."""
    latest: dict[int, Any] = {}
    for r in session.execute(_NOTICE_QUERY, {"incident_id": incident.id}):
        if r.chain and r.person_id not in latest:
            latest[r.person_id] = r
    if not latest:
        return 0
    critical = incident.severity == "critical"
    base = incident_context(incident)
    rows: list[dict[str, Any]] = []
    for r in latest.values():
        row = notice_row(session, incident, r, r.Person, now, what=what, by=by, critical=critical, base=base)
        if row is not None:
            rows.append(row)
    if rows:
        insert_ignore(session, OutboxMessage, rows, ["idempotency_key"])
    return len(rows)


# --------------------------------------------------------------------------------------------------------
# The confirm pass
# --------------------------------------------------------------------------------------------------------


def check_page(session: Session, page: Page, now: datetime, incident_status: str | None = None) -> str:
    """Look at one page whose check time has come; returns what happened (for logs and tests).

    The page's chain goes on whatever became of its escalation (a level that timed out still has its people
    tried to the end of their chains); only the incident being acknowledged, resolved or cancelled ends it."""
    if incident_status is None:
        incident_status = session.scalar(select(Incident.status).where(Incident.id == page.incident_id))
    if incident_status not in PAGING_STATUSES:
        page.status = PageStatus.CANCELLED.value
        page.next_check_at = None
        return "cancelled"
    person = session.get(Person, page.person_id) if page.person_id is not None else None
    if person is None or not person.active:
        end_departed_page(session, page, now)
        return "departed"
    key = page_key(page.escalation_id, page.level, page.repeat_no, page.person_id, page.step)
    msg = session.scalars(select(OutboxMessage).where(OutboxMessage.idempotency_key == key)).one_or_none()
    wait = timedelta(seconds=int(page.chain[page.step].get("wait_seconds", 0))) if page.chain else timedelta()
    if msg is not None:
        if msg.status in FAILED_STATUSES:
            advance_page(session, page, now, f"failed ({msg.error_code or msg.status})", from_step=page.step)
            return "advanced_after_failure"
        if msg.status not in SENT_STATUSES:
            # Not out yet (held for quiet hours, rate-limited, dispatcher busy): the window starts when it is.
            later = max(msg.next_attempt_at or now, now + timedelta(seconds=UNSENT_RECHECK_SECONDS))
            page.next_check_at = later
            return "waiting_for_send"
        sent_at = msg.sent_at or page.last_attempt_at or now
        if page.last_attempt_at is None or sent_at > page.last_attempt_at:
            page.last_attempt_at = sent_at
        if page.status == PageStatus.HELD:
            page.status = PageStatus.ACTIVE.value
        if not page.require_confirmation:
            page.status = PageStatus.SENT.value
            page.next_check_at = None
            chain_ended(session, page.escalation_id, now)
            return "sent"
        if sent_at + wait > now:
            page.next_check_at = sent_at + wait
            return "waiting"
    if has_responded(session, page):
        confirm_page(session, page, now, "reply")
        return "confirmed"
    advance_page(session, page, now, "not confirmed in time", from_step=page.step)
    return "advanced"


def confirm_pass(ctx: AppContext, limit: int = 500) -> int:
    """Pages whose confirmation window ran out: confirmed if the person responded, else the next channel."""
    now = ctx.clock.now()
    done = 0
    with write_session(ctx.sessions) as session:
        ids = claim_due_pages(session, now, limit)
        found = session.execute(
            select(Page, Incident.status)
            .join(Incident, Incident.id == Page.incident_id)
            .where(Page.id.in_(ids))
            .order_by(Page.id)
        ).all()
        for page, status in found:
            try:
                with session.begin_nested():
                    check_page(session, page, now, status)
                done += 1
            except Exception:
                log.exception("confirm pass: page %s could not be checked; retrying next tick", page.id)
    if done:
        ctx.wake("dispatch")
    return done
