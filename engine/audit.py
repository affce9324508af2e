"""The audit trail: who changed what and when, with the real person, field by field.

Every change a person makes outside the life of an incident writes one AuditEntry in the same transaction as
the change: sign-in (and failed sign-ins, lock-outs, sign-out), configuration saves with each changed field's
before and after, deletes, imports with what they changed, settings, secrets (the name and that it changed,
never the value), accounts, routing keys and API tokens, master switches, handover notes. Incident actions
(acknowledge, resolve, …) stay in the incident timeline (the event table), where they already name who.

`search` pages through entries newest first by person, kind, object and time; `write_csv` writes what a
search matches, for a supervisor's report. Both are bounded queries on indexed columns.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from engine.context import AppContext
from engine.db import write_session
from engine.history import MAX_PAGE, ResultPage, _bounds, _like, _page
from engine.models import AuditEntry
from engine.permissions import Identity, as_identity

# The kinds of entry (AuditEntry.action), in the order the audit view lists them, with what each means.
ACTIONS: dict[str, str] = {
    "sign_in": "signed in",
    "sign_in_failed": "failed sign-in",
    "account_locked": "account locked after failed sign-ins",
    "sign_out": "signed out",
    "password_changed": "changed own password",
    "handover_note": "wrote a handover note",
    "config_created": "configuration created",
    "config_updated": "configuration changed",
    "config_deleted": "configuration deleted",
    "config_imported": "configuration imported",
    "setting_changed": "setting changed",
    "secret_set": "secret set",
    "secret_removed": "secret removed",
    "switch_changed": "master switch turned on or off",
    "account_created": "account created",
    "account_updated": "account changed",
    "account_disabled": "account disabled",
    "account_enabled": "account enabled",
    "password_reset": "password reset",
    "token_created": "API token created",
    "token_revoked": "API token revoked",
    "routing_key_created": "routing key created",
    "routing_key_revoked": "routing key revoked",
    "database_roles": "database roles and grants",
    "test_send": "test message sent",
    "item_created": "workflow item added",
    "item_assigned": "workflow item re-assigned",
    "item_completed": "workflow item done",
    "message_retried": "failed message retried",
    "message_resent": "message sent again on another channel",
}

CSV_COLUMNS = ("time (UTC)", "person", "role", "via", "kind", "object kind", "object", "message", "changes")
MAX_CSV_ROWS = 1_000_000
MAX_CHANGES = 200  # per entry: a whole policy rewritten is still one readable entry


@dataclass(frozen=True)
class Change:
    field: str
    before: Any
    after: Any

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    actor_role: str
    via: str
    action: str
    object_kind: str
    object_name: str
    message: str
    changes: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def changes_text(self) -> str:
        """'field: before → after' lines, as the audit view and the CSV show them."""
        return "\n".join(
            f"{c.get('field', '')}: {show_value(c.get('before'))} → {show_value(c.get('after'))}"
            for c in self.changes
        )


def show_value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return repr(value) if value == "" or value != value.strip() else value
    return json.dumps(value, ensure_ascii=False, default=str)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for key, inner in value.items():
            _flatten(inner, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list) and value and any(isinstance(v, Mapping | list) for v in value):
        for i, inner in enumerate(value):
            _flatten(inner, f"{prefix}[{i}]", out)
    else:
        out[prefix] = _jsonable(value)


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[Change]:
    """Field-by-field changes between two objects in document form: nested objects and lists of objects are
    walked (`levels[1].targets[0].identifier`), plain lists compared whole. A created object lists every
    field against None, a deleted one every field against None the other way."""
    flat_before: dict[str, Any] = {}
    flat_after: dict[str, Any] = {}
    _flatten(dict(before or {}), "", flat_before)
    _flatten(dict(after or {}), "", flat_after)
    fields = list(flat_before)
    fields += [f for f in flat_after if f not in flat_before]
    changes = [
        Change(f, flat_before.get(f), flat_after.get(f))
        for f in fields
        if flat_before.get(f) != flat_after.get(f)
    ]
    return changes[:MAX_CHANGES]


def record(
    session: Session,
    now: datetime,
    actor: Identity | str,
    action: str,
    *,
    object_kind: str = "",
    object_name: str = "",
    message: str = "",
    changes: Iterable[Change] = (),
    data: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Write one entry in the session's transaction (it commits or rolls back with the change itself)."""
    who = as_identity(actor)
    entry = AuditEntry(
        at=now,
        actor=who.name[:200],
        actor_role="" if who.kind == "system" else who.role,
        via=who.via or ("" if who.kind != "system" else "engine"),
        action=action,
        object_kind=object_kind[:32],
        object_name=object_name[:255],
        message=message,
        changes=[c.as_dict() for c in changes],
        data=_jsonable(dict(data or {})),
    )
    session.add(entry)
    return entry


