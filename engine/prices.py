"""The price pass: what each message sent through a provider really cost, as the provider bills it.

Twilio answers a new message or call with `price: null` and fills the price in later: after the message reaches a
final status (delivered, undelivered, failed; a call completed, busy, not answered, …), often some minutes after
it. Status callbacks carry no price, and the poll pass stops asking about a message once its status is final.
So when a message reaches a final status without a price (engine.dispatch.apply_status, for callbacks and polls
alike), `schedule_price_lookup` makes its `next_attempt_at` — unused once a message has left the outbox queue —
the time of a price lookup, and `price_pass` asks the provider then (GET the message or call):

- a price found is stored with its currency; statistics' cost is the sum of these;
- no price yet: asked again later, at intervals growing with the message's age (1 minute, up to 1 hour);
- 24 hours after the message was sent (or when the provider no longer knows the message) the lookups stop,
  with a `message_price_missing` event on the incident's timeline; statistics count the message as not priced.

Lookups are claimed like outbox rows (`FOR UPDATE SKIP LOCKED`, the due time moved on in the same transaction),
so two engines never ask about the same message at once, and no transaction is open while the provider answers.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from engine.channels import SendError, senders_for
from engine.channels.base import StatusResult
from engine.context import AppContext
from engine.db import write_session
from engine.models import MessageStatus, OutboxMessage
from engine.timeline import record

log = logging.getLogger(__name__)

# Statuses after which a provider bills a message and nothing about it changes any more.
FINAL_STATUSES = (
    MessageStatus.DELIVERED.value,
    MessageStatus.READ.value,
    MessageStatus.UNDELIVERED.value,
    MessageStatus.FAILED.value,
)
# The channels whose provider (Twilio) bills each message and reports what it cost.
PRICED_CHANNELS = ("sms", "whatsapp", "voice")
LOOKUP_LIMIT = timedelta(hours=24)  # after the message was sent; Twilio prices within minutes, rarely hours
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=1)
# A claimed lookup's due time moves this far on, so another engine does not take it while this one asks.
CLAIM_LEASE = timedelta(minutes=5)
BATCH = 100


def schedule_price_lookup(row: OutboxMessage, now: datetime) -> None:
    """A message that has just reached a final status without a price: look its price up at once."""
    if row.price is None and row.status in FINAL_STATUSES and row.provider_id and not row.simulated:
        row.next_attempt_at = now


def retry_after(age: timedelta) -> timedelta:
    """How long to wait before asking again about a message this old: a sixth of its age, 1 min to 1 h."""
    return min(LONGEST_RETRY, max(FIRST_RETRY, age / 6))


def _priced_channels(ctx: AppContext) -> list[str]:
    """The billed channels whose sender really talks to the provider (a simulated one has nothing to ask)."""
    senders = senders_for(ctx).senders
    return [
        name
        for name in PRICED_CHANNELS
        if name in senders and not senders[name].simulated and senders[name].capabilities.supports_status_poll
    ]


def _claim(ctx: AppContext, channels: list[str], now: datetime) -> list[tuple[int, str, str]]:
    """(message id, channel, provider id) of the lookups due now, taken for CLAIM_LEASE."""
    with write_session(ctx.sessions) as session:
        rows = list(
            session.execute(
                select(OutboxMessage)
                .where(
                    OutboxMessage.status.in_(FINAL_STATUSES),
                    OutboxMessage.next_attempt_at <= now,
                    OutboxMessage.price.is_(None),
                    OutboxMessage.provider_id.is_not(None),
                    OutboxMessage.simulated.is_(False),
                    OutboxMessage.channel.in_(channels),
                )
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        for row in rows:
            row.next_attempt_at = now + CLAIM_LEASE
        return [(row.id, row.channel, str(row.provider_id)) for row in rows]


def _give_up(session: Session, row: OutboxMessage, now: datetime, why: str) -> None:
    row.next_attempt_at = None
    text = f"{row.channel} to {row.address}: no price from the provider ({why}); its cost is missing from statistics"
    log.warning("message %s: %s", row.id, text)
    record(
        session,
        "message_price_missing",
        now,
        incident_id=row.incident_id,
        escalation_id=row.escalation_id,
        message=text,
        data={"message_id": row.id, "channel": row.channel, "provider_id": row.provider_id},
    )


def _apply(session: Session, row: OutboxMessage, answer: StatusResult | SendError, now: datetime) -> str:
    """Store a price, or decide when to ask again; "priced", "waiting" or "missing"."""
    if row.price is not None:  # priced meanwhile (a poll answer carried it)
        row.next_attempt_at = None
        return "priced"
    if isinstance(answer, StatusResult) and answer.price is not None:
        row.price = answer.price
        row.currency = answer.currency or row.currency
        row.next_attempt_at = None
        return "priced"
    if isinstance(answer, SendError) and not answer.retryable:
        _give_up(session, row, now, f"the lookup failed: {answer.text}")
        return "missing"
    age = now - (row.sent_at or row.created_at)
    if age >= LOOKUP_LIMIT:
        hours = int(LOOKUP_LIMIT.total_seconds() // 3600)
        _give_up(session, row, now, f"none reported within {hours} h of sending")
        return "missing"
    row.next_attempt_at = now + retry_after(age)
    return "waiting"


def price_pass(ctx: AppContext) -> dict[str, Any]:
    """Ask the provider for the price of every message whose lookup is due; store what it reports."""
    now = ctx.clock.now()
    channels = _priced_channels(ctx)
    result = {"looked_up": 0, "priced": 0, "waiting": 0, "missing": 0}
    if not channels:
        return result
    senders = senders_for(ctx).senders
    claimed = _claim(ctx, channels, now)
    if not claimed:
        return result
    answers: dict[int, StatusResult | SendError] = {}
    for message_id, channel, provider_id in claimed:
        try:
            answers[message_id] = senders[channel].fetch_status(provider_id)
        except SendError as exc:
            log.info("price lookup for message %s failed: %s", message_id, exc.text)
            answers[message_id] = exc
    with write_session(ctx.sessions) as session:
        rows = session.execute(select(OutboxMessage).where(OutboxMessage.id.in_(list(answers)))).scalars()
        for row in rows:
            result[_apply(session, row, answers[row.id], now)] += 1
    result["looked_up"] = len(answers)
    return result


def unpriced_condition() -> ColumnElement[bool]:
    """Messages sent for real through a provider that bills them, in a final status, with no price (yet)."""
    return and_(
        OutboxMessage.status.in_(FINAL_STATUSES),
        OutboxMessage.price.is_(None),
        OutboxMessage.provider_id.is_not(None),
        OutboxMessage.simulated.is_(False),
        OutboxMessage.channel.in_(PRICED_CHANNELS),
    )
