"""What a paged person gets back: the SMS reply to an acknowledgement (TwiML), and the acknowledge link in a
page e-mail, which shows the incident on GET and acknowledges only on the POST of its button."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from twilio.request_validator import RequestValidator

from engine import api
from engine.context import AppContext
from engine.escalation import escalate_pass
from engine.models import Event, Incident, Page

FORM = "application/x-www-form-urlencoded"


def _paged(ctx: AppContext, policy: str, summary: str = "Pump 3 <b>offline</b>") -> tuple[int, str]:
    """An incident whose level 1 has paged Alice; (incident id, the reply code of her page)."""
    incident_id = api.trigger(ctx, policy=policy, summary=summary, severity="critical").incident_id
    escalate_pass(ctx)
    with ctx.sessions() as session:
        code = session.scalars(select(Page.reply_code).where(Page.incident_id == incident_id)).one()
    assert code
    return incident_id, code


def _status(ctx: AppContext, incident_id: int) -> tuple[str, str | None]:
    with ctx.sessions() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return incident.status, incident.acknowledged_by


def _events(ctx: AppContext, incident_id: int) -> int:
    with ctx.sessions() as session:
        return len(session.scalars(select(Event.id).where(Event.incident_id == incident_id)).all())


def test_sms_acknowledgement_is_answered_with_a_thank_you(
    ctx: AppContext, client: Any, policy: str, twilio_token: str
) -> None:
    incident_id, code = _paged(ctx, policy)
    params = {
        "MessageSid": "SMreply000000000000000000000000001",
        "From": "+27820000001",
        "Body": f"{code} ack",
    }
    reply = client.post(
        "/twilio/inbound",
        body=urlencode(params).encode(),
        content_type=FORM,
        headers={
            "X-Twilio-Signature": RequestValidator(twilio_token).compute_signature(
                "http://watchkeeper.test/twilio/inbound", params
            )
        },
    )
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/xml")
    assert f"<Message>Watchkeeper: acknowledged #{incident_id}. Thank you.</Message>" in reply.text
    assert _status(ctx, incident_id) == ("acknowledged", "Alice Dlamini")


def test_opening_the_link_shows_the_incident_and_changes_nothing(
    ctx: AppContext, client: Any, policy: str
) -> None:
    incident_id, code = _paged(ctx, policy)
    before = _events(ctx, incident_id)
    reply = client.get(f"/ack?incident={incident_id}&code={code}")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.headers["Cache-Control"] == "no-store"
    assert "Pump 3 &lt;b&gt;offline&lt;/b&gt;" in reply.text  # the summary is escaped, never markup
    assert "<form method='post' action='ack'>" in reply.text
    assert "Acknowledge as Alice Dlamini" in reply.text
    assert _status(ctx, incident_id) == ("open", None)
    assert _events(ctx, incident_id) == before


def test_the_button_acknowledges_as_the_paged_person_once(ctx: AppContext, client: Any, policy: str) -> None:
    incident_id, code = _paged(ctx, policy)
    body = urlencode({"incident": incident_id, "code": code}).encode()
    reply = client.post("/ack", body=body, content_type=FORM)
    assert reply.status == 200, reply.text
    assert "Acknowledged" in reply.text
    assert _status(ctx, incident_id) == ("acknowledged", "Alice Dlamini")
    with ctx.sessions() as session:
        kinds = session.scalars(select(Event.kind).where(Event.incident_id == incident_id)).all()
    assert "reply_handled" in kinds
    again = client.post("/ack", body=body, content_type=FORM)
    assert again.status == 409
    assert "cannot be acknowledged" in again.text
    shown = client.get(f"/ack?incident={incident_id}&code={code}")
    assert "already acknowledged by Alice Dlamini" in shown.text
    assert "<form" not in shown.text


def test_a_wrong_code_is_refused_and_guessing_is_stopped(
    ctx: AppContext, client: Any, policy: str, counts: Any
) -> None:
    incident_id, code = _paged(ctx, policy)
    wrong = "000000" if code != "000000" else "111111"
    before = counts()
    for path in (f"/ack?incident={incident_id}&code={wrong}", "/ack?incident=x&code=1", "/ack"):
        reply = client.get(path)
        assert reply.status == 404
        assert "not valid" in reply.text
    reply = client.post(
        "/ack", body=urlencode({"incident": incident_id, "code": wrong}).encode(), content_type=FORM
    )
    assert reply.status == 404
    assert counts() == before
    assert _status(ctx, incident_id) == ("open", None)
    for _ in range(8):
        client.get(f"/ack?incident={incident_id}&code={wrong}")
    # Ten wrong codes for one incident: even the right code is refused for a while.
    blocked = client.post(
        "/ack", body=urlencode({"incident": incident_id, "code": code}).encode(), content_type=FORM
    )
    assert blocked.status == 429
    assert blocked.headers["Retry-After"] == "600"
    assert _status(ctx, incident_id) == ("open", None)
    # Another incident's link, from the same address, still works.
    other_id, other_code = _paged(ctx, policy, summary="Radio mast 2 down")
    assert client.get(f"/ack?incident={other_id}&code={other_code}").status == 200


def test_the_button_must_post_a_form(ctx: AppContext, client: Any, policy: str) -> None:
    incident_id, code = _paged(ctx, policy)
    reply = client.post("/ack", json_body={"incident": incident_id, "code": code})
    assert reply.status == 415
    assert _status(ctx, incident_id) == ("open", None)
