"""The message log: every outbox row, filtered; retry a failed message and send one again on another channel,
each a new message through the normal dispatch path, audited and on the incident's timeline. Both databases."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from engine import api, audit, messages
from engine.db import read_session, write_session
from engine.dispatch import dispatch_pass
from engine.errors import InvalidTransition, ValidationError
from engine.models import Event, OutboxMessage, Person, Policy
from engine.service.app import ServiceApp
from tests.service.conftest import WsgiClient

from .conftest import Centre


def _message(c: Centre, incident_id: int | None, person: str, **fields: Any) -> int:
    now = c.ctx.clock.now()
    values: dict[str, Any] = {
        "idempotency_key": f"page:{person}:{fields.get('channel', 'sms')}:{fields.get('status', 'failed')}:{now}",
        "kind": "page",
        "incident_id": incident_id,
        "person_id": c.people[person],
        "channel": "sms",
        "address": "+27821234567",
        "subject": "Smoke, Block C",
        "body": "Smoke, Block C. Reply 1 to acknowledge.",
        "status": "failed",
        "error_code": "30003",
        "error_text": "Unreachable handset",
        "created_at": now,
        "updated_at": now,
    }
    values.update(fields)
    with write_session(c.ctx.sessions) as s:
        row = OutboxMessage(**values)
        s.add(row)
        s.flush()
        c.ctx.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
        return row.id


@pytest.fixture
def log(centre: Centre) -> dict[str, int]:
    """An incident with a failed SMS to Thandi, a delivered one to Sipho (with a price) and a pending e-mail."""
    c = centre
    c.ctx.settings.simulated_channels = ["all"]
    with write_session(c.ctx.sessions) as s:
        s.add(Policy(name="quiet", levels=[]))
    incident = api.trigger(c.ctx, policy="quiet", summary="Smoke, Block C", key="smoke").incident_id
    return {
        "incident": incident,
        "failed": _message(c, incident, "thandi"),
        "delivered": _message(
            c,
            incident,
            "sipho",
            status="delivered",
            provider_id="SM123",
            price=Decimal("0.0450"),
            currency="USD",
            error_code=None,
            error_text=None,
            address="+27831234567",
        ),
        "pending": _message(
            c, None, "thandi", channel="email", address="thandi@example.org", status="pending"
        ),
    }


def test_the_log_filters_by_status_channel_person_incident_and_time(
    centre: Centre, log: dict[str, int]
) -> None:
    c = centre
    with read_session(c.ctx.sessions) as s:
        everything = messages.search(s)
        assert [m.id for m in everything] == [log["pending"], log["delivered"], log["failed"]]
        failed = messages.search(s, status="failed")
        assert [(m.id, m.person, m.error) for m in failed] == [
            (log["failed"], "thandi", "30003 Unreachable handset")
        ]
        assert [m.id for m in messages.search(s, channel="email")] == [log["pending"]]
        assert [m.id for m in messages.search(s, person="sipho")] == [log["delivered"]]
        delivered = messages.search(s, incident_id=log["incident"], status="delivered")[0]
        assert (delivered.provider_id, delivered.price, delivered.currency) == (
            "SM123",
            Decimal("0.045"),
            "USD",
        )
        since = everything[1].created_at
        assert [m.id for m in messages.search(s, since=since)] == [log["pending"], log["delivered"]]
        with pytest.raises(ValidationError, match="status"):
            messages.search(s, status="lost")


def test_a_failed_message_is_retried_once_as_a_new_message_that_dispatch_sends(
    centre: Centre, log: dict[str, int]
) -> None:
    c = centre
    who = c.accounts["operator"]
    new = messages.retry(c.ctx, who, log["failed"])
    assert (new.channel, new.address, new.status, new.idempotency_key) == (
        "sms",
        "+27821234567",
        "pending",
        f"retry:{log['failed']}",
    )
    with pytest.raises(InvalidTransition, match="retried already"):
        messages.retry(c.ctx, who, log["failed"])
    with pytest.raises(InvalidTransition, match="only a failed message can be retried"):
        messages.retry(c.ctx, who, log["delivered"])
    dispatch_pass(c.ctx)
    with read_session(c.ctx.sessions) as s:
        assert s.get(OutboxMessage, new.id).status in ("sent", "delivered")  # type: ignore[union-attr]
        assert s.get(OutboxMessage, log["failed"]).status == "failed"  # type: ignore[union-attr]
        events = [
            (e.kind, e.actor) for e in s.scalars(select(Event).where(Event.incident_id == log["incident"]))
        ]
        trail = [(e.actor, e.action, e.object_name) for e in audit.entries(s, action="message_retried")]
    assert ("message_retried", "operator") in events
    assert trail == [("operator", "message_retried", str(log["failed"]))]


def test_a_message_is_sent_again_on_another_channel_the_person_has(
    centre: Centre, log: dict[str, int]
) -> None:
    c = centre
    who = c.accounts["operator"]
    new = messages.resend(c.ctx, who, log["failed"], "email")
    assert (new.person, new.channel, new.address) == ("thandi", "email", "thandi@example.org")
    with pytest.raises(InvalidTransition, match="on email already"):
        messages.resend(c.ctx, who, log["failed"], "email")
    with pytest.raises(ValidationError, match="Sipho Dlamini has no email address"):
        messages.resend(c.ctx, who, log["delivered"], "email")
    with pytest.raises(ValidationError, match="retry it instead"):
        messages.resend(c.ctx, who, log["failed"], "sms")
    with read_session(c.ctx.sessions) as s:
        kinds = [e.kind for e in s.scalars(select(Event).where(Event.incident_id == log["incident"]))]
    assert "message_resent" in kinds


def test_a_channel_that_is_not_set_up_is_refused(centre: Centre, log: dict[str, int]) -> None:
    c = centre
    c.ctx.settings.simulated_channels = []  # and no Twilio account: voice cannot call anyone
    with pytest.raises(ValidationError, match="voice is not set up here"):
        messages.resend(c.ctx, c.accounts["operator"], log["pending"], "voice")
    with read_session(c.ctx.sessions) as s:
        assert len(messages.search(s)) == 3


def test_the_command_line_and_http(centre: Centre, log: dict[str, int]) -> None:
    c = centre
    code, out, err = c.cli("operator", "messages", "--status", "failed")
    assert code == 0, err
    assert "30003 Unreachable handset" in out and "thandi" in out and "SM123" not in out
    code, out, _ = c.cli("operator", "messages", "--incident", str(log["incident"]), "--json")
    assert {m["status"] for m in json.loads(out)} == {"failed", "delivered"}
    code, out, _ = c.cli("operator", "messages", "--person", "sipho")
    assert "0.045" in out and "USD" in out
    code, out, err = c.cli("operator", "messages", "retry", str(log["failed"]))
    assert code == 0, err
    assert out.startswith(f"message {log['failed']} retried as message ")
    code, _, err = c.cli("operator", "messages", "retry", str(log["delivered"]))
    assert code == 1 and "only a failed message can be retried" in err

    client = WsgiClient(ServiceApp(c.ctx))
    auth = {"Authorization": f"Bearer {c.tokens['operator']}"}
    reply = client.get("/api/messages?channel=sms&status=delivered", headers=auth)
    assert [m["id"] for m in reply.json()["messages"]] == [log["delivered"]]
    reply = client.post(f"/api/messages/{log['failed']}/resend", json_body={"channel": "email"}, headers=auth)
    assert reply.status == 201 and reply.json()["address"] == "thandi@example.org"
    assert client.post(f"/api/messages/{log['delivered']}/retry", headers=auth).status == 409
    assert (
        client.post(
            f"/api/messages/{log['delivered']}/resend", json_body={"channel": "email"}, headers=auth
        ).status
        == 422
    )


def test_a_page_is_neither_retried_nor_resent_once_its_incident_is_acknowledged(
    centre: Centre, log: dict[str, int]
) -> None:
    """Acknowledge ends all paging for the incident: no page is written after that commit, by a retry either."""
    c = centre
    who = c.accounts["operator"]
    api.acknowledge(c.ctx, log["incident"], by="operator")
    with read_session(c.ctx.sessions) as s:
        before = len(messages.search(s))
    with pytest.raises(InvalidTransition, match="acknowledged: paging for it has ended"):
        messages.retry(c.ctx, who, log["failed"])
    with pytest.raises(InvalidTransition, match="paging for it has ended"):
        messages.resend(c.ctx, who, log["delivered"], "email")
    with read_session(c.ctx.sessions) as s:
        assert len(messages.search(s)) == before


def test_the_channels_to_send_on_again_are_the_persons_other_open_channels(
    centre: Centre, log: dict[str, int]
) -> None:
    c = centre
    with read_session(c.ctx.sessions) as s:
        # Thandi's SMS failed: her e-mail, WhatsApp (her phone), voice and console remain.
        assert messages.resend_channels(s, log["failed"]) == [
            ("whatsapp", "+27821234567"),
            ("voice", "+27821234567"),
            ("email", "thandi@example.org"),
            ("console", "thandi"),
        ]
    with write_session(c.ctx.sessions) as s:
        thandi = s.get(Person, c.people["thandi"])
        assert thandi is not None
        thandi.disabled_channels = ["voice"]
        thandi.opted_out_channels = ["whatsapp"]
    with read_session(c.ctx.sessions) as s:
        assert {ch for ch, _a in messages.resend_channels(s, log["failed"])} == {"email", "console"}
        # Sipho has no e-mail address: it is not offered.
        assert "email" not in {ch for ch, _a in messages.resend_channels(s, log["delivered"])}
