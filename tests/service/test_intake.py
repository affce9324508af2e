"""Events API v2 intake (`POST /v2/enqueue`): PagerDuty-compatible answers, severity mapping, deduplication,
acknowledge/resolve by dedup_key, and every kind of bad input refused with nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from engine.context import AppContext
from engine.models import Incident
from engine.service.keys import CreatedSecret, revoke_routing_key


def _incidents(ctx: AppContext) -> list[Incident]:
    with ctx.sessions() as session:
        return list(session.scalars(select(Incident).order_by(Incident.id)).all())


def test_trigger_is_accepted_like_pagerduty_and_opens_an_incident(
    ctx: AppContext, client: Any, routing_key: CreatedSecret, event_body: Any
) -> None:
    reply = client.post(
        "/v2/enqueue", json_body=event_body(routing_key.secret, component="postgres", group="db")
    )
    assert reply.status == 202
    assert reply.json() == {"status": "success", "message": "Event processed", "dedup_key": "disk-full-db1"}
    [incident] = _incidents(ctx)
    assert incident.key == "disk-full-db1"
    assert incident.summary == "Disk 95% full on db1"
    assert incident.severity == "critical"
    assert incident.source == "monitoring"
    assert incident.custom["events_api"]["component"] == "postgres"
    assert incident.custom["events_api"]["source"] == "db1.example.org"


@pytest.mark.parametrize(
    ("pd_severity", "ours"),
    [("critical", "critical"), ("error", "high"), ("warning", "medium"), ("info", "info")],
)
def test_severity_maps_to_watchkeeper_severity(
    ctx: AppContext, client: Any, routing_key: CreatedSecret, event_body: Any, pd_severity: str, ours: str
) -> None:
    reply = client.post("/v2/enqueue", json_body=event_body(routing_key.secret, severity=pd_severity))
    assert reply.status == 202
    assert [i.severity for i in _incidents(ctx)] == [ours]


def test_trigger_without_dedup_key_gets_a_generated_one(
    ctx: AppContext, client: Any, routing_key: CreatedSecret, event_body: Any
) -> None:
    reply = client.post("/v2/enqueue", json_body=event_body(routing_key.secret, dedup_key=None))
    assert reply.status == 202
    key = reply.json()["dedup_key"]
    assert len(key) == 32
    assert [i.key for i in _incidents(ctx)] == [key]


def test_repeated_trigger_with_the_same_dedup_key_is_one_incident(
    ctx: AppContext, client: Any, routing_key: CreatedSecret, event_body: Any
) -> None:
    for _ in range(3):
        assert client.post("/v2/enqueue", json_body=event_body(routing_key.secret)).status == 202
    assert len(_incidents(ctx)) == 1


def test_acknowledge_and_resolve_by_dedup_key(
    ctx: AppContext, client: Any, routing_key: CreatedSecret, event_body: Any
) -> None:
    client.post("/v2/enqueue", json_body=event_body(routing_key.secret))
    ack = client.post("/v2/enqueue", json_body=event_body(routing_key.secret, action="acknowledge"))
    assert ack.status == 202
    assert ack.json()["dedup_key"] == "disk-full-db1"
    [incident] = _incidents(ctx)
    assert incident.status == "acknowledged"
    assert "events-api" in (incident.acknowledged_by or "")
    res = client.post("/v2/enqueue", json_body=event_body(routing_key.secret, action="resolve"))
    assert res.status == 202
    [incident] = _incidents(ctx)
    assert incident.status == "resolved"


def test_acknowledge_of_an_unknown_dedup_key_is_accepted_and_changes_nothing(
    client: Any, routing_key: CreatedSecret, event_body: Any, counts: Any
) -> None:
    before = counts()
    reply = client.post(
        "/v2/enqueue", json_body=event_body(routing_key.secret, action="acknowledge", dedup_key="never-seen")
    )
    assert reply.status == 202
    assert counts() == before


def test_real_server_takes_an_alertmanager_style_event(
    ctx: AppContext, live: Any, routing_key: CreatedSecret
) -> None:
    body = {
        "routing_key": routing_key.secret,
        "dedup_key": "a3f1c2",
        "event_action": "trigger",
        "payload": {
            "summary": "[FIRING:1] HighLatency api-gateway",
            "source": "alertmanager",
            "severity": "error",
            "custom_details": {"firing": "Labels:\n - alertname = HighLatency"},
        },
        "client": "Alertmanager",
        "client_url": "http://alertmanager.example.org/#/alerts",
        "links": [],
        "images": [],
    }
    reply = live.post("/v2/enqueue", json_body=body)
    assert reply.status == 202, reply.text
    assert reply.json()["dedup_key"] == "a3f1c2"
    [incident] = _incidents(ctx)
    assert incident.severity == "high"
    assert "HighLatency" in incident.details


# ----------------------------------------------------------------------------------------------------------
# Bad input: the right status, PagerDuty's error shape, and not one row written.
# ----------------------------------------------------------------------------------------------------------


def _bad_bodies(key: str) -> list[tuple[str, bytes, int, str]]:
    good: dict[str, Any] = {
        "routing_key": key,
        "event_action": "trigger",
        "dedup_key": "k1",
        "payload": {"summary": "s", "source": "src", "severity": "critical"},
    }

    def variant(**changes: Any) -> bytes:
        body = json.loads(json.dumps(good))
        for path, value in changes.items():
            target = body
            parts = path.split("__")
            for part in parts[:-1]:
                target = target[part]
            if value is _DELETE:
                del target[parts[-1]]
            else:
                target[parts[-1]] = value
        return json.dumps(body).encode()

    return [
        ("malformed JSON", b'{"routing_key": ', 400, "malformed JSON"),
        ("not UTF-8", b"\xff\xfe{}", 400, "malformed JSON"),
        ("a list, not an object", b"[]", 400, "JSON object"),
        ("empty body", b"", 400, "malformed JSON"),
        ("missing routing_key", variant(routing_key=_DELETE), 400, "'routing_key' is missing"),
        ("routing key of the wrong length", variant(routing_key="abc"), 400, "Length of 'routing_key'"),
        ("unknown routing key", variant(routing_key="0" * 32), 400, "Invalid routing key"),
        ("missing event_action", variant(event_action=_DELETE), 400, "'event_action' is missing"),
        ("unknown event_action", variant(event_action="explode"), 400, "'event_action' is invalid"),
        ("missing payload", variant(payload=_DELETE), 400, "'payload' is missing"),
        ("payload not an object", variant(payload="x"), 400, "'payload' is missing"),
        ("missing summary", variant(payload__summary=_DELETE), 400, "'payload.summary' is missing"),
        ("blank summary", variant(payload__summary="  "), 400, "'payload.summary' is missing"),
        ("summary too long", variant(payload__summary="x" * 1025), 400, "'payload.summary' is too long"),
        ("missing source", variant(payload__source=_DELETE), 400, "'payload.source' is missing"),
        ("missing severity", variant(payload__severity=_DELETE), 400, "'payload.severity' is missing"),
        ("unknown severity", variant(payload__severity="high"), 400, "'payload.severity' is invalid"),
        ("dedup_key not a string", variant(dedup_key=12), 400, "'dedup_key' must be a string"),
        ("dedup_key too long", variant(dedup_key="k" * 256), 400, "'dedup_key' is too long"),
        (
            "acknowledge without dedup_key",
            variant(event_action="acknowledge", dedup_key=_DELETE),
            400,
            "'dedup_key'",
        ),
        ("links not an array", variant(links="x"), 400, "'links' must be an array"),
    ]


class _Delete:
    pass


_DELETE = _Delete()


def _ids(cases: list[tuple[str, bytes, int, str]]) -> list[str]:
    return [c[0] for c in cases]


BAD_CASE_NAMES = _ids(_bad_bodies("k" * 32))


@pytest.mark.parametrize("case", BAD_CASE_NAMES)
def test_bad_event_is_refused_and_nothing_is_stored(
    client: Any, routing_key: CreatedSecret, counts: Any, case: str
) -> None:
    _, body, status, fragment = next(c for c in _bad_bodies(routing_key.secret) if c[0] == case)
    before = counts()
    reply = client.post("/v2/enqueue", body=body, content_type="application/json")
    assert reply.status == status
    answer = reply.json()
    assert answer["status"] == "invalid event"
    assert answer["message"] == "Event object is invalid"
    assert any(fragment in e for e in answer["errors"]), answer
    assert counts() == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415_and_nothing_is_stored(
    client: Any, routing_key: CreatedSecret, event_body: Any, counts: Any, content_type: str | None
) -> None:
    before = counts()
    reply = client.post(
        "/v2/enqueue", body=json.dumps(event_body(routing_key.secret)).encode(), content_type=content_type
    )
    assert reply.status == 415
    assert reply.json()["status"] == "invalid event"
    assert counts() == before


def test_json_with_a_charset_is_accepted(client: Any, routing_key: CreatedSecret, event_body: Any) -> None:
    reply = client.post(
        "/v2/enqueue",
        body=json.dumps(event_body(routing_key.secret)).encode(),
        content_type="application/json; charset=utf-8",
    )
    assert reply.status == 202


@pytest.mark.parametrize("declare_length", [True, False], ids=["declared", "streamed"])
def test_oversized_body_is_413_and_nothing_is_stored(
    client: Any, routing_key: CreatedSecret, event_body: Any, counts: Any, declare_length: bool
) -> None:
    body = event_body(routing_key.secret, custom_details={"blob": "x" * (600 * 1024)})
    before = counts()
    reply = client.post(
        "/v2/enqueue",
        body=json.dumps(body).encode(),
        content_type="application/json",
        declare_length=declare_length,
    )
    assert reply.status == 413
    assert counts() == before


def test_oversized_body_over_a_real_socket_is_413(
    live: Any, routing_key: CreatedSecret, event_body: Any, counts: Any
) -> None:
    body = event_body(routing_key.secret, custom_details={"blob": "x" * (600 * 1024)})
    before = counts()
    reply = live.post("/v2/enqueue", json_body=body)
    assert reply.status == 413
    assert counts() == before


def test_bad_events_over_a_real_socket_store_nothing(
    live: Any, routing_key: CreatedSecret, counts: Any
) -> None:
    before = counts()
    for _, body, status, _fragment in _bad_bodies(routing_key.secret):
        reply = live.post("/v2/enqueue", body=body, content_type="application/json")
        assert reply.status == status
    assert counts() == before


def test_revoked_routing_key_is_refused(
    ctx: AppContext, client: Any, routing_key: CreatedSecret, event_body: Any, counts: Any
) -> None:
    revoke_routing_key(ctx, routing_key.id)
    before = counts()
    reply = client.post("/v2/enqueue", json_body=event_body(routing_key.secret))
    assert reply.status == 400
    assert reply.json()["errors"] == ["Invalid routing key"]
    assert counts() == before


def test_get_on_the_intake_is_405(client: Any) -> None:
    reply = client.get("/v2/enqueue")
    assert reply.status == 405
    assert reply.headers["Allow"] == "POST"


def test_unknown_path_is_404(client: Any) -> None:
    assert client.get("/v1/nothing").status == 404
