"""Routing keys and API tokens are made on the command line, shown once, and work (or stop working) at once."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from engine.cli import main
from engine.context import AppContext
from engine.migrate import stamp
from engine.service.app import ServiceApp
from engine.service.health import ServiceState
from tests.signin import Typed, add_account

from .conftest import WsgiClient


@pytest.fixture
def cli(ctx: AppContext, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """`cli(*args)`: the command line, signed in as the administrator "boss" (password piped on stdin)."""
    stamp(ctx.db)  # the fixture's schema comes from the models; the CLI wants a migrated database
    url = ctx.db.url.render_as_string(hide_password=False)
    password = add_account(url, "boss", "admin")

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", Typed(password))
        code = main(["--db", url, "--user", "boss", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_routing_key_made_on_the_command_line_opens_incidents_until_revoked(
    ctx: AppContext, cli: Any, client: Any, policy: str, event_body: Any, counts: Any
) -> None:
    code, out, _ = cli("keys", "create", "--policy", policy, "--label", "alertmanager-prod", "--json")
    assert code == 0
    created = json.loads(out)
    assert created["policy"] == policy and len(created["secret"]) >= 32

    reply = client.post("/v2/enqueue", json_body=event_body(created["secret"]))
    assert reply.status == 202

    code, out, _ = cli("keys", "list")
    assert code == 0
    assert "alertmanager-prod" in out and created["secret"] not in out  # listed, never shown again

    assert cli("keys", "revoke", str(created["id"]))[0] == 0
    # A node that has not seen the key (or whose 5-second key cache has expired) refuses it.
    other_node = WsgiClient(ServiceApp(ctx, ServiceState(started_at=ctx.clock.now())))
    before = counts()
    reply = other_node.post("/v2/enqueue", json_body=event_body(created["secret"], dedup_key="another"))
    assert reply.status == 400
    assert counts()["incident"] == before["incident"]


def test_api_token_role_comes_from_the_command_line(cli: Any, client: Any) -> None:
    code, out, _ = cli("tokens", "create", "--label", "wallboard", "--role", "operator", "--json")
    assert code == 0
    token = json.loads(out)["secret"]
    assert client.get("/api/incidents", headers={"Authorization": f"Bearer {token}"}).status == 200

    assert cli("tokens", "revoke", "wallboard")[0] == 0
    assert client.get("/api/incidents", headers={"Authorization": f"Bearer {token}"}).status == 401


def test_routing_key_for_an_unknown_policy_is_refused_with_one_line(cli: Any) -> None:
    code, out, err = cli("keys", "create", "--policy", "no-such-policy", "--label", "x")
    assert code == 1
    assert out == ""
    assert err.strip() == "error: no escalation policy named 'no-such-policy'"
