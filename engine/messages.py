"""The message log: every outbox row (pages, notices, reminders, reporter updates, tests), filtered; and the two
things an operator does with one that did not get through — retry it, or send it again on another channel.

Both write a *new* outbox row that the dispatch pass sends like any other (rate limits, quiet hours, the master
switch, retries with backoff), with its own idempotency key:

* `retry` — only a `failed` message (the provider never took it; one it took, even `undelivered`, is never
  sent twice by a retry): the same channel, address and text, key `retry:<id>`, so the same failed message is
  retried once however many people press the button (retry the retry if that fails too).
* `resend` — any message to a person, on another of that person's channels: their address there, key
  `resend:<id>:<channel>`. Refused when the person has no address there, has disabled it or opted out (STOP),
  or the channel is not set up at this site (a simulated channel counts as set up).

Neither is tied to the escalation's page: the person's chain has already moved on, and the new message must
not move it again. Each is in the audit trail and, for a message of an incident, on its timeline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, timeline
from engine.claims import lock_incidents
from engine.context import AppContext
from engine.db import write_session
from engine.errors import InvalidTransition, NotFound, ValidationError
from engine.escalation import notify_work
from engine.models import Channel, Incident, MessageStatus, OutboxMessage, Person
from engine.paging import PAGING_STATUSES
from engine.permissions import Identity

MAX_PAGE = 500
STATUSES = tuple(s.value for s in MessageStatus)
CHANNELS = tuple(c.value for c in Channel)


@dataclass(frozen=True)
class MessageRecord:
    id: int
    kind: str
    incident_id: int | None
    person: str | None  # handle
    person_name: str | None
    channel: str
    address: str
    subject: str
    status: str
    simulated: bool
    attempts: int
    provider_id: str | None
    price: Decimal | None
    currency: str | None
    error: str | None
    hold_reason: str | None
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    idempotency_key: str

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
            elif isinstance(value, Decimal):
                data[key] = str(value)
        return data


def _record(m: OutboxMessage, person: Person | None) -> MessageRecord:
    error = " ".join(x for x in (m.error_code, m.error_text) if x) or None
    return MessageRecord(
        id=m.id,
        kind=m.kind,
        incident_id=m.incident_id,
        person=person.handle if person else None,
        person_name=person.name if person else None,
        channel=m.channel,
        address=m.address,
        subject=m.subject,
        status=m.status,
        simulated=m.simulated,
        attempts=m.attempts,
        provider_id=m.provider_id,
        price=m.price,
        currency=m.currency,
        error=error,
        hold_reason=m.hold_reason,
        created_at=m.created_at,
        sent_at=m.sent_at,
        delivered_at=m.delivered_at,
        idempotency_key=m.idempotency_key,
    )


def search(
    session: Session,
    *,
    status: str | None = None,
    channel: str | None = None,
    person: str | None = None,
    incident_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[MessageRecord]:
    """Messages newest first, by status, channel, person (handle), incident and creation time [since, until)."""
    if status is not None and status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}", field="status")
    if channel is not None and channel not in CHANNELS:
        raise ValidationError(f"channel must be one of {', '.join(CHANNELS)}", field="channel")
    stmt = select(OutboxMessage, Person).outerjoin(Person, Person.id == OutboxMessage.person_id)
    if status is not None:
        stmt = stmt.where(OutboxMessage.status == status)
    if channel is not None:
        stmt = stmt.where(OutboxMessage.channel == channel)
    if person:
        found = session.scalar(select(Person.id).where(Person.handle == person.strip()))
        if found is None:
            raise NotFound(f"no person with handle {person!r}")
        stmt = stmt.where(OutboxMessage.person_id == found)
    if incident_id is not None:
        stmt = stmt.where(OutboxMessage.incident_id == incident_id)
    if since is not None:
        stmt = stmt.where(OutboxMessage.created_at >= since)
    if until is not None:
        stmt = stmt.where(OutboxMessage.created_at < until)
    limit = max(1, min(int(limit), MAX_PAGE))
    stmt = stmt.order_by(OutboxMessage.id.desc()).limit(limit).offset(max(0, int(offset)))
    return [_record(m, p) for m, p in session.execute(stmt)]


def _message(session: Session, message_id: int) -> OutboxMessage:
    """The message, with its incident locked first (the one lock order, engine.claims.lock_incidents) and a
    page refused once its incident no longer pages: acknowledge, resolve and cancel end all paging, and no page
    is written after that commit — not by a retry either."""
    incident_id = session.scalar(select(OutboxMessage.incident_id).where(OutboxMessage.id == message_id))
    lock_incidents(session, [incident_id])
    row = session.get(OutboxMessage, message_id)
    if row is None:
        raise NotFound(f"no message {message_id}")
    if row.kind == "page" and row.incident_id is not None:
        status = session.scalar(select(Incident.status).where(Incident.id == row.incident_id))
        if status not in PAGING_STATUSES:
            raise InvalidTransition(
                f"message {message_id} is a page for incident {row.incident_id}, which is {status}: "
                "paging for it has ended"
            )
    return row


def _copy(
    session: Session, source: OutboxMessage, now: datetime, *, key: str, channel: str, address: str
) -> OutboxMessage | None:
    """A new pending outbox row with `source`'s text; None when `key` was written before."""
    if session.scalar(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)) is not None:
        return None
    row = OutboxMessage(
        idempotency_key=key,
        kind=source.kind,
        incident_id=source.incident_id,
        person_id=source.person_id,
        level=source.level,
        channel=channel,
        address=address,
        subject=source.subject,
        body=source.body,
        body_html=source.body_html if channel == source.channel or channel == Channel.EMAIL else None,
        template_id=source.template_id,
        critical=source.critical,
        status=MessageStatus.PENDING.value,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row


def _written(
    session: Session, now: datetime, by: Identity, source: OutboxMessage, new: OutboxMessage, action: str
) -> None:
    what = "retried" if action == "message_retried" else f"sent again on {new.channel}"
    message = f"Message {source.id} ({source.channel} to {source.address}) {what} as message {new.id}"
    data = {"message_id": source.id, "new_message_id": new.id, "channel": new.channel}
    audit.record(
        session,
        now,
        by,
        action,
        object_kind="message",
        object_name=str(source.id),
        message=message,
        data=data,
    )
    if source.incident_id is not None:
        timeline.record(
            session, action, now, incident_id=source.incident_id, actor=by.name, message=message, data=data
        )
    notify_work(session, "dispatch")  # other processes' engines send it at once


def retry(ctx: AppContext, by: Identity, message_id: int) -> MessageRecord:
    """A failed message once more, as a new message on the same channel (see the module's text)."""
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        source = _message(session, message_id)
        if source.status != MessageStatus.FAILED.value:
            raise InvalidTransition(
                f"message {message_id} is {source.status}: only a failed message can be retried"
                + (" (the provider took this one)" if source.provider_id else "")
            )
        new = _copy(
            session, source, now, key=f"retry:{source.id}", channel=source.channel, address=source.address
        )
        if new is None:
            raise InvalidTransition(f"message {message_id} has been retried already")
        _written(session, now, by, source, new, "message_retried")
        record = _record(new, session.get(Person, new.person_id) if new.person_id else None)
    ctx.wake("dispatch")
    return record


def _set_up(ctx: AppContext, channel: str) -> str | None:
    """Why `channel` cannot send at this site, or None when it can (for real or simulated)."""
    from engine.channels import senders_for

    sender = senders_for(ctx).get(channel)
    if getattr(sender, "available", True):
        return None
    return str(getattr(sender, "reason", "") or "not set up")


def resend_channels(session: Session, message_id: int) -> list[tuple[str, str]]:
    """The channels `resend` could take this message to, as (channel, address): the person's other channels
    with an address there, neither disabled nor opted out (a chooser's list; whether the site has the channel
    set up is `resend`'s to say). Empty for a message that was not to a person."""
    from engine.paging import contact_for

    source = _message(session, message_id)
    person = session.get(Person, source.person_id) if source.person_id is not None else None
    if person is None:
        return []
    closed = {str(c) for c in (person.disabled_channels or [])} | {
        str(c) for c in (person.opted_out_channels or [])
    }
    found = []
    for channel in CHANNELS:
        address = contact_for(person, channel)
        if channel not in (source.channel, Channel.WEBHOOK) and channel not in closed and address:
            found.append((channel, address))
    return found


def resend(ctx: AppContext, by: Identity, message_id: int, channel: str) -> MessageRecord:
    """The message again, to the same person on `channel` (see the module's text for what is refused)."""
    from engine.paging import contact_for

    if channel not in CHANNELS or channel == Channel.WEBHOOK:
        raise ValidationError(
            f"channel must be one of {', '.join(c for c in CHANNELS if c != 'webhook')}", field="channel"
        )
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        source = _message(session, message_id)
        person = session.get(Person, source.person_id) if source.person_id is not None else None
        if person is None:
            raise ValidationError(f"message {message_id} was not to a person", field="message")
        if channel == source.channel:
            raise ValidationError(
                f"message {message_id} was on {channel} already; retry it instead", field="channel"
            )
        address = contact_for(person, channel)
        if not address:
            raise ValidationError(f"{person.name} has no {channel} address", field="channel")
        if channel in (person.disabled_channels or []) or channel in (person.opted_out_channels or []):
            raise ValidationError(f"{person.name} does not take messages on {channel}", field="channel")
        why = _set_up(ctx, channel)
        if why is not None:
            raise ValidationError(f"{channel} is not set up here: {why}", field="channel")
        new = _copy(
            session, source, now, key=f"resend:{source.id}:{channel}", channel=channel, address=address
        )
        if new is None:
            raise InvalidTransition(f"message {message_id} has been sent on {channel} already")
        _written(session, now, by, source, new, "message_resent")
        record = _record(new, person)
    ctx.wake("dispatch")
    return record
