"""Events API v2 intake: the PagerDuty-compatible `POST /v2/enqueue` that Alertmanager, Grafana and scripts use.

`parse_event` checks a decoded JSON body and either returns an `EnqueueEvent` or the list of problems, in
PagerDuty's wording; nothing is written until an event is valid and its routing key is known. `process_event`
turns a valid event into engine.api.trigger / acknowledge / resolve. Severity maps critical/error/warning/info
to Watchkeeper's critical/high/medium/info.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from engine.context import AppContext
from engine.db import read_session
from engine.errors import InvalidTransition, NotFound
from engine.models import OPEN_INCIDENT_STATUSES, Incident
from engine.service import integration
from engine.service.keys import RoutingTarget, resolve_routing_key

SEVERITY_MAP = {"critical": "critical", "error": "high", "warning": "medium", "info": "info"}
ACTIONS = ("trigger", "acknowledge", "resolve")
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
MAX_SHORT_FIELD = 255
INVALID_ROUTING_KEY = "Invalid routing key"


@dataclass(frozen=True)
class EnqueueEvent:
    routing_key: str
    event_action: str
    dedup_key: str | None
    summary: str = ""
    severity: str = ""
    source: str = ""
    component: str = ""
    group: str = ""
    event_class: str = ""
    timestamp: str = ""
    custom_details: Any = None
    client: str = ""
    client_url: str = ""
    links: list[Any] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class EnqueueResult:
    dedup_key: str
    incident_id: int | None
    outcome: str  # triggered, deduplicated, acknowledged, resolved, ignored


def _text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def parse_event(body: Any) -> tuple[EnqueueEvent | None, list[str]]:
    """Validate a decoded JSON body. Returns (event, []) or (None, errors)."""
    errors: list[str] = []
    if not isinstance(body, dict):
        return None, ["Event object must be a JSON object"]
    routing_key = body.get("routing_key")
    if not isinstance(routing_key, str) or not routing_key.strip():
        errors.append("'routing_key' is missing or blank")
    elif len(routing_key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = body.get("event_action")
    if not _text(action):
        errors.append("'event_action' is missing or blank")
    elif action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    dedup_key = body.get("dedup_key")
    if dedup_key is not None and not isinstance(dedup_key, str):
        errors.append("'dedup_key' must be a string")
        dedup_key = None
    elif isinstance(dedup_key, str):
        dedup_key = dedup_key.strip() or None
        if dedup_key is not None and len(dedup_key) > MAX_DEDUP_KEY:
            errors.append(f"'dedup_key' is too long (max {MAX_DEDUP_KEY} characters)")
    if action in ("acknowledge", "resolve") and not dedup_key:
        errors.append("'dedup_key' is missing or blank (needed to acknowledge or resolve)")
    payload: dict[str, Any] = {}
    if action == "trigger":
        raw_payload = body.get("payload")
        if not isinstance(raw_payload, dict):
            errors.append("'payload' is missing or blank")
        else:
            payload = raw_payload
            if not _text(payload.get("summary")):
                errors.append("'payload.summary' is missing or blank")
            elif len(payload["summary"]) > MAX_SUMMARY:
                errors.append(f"'payload.summary' is too long (max {MAX_SUMMARY} characters)")
            if not _text(payload.get("source")):
                errors.append("'payload.source' is missing or blank")
            severity = payload.get("severity")
            if not _text(severity):
                errors.append("'payload.severity' is missing or blank")
            elif severity not in SEVERITY_MAP:
                errors.append("'payload.severity' is invalid (must be one of critical, error, warning, info)")
            for name in ("source", "component", "group", "class", "timestamp"):
                value = payload.get(name)
                if value is not None and not isinstance(value, str):
                    errors.append(f"'payload.{name}' must be a string")
                elif isinstance(value, str) and len(value) > MAX_SHORT_FIELD:
                    errors.append(f"'payload.{name}' is too long (max {MAX_SHORT_FIELD} characters)")
    for name in ("links", "images"):
        if body.get(name) is not None and not isinstance(body.get(name), list):
            errors.append(f"'{name}' must be an array")
    for name in ("client", "client_url"):
        if body.get(name) is not None and not isinstance(body.get(name), str):
            errors.append(f"'{name}' must be a string")
    if errors:
        return None, errors
    return (
        EnqueueEvent(
            routing_key=str(routing_key),
            event_action=str(action),
            dedup_key=dedup_key,
            summary=str(payload.get("summary") or "").strip(),
            severity=str(payload.get("severity") or ""),
            source=str(payload.get("source") or ""),
            component=str(payload.get("component") or ""),
            group=str(payload.get("group") or ""),
            event_class=str(payload.get("class") or ""),
            timestamp=str(payload.get("timestamp") or ""),
            custom_details=payload.get("custom_details"),
            client=str(body.get("client") or ""),
            client_url=str(body.get("client_url") or ""),
            links=list(body.get("links") or []),
            images=list(body.get("images") or []),
        ),
        [],
    )


def lookup_routing_key(ctx: AppContext, plain: str) -> RoutingTarget | None:
    with read_session(ctx.sessions) as session:
        return resolve_routing_key(session, plain)


def open_incidents_by_key(ctx: AppContext, keys: Iterable[str]) -> dict[str, int]:
    """The open incident (the latest, as `open_incident_with_key` picks) of each of these keys that has one:
    one query per 500 keys for a batch of queued events."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    open_statuses = [s.value for s in OPEN_INCIDENT_STATUSES]
    found: dict[str, int] = {}
    with read_session(ctx.sessions) as session:
        for start in range(0, len(wanted), 500):
            found.update(
                (str(key), int(incident_id))
                for key, incident_id in session.execute(
                    select(Incident.key, func.max(Incident.id))
                    .where(Incident.key.in_(wanted[start : start + 500]), Incident.status.in_(open_statuses))
                    .group_by(Incident.key)
                )
            )
    return found


