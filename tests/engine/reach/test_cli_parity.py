"""The command line for a person: `show` reads as an incident, `stats` in percentages with filters (also over
HTTP), `trigger` says when no engine will act on it, and a mistyped SQLite path is refused, not created."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from engine import api
from engine.cli import main
from engine.db import write_session
from engine.models import Policy, PolicyLevel, PolicyTarget
from engine.service.app import ServiceApp
from tests.service.conftest import WsgiClient

from .conftest import Centre


def _policy(c: Centre) -> None:
    with write_session(c.ctx.sessions) as s:
        target = PolicyTarget(type="person", identifier="sipho")
        s.add(Policy(name="fire", levels=[PolicyLevel(level=1, targets=[target])]))


def test_show_prints_a_readable_incident_with_its_timeline_in_operators_words(centre: Centre) -> None:
    c = centre
    _policy(c)
    incident = api.trigger(c.ctx, policy="fire", summary="Smoke, Block C", severity="critical").incident_id
    api.add_note(c.ctx, incident, by="operator", text="Caller rang back")
    api.acknowledge(c.ctx, incident, by="operator")
    code, out, err = c.cli("operator", "show", str(incident))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"#{incident}  Smoke, Block C"
    assert any(line.split() == ["Status", "acknowledged"] for line in lines)
    assert any(line.split()[:2] == ["Severity", "critical"] for line in lines)
    assert "Timeline (" in out and "Messages (" in out and "\nSLA\n" in out and "\nEscalation\n" in out
    # The timeline in the console's words (engine.wording), not event codes.
    assert any(line.endswith("Note — operator: Caller rang back") for line in lines)
    assert any("Acknowledged — operator" in line for line in lines)
    assert "incident_acknowledged" not in out and "escalation_active" not in out
    assert "idempotency_key" not in out and "{" not in out
    code, out, _ = c.cli("operator", "show", str(incident), "--json")
    assert '"idempotency_key"' in out or '"messages": []' in out


def test_stats_prints_percentages_and_takes_filters_on_the_command_line_and_http(centre: Centre) -> None:
    c = centre
    _policy(c)
    first = api.trigger(c.ctx, policy="fire", summary="Smoke", severity="high", key="a").incident_id
    api.trigger(c.ctx, policy="fire", summary="Leak", severity="low", key="b")
    api.acknowledge(c.ctx, first, by="operator")
    code, out, err = c.cli("operator", "stats")
    assert code == 0, err
    assert "Acknowledged" in out and "50.0 %" in out
    code, out, _ = c.cli("operator", "stats", "--severity", "high")
    assert "(severity high)" in out.splitlines()[0] and "100.0 %" in out
    code, _, err = c.cli("operator", "stats", "--team", "nobody")
    assert code == 1 and "no team with handle 'nobody'" in err
    client = WsgiClient(ServiceApp(c.ctx))
    auth = {"Authorization": f"Bearer {c.tokens['operator']}"}
    data = client.get("/api/stats?severity=low", headers=auth).json()
    assert (data["incidents"]["total"], data["filters"]) == (1, {"severity": "low"})
    assert client.get("/api/stats?colour=red", headers=auth).status == 400


def test_trigger_says_when_no_engine_is_running(centre: Centre) -> None:
    c = centre
    _policy(c)
    code, out, err = c.cli("operator", "trigger", "--policy", "fire", "--summary", "Smoke")
    assert code == 0 and out.startswith("incident ")
    assert "note: no engine is running on this database" in err


def _bare(*args: str) -> tuple[int, str]:
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
    try:
        return main(list(args)), sys.stderr.getvalue()
    finally:
        sys.stdout, sys.stderr = old


def test_a_sqlite_path_that_does_not_exist_is_refused_except_by_db_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "mistyped.db"
    code, err = _bare("--db", str(path), "list")
    assert code == 1
    assert f"no database at {path}" in err and "db upgrade" in err
    assert not path.exists()
    code, err = _bare("--db", str(path), "db", "upgrade")
    assert (code, path.exists()) == (0, True), err
    code, err = _bare("--db", str(path), "list")
    assert code == 0, err
