"""What a timeline entry says to an operator: one phrase per event kind the engine writes, per kind of
message sent, per reply received and per delivery status.

The engine names events with codes (`reporter_update`, `escalation_timed_out`) that are stable for queries and
exports; every place a person reads an entry (the incident detail, the history, the board's last page) asks
here instead, so the same thing always reads the same way. An unknown kind (one written by a newer engine)
still reads as words, never as a code with underscores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Every event kind the engine writes to the timeline (tests/engine/test_wording.py finds them in engine/).
EVENT_WORDS: dict[str, str] = {
    # an incident's life
    "triggered": "Incident opened",
    "retriggered": "Reported again",
    "reopened": "Re-opened",
    "not_escalated": "Opened without an escalation",
    "acknowledged": "Acknowledged",
    "resolved": "Resolved",
    "auto_resolved": "Resolved automatically",
    "cancelled": "Cancelled",
    "status_changed": "Status changed",
    "assigned": "Re-assigned",
    "category_changed": "Category changed",
    "sensitive_changed": "Sensitive flag changed",
    "note": "Note",
    "note_added": "Note",
    # the escalation
    "escalation_started": "Escalation started",
    "escalation_pending": "Escalation waiting",
    "escalation_active": "Level paged",
    "escalation_escalating": "Escalating",
    "escalation_acknowledged": "Escalation stopped: acknowledged",
    "escalation_resolved": "Escalation ended: resolved",
    "escalation_cancelled": "Escalation cancelled",
    "escalation_timed_out": "Escalation ran out: nobody acknowledged",
    "escalation_failed": "Escalation failed",
    "escalation_reason": "Why it escalated",
    "levels_done": "Every level paged",
    "level_repeated": "Level paged again",
    "target_unresolved": "Nobody to page for a target",
    "waiting_business_hours": "Waiting for business hours",
    # one person's page
    "page_held": "Page held (quiet hours)",
    "page_fallback": "Trying the next channel",
    "page_fallback_unavailable": "Next channel not available",
    "page_exhausted": "Every channel tried, no answer",
    "page_cancelled": "Paging stopped",
    "page_confirmed": "Page answered",
    # messages
    "message_sent": "Message sent",
    "message_status": "Delivery update",
    "message_failed": "Message failed",
    "message_skipped": "Message skipped",
    "message_held": "Message held",
    "message_retry": "Message will be tried again",
    "message_found_sent": "Message found already sent",
    "message_deadline_passed": "Message not sent in time",
    "message_price_missing": "Price not reported by the provider",
    "console_popup": "Console pop-up",
    # replies
    "reply_handled": "Reply acted on",
    "reply_not_applied": "Reply not acted on",
    "reply_unmatched": "Reply that matched no page",
    "inbound_unmatched": "Message not understood",
    "person_opted_out": "Opted out of a channel",
    "person_opted_in": "Opted back in to a channel",
    # SLA and workflow items
    "sla_warning": "SLA warning",
    "sla_breached": "SLA breached",
    "workflow_overdue": "Workflow item overdue",
    "workflow_escalated": "Workflow item escalated",
    "workflow_expired": "Workflow item expired",
    # configuration and access
    "operator_created": "Account created",
    "config_changed": "Configuration saved",
    "config_imported": "Configuration imported",
    "switch_changed": "Master switch changed",
    "templates_installed": "Message templates installed",
    "template_error": "Message template failed",
    "routing_key_created": "Routing key created",
    "routing_key_revoked": "Routing key revoked",
    "api_token_created": "API token created",
    "api_token_revoked": "API token revoked",
}

# OutboxMessage.kind: what was sent, and to whom.
MESSAGE_WORDS: dict[str, str] = {
    "page": "Page",
    "notice": "Notice to a person paged",
    "reporter_update": "Status update to the reporter",
    "reminder": "Reminder",
    "test": "Test message",
}

MESSAGE_STATUS_WORDS: dict[str, str] = {
    "pending": "waiting to send",
    "sending": "sending",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "not delivered",
    "cancelled": "not sent (stopped)",
}

# InboundMessage.action (engine.replies.parse_reply).
REPLY_WORDS: dict[str, str] = {
    "ack": "Replied: acknowledge",
    "resolve": "Replied: resolve",
    "stop": "Replied: stop messages",
    "start": "Replied: start messages again",
    "unknown": "Reply not understood",
}


def _words(code: str) -> str:
    text = str(code or "").replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else "—"


def event_text(kind: str, data: Mapping[str, Any] | None = None) -> str:
    """What an event says, e.g. "Response SLA warning", "Level 2 paged", "Escalation ran out: nobody
    acknowledged"."""
    data = data or {}
    if kind in ("sla_warning", "sla_breached") and data.get("kind") in ("response", "resolution"):
        return f"{str(data['kind']).title()} {EVENT_WORDS[kind]}"
    if kind == "escalation_active" and data.get("level"):
        return f"Level {data['level']} paged"
    if kind == "escalation_escalating" and data.get("level"):
        return f"Escalating to level {data['level']}"
    return EVENT_WORDS.get(kind) or _words(kind)


def message_text(kind: str, level: int | None = None) -> str:
    """What a message was: "Page (level 2)", "Status update to the reporter"."""
    text = MESSAGE_WORDS.get(kind) or _words(kind)
    return f"{text} (level {level})" if kind == "page" and level else text


def message_status_text(status: str, simulated: bool = False) -> str:
    text = MESSAGE_STATUS_WORDS.get(status) or _words(status).lower()
    return f"{text} (simulated)" if simulated else text


def reply_text(action: str) -> str:
    return REPLY_WORDS.get(action) or f"Replied: {_words(action).lower()}"


def entry_text(item: Mapping[str, Any]) -> str:
    """The "what" of one entry of engine.board.incident_detail's timeline (an event, a message, a reply)."""
    kind = str(item.get("kind") or "")
    match item.get("type"):
        case "message":
            return message_text(kind, item.get("level"))
        case "reply":
            return reply_text(kind)
        case "note":
            return "Note"
    return event_text(kind, item.get("data"))
