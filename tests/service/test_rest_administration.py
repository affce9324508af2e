"""The REST API's administration routes: accounts, tokens and routing keys (administrators), switches,
configuration and the audit trail (with CSV), the handover, and the incident routes added with them — each
checked by the rule book, each write in the token's name."""

from __future__ import annotations

import csv
import io
from typing import Any

from engine import accounts, api
from engine.context import AppContext
from engine.db import read_session
from engine.service.keys import create_api_token

from .conftest import WsgiClient


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_admin_token_manages_accounts(ctx: AppContext, client: WsgiClient, policy: str) -> None:
    admin = create_api_token(ctx, label="provisioning", role="admin").secret
    reply = client.post(
        "/api/users",
        json_body={"username": "zanele", "role": "operator", "display_name": "Zanele M", "person": "alice"},
        headers=_auth(admin),
    )
    assert reply.status == 201
    created = reply.json()
    assert created["user"]["person"] == "alice" and created["user"]["must_change_password"] is True
    assert accounts.sign_in(ctx, "zanele", created["temporary_password"]).must_change_password
    reply = client.request("PATCH", "/api/users/zanele", json_body={"role": "supervisor", "active": False},
                           headers=_auth(admin))  # fmt: skip
    assert reply.status == 200 and reply.json()["user"]["role"] == "supervisor"
    assert reply.json()["user"]["active"] is False
    reply = client.request("PATCH", "/api/users/zanele", json_body={"password": "x"}, headers=_auth(admin))
    assert reply.status == 400 and "unknown fields: password" in reply.json()["message"]
    reply = client.post("/api/users/zanele/reset-password", headers=_auth(admin))
    assert reply.status == 200 and len(reply.json()["temporary_password"]) >= 12
    listed = client.get("/api/users", headers=_auth(admin)).json()["users"]
    assert [(u["username"], u["state"]) for u in listed] == [("zanele", "disabled")]
    assert "password_hash" not in str(listed)
    from engine import audit

    with read_session(ctx.sessions) as s:
        trail = {(e.actor, e.action) for e in audit.entries(s)}
    assert {("api:provisioning", "account_created"), ("api:provisioning", "account_updated"),
            ("api:provisioning", "password_reset")} <= trail  # fmt: skip


def test_a_supervisor_token_is_refused_administration_with_the_reason(
    client: WsgiClient, supervisor_token: str
) -> None:
    for method, path, body in (
        ("POST", "/api/users", {"username": "x", "role": "admin"}),
        ("GET", "/api/users", None),
        ("POST", "/api/tokens", {"label": "x", "role": "admin"}),
        ("GET", "/api/routing-keys", None),
    ):
        reply = client.request(method, path, json_body=body, headers=_auth(supervisor_token))
        assert reply.status == 403, path
        assert (
            reply.json()
            == {
                "error": "forbidden",
                "message": reply.json()["message"],
            }
            and "token 'supervisor-tool' has role supervisor; only an admin may" in reply.json()["message"]
        )


def test_tokens_and_routing_keys_over_http(ctx: AppContext, client: WsgiClient, policy: str) -> None:
    admin = create_api_token(ctx, label="provisioning", role="admin").secret
    made = client.post(
        "/api/tokens", json_body={"label": "wallboard", "role": "operator"}, headers=_auth(admin)
    )
    assert made.status == 201
    wallboard = made.json()["secret"]
    assert client.get("/api/incidents", headers=_auth(wallboard)).status == 200
    assert client.request("DELETE", f"/api/tokens/{made.json()['id']}", headers=_auth(admin)).status == 204
    assert client.get("/api/incidents", headers=_auth(wallboard)).status == 401
    key = client.post("/api/routing-keys", json_body={"policy": policy, "label": "alertmanager"},
                      headers=_auth(admin))  # fmt: skip
    assert key.status == 201 and len(key.json()["secret"]) == 32
    listed = client.get("/api/routing-keys", headers=_auth(admin)).json()["routing_keys"]
    assert [k["label"] for k in listed] == ["alertmanager"] and key.json()["secret"] not in str(listed)
    assert client.request("DELETE", "/api/routing-keys/alertmanager", headers=_auth(admin)).status == 204


