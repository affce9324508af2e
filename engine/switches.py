"""Centre-wide master switches, shared by every node through the database (SystemSetting rows).

`notifications_enabled` stops in-app notifications and reminders; `escalations_enabled` stops automatic
escalations (SLA breaches, overdue workflow items). Both default to on. A pass that finds its switch off does
nothing and marks nothing, so the work it skipped is still due when the switch goes back on.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from engine import audit
from engine.errors import ValidationError
from engine.models import SystemSetting
from engine.permissions import Action, Identity, as_identity, authorize
from engine.timeline import record

NOTIFICATIONS_ENABLED = "notifications_enabled"
ESCALATIONS_ENABLED = "escalations_enabled"
SWITCHES = (NOTIFICATIONS_ENABLED, ESCALATIONS_ENABLED)


def _cache(session: Session) -> dict[str, bool]:
    """Switch values read in the session's current transaction (a pass asks hundreds of times)."""
    marker = session.get_transaction()
    cached = session.info.get("watchkeeper_switches")
    if cached is None or cached[0] is not marker:
        cached = (marker, {})
        session.info["watchkeeper_switches"] = cached
    values: dict[str, bool] = cached[1]
    return values


def get_switch(session: Session, name: str, default: bool = True) -> bool:
    cache = _cache(session)
    if name in cache:
        return cache[name]
    row = session.get(SystemSetting, name)
    if row is None or not isinstance(row.value, dict) or "enabled" not in row.value:
        value = default
    else:
        value = bool(row.value["enabled"])
    if session.get_transaction() is not None:
        cache[name] = value
    return value


def set_switch(
    session: Session, name: str, enabled: bool, *, now: datetime, by: Identity | str = "system"
) -> None:
    """Turn a switch on or off: needs a supervisor (engine.permissions); an audited change with the person,
    also written to the timeline."""
    if name not in SWITCHES:
        raise ValidationError(f"unknown switch {name!r}; known: {', '.join(SWITCHES)}", field="name")
    who = authorize(session, as_identity(by), Action.MASTER_SWITCHES)
    before = get_switch(session, name)
    row = session.get(SystemSetting, name)
    if row is None:
        row = SystemSetting(name=name, value={"enabled": enabled}, updated_at=now, updated_by=who.name)
        session.add(row)
    else:
        row.value = {"enabled": enabled}
        row.updated_at = now
        row.updated_by = who.name
    _cache(session)[name] = enabled
    audit.record(
        session,
        now,
        who,
        "switch_changed",
        object_kind="switch",
        object_name=name,
        message=f"{name} {'on' if enabled else 'off'}",
        changes=[audit.Change("enabled", before, enabled)] if before != enabled else [],
    )
    record(
        session,
        "switch_changed",
        now,
        actor=who.name,
        message=f"{name} {'on' if enabled else 'off'}",
        data={"name": name, "enabled": enabled},
    )


def all_switches(session: Session) -> dict[str, bool]:
    return {name: get_switch(session, name) for name in SWITCHES}


def notifications_enabled(session: Session) -> bool:
    return get_switch(session, NOTIFICATIONS_ENABLED)


def escalations_enabled(session: Session) -> bool:
    return get_switch(session, ESCALATIONS_ENABLED)
