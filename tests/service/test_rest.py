"""The REST API: bearer tokens with roles; list, show, trigger, acknowledge, resolve, escalate, cancel, classify."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from engine.context import AppContext
from engine.db import write_session
from engine.models import Incident, Policy
from engine.service.keys import create_api_token, revoke_api_token


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _create(client: Any, token: str, **fields: Any) -> Any:
    body = {"policy": "ops", "summary": "Water main burst on Long Street", "severity": "high", **fields}
    return client.post("/api/incidents", json_body=body, headers=_auth(token))


def test_operator_triggers_lists_shows_acknowledges_and_resolves(
    ctx: AppContext, client: Any, policy: str, operator_token: str
) -> None:
    created = _create(client, operator_token, key="long-street", site="cpt")
    assert created.status == 201, created.text
    incident_id = created.json()["incident_id"]
    assert created.json()["deduplicated"] is False

    listed = client.get("/api/incidents", headers=_auth(operator_token))
    assert listed.status == 200
    assert [i["id"] for i in listed.json()["incidents"]] == [incident_id]

    shown = client.get(f"/api/incidents/{incident_id}", headers=_auth(operator_token))
    assert shown.status == 200
    assert shown.json()["summary"] == "Water main burst on Long Street"

    ack = client.post(f"/api/incidents/{incident_id}/acknowledge", headers=_auth(operator_token))
    assert ack.status == 200, ack.text
    res = client.post(
        f"/api/incidents/{incident_id}/resolve",
        json_body={"note": "valve closed"},
        headers=_auth(operator_token),
    )
    assert res.status == 200, res.text
    with ctx.sessions() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        assert incident.status == "resolved"
        assert incident.source == "api"
        assert "night-shift-script" in (incident.acknowledged_by or "")


def test_same_key_twice_within_the_policy_cooldown_is_deduplicated(
    ctx: AppContext, client: Any, policy: str, operator_token: str
) -> None:
    with write_session(ctx.sessions) as session:
        session.execute(update(Policy).where(Policy.name == policy).values(cooldown_seconds=900))
    assert _create(client, operator_token, key="dup").status == 201
    again = _create(client, operator_token, key="dup")
    assert again.status == 200
    assert again.json()["deduplicated"] is True


def test_incident_can_be_addressed_by_its_key(client: Any, policy: str, operator_token: str) -> None:
    _create(client, operator_token, key="pump-7")
    shown = client.get("/api/incidents/pump-7", headers=_auth(operator_token))
    assert shown.status == 200
    assert shown.json()["key"] == "pump-7"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer wkt_nope"},
    ],
    ids=["none", "empty", "basic", "unknown"],
)
def test_requests_without_a_valid_token_are_401_and_store_nothing(
    client: Any, policy: str, counts: Any, headers: dict[str, str]
) -> None:
    before = counts()
    reply = client.post("/api/incidents", json_body={"policy": "ops", "summary": "x"}, headers=headers)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/incidents", headers=headers).status == 401
    assert counts() == before


def test_revoked_token_is_401(ctx: AppContext, client: Any, policy: str) -> None:
    token = create_api_token(ctx, label="leaver").secret
    revoke_api_token(ctx, "leaver")
    assert client.get("/api/incidents", headers=_auth(token)).status == 401


def test_cancel_needs_a_supervisor_token(
    client: Any, policy: str, operator_token: str, supervisor_token: str
) -> None:
    incident_id = _create(client, operator_token).json()["incident_id"]
    refused = client.post(
        f"/api/incidents/{incident_id}/cancel",
        json_body={"reason": "test call"},
        headers=_auth(operator_token),
    )
    assert refused.status == 403
    done = client.post(
        f"/api/incidents/{incident_id}/cancel",
        json_body={"reason": "test call"},
        headers=_auth(supervisor_token),
    )
    assert done.status == 200, done.text


def test_unknown_incident_is_404(client: Any, operator_token: str) -> None:
    assert client.get("/api/incidents/99999", headers=_auth(operator_token)).status == 404
    assert client.post("/api/incidents/99999/acknowledge", headers=_auth(operator_token)).status == 404


def test_acknowledging_a_resolved_incident_is_409(client: Any, policy: str, operator_token: str) -> None:
    incident_id = _create(client, operator_token).json()["incident_id"]
    client.post(f"/api/incidents/{incident_id}/resolve", headers=_auth(operator_token))
    again = client.post(f"/api/incidents/{incident_id}/acknowledge", headers=_auth(operator_token))
    assert again.status == 409


def test_classify_changes_the_category_and_the_sensitive_flag(
    ctx: AppContext, client: Any, policy: str, operator_token: str
) -> None:
    incident_id = _create(client, operator_token, category="water").json()["incident_id"]
    url = f"/api/incidents/{incident_id}/classify"
    done = client.post(url, json_body={"category": "roads", "sensitive": True}, headers=_auth(operator_token))
    assert done.status == 200, done.text
    assert done.json()["changed"] == ["category", "sensitive"] and done.json()["response_due_at"] is None
    with ctx.sessions() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None and (incident.category, incident.sensitive) == ("roads", True)
    for body in ({}, {"sensitive": "yes"}, {"category": 7}, {"colour": "red"}):
        assert client.post(url, json_body=body, headers=_auth(operator_token)).status == 400, body
    assert client.post(url, json_body={"category": " "}, headers=_auth(operator_token)).status == 422
    client.post(f"/api/incidents/{incident_id}/resolve", headers=_auth(operator_token))
    closed = client.post(url, json_body={"sensitive": False}, headers=_auth(operator_token))
    assert closed.status == 409 and "closed incident" in closed.text


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"policy": "ops"}', "application/json", 400),
        (b'{"summary": "x", "severity": "apocalyptic"}', "application/json", 400),
        (b'{"summary": "x", "colour": "red"}', "application/json", 400),
        (b'{"summary": 5}', "application/json", 400),
        (b'{"summary": "x"}', "text/plain", 415),
        (b'{"summary": "x", "policy": "ops"}', None, 415),
    ],
    ids=[
        "malformed",
        "array",
        "no-summary",
        "bad-severity",
        "unknown-field",
        "summary-number",
        "text",
        "no-type",
    ],
)
def test_bad_incident_bodies_are_refused_and_store_nothing(
    client: Any,
    policy: str,
    operator_token: str,
    counts: Any,
    body: bytes,
    content_type: str | None,
    status: int,
) -> None:
    before = counts()
    reply = client.post("/api/incidents", body=body, content_type=content_type, headers=_auth(operator_token))
    assert reply.status == status, reply.text
    assert counts() == before


def test_oversized_incident_body_is_413(client: Any, operator_token: str, counts: Any) -> None:
    before = counts()
    body = b'{"summary": "' + b"x" * (513 * 1024) + b'"}'
    reply = client.post(
        "/api/incidents", body=body, content_type="application/json", headers=_auth(operator_token)
    )
    assert reply.status == 413
    assert counts() == before


def test_bad_limit_is_400(client: Any, operator_token: str) -> None:
    assert client.get("/api/incidents?limit=lots", headers=_auth(operator_token)).status == 400
    assert client.get("/api/incidents?limit=0", headers=_auth(operator_token)).status == 400


def test_rest_over_a_real_socket(ctx: AppContext, live: Any, policy: str, operator_token: str) -> None:
    created = _create(live, operator_token, key="socket")
    assert created.status == 201, created.text
    incident_id = created.json()["incident_id"]
    assert live.post(f"/api/incidents/{incident_id}/acknowledge", headers=_auth(operator_token)).status == 200
    assert live.get("/api/incidents", headers={}).status == 401
    with ctx.sessions() as session:
        assert session.scalars(select(Incident.status)).all() == ["acknowledged"]
