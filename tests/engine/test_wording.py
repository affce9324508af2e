"""Operators' words for the timeline: every event kind the engine writes has a phrase of its own.

The kinds are found in engine/ itself (calls to engine.timeline's record/emit, the batch's event rows, the
kinds handed to escalation transitions and configuration writes), so a kind added later without a phrase
fails here rather than showing "some_code" to an operator.
"""

from __future__ import annotations

import ast
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from engine import board, wording
from engine.channels.console import CONSOLE_POPUP_EVENT
from engine.context import AppContext
from engine.models import EscalationState, Event, Incident, MessageStatus, OutboxMessage, Page, Person

ENGINE = Path(wording.__file__).parent
# Functions that hand their `kind=` (or, for _write, their third argument) to timeline.record/emit.
KIND_KEYWORD_CALLS = {"transition", "_end_escalations"}


def _strings(node: ast.AST) -> set[str]:
    """The string constants a kind expression can take (a literal, or both branches of `a if c else b`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _strings(node.body) | _strings(node.orelse)
    return set()


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def written_kinds() -> set[str]:
    kinds: set[str] = {f"escalation_{state.value}" for state in EscalationState} | {CONSOLE_POPUP_EVENT}
    for path in ENGINE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        from_timeline = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "engine.timeline"
            for alias in node.names
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name, func = _name(node.func), node.func
                timeline_call = name in ("record", "emit") and (
                    (isinstance(func, ast.Attribute) and _name(func.value) == "timeline")
                    or (isinstance(func, ast.Name) and func.id in from_timeline)
                )
                if timeline_call and len(node.args) >= 2:
                    kinds |= _strings(node.args[1])
                if name == "_Event" and node.args:  # engine.batch's buffered event rows
                    kinds |= _strings(node.args[0])
                if name == "_write" and len(node.args) >= 3:  # engine.config_io's saves and imports
                    kinds |= _strings(node.args[2])
                if name in KIND_KEYWORD_CALLS:
                    for keyword in node.keywords:
                        if keyword.arg == "kind":
                            kinds |= _strings(keyword.value)
            if isinstance(node, ast.Dict):  # event rows written with one INSERT (batch, dispatch)
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if {"kind", "at", "actor"} <= keys:
                    for key, value in zip(node.keys, node.values, strict=True):
                        if isinstance(key, ast.Constant) and key.value == "kind":
                            kinds |= _strings(value)
    return kinds


def test_every_event_kind_the_engine_writes_reads_in_operators_words() -> None:
    kinds = written_kinds()
    # The scan finds the kinds written in every module that writes them (a sanity check on the scan).
    assert {"triggered", "acknowledged", "sla_breached", "message_sent", "config_imported"} <= kinds
    assert {
        "reply_handled",
        "reply_not_applied",
        "page_fallback",
        "auto_resolved",
        "escalation_timed_out",
    } <= kinds
    missing = sorted(kinds - wording.EVENT_WORDS.keys())
    assert missing == [], f"event kinds without operators' words: {missing}"
    for kind in kinds:
        text = wording.event_text(kind)
        assert "_" not in text and text[0].isupper(), (kind, text)


def test_a_reporter_update_reads_as_one_and_a_page_names_its_level() -> None:
    assert (
        wording.entry_text({"type": "message", "kind": "reporter_update"}) == "Status update to the reporter"
    )
    assert wording.entry_text({"type": "message", "kind": "page", "level": 2}) == "Page (level 2)"
    assert wording.entry_text({"type": "message", "kind": "notice"}) == "Notice to a person paged"
    assert wording.entry_text({"type": "reply", "kind": "ack"}) == "Replied: acknowledge"
    assert wording.entry_text({"type": "note", "kind": "note"}) == "Note"


def test_events_say_which_deadline_and_which_level() -> None:
    assert wording.event_text("sla_warning", {"kind": "response"}) == "Response SLA warning"
    assert wording.event_text("sla_breached", {"kind": "resolution"}) == "Resolution SLA breached"
    assert wording.event_text("escalation_active", {"level": 2}) == "Level 2 paged"
    assert wording.event_text("escalation_escalating", {"level": 3}) == "Escalating to level 3"
    assert wording.event_text("escalation_timed_out") == "Escalation ran out: nobody acknowledged"


def test_every_delivery_status_and_an_unknown_kind_read_as_words() -> None:
    for status in MessageStatus:
        assert "_" not in wording.message_status_text(status.value)
    assert wording.message_status_text("delivered", simulated=True) == "delivered (simulated)"
    assert wording.event_text("something_new_later") == "Something new later"
    assert wording.reply_text("snooze") == "Replied: snooze"


def seed_paged_then_reporter_update(sessions: sessionmaker[Session], now: datetime) -> int:
    """An incident whose level 1 paged Thandi by SMS, then the engine texted the reporter a status update,
    then the response deadline warned: what the board, the detail and the history all show."""
    with sessions.begin() as s:
        thandi = Person(handle="thandi", name="Thandi Nkosi", phone="+27821234567")
        incident = Incident(
            key="wording-1",
            summary="Smoke in block C",
            status="open",
            created_at=now - timedelta(minutes=10),
            updated_at=now,
            last_triggered_at=now - timedelta(minutes=10),
            reporter_name="Mrs Dlamini",
            reporter_contact="+27825550100",
        )
        s.add_all([thandi, incident])
        s.flush()
        page = Page(incident_id=incident.id, person_id=thandi.id, status="active", level=1)
        s.add(page)
        s.flush()
        s.add(
            OutboxMessage(
                idempotency_key="page-1",
                kind="page",
                incident_id=incident.id,
                page_id=page.id,
                person_id=thandi.id,
                level=1,
                channel="sms",
                address="+27821234567",
                status="delivered",
                created_at=now - timedelta(minutes=9),
            )
        )
        s.add(
            OutboxMessage(
                idempotency_key="reporter-1",
                kind="reporter_update",
                incident_id=incident.id,
                channel="whatsapp",
                address="+27825550100",
                status="pending",
                created_at=now - timedelta(minutes=5),
            )
        )
        s.add(
            Event(
                kind="sla_warning",
                at=now - timedelta(minutes=4),
                incident_id=incident.id,
                actor="sla",
                message="Response deadline in 5 min",
                data={"kind": "response"},
            )
        )
        return int(incident.id)


def test_the_board_shows_the_last_page_not_the_status_update_to_the_reporter(ctx: AppContext) -> None:
    incident_id = seed_paged_then_reporter_update(ctx.sessions, ctx.clock.now())
    with ctx.sessions() as s:
        row = board.board_rows(s, [incident_id])[0]
    assert (row["last_recipient"], row["last_channel"], row["last_delivery"]) == (
        "Thandi Nkosi",
        "sms",
        "delivered",
    )