def keys_with_open_incidents(ctx: AppContext, keys: Iterable[str]) -> set[str]:
    """Which of these keys have an open incident now."""
    return set(open_incidents_by_key(ctx, keys))


def open_incident_with_key(ctx: AppContext, key: str) -> int | None:
    with read_session(ctx.sessions) as session:
        found = session.scalar(
            select(Incident.id)
            .where(Incident.key == key, Incident.status.in_([s.value for s in OPEN_INCIDENT_STATUSES]))
            .order_by(Incident.id.desc())
            .limit(1)
        )
        return int(found) if found is not None else None


def _details_text(event: EnqueueEvent) -> str:
    lines = [
        f"{name}: {value}"
        for name, value in (
            ("source", event.source),
            ("component", event.component),
            ("group", event.group),
            ("class", event.event_class),
            ("timestamp", event.timestamp),
        )
        if value
    ]
    if event.custom_details not in (None, "", {}, []):
        if isinstance(event.custom_details, str):
            lines.append(event.custom_details)
        else:
            lines.append(json.dumps(event.custom_details, indent=2, sort_keys=True, ensure_ascii=False))
    if event.client_url:
        lines.append(f"{event.client or 'link'}: {event.client_url}")
    return "\n".join(lines)


def trigger_arguments(event: EnqueueEvent, target: RoutingTarget, dedup_key: str) -> dict[str, Any]:
    """The keyword arguments of engine.api.trigger (and the fields of a TriggerRequest) for a trigger event."""
    custom: dict[str, Any] = {
        "events_api": {
            "routing_key": target.label,
            "source": event.source,
            "component": event.component,
            "group": event.group,
            "class": event.event_class,
            "timestamp": event.timestamp,
            "client": event.client,
            "client_url": event.client_url,
        }
    }
    if event.custom_details is not None:
        custom["custom_details"] = event.custom_details
    if event.links:
        custom["links"] = event.links
    if event.images:
        custom["images"] = event.images
    return {
        "policy": target.policy_name,
        "summary": event.summary,
        "key": dedup_key,
        "severity": SEVERITY_MAP[event.severity],
        "details": _details_text(event),
        "source": "monitoring",
        "actor": f"events-api:{target.label}",
        "custom": custom,
    }


def process_event(
    ctx: AppContext, event: EnqueueEvent, target: RoutingTarget, *, receipt: str | None = None
) -> EnqueueResult:
    """Apply a valid event whose routing key is known. A trigger opens an incident keyed by its dedup_key, or
    joins the open one of that key (PagerDuty's semantics: the same alert firing again — Alertmanager re-sends
    every repeat_interval — neither opens a second incident nor pages again); engine.api decides that under a
    lock on the key, so two nodes never both open one. Acknowledge and resolve of a key with no open incident
    are accepted and change nothing, as PagerDuty does. `receipt`: the queued event's uid, recorded in the
    same transaction as what the event did (engine.receipts)."""
    api = integration.api()
    actor = f"events-api:{target.label}"
    if event.event_action == "trigger":
        dedup_key = event.dedup_key or uuid.uuid4().hex
        result = api.trigger(ctx, **trigger_arguments(event, target, dedup_key), receipt=receipt)
        return EnqueueResult(
            dedup_key=dedup_key,
            incident_id=int(result.incident_id),
            outcome="deduplicated" if result.deduplicated else "triggered",
        )
    dedup_key = str(event.dedup_key)
    try:
        if event.event_action == "acknowledge":
            done = api.acknowledge(ctx, dedup_key, by=actor, via="events-api", receipt=receipt)
            outcome = "acknowledged"
        else:
            done = api.resolve(ctx, dedup_key, by=actor, via="events-api", receipt=receipt)
            outcome = "resolved"
    except (NotFound, InvalidTransition):
        return EnqueueResult(dedup_key=dedup_key, incident_id=None, outcome="ignored")
    incident_id = done.get("id") if isinstance(done, dict) else None
    return EnqueueResult(
        dedup_key=dedup_key,
        incident_id=int(incident_id) if incident_id is not None else None,
        outcome=outcome,
    )