def test_configuration_switches_and_the_audit_trail_over_http(
    ctx: AppContext, client: WsgiClient, policy: str, supervisor_token: str, operator_token: str
) -> None:
    document = {"people": [{"handle": "alice", "name": "Alice Dlamini-Zulu", "phone": "+27820000001"}]}
    reply = client.post("/api/config", json_body=document, headers=_auth(operator_token))
    assert reply.status == 403 and "only a supervisor or higher may save" in reply.json()["message"]
    reply = client.post("/api/config", json_body=document, headers=_auth(supervisor_token))
    assert reply.status == 200 and reply.json()["updated"] == {"people": 1}
    accounts_doc = {"accounts": [{"username": "ops", "role": "admin"}]}
    reply = client.post("/api/config", json_body=accounts_doc, headers=_auth(supervisor_token))
    assert reply.status == 403 and "only an admin may" in reply.json()["message"]
    yaml_text = client.get("/api/config", headers=_auth(operator_token)).text
    assert "Alice Dlamini-Zulu" in yaml_text and "accounts" not in yaml_text

    reply = client.request("PUT", "/api/switches/notifications_enabled", json_body={"enabled": False},
                           headers=_auth(supervisor_token))  # fmt: skip
    assert reply.json() == {"notifications_enabled": False, "escalations_enabled": True}
    reply = client.request("PUT", "/api/switches/nonsense", json_body={"enabled": False},
                           headers=_auth(supervisor_token))  # fmt: skip
    assert reply.status == 422 and "unknown switch" in reply.json()["message"]
    assert client.get("/api/switches", headers=_auth(operator_token)).json()["notifications_enabled"] is False

    entries = client.get("/api/audit?kind=config_updated", headers=_auth(supervisor_token)).json()["entries"]
    assert [(e["actor"], e["object_name"]) for e in entries] == [("api:supervisor-tool", "alice")]
    assert entries[0]["changes"] == [
        {"field": "name", "before": "Alice Dlamini", "after": "Alice Dlamini-Zulu"}
    ]
    reply = client.get("/api/audit?format=csv&person=supervisor", headers=_auth(supervisor_token))
    assert reply.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(reply.text)))
    assert rows[0][0] == "time (UTC)" and {r[4] for r in rows[1:]} == {
        "config_imported",
        "config_updated",
        "switch_changed",
    }
    assert client.get("/api/audit", headers=_auth(operator_token)).status == 403


def test_notes_assignment_reopen_and_the_handover_over_http(
    ctx: AppContext, client: WsgiClient, policy: str, operator_token: str
) -> None:
    incident = api.trigger(ctx, policy=policy, summary="Disk full on db1").incident_id
    headers = _auth(operator_token)
    assert (
        client.post(
            f"/api/incidents/{incident}/notes", json_body={"text": "rotating logs"}, headers=headers
        ).status
        == 201
    )
    reply = client.post(f"/api/incidents/{incident}/assign", json_body={"person": "bob"}, headers=headers)
    assert reply.status == 200 and reply.json()["person"] == "bob"
    assert client.post(f"/api/incidents/{incident}/assign", json_body={}, headers=headers).status == 400
    assert client.post(f"/api/incidents/{incident}/resolve", headers=headers).status == 200
    reply = client.post(
        f"/api/incidents/{incident}/reopen", json_body={"reason": "full again"}, headers=headers
    )
    assert reply.status == 200 and reply.json()["status"] == "open"
    reply = client.post(
        "/api/handover", json_body={"text": "db1 keeps filling up", "hours": 8}, headers=headers
    )
    assert reply.status == 201 and reply.json()["open_count"] == 1
    shown: dict[str, Any] = client.get("/api/handover", headers=headers).json()
    assert (
        shown["note"]["text"] == "db1 keeps filling up"
        and shown["note"]["author"] == "api:night-shift-script"
    )
    assert [i["id"] for i in shown["summary"]["unacknowledged"]] == [incident]
    events = client.get(f"/api/incidents/{incident}", headers=headers).json()["events"]
    assert {e["actor"] for e in events if e["kind"] in ("note", "assigned", "reopened")} == {
        "api:night-shift-script"
    }
