"""Twilio webhooks: X-Twilio-Signature checked with the auth token from the secret store; a valid request
reaches engine.replies, a forged one is 403, stores nothing and logs a line without the token."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from engine.context import AppContext
from engine.db import write_session
from engine.models import InboundMessage, OutboxMessage, Person

FORM = "application/x-www-form-urlencoded"


def _signed(token: str, url: str, params: dict[str, str]) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


def _sms_out(ctx: AppContext, provider_id: str = "SM0123456789abcdef0123456789abcdef") -> int:
    with write_session(ctx.sessions) as session:
        person = session.scalars(select(Person).where(Person.handle == "alice")).first()
        msg = OutboxMessage(
            idempotency_key="test:sms:1",
            kind="test",
            channel="sms",
            address="+27820000001",
            body="Test page",
            status="sent",
            provider_id=provider_id,
            person_id=person.id if person else None,
            created_at=ctx.clock.now(),
            updated_at=ctx.clock.now(),
            sent_at=ctx.clock.now(),
        )
        session.add(msg)
        session.flush()
        return msg.id


def test_signed_status_callback_updates_the_message(
    ctx: AppContext, client: Any, policy: str, twilio_token: str
) -> None:
    pytest.importorskip("engine.replies")
    msg_id = _sms_out(ctx)
    params = {
        "MessageSid": "SM0123456789abcdef0123456789abcdef",
        "MessageStatus": "delivered",
        "To": "+27820000001",
    }
    reply = client.post(
        "/twilio/status",
        body=urlencode(params).encode(),
        content_type=FORM,
        headers=_signed(twilio_token, "http://watchkeeper.test/twilio/status", params),
    )
    assert reply.status in (200, 204), reply.text
    with ctx.sessions() as session:
        msg = session.get(OutboxMessage, msg_id)
        assert msg is not None and msg.status == "delivered"


def test_signed_inbound_sms_is_recorded(ctx: AppContext, client: Any, policy: str, twilio_token: str) -> None:
    pytest.importorskip("engine.replies")
    params = {
        "MessageSid": "SMinbound0000000000000000000000001",
        "From": "+27820000001",
        "To": "+27870000000",
        "Body": "hello",
    }
    reply = client.post(
        "/twilio/inbound",
        body=urlencode(params).encode(),
        content_type=FORM,
        headers=_signed(twilio_token, "http://watchkeeper.test/twilio/inbound", params),
    )
    assert reply.status == 200, reply.text
    assert reply.headers["Content-Type"].startswith("application/xml")
    assert "<Response" in reply.text
    with ctx.sessions() as session:
        rows = session.scalars(select(InboundMessage)).all()
        assert [(r.provider_id, r.from_address) for r in rows] == [
            ("SMinbound0000000000000000000000001", "+27820000001")
        ]


def test_public_base_url_is_the_url_that_is_signed(
    ctx: AppContext, client: Any, policy: str, twilio_token: str
) -> None:
    pytest.importorskip("engine.replies")
    ctx.settings.public_base_url = "https://watchkeeper.example.org/"
    params = {"MessageSid": "SMinbound0000000000000000000000002", "From": "+27820000001", "Body": "x"}
    good = _signed(twilio_token, "https://watchkeeper.example.org/twilio/inbound", params)
    assert (
        client.post(
            "/twilio/inbound", body=urlencode(params).encode(), content_type=FORM, headers=good
        ).status
        == 200
    )
    local = _signed(twilio_token, "http://watchkeeper.test/twilio/inbound", params)
    assert (
        client.post(
            "/twilio/inbound", body=urlencode(params).encode(), content_type=FORM, headers=local
        ).status
        == 403
    )


@pytest.mark.parametrize(
    "signature",
    ["", "Zm9yZ2Vk", "signed-with-another-token"],
    ids=["missing", "garbage", "other-token"],
)
@pytest.mark.parametrize(
    "path", ["/twilio/status", "/twilio/inbound", "/twilio/voice/1", "/twilio/voice/gather"]
)
def test_forged_webhook_is_403_stores_nothing_and_never_logs_the_token(
    client: Any,
    counts: Any,
    twilio_token: str,
    caplog: pytest.LogCaptureFixture,
    signature: str,
    path: str,
) -> None:
    params = {"MessageSid": "SMforged", "From": "+27820000001", "Body": "ack", "Digits": "1"}
    if signature == "signed-with-another-token":
        signature = RequestValidator("another-token").compute_signature(
            f"http://watchkeeper.test{path}", params
        )
    headers = {"X-Twilio-Signature": signature} if signature else {}
    before = counts()
    with caplog.at_level(logging.INFO):
        reply = client.post(path, body=urlencode(params).encode(), content_type=FORM, headers=headers)
    assert reply.status == 403
    assert counts() == before
    assert any("Twilio webhook refused" in r.getMessage() for r in caplog.records)
    assert twilio_token not in caplog.text
    if signature:
        assert signature not in caplog.text


def test_webhooks_are_refused_when_no_auth_token_is_configured(client: Any, counts: Any) -> None:
    params = {"MessageSid": "SMx", "MessageStatus": "delivered"}
    before = counts()
    reply = client.post(
        "/twilio/status",
        body=urlencode(params).encode(),
        content_type=FORM,
        headers=_signed("whatever", "http://watchkeeper.test/twilio/status", params),
    )
    assert reply.status == 403
    assert counts() == before


def test_webhook_with_a_json_body_is_415(client: Any, twilio_token: str, counts: Any) -> None:
    before = counts()
    reply = client.post("/twilio/status", json_body={"MessageSid": "SMx"})
    assert reply.status == 415
    assert counts() == before


def test_signed_voice_request_returns_twiml_over_a_real_socket(
    ctx: AppContext, live: Any, policy: str, twilio_token: str
) -> None:
    pytest.importorskip("engine.replies")
    with write_session(ctx.sessions) as session:
        msg = OutboxMessage(
            idempotency_key="test:voice:1",
            kind="test",
            channel="voice",
            address="+27820000001",
            body="Incident 1: pump station down. Press 1 to acknowledge.",
            status="sent",
            provider_id="CA0123",
            created_at=ctx.clock.now(),
            updated_at=ctx.clock.now(),
        )
        session.add(msg)
        session.flush()
        msg_id = msg.id
    params = {"CallSid": "CA0123", "To": "+27820000001", "CallStatus": "in-progress"}
    path = f"/twilio/voice/{msg_id}"
    reply = live.post(
        path,
        body=urlencode(params).encode(),
        content_type=FORM,
        headers=_signed(twilio_token, live.base_url + path, params),
    )
    assert reply.status == 200, reply.text
    assert reply.headers["Content-Type"].startswith("application/xml")
    assert "<Response>" in reply.text