def record_now(ctx: AppContext, actor: Identity | str, action: str, **fields: Any) -> None:
    """`record` in a transaction of its own, for a change kept outside the database (a settings file, a
    secret in the keyring) that has just been made."""
    with write_session(ctx.sessions) as session:
        record(session, ctx.clock.now(), actor, action, **fields)


def _record(entry: AuditEntry) -> AuditRecord:
    found = {f.name: getattr(entry, f.name) for f in fields(AuditRecord)}
    return AuditRecord(**{**found, "changes": list(entry.changes or []), "data": dict(entry.data or {})})


def _conditions(
    person: str, kind: str, obj: str, since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(AuditEntry.at >= since)
    if until is not None:
        conditions.append(AuditEntry.at < until)
    who = person.strip()
    if who:
        conditions.append(AuditEntry.actor.ilike(_like(who), escape="\\"))
    if kind.strip():
        kinds = [k.strip() for k in kind.split(",") if k.strip()]
        conditions.append(AuditEntry.action.in_(kinds))
    what = obj.strip()
    if what:
        kind_part, sep, name_part = what.partition(":")
        if sep and kind_part and " " not in kind_part:
            # "policy:Fire" — an object kind, then (part of) its name
            conditions.append(AuditEntry.object_kind == kind_part.strip())
            if name_part.strip():
                conditions.append(AuditEntry.object_name.ilike(_like(name_part.strip()), escape="\\"))
        else:
            pattern = _like(what)
            conditions.append(
                or_(
                    AuditEntry.object_name.ilike(pattern, escape="\\"),
                    AuditEntry.object_kind.ilike(pattern, escape="\\"),
                )
            )
    return conditions


def search(
    session: Session,
    *,
    person: str = "",
    kind: str = "",
    obj: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    offset: int = 0,
    limit: int = 100,
) -> ResultPage[AuditRecord]:
    """Entries in [since, until), newest first. `person` matches part of who acted; `kind` is one kind or
    several separated by commas; `obj` matches part of the object's name or kind, or `kind:name` for one
    kind of object (`policy:fire`)."""
    limit, offset = _bounds(limit, offset)
    stmt = (
        select(AuditEntry)
        .where(*_conditions(person, kind, obj, since, until))
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    )
    rows, more = _page(session, stmt, limit, offset)
    return ResultPage(rows=[_record(r[0]) for r in rows], offset=offset, limit=limit, has_more=more)


def people(session: Session, limit: int = 500) -> list[str]:
    """Everyone who appears in the trail (for the audit view's person filter)."""
    return sorted(set(session.scalars(select(AuditEntry.actor).distinct().limit(limit))), key=str.lower)


def csv_row(r: AuditRecord) -> list[str]:
    return [
        r.at.strftime("%Y-%m-%d %H:%M:%S"),
        r.actor,
        r.actor_role,
        r.via,
        r.action,
        r.object_kind,
        r.object_name,
        r.message,
        r.changes_text(),
    ]


def write_csv(
    session: Session,
    out: TextIO,
    *,
    person: str = "",
    kind: str = "",
    obj: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Every entry a search with these filters finds, newest first, as CSV; returns how many were written.
    Read in pages, so a long trail never sits in memory at once."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    written = 0
    offset = 0
    while written < MAX_CSV_ROWS:
        page = search(
            session,
            person=person,
            kind=kind,
            obj=obj,
            since=since,
            until=until,
            offset=offset,
            limit=MAX_PAGE,
        )
        for r in page.rows:
            writer.writerow(csv_row(r))
        written += len(page.rows)
        if not page.has_more:
            break
        offset += len(page.rows)
    return written


def entries(session: Session, action: str | None = None, object_name: str | None = None) -> list[AuditRecord]:
    """All entries, oldest first, optionally of one kind or about one object (for tests and small reports)."""
    stmt = select(AuditEntry).order_by(AuditEntry.id)
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    if object_name is not None:
        stmt = stmt.where(AuditEntry.object_name == object_name)
    return [_record(e) for e in session.scalars(stmt)]
