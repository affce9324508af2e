"""Fixtures for the channel tests: a fake Twilio server, a real SMTP server, a webhook receiver, an in-memory
keyring, and a context whose channels point at them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import keyring
import pytest
from sqlalchemy.orm import Session

from engine import dispatch, paging
from engine.channels import build_senders, install_senders
from engine.context import AppContext
from engine.db import write_session
from engine.models import Escalation, Incident, OutboxMessage, Page, Person
from tests.fakes.memory_keyring import MemoryKeyring
from tests.fakes.smtp_server import FakeSmtp
from tests.fakes.twilio_server import FakeTwilio
from tests.fakes.webhook_receiver import WebhookReceiver

SMS_FROM = "+27870000001"
WHATSAPP_FROM = "+27870000002"
VOICE_FROM = "+27870000003"
WEBHOOK_KEY = "whsec-test-4a1f9c"
SMTP_PASSWORD = "smtp-pw-8d2e"


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


@pytest.fixture
def smtp_server() -> Iterator[FakeSmtp]:
    server = FakeSmtp(username="watchkeeper", password=SMTP_PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(key=WEBHOOK_KEY).start()
    yield receiver
    receiver.stop()


def configure(
    ctx: AppContext,
    *,
    twilio: FakeTwilio | None = None,
    smtp: FakeSmtp | None = None,
    twilio_timeout: float = 2.0,
) -> None:
    """Point ctx's settings at the fakes and (re)build its senders; secrets come from the keyring."""
    s = ctx.settings
    if twilio is not None:
        s.twilio_account_sid = twilio.account_sid
        s.twilio_base_url = twilio.base_url
        s.twilio_sms_from = SMS_FROM
        s.twilio_whatsapp_from = WHATSAPP_FROM
        s.twilio_voice_from = VOICE_FROM
        s.twilio_timeout_seconds = twilio_timeout
    if smtp is not None:
        s.smtp_host = "127.0.0.1"
        s.smtp_port = smtp.port
        s.smtp_security = "none"
        s.smtp_username = "watchkeeper"
        s.smtp_from = "watchkeeper@dispatch.example.org"
    s.send_backoff_seconds = 5.0
    s.send_max_attempts = 3
    s.rate_per_channel_per_second = {
        c: 1000.0 for c in ("sms", "whatsapp", "voice", "email", "webhook", "console")
    }
    s.rate_per_recipient_per_minute = 600.0
    install_senders(ctx, build_senders(s, clock=ctx.clock))


@pytest.fixture
def channels_ctx(
    ctx: AppContext,
    fake_twilio: FakeTwilio,
    smtp_server: FakeSmtp,
    memory_keyring: MemoryKeyring,
) -> Iterator[AppContext]:
    memory_keyring.set_password("watchkeeper", "twilio_auth_token", fake_twilio.auth_token)
    memory_keyring.set_password("watchkeeper", "smtp_password", SMTP_PASSWORD)
    memory_keyring.set_password("watchkeeper", "webhook_signing_key", WEBHOOK_KEY)
    configure(ctx, twilio=fake_twilio, smtp=smtp_server)
    yield ctx
    dispatch.shutdown(ctx)


@pytest.fixture
def offline_ctx(ctx: AppContext, memory_keyring: MemoryKeyring) -> Iterator[AppContext]:
    """No credentials anywhere, and the site chose to simulate: every external channel is simulated."""
    ctx.settings.simulated_channels = ["all"]
    configure(ctx)
    yield ctx
    dispatch.shutdown(ctx)


# -- rows ------------------------------------------------------------------------------------------------


def add_person(session: Session, handle: str = "thandi", **kw: Any) -> Person:
    values: dict[str, Any] = {
        "handle": handle,
        "name": kw.pop("name", handle.title()),
        "phone": "+27821234567",
        "whatsapp": None,
        "email": f"{handle}@example.org",
        "preferred_channel": "sms",
        "fallback_channels": ["whatsapp", "email"],
        "timezone": "Africa/Johannesburg",
    }
    values.update(kw)
    person = Person(**values)
    session.add(person)
    session.flush()
    return person


def add_incident(
    session: Session, now: datetime, summary: str = "Pump station 7 offline", **kw: Any
) -> tuple[Incident, Escalation]:
    incident = Incident(
        key=kw.pop("key", summary.lower().replace(" ", "-")),
        summary=summary,
        severity=kw.pop("severity", "high"),
        created_at=now,
        updated_at=now,
        last_triggered_at=now,
        **kw,
    )
    session.add(incident)
    session.flush()
    escalation = Escalation(
        incident_id=incident.id,
        policy_name="Water standby",
        state="active",
        current_level=1,
        started_at=now,
        updated_at=now,
    )
    session.add(escalation)
    session.flush()
    return incident, escalation


def start_page(
    ctx: AppContext, person_handle: str = "thandi", summary: str = "Pump station 7 offline", **person_kw: Any
) -> tuple[int, int, int]:
    """A person, an incident with a running escalation, and a page (through engine.paging): (incident, page,
    first outbox message) ids."""
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        person = session.query(Person).filter_by(handle=person_handle).one_or_none() or add_person(
            session, person_handle, **person_kw
        )
        incident, escalation = add_incident(session, now, summary)
        page = paging.start_page(session, now, escalation, 1, 0, person, incident=incident)
        assert page is not None
        message = session.query(OutboxMessage).filter_by(page_id=page.id).one()
        return incident.id, page.id, message.id


def add_message(ctx: AppContext, channel: str, address: str, body: str = "Test message", **kw: Any) -> int:
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        row = OutboxMessage(
            idempotency_key=kw.pop("key", f"test:{channel}:{address}:{body}:{now.isoformat()}"),
            kind=kw.pop("kind", "test"),
            channel=channel,
            address=address,
            body=body,
            status="pending",
            next_attempt_at=kw.pop("next_attempt_at", now),
            created_at=now,
            updated_at=now,
            **kw,
        )
        session.add(row)
        session.flush()
        return row.id


def message(ctx: AppContext, message_id: int) -> OutboxMessage:
    with ctx.sessions() as session:
        row = session.get(OutboxMessage, message_id)
        assert row is not None
        return row


def page_of(ctx: AppContext, page_id: int) -> Page:
    with ctx.sessions() as session:
        row = session.get(Page, page_id)
        assert row is not None
        return row


def messages_for_page(ctx: AppContext, page_id: int) -> list[OutboxMessage]:
    with ctx.sessions() as session:
        return list(session.query(OutboxMessage).filter_by(page_id=page_id).order_by(OutboxMessage.id))


def events(ctx: AppContext, kind: str | None = None) -> list[Any]:
    from engine.models import Event

    with ctx.sessions() as session:
        q = session.query(Event).order_by(Event.id)
        if kind:
            q = q.filter_by(kind=kind)
        return list(q)
