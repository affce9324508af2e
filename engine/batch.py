"""Many triggers or acknowledgements in one write transaction, written set-based.

engine.api's `trigger_many` and `acknowledge_many` land here, and so do its single `trigger` and `acknowledge`
(a batch of one). A batch behaves exactly as the same calls made one after another — the same rows, the same
events in the same order, dedup inside the batch included — but commits once: on SQLite the commit and
SQLAlchemy's per-statement work are what limit a single call, so a batch of a few hundred costs little more
than one call does. Inside a batch every statement is prepared once and executed for all its rows
(executemany; INSERT … RETURNING through SQLAlchemy's "insertmanyvalues" with the ids in parameter order), a
policy snapshot is loaded once per distinct policy, SLA deadlines are computed once per (site, category), the
new escalation row once per (policy, severity); acknowledging locks its incidents and their latest escalations
with one statement each, cancels their pages, writes the notices to everyone already paged and the reporter
updates with one statement each.

Validation happens before the database is touched; a failure inside the transaction rolls the whole batch
back, so a batch is never half-written.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Text, bindparam, func, select, text, update
from sqlalchemy import cast as cast_
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from engine import contacts, paging, receipts, timeline
from engine import escalation as esc_mod
from engine.claims import insert_ignore
from engine.context import AppContext
from engine.db import retrying, write_session
from engine.errors import InvalidTransition, NotFound, ValidationError, WatchkeeperError
from engine.models import (
    OPEN_INCIDENT_STATUSES,
    Escalation,
    EscalationState,
    Incident,
    IncidentStatus,
    OutboxMessage,
    Page,
    Person,
    Policy,
    PolicyLevel,
    PolicyTarget,
    Severity,
    SystemSetting,
    Team,
    Trigger,
)
from engine.prepared import Copied, Prepared, constants

S = EscalationState
OPEN_STATUSES = tuple(s.value for s in OPEN_INCIDENT_STATUSES)
# Escalation states that page: a repeated trigger of an incident with one of these adds nothing.
_PAGING_STATES = (S.PENDING.value, S.ACTIVE.value, S.ESCALATING.value)
SEVERITIES = tuple(s.value for s in Severity)
ACKNOWLEDGEABLE = (IncidentStatus.OPEN.value, IncidentStatus.ESCALATED.value)
# Lists of ids go to the database this many at a time (far below SQLite's limit on bound parameters).
CHUNK = 1000


@dataclass(frozen=True)
class TriggerRequest:
    """One trigger, with the same fields and defaults as the keyword arguments of engine.api.trigger."""

    policy: str | None
    summary: str
    key: str | None = None
    severity: str = "high"
    category: str = "general"
    site: str = ""
    details: str = ""
    source: str = "operator"
    actor: str = "operator"
    sensitive: bool = False
    team: str | None = None
    reporter_name: str | None = None
    reporter_contact: str | None = None
    reporter_language: str = "en"
    custom: dict[str, Any] | None = None
    # An Events API event's uid: its receipt is written in the same transaction (engine.receipts).
    receipt: str | None = None


@dataclass(frozen=True)
class TriggerResult:
    incident_id: int
    escalation_id: int | None
    deduplicated: bool


# --------------------------------------------------------------------------------------------------------
# Shared helpers (engine.api uses them too)
# --------------------------------------------------------------------------------------------------------


def _text(value: Any, field: str, *, limit: int, required: bool = False, where: str = "") -> str:
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise ValidationError("must not be empty", where=where, field=field)
    if len(text) > limit:
        raise ValidationError(f"longer than {limit} characters", where=where, field=field)
    return text


def _chunks(values: Sequence[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), CHUNK):
        yield list(values[start : start + CHUNK])


def _summary(incident: Incident, esc: Escalation | None) -> dict[str, Any]:
    return {
        "id": incident.id,
        "key": incident.key,
        "status": incident.status,
        "summary": incident.summary,
        "severity": incident.severity,
        "escalation_id": esc.id if esc else None,
        "escalation_state": esc.state if esc else None,
        "current_level": esc.current_level if esc else None,
        "acknowledged_by": incident.acknowledged_by,
        "resolved_by": incident.resolved_by,
    }


# SLA settings looked up by a trigger are reused for a moment: under a burst of triggers one lookup serves
# them all, and an edited SLA configuration applies to new incidents within SLA_CACHE_SECONDS. Kept per
# database engine (weakly, so a new engine never inherits another database's configuration).
SLA_CACHE_SECONDS = 2.0
_sla_caches: weakref.WeakKeyDictionary[Any, tuple[float, Any]] = weakref.WeakKeyDictionary()


def _sla_cache(ctx: AppContext | None) -> Any:
    if ctx is None:
        return None
    try:
        from engine.sla import SlaCache
    except ImportError:
        return None
    born, cache = _sla_caches.get(ctx.db, (0.0, None))
    if cache is None or time.monotonic() - born > SLA_CACHE_SECONDS:
        cache = SlaCache()
        _sla_caches[ctx.db] = (time.monotonic(), cache)
    return cache


def _sla_values(
    session: Session, ctx: AppContext, *, site: str, category: str, sensitive: bool, now: datetime
) -> dict[str, Any]:
    """A new incident's SLA columns (deadlines run from its creation, `now`); {} without the SLA part."""
    try:
        from engine.sla import deadline_values
    except ImportError:  # the sla pass computes deadlines it finds missing
        return {}
    return deadline_values(
        session,
        site=site,
        category=category,
        sensitive=sensitive,
        start=now,
        now=now,
        cache=_sla_cache(ctx),
    )


_P, _LV, _TG = Policy.__table__.c, PolicyLevel.__table__.c, PolicyTarget.__table__.c
# Built once: the statements of a trigger are reused, so SQLAlchemy compiles them once (trigger is hot).
_SNAPSHOT_QUERY = (
    select(
        _P.id,
        _P.name,
        _P.version,
        _P.enabled,
        _P.severity_filter,
        _P.triggers,
        _P.max_escalations,
        _P.cooldown_seconds,
        _P.business_hours_only,
        _P.business_days,
        _P.business_start,
        _P.business_end,
        _P.timezone,
        _LV.id.label("level_id"),
        _LV.level,
        _LV.delay_seconds,
        _LV.repeat_count,
        _LV.repeat_interval_seconds,
        _LV.require_ack,
        _LV.auto_resolve_seconds,
        _TG.id.label("target_id"),
        _TG.type,
        _TG.identifier,
        _TG.name.label("target_name"),
    )
    .select_from(
        Policy.__table__.outerjoin(PolicyLevel.__table__, _LV.policy_id == _P.id).outerjoin(
            PolicyTarget.__table__, _TG.level_id == _LV.id
        )
    )
    .where(_P.name == bindparam("policy_name"))
    .order_by(_LV.level, _TG.position, _TG.id)
)


_SNAPSHOT = Prepared(_SNAPSHOT_QUERY)
# Snapshots assembled from the rows the query read: the same rows, the same snapshot, so a trigger reads the
# policy every time (an edit applies to the very next trigger) but builds it only when it changed. Shared and
# never modified: a caller that wants to change one copies it (`_load_snapshot`).
_snapshots: dict[tuple[str, str], tuple[dict[str, Any], bool]] = {}
_SNAPSHOTS_KEPT = 256


def _load_snapshot(session: Session | Connection, name: str) -> tuple[dict[str, Any], bool]:
    """The policy's snapshot and whether it is enabled, in one query (policy ⟕ levels ⟕ targets): a copy
    the caller may change."""
    snapshot, enabled = _read_snapshot(
        session.connection() if isinstance(session, Session) else session, name
    )
    return copy.deepcopy(snapshot), enabled


def _read_snapshot(conn: Connection, name: str) -> tuple[dict[str, Any], bool]:
    """`_load_snapshot` without the copy: the snapshot is shared and must not be changed."""
    raw = _SNAPSHOT.raw_rows(conn, {"policy_name": name})
    if not raw:
        raise NotFound(f"no escalation policy named {name!r}")
    key = (conn.dialect.name, repr(raw))  # every column of every row: any edit is another key
    found = _snapshots.get(key)
    if found is None:
        if len(_snapshots) >= _SNAPSHOTS_KEPT:
            _snapshots.clear()
        found = _snapshots[key] = _assemble_snapshot(_SNAPSHOT.converted(conn, raw))
    return found


def _assemble_snapshot(rows: list[Any]) -> tuple[dict[str, Any], bool]:
    first = rows[0]
    levels: dict[int, dict[str, Any]] = {}
    for r in rows:
        if r.level_id is None:
            continue
        level = levels.get(r.level_id)
        if level is None:
            level = levels[r.level_id] = {
                "level": r.level,
                "delay_seconds": r.delay_seconds,
                "repeat_count": r.repeat_count,
                "repeat_interval_seconds": r.repeat_interval_seconds,
                "require_ack": r.require_ack,
                "auto_resolve_seconds": r.auto_resolve_seconds,
                "targets": [],
            }
        if r.target_id is not None:
            level["targets"].append({"type": r.type, "identifier": r.identifier, "name": r.target_name})
    snapshot = {
        "id": first.id,
        "name": first.name,
        "version": first.version,
        "severity_filter": list(first.severity_filter or []),
        "triggers": list(first.triggers or []),
        "max_escalations": first.max_escalations,
        "cooldown_seconds": first.cooldown_seconds,
        "business_hours_only": first.business_hours_only,
        "business_days": list(first.business_days or []),
        "business_start": first.business_start,
        "business_end": first.business_end,
        "timezone": first.timezone,
        "levels": sorted(levels.values(), key=lambda lv_: int(lv_["level"])),
    }
    return snapshot, bool(first.enabled)


def _why_not_escalated(
    snapshot: dict[str, Any], enabled: bool, severity: str, *, at_trigger: bool = True
) -> str:
    name = snapshot["name"]
    if not enabled:
        return f"policy {name} is disabled; no escalation started"
    if not esc_mod.severity_matches(snapshot, severity):
        wanted = ", ".join(str(s) for s in snapshot.get("severity_filter") or [])
        return f"policy {name} only escalates {wanted}; {severity} is not escalated"
    if at_trigger and not esc_mod.starts_at_trigger(snapshot):
        triggers = ", ".join(str(t) for t in snapshot.get("triggers") or [])
        return f"policy {name} escalates on {triggers}, not when an incident opens; no escalation started yet"
    return ""


# --------------------------------------------------------------------------------------------------------
# Trigger
# --------------------------------------------------------------------------------------------------------

_INCIDENT_T: Any = Incident.__table__
_ESCALATION_T: Any = Escalation.__table__
_I, _E = _INCIDENT_T.c, _ESCALATION_T.c
PG_ROWS_PER_INSERT = timeline.PG_ROWS_PER_INSERT
_MANY = {"insertmanyvalues_page_size": PG_ROWS_PER_INSERT}
_INSERT_INCIDENTS = (
    _INCIDENT_T.insert().returning(_I.id, sort_by_parameter_order=True).execution_options(**_MANY)
)
_INSERT_ESCALATIONS = (
    _ESCALATION_T.insert().returning(_E.id, sort_by_parameter_order=True).execution_options(**_MANY)
)
# As driver SQL (engine.prepared): one new row with its id returned; rows whose ids the batch chose itself.
_INSERT_INCIDENT_ONE = Prepared(_INCIDENT_T.insert().returning(_I.id))
_INSERT_ESCALATION_ONE = Prepared(_ESCALATION_T.insert().returning(_E.id))
_INSERT_INCIDENT_ROWS = Prepared(_INCIDENT_T.insert())
_INSERT_ESCALATION_ROWS = Prepared(_ESCALATION_T.insert())
_MAX_INCIDENT_ID = Prepared(select(func.max(_I.id)))
_COPY_INCIDENTS = Copied(_INCIDENT_T)
_COPY_ESCALATIONS = Copied(_ESCALATION_T)
_MAX_ESCALATION_ID = Prepared(select(func.max(_E.id)))
_PG_NOTIFY = text("SELECT pg_notify('watchkeeper_work', :p)")
# Transaction-scoped advisory locks on incident keys, taken in one order (by lock id) so that two batches
# sharing keys cannot deadlock. 7201 names these locks apart from any other advisory lock.
_LOCK_KEYS = text(
    "SELECT count(pg_advisory_xact_lock(7201, h)) FROM "
    "(SELECT DISTINCT hashtext(k) AS h FROM unnest(CAST(:keys AS text[])) AS k ORDER BY h) AS locks"
)
_DEFAULT_POLICY = select(SystemSetting.value).where(SystemSetting.name == "default_policy")
_TEAMS = Prepared(select(Team.id, Team.handle).where(Team.handle.in_(bindparam("handles", expanding=True))))
_i2, _e2 = _INCIDENT_T.alias("i2"), _ESCALATION_T.alias("e2")
# The open incident of each key, which a repeated trigger joins whatever the cooldown (one key, one open
# incident). Locked in id order on PostgreSQL: the incident first (engine.claims.lock_incidents). As driver
# SQL (engine.prepared): on PostgreSQL the keys go as one array, and a batch's many keys are planned for
# their values rather than by the plan the server kept for the statement.
_OPEN_BY_KEYS_QUERY = (
    select(_I.id, _I.key, _I.status, _I.trigger_count)
    .where(_I.key.in_(bindparam("keys", expanding=True)), _I.status.in_(constants(OPEN_STATUSES)))
    .order_by(_I.id)
)
_OPEN_BY_KEYS = Prepared(_OPEN_BY_KEYS_QUERY)
_OPEN_BY_KEYS_LOCKED = Prepared(_OPEN_BY_KEYS_QUERY.with_for_update(key_share=True))
# The newest escalation of each of those incidents: its trigger count goes up too, and whether it still pages
# decides if a `repeated_failure` policy starts one.
_NEWEST_ESCALATIONS = Prepared(
    select(_E.id, _E.incident_id, _E.state, _E.trigger_count).where(
        _E.id.in_(
            select(func.max(_e2.c.id))
            .where(_e2.c.incident_id.in_(bindparam("ids", expanding=True)))
            .group_by(_e2.c.incident_id)
        )
    )
)
# Incidents of the keys resolved since a moment (the longest cooldown of the batch), newest last: a trigger
# within its policy's cooldown re-opens the key's last incident instead of opening another.
_RESOLVED_SINCE = Prepared(
    select(_I.id, _I.key, _I.trigger_count, _I.resolved_at)
    .where(
        _I.key.in_(bindparam("keys", expanding=True)),
        _I.status.in_(constants([IncidentStatus.RESOLVED.value])),
        _I.resolved_at >= bindparam("since"),
    )
    .order_by(_I.id)
)
# The same three for one key, the common case (a single trigger): compiled once and run as driver SQL, with
# the open statuses written into the SQL so that SQLite can use the partial index of open keys.
_ONE_OPEN = select(_I.id, _I.key, _I.status, _I.trigger_count).where(
    _I.key == bindparam("key"), _I.status.in_(constants(OPEN_STATUSES))
)
_OPEN_BY_KEY_ONE = Prepared(_ONE_OPEN)
_OPEN_BY_KEY_ONE_LOCKED = Prepared(_ONE_OPEN.with_for_update(key_share=True))
_NEWEST_ESCALATION_ONE = Prepared(
    select(_E.id, _E.incident_id, _E.state, _E.trigger_count)
    .where(_E.incident_id == bindparam("id"))
    .order_by(_E.id.desc())
    .limit(1)
)
_RESOLVED_SINCE_ONE = Prepared(
    select(_I.id, _I.key, _I.trigger_count, _I.resolved_at)
    .where(
        _I.key == bindparam("key"),
        _I.status.in_(constants([IncidentStatus.RESOLVED.value])),
        _I.resolved_at >= bindparam("since"),
    )
    .order_by(_I.id)
)
_DEFAULT_POLICY_ONE = Prepared(_DEFAULT_POLICY)
_REOPEN_INCIDENT = (
    update(_INCIDENT_T)
    .where(_I.id == bindparam("b_id"))
    .values(
        status=IncidentStatus.OPEN.value,
        trigger_count=bindparam("b_count"),
        last_triggered_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
        acknowledged_at=None,
        acknowledged_by=None,
        resolved_at=None,
        resolved_by=None,
    )
)
_RETRIGGER_INCIDENT = (
    update(_INCIDENT_T)
    .where(_I.id == bindparam("b_id"))
    .values(
        trigger_count=bindparam("b_count"),
        last_triggered_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
    )
)
_RETRIGGER_ESCALATION = (
    update(_ESCALATION_T)
    .where(_E.id == bindparam("b_id"))
    .values(trigger_count=bindparam("b_count"), updated_at=bindparam("b_now"))
)


class _Row:
    """An incident or escalation of the batch: an existing id, or a new row whose id is known once inserted."""

    __slots__ = ("id", "parent", "values")

    def __init__(self, id: int = 0, values: dict[str, Any] | None = None, parent: _Row | None = None) -> None:
        self.id = id
        self.values: dict[str, Any] = values or {}
        self.parent = parent  # a new escalation's incident


@dataclass(slots=True)
class _Live:
    """The open incident of one key that repeated triggers join, with the counts it has reached so far."""

    incident: _Row
    escalation: _Row | None  # its newest escalation (its trigger count goes up too)
    paging: bool  # whether that escalation still pages (pending, active, escalating)
    status: str  # the incident's status
    incident_count: int
    escalation_count: int
    existing: bool  # in the database before this batch (else opened by an earlier request of it)
    escalation_existing: bool = True


@dataclass(slots=True)
class _Recent:
    """A key's incident resolved lately: a trigger within the cooldown re-opens it."""

    id: int
    trigger_count: int
    resolved_at: datetime


@dataclass(slots=True)
class _Event:
    kind: str
    incident: _Row
    escalation: _Row | None
    actor: str
    message: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Item:
    """A validated trigger request."""

    where: str
    policy: str | None  # as given: the triggered event records it
    receipt: str | None
    key: str  # "" when none was given
    summary: str
    severity: str
    actor: str
    source: str
    team: str | None
    values: dict[str, Any]  # the incident columns that need no database


def _reporter_contact(raw: str, region: str, where: str) -> str:
    """A reporter's phone number (E.164, read in the site's phone region) or e-mail address: the same rule as
    every other phone field, so the console, the command line and the REST API store one form."""
    try:
        return contacts.normalise_email(raw) if "@" in raw else contacts.normalise_phone(raw, region)
    except ValidationError as exc:
        raise ValidationError(
            f"{exc}: give a phone number or an e-mail address", where=where, field="reporter_contact"
        ) from None


def _validate(req: TriggerRequest, where: str, region: str) -> _Item:
    summary = _text(req.summary, "summary", limit=1024, required=True, where=where)
    severity = _text(req.severity, "severity", limit=16, where=where).lower()
    if severity not in SEVERITIES:
        raise ValidationError(
            f"unknown severity {req.severity!r}; use one of {', '.join(SEVERITIES)}",
            where=where,
            field="severity",
        )
    category = _text(req.category, "category", limit=80, where=where) or "general"
    site = _text(req.site, "site", limit=80, where=where)
    source = _text(req.source, "source", limit=32, where=where) or "operator"
    actor = _text(req.actor, "actor", limit=200, where=where) or "operator"
    key = _text(req.key, "key", limit=255, where=where)
    language = _text(req.reporter_language, "reporter_language", limit=8, where=where) or "en"
    contact = _text(req.reporter_contact, "reporter_contact", limit=320, where=where) or None
    if contact is not None:
        contact = _reporter_contact(contact, region, where)
    reporter = _text(req.reporter_name, "reporter_name", limit=200, where=where) or None
    if req.custom is not None and not isinstance(req.custom, dict):
        raise ValidationError("must be a mapping", where=where, field="custom")
    values: dict[str, Any] = {
        "key": key or uuid.uuid4().hex,
        "source": source,
        "summary": summary,
        "details": str(req.details or ""),
        "severity": severity,
        "category": category,
        "site": site,
        "status": IncidentStatus.OPEN.value,
        "sensitive": bool(req.sensitive),
        "reporter_name": reporter,
        "reporter_contact": contact,
        "reporter_language": language,
        "custom": dict(req.custom or {}),
        "trigger_count": 1,
    }
    return _Item(
        where, req.policy, req.receipt, key, summary, severity, actor, source, req.team or None, values
    )


def _located(where: str, exc: NotFound) -> NotFound:
    return NotFound(f"{where}: {exc}") if where else exc


class _Triggering:
    """One batch of triggers: planned in memory in request order, then written table by table."""

    def __init__(self, conn: Connection, ctx: AppContext, now: datetime) -> None:
        self.conn = conn
        self._session: Session | None = None
        self.ctx = ctx
        self.now = now
        self.policies: dict[str, tuple[dict[str, Any], bool] | NotFound] = {}
        self.teams: dict[str, int] = {}
        self.live: dict[str, _Live] = {}
        self.sla: dict[tuple[str, str, bool], dict[str, Any]] = {}
        self.escalation_values: dict[
            tuple[str, str, bool], tuple[str, dict[str, Any], str, dict[str, Any], bool]
        ] = {}
        self.recent: dict[str, _Recent] = {}
        self.reopened: list[tuple[_Row, int]] = []
        self.incidents: list[_Row] = []
        self.escalations: list[_Row] = []
        self.events: list[_Event] = []
        self.retriggered: dict[int, _Live] = {}
        self.due_now = False
        self.joined = False

    def session(self) -> Session:
        """A session on the batch's connection and transaction, for the few lookups made through the ORM
        (an SLA configuration not cached yet); most batches never need one."""
        if self._session is None:
            self._session = Session(bind=self.conn)
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def run(self, items: list[_Item]) -> list[TriggerResult]:
        if any(not item.policy for item in items):
            found = _DEFAULT_POLICY_ONE.rows(self.conn, {})
            default = found[0][0] if found else None
            name = str(default.get("policy") or "") if isinstance(default, dict) else ""
            if name:  # a trigger that names no policy takes the centre's default one (`default_policy`)
                items = [item if item.policy else replace(item, policy=name) for item in items]
        self._load(items)
        results = [self._one(item) for item in items]
        self._write()
        out = [
            TriggerResult(incident.id, esc.id if esc is not None else None, joined)
            for incident, esc, joined in results
        ]
        receipts.write(
            self.conn,
            [
                (item.receipt, "deduplicated" if r.deduplicated else "triggered", r.incident_id)
                for item, r in zip(items, out, strict=True)
                if item.receipt
            ],
            self.now,
        )
        return out

    def _load(self, items: list[_Item]) -> None:
        """Policies, teams and the live escalations of the batch's keys; NotFound names the first bad item."""
        for name in dict.fromkeys(item.policy for item in items if item.policy):
            try:
                self.policies[name] = _read_snapshot(self.conn, name)
            except NotFound as exc:
                self.policies[name] = exc
        handles = list(dict.fromkeys(item.team for item in items if item.team))
        if handles:
            self.teams = {r.handle: r.id for r in _TEAMS.rows(self.conn, {"handles": handles})}
        keys: dict[str, None] = {}
        cooldown = 0
        for item in items:
            found = self.policies.get(item.policy) if item.policy else None
            if isinstance(found, NotFound):
                raise _located(item.where, found)
            if item.team and item.team not in self.teams:
                raise _located(item.where, NotFound(f"no team with handle {item.team!r}"))
            if item.key:
                keys[item.key] = None
                if found is not None:
                    cooldown = max(cooldown, int(found[0].get("cooldown_seconds") or 0))
        if not keys:
            return
        postgres = self.conn.dialect.name == "postgresql"
        if postgres:
            # Two nodes given the same alert at once (a monitoring tool resending, a client retrying on another
            # node) must not both find no open incident and both open one: the keys are locked first, for the
            # rest of the transaction, so the second waits and then finds the first's incident. SQLite's
            # BEGIN IMMEDIATE already lets one batch write at a time.
            self.conn.execute(_LOCK_KEYS, {"keys": list(keys)})
        found_open: dict[int, Any] = {}
        newest: dict[int, Any] = {}
        if len(keys) == 1:
            one = _OPEN_BY_KEY_ONE_LOCKED if postgres else _OPEN_BY_KEY_ONE
            found_open.update((r.id, r) for r in one.rows(self.conn, {"key": next(iter(keys))}))
            for incident_id in found_open:
                newest.update(
                    (r.incident_id, r) for r in _NEWEST_ESCALATION_ONE.rows(self.conn, {"id": incident_id})
                )
        else:
            stmt = _OPEN_BY_KEYS_LOCKED if postgres else _OPEN_BY_KEYS
            for chunk in _chunks(list(keys)):
                found_open.update((r.id, r) for r in stmt.rows(self.conn, {"keys": chunk}))
            for chunk in _chunks(list(found_open)):
                newest.update((r.incident_id, r) for r in _NEWEST_ESCALATIONS.rows(self.conn, {"ids": chunk}))
        for incident_id, r in found_open.items():
            e = newest.get(incident_id)
            self.live[r.key] = _Live(
                incident=_Row(incident_id),
                escalation=_Row(e.id) if e is not None else None,
                paging=e is not None and e.state in _PAGING_STATES,
                status=r.status,
                incident_count=r.trigger_count,
                escalation_count=e.trigger_count if e is not None else 0,
                existing=True,
            )
        closed = [k for k in keys if k not in self.live]
        if cooldown > 0 and closed:
            since = self.now - timedelta(seconds=cooldown)
            resolved: list[Any]
            if len(closed) == 1:
                resolved = _RESOLVED_SINCE_ONE.rows(self.conn, {"key": closed[0], "since": since})
            else:
                resolved = [
                    r
                    for c in _chunks(closed)
                    for r in _RESOLVED_SINCE.rows(self.conn, {"keys": c, "since": since})
                ]
            for r in resolved:
                self.recent[r.key] = _Recent(r.id, r.trigger_count, r.resolved_at)

    def _one(self, item: _Item) -> tuple[_Row, _Row | None, bool]:
        found = self.policies.get(item.policy) if item.policy else None
        snapshot, enabled = cast(tuple[dict[str, Any], bool], found) if found is not None else (None, False)
        if item.key:
            live = self.live.get(item.key)
            if live is not None:
                return self._join(live, item, snapshot, enabled)
            recent = self.recent.pop(item.key, None)
            cooldown = int(snapshot.get("cooldown_seconds") or 0) if snapshot is not None else 0
            if recent is not None and (self.now - recent.resolved_at).total_seconds() < cooldown:
                return self._reopen(recent, item, cast(dict[str, Any], snapshot), enabled)
        now = self.now
        values = dict(item.values)
        values.update(
            team_id=self.teams[item.team] if item.team else None,
            policy_id=snapshot["id"] if snapshot is not None else None,
            created_at=now,
            updated_at=now,
            last_triggered_at=now,
        )
        values.update(self._sla_values(values))
        incident = _Row(values=values)
        self.incidents.append(incident)
        data = {"severity": item.severity, "source": item.source, "policy": item.policy}
        self.events.append(_Event("triggered", incident, None, item.actor, item.summary, data))
        esc = (
            self._start(incident, item, snapshot, enabled, at_trigger=True) if snapshot is not None else None
        )
        if item.key:
            self.live[item.key] = _Live(
                incident, esc, esc is not None, IncidentStatus.OPEN.value, 1, 1, False, False
            )
        return incident, esc, False

    def _start(
        self,
        incident: _Row,
        item: _Item,
        snapshot: dict[str, Any],
        enabled: bool,
        *,
        at_trigger: bool,
        why: str = "",
    ) -> _Row | None:
        """A new escalation of `incident` with `snapshot`, or the `not_escalated` event saying why not (at a
        trigger: the policy is disabled, filters the severity out or escalates on other triggers)."""
        reason, esc_values, message, data, due_now = self._escalation(
            snapshot, enabled, item.severity, at_trigger=at_trigger
        )
        if reason:
            self.events.append(_Event("not_escalated", incident, None, "system", reason, data))
            return None
        esc = _Row(values=dict(esc_values), parent=incident)
        self.escalations.append(esc)
        self.events.append(_Event("escalation_started", incident, esc, item.actor, f"{message}{why}", data))
        self.due_now = self.due_now or due_now
        return esc

    def _join(
        self, live: _Live, item: _Item, snapshot: dict[str, Any] | None, enabled: bool
    ) -> tuple[_Row, _Row | None, bool]:
        """A trigger for a key with an open incident: counted on it (event `retriggered`), nothing paged again —
        unless nothing pages for it and its policy escalates on `repeated_failure` (the alert came back)."""
        live.incident_count += 1
        if live.escalation is not None:
            live.escalation_count += 1
        if live.existing:
            self.retriggered[live.incident.id] = live
        else:  # opened earlier in this batch: the new row carries the count
            live.incident.values["trigger_count"] = live.incident_count
        if live.escalation is not None and not live.escalation_existing:
            live.escalation.values["trigger_count"] = live.escalation_count
        message = f"triggered again ({live.incident_count} times): {item.summary}"[:2000]
        data = {"trigger_count": live.incident_count}
        self.events.append(_Event("retriggered", live.incident, live.escalation, item.actor, message, data))
        self.joined = True
        if (
            snapshot is not None
            and not live.paging
            and live.status in (IncidentStatus.OPEN.value, IncidentStatus.ESCALATED.value)
            and Trigger.REPEATED_FAILURE.value in (snapshot.get("triggers") or [])
        ):
            esc = self._start(
                live.incident, item, snapshot, enabled, at_trigger=False, why=" (the alert came back)"
            )
            if esc is not None:
                live.escalation, live.paging, live.escalation_existing = esc, True, False
                live.escalation_count = 1
        return live.incident, live.escalation, True

    def _reopen(
        self, recent: _Recent, item: _Item, snapshot: dict[str, Any], enabled: bool
    ) -> tuple[_Row, _Row | None, bool]:
        """A trigger within the policy's cooldown after the key's incident was resolved: that incident opens
        again (same number, same timeline) with a new escalation, instead of a second incident."""
        incident = _Row(recent.id)
        count = recent.trigger_count + 1
        self.reopened.append((incident, count))
        after = int((self.now - recent.resolved_at).total_seconds())
        message = f"re-opened: triggered again {after} s after it was resolved (within the cooldown)"
        self.events.append(
            _Event(
                "reopened", incident, None, item.actor, message, {"trigger_count": count, "cooldown": True}
            )
        )
        esc = self._start(incident, item, snapshot, enabled, at_trigger=True)
        self.live[item.key] = _Live(
            incident, esc, esc is not None, IncidentStatus.OPEN.value, count, 1, True, esc is None
        )
        # Counted by the re-open itself; a later request of this batch adds to it through `retriggered`.
        return incident, esc, True

    def _sla_values(self, values: dict[str, Any]) -> dict[str, Any]:
        key = (values["site"], values["category"], values["sensitive"])
        found = self.sla.get(key)
        if found is None:
            found = self.sla[key] = _sla_values(
                self.session(), self.ctx, site=key[0], category=key[1], sensitive=key[2], now=self.now
            )
        return found

    def _escalation(
        self, snapshot: dict[str, Any], enabled: bool, severity: str, *, at_trigger: bool = True
    ) -> tuple[str, dict[str, Any], str, dict[str, Any], bool]:
        """(why no escalation starts, or "" and the new escalation's row but its incident, the message and
        data of its started event, whether it is due now): the same for every incident of one (policy,
        severity) in the batch, so worked out once. When no escalation starts, the data is the event's."""
        key = (str(snapshot["name"]), severity, at_trigger)
        found = self.escalation_values.get(key)
        if found is None:
            reason = _why_not_escalated(snapshot, enabled, severity, at_trigger=at_trigger)
            if reason:
                found = self.escalation_values[key] = (reason, {}, "", {"policy": snapshot["name"]}, False)
                return found
            values, opens = esc_mod.new_escalation_values(
                severity, snapshot, Trigger.UNACKNOWLEDGED.value, self.now
            )
            first = values["next_action_at"]
            message, data = esc_mod.started_event_values(
                values["policy_name"], values["trigger"], first, opens
            )
            due = first <= self.now
            found = self.escalation_values[key] = ("", values, message, data, due)
        return found

    def _write(self) -> None:
        conn, now = self.conn, self.now
        if self.reopened:
            conn.execute(
                _REOPEN_INCIDENT,
                [{"b_id": row.id, "b_count": count, "b_now": now} for row, count in self.reopened],
            )
        _insert_rows(
            conn,
            self.incidents,
            _INSERT_INCIDENT_ONE,
            _INSERT_INCIDENT_ROWS,
            _MAX_INCIDENT_ID,
            _COPY_INCIDENTS,
            _INSERT_INCIDENTS,
        )
        for esc in self.escalations:
            assert esc.parent is not None
            esc.values["incident_id"] = esc.parent.id
        _insert_rows(
            conn,
            self.escalations,
            _INSERT_ESCALATION_ONE,
            _INSERT_ESCALATION_ROWS,
            _MAX_ESCALATION_ID,
            _COPY_ESCALATIONS,
            _INSERT_ESCALATIONS,
        )
        if self.retriggered:
            lives = list(self.retriggered.values())
            conn.execute(
                _RETRIGGER_INCIDENT,
                [{"b_id": x.incident.id, "b_count": x.incident_count, "b_now": now} for x in lives],
            )
            counted = [x for x in lives if x.escalation is not None and x.escalation_existing]
            if counted:
                conn.execute(
                    _RETRIGGER_ESCALATION,
                    [
                        {"b_id": cast(_Row, x.escalation).id, "b_count": x.escalation_count, "b_now": now}
                        for x in counted
                    ],
                )
        events = [
            {
                "kind": e.kind,
                "at": now,
                "incident_id": e.incident.id,
                "escalation_id": e.escalation.id if e.escalation is not None else None,
                "actor": e.actor,
                "message": e.message,
                "data": e.data,
            }
            for e in self.events
        ]
        timeline.insert_rows(conn, events)
        if self.due_now or self.joined:
            _notify_work(self.conn, "escalate")


def _insert_rows(
    conn: Connection,
    rows: list[_Row],
    one: Prepared,
    many: Prepared,
    max_id: Prepared,
    copied: Copied,
    returning: Any,
) -> None:
    """INSERT the new rows and give each its id, in order.

    One row: INSERT … RETURNING as driver SQL. Many on SQLite: SQLite has no multi-row INSERT … RETURNING
    with the ids in row order (SQLAlchemy runs one statement per row for it), but the batch holds the write
    lock (BEGIN IMMEDIATE), so it numbers the rows itself from the largest id — the ids SQLite would have
    given — and inserts them in one executemany. Many on PostgreSQL: ids drawn from the table's sequence in
    row order, then one COPY (engine.prepared.Copied). Rows with different columns: multi-row INSERT …
    RETURNING in parameter order (SQLAlchemy's insertmanyvalues)."""
    if not rows:
        return
    if len(rows) == 1:
        rows[0].id = int(one.run(conn, rows[0].values, columns=True)[0][0])
        return
    same = len({frozenset(r.values) for r in rows}) == 1
    if conn.dialect.name == "sqlite" and same:
        start = int(max_id.rows(conn, {})[0][0] or 0)
        for offset, row in enumerate(rows, start=1):
            row.id = start + offset
        many.run_many(conn, [{"id": row.id, **row.values} for row in rows], columns=True)
        return
    if conn.dialect.name == "postgresql" and same:
        for row, new_id in zip(rows, copied.write(conn, [r.values for r in rows], ids=True), strict=True):
            row.id = new_id
        return
    ids = conn.execute(returning, [row.values for row in rows]).scalars().all()
    for row, new_id in zip(rows, ids, strict=True):
        row.id = int(new_id)


@contextmanager
def _write_transaction(ctx: AppContext) -> Iterator[Connection]:
    """`engine.db.write_session` without the ORM session: a connection in a write transaction (BEGIN
    IMMEDIATE on SQLite), committed on success and rolled back on any exception."""
    with ctx.db.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn


def _notify_work(conn: Connection, pass_name: str) -> None:
    """`escalation.notify_work` on a connection: wake other processes' engines when this commits."""
    if conn.dialect.name == "postgresql":
        conn.execute(_PG_NOTIFY, {"p": pass_name})


def trigger_many(
    ctx: AppContext, requests: Sequence[TriggerRequest], *, name_items: bool = True
) -> list[TriggerResult]:
    """Open incidents (or join live ones) for every request, in request order, in one write transaction.

    The same as engine.api.trigger called once per request in order: a request whose key matches an open
    incident joins it (one key, one open incident), and that includes an incident opened by an earlier
    request of the same batch; within its policy's cooldown after the key's incident was resolved, that
    incident re-opens. A request that names no policy takes the centre's default policy, if one is set. Every request is validated before the database
    is touched: an invalid one raises ValidationError naming the item ("item 3: summary: …") and nothing is
    stored; an unknown policy or team raises NotFound naming the item, and nothing is stored either.
    Durable when it returns (committed). `name_items=False` keeps the messages of a single call unprefixed."""
    region = ctx.settings.phone_region
    items = [_validate(req, f"item {i}" if name_items else "", region) for i, req in enumerate(requests)]
    if not items:
        return []
    now = ctx.clock.now()

    def attempt() -> tuple[_Triggering, list[TriggerResult]]:
        with _write_transaction(ctx) as conn:
            batch = _Triggering(conn, ctx, now)
            try:
                return batch, batch.run(items)
            finally:
                batch.close()

    batch, results = retrying(attempt)
    if batch.due_now:
        ctx.wake("escalate")
    return results


# --------------------------------------------------------------------------------------------------------
# Acknowledge
# --------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Incident:
    """The columns of an incident that acknowledging reads or changes (and the notices quote)."""

    id: int
    key: str
    source: str
    summary: str
    details: str
    severity: str
    category: str
    site: str
    status: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_by: str | None
    reporter_name: str | None
    reporter_contact: str | None
    reporter_channel: str | None
    reporter_language: str


@dataclass(slots=True)
class _Escalation:
    """The columns of an escalation that acknowledging reads or changes (what `_schedule` needs included)."""

    id: int
    incident_id: int
    state: str
    policy_snapshot: dict[str, Any]
    current_level: int
    repeat_no: int
    repeat_base: int
    level_started_at: datetime | None
    next_action_at: datetime | None
    updated_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None


def _columns(table: Any, model: type[Any]) -> list[Any]:
    """The table's columns named like the dataclass's fields, in field order."""
    return [table.c[f.name] for f in fields(model)]


_OPEN_BY_KEY = (
    select(_I.key, func.max(_I.id))
    .where(_I.key.in_(bindparam("keys", expanding=True)), _I.status.in_(OPEN_STATUSES))
    .group_by(_I.key)
)
_LATEST_BY_KEY = (
    select(_I.key, func.max(_I.id)).where(_I.key.in_(bindparam("keys", expanding=True))).group_by(_I.key)
)
_ACK_INCIDENTS = (
    select(*_columns(_INCIDENT_T, _Incident))
    .where(_I.id.in_(bindparam("ids", expanding=True)))
    .order_by(_I.id)
)
# Every escalation of the incidents that acknowledging may still move (the latest, and any older one still
# open), oldest first: acknowledging ends them all, not only the newest.
_ACK_ESCALATIONS = (
    # The snapshot as text: the escalations of one policy version share it, so it is parsed once per batch.
    select(
        *(
            c if c.key != "policy_snapshot" else cast_(c, Text).label(c.key)
            for c in _columns(_ESCALATION_T, _Escalation)
        )
    )
    .where(
        _E.incident_id.in_(bindparam("ids", expanding=True)),
        _E.state.in_([s.value for s in esc_mod.OPEN]),
    )
    .order_by(_E.incident_id, _E.id)
)
# The lock order (engine.claims.lock_incidents): incidents, then their escalations; NO KEY UPDATE so that
# foreign-key checks of pages and messages written by others never wait on an acknowledgement.
_ACK_INCIDENTS_LOCKED = _ACK_INCIDENTS.with_for_update(key_share=True)
_ACK_ESCALATIONS_LOCKED = _ACK_ESCALATIONS.with_for_update(key_share=True)
_SET_ACKNOWLEDGED = (
    update(_INCIDENT_T)
    .where(_I.id.in_(bindparam("b_ids", expanding=True)))
    .values(
        status=IncidentStatus.ACKNOWLEDGED.value,
        acknowledged_at=bindparam("b_now"),
        acknowledged_by=bindparam("b_by"),
        updated_at=bindparam("b_now"),
    )
)
_SET_ESCALATIONS_ACKNOWLEDGED = (
    update(_ESCALATION_T)
    .where(_E.id.in_(bindparam("b_ids", expanding=True)))
    .values(
        state=S.ACKNOWLEDGED.value,
        updated_at=bindparam("b_now"),
        next_action_at=bindparam("b_next"),
        acknowledged_at=bindparam("b_now"),
        acknowledged_by=bindparam("b_by"),
    )
)
# As driver SQL (engine.prepared), compiled once per number of ids.
_ACK_INCIDENTS_RUN = Prepared(_ACK_INCIDENTS)
_ACK_INCIDENTS_LOCKED_RUN = Prepared(_ACK_INCIDENTS_LOCKED)
_ACK_ESCALATIONS_RUN = Prepared(_ACK_ESCALATIONS)
_ACK_ESCALATIONS_LOCKED_RUN = Prepared(_ACK_ESCALATIONS_LOCKED)
_SET_ACKNOWLEDGED_RUN = Prepared(_SET_ACKNOWLEDGED)
_SET_ESCALATIONS_ACKNOWLEDGED_RUN = Prepared(_SET_ESCALATIONS_ACKNOWLEDGED)
_PAGE_T: Any = Page.__table__
_OUTBOX_T: Any = OutboxMessage.__table__
_PG = _PAGE_T.c
# Every page of the incidents with its person, newest first (the latest page per person wins).
_NOTICE_PAGES = (
    select(_PG.incident_id, _PG.person_id, _PG.escalation_id, _PG.chain, _PG.step)
    .where(
        _PG.incident_id.in_(bindparam("incident_ids", expanding=True)),
        _PG.person_id.is_not(None),
        paging.REACHED,
    )
    .order_by(_PG.id.desc())
)
_NOTICE_PAGES_RUN = Prepared(_NOTICE_PAGES)
_PEOPLE = select(Person).where(Person.id.in_(bindparam("person_ids", expanding=True)))


def notice_rows_many(
    session: Session, incidents: Sequence[Incident], now: datetime, what: str, by: str
) -> dict[int, list[dict[str, Any]]]:
    """The outbox rows of `paging.write_notices` for many incidents at once (one query per chunk for the pages
    and their people), per incident id; the caller inserts them with INSERT … ON CONFLICT DO NOTHING."""
    latest: dict[int, dict[int, Any]] = {}
    conn = session.connection()
    for chunk in _chunks([incident.id for incident in incidents]):
        for r in _NOTICE_PAGES_RUN.rows(conn, {"incident_ids": chunk}):
            if r.chain:
                latest.setdefault(r.incident_id, {}).setdefault(r.person_id, r)
    people: dict[int, Person] = {}
    for chunk in _chunks(list({p for pages in latest.values() for p in pages})):
        people.update((p.id, p) for p in session.scalars(_PEOPLE, {"person_ids": chunk}))
    out: dict[int, list[dict[str, Any]]] = {}
    for incident in incidents:
        pages = latest.get(incident.id)
        if not pages:
            continue
        critical = incident.severity == "critical"
        base = paging.incident_context(incident)
        rows = out.setdefault(incident.id, [])
        for person_id, r in pages.items():
            person = people.get(person_id)
            if person is None:  # deleted since it was paged
                continue
            row = paging.notice_row(
                session, incident, r, person, now, what=what, by=by, critical=critical, base=base
            )
            if row is not None:
                rows.append(row)
    return out


def _reporter_rows(
    session: Session, incidents: Sequence[_Incident], now: datetime, status: str
) -> dict[int, dict[str, Any]]:
    """The reporter status notices of `engine.sla.notify_reporter` for many incidents, per incident id."""
    told = [incident for incident in incidents if incident.reporter_contact]
    if not told:
        return {}
    try:
        from engine.sla import reporter_counts, reporter_message
    except ImportError:
        return {}
    counts: dict[int, int] = {}
    for chunk in _chunks([incident.id for incident in told]):
        counts.update(reporter_counts(session, chunk, status))
    out: dict[int, dict[str, Any]] = {}
    for incident in told:
        row = reporter_message(session, now, cast(Incident, incident), status, counts.get(incident.id, 0))
        if row is not None:
            out[incident.id] = row
    return out


def _insert_ignoring_many() -> Any:
    """INSERT INTO outbox_message … ON CONFLICT (idempotency_key) DO NOTHING for many rows on PostgreSQL: one
    multi-row statement per batch through SQLAlchemy's insertmanyvalues."""
    stmt = postgresql.insert(_OUTBOX_T).on_conflict_do_nothing(index_elements=["idempotency_key"])
    return stmt.execution_options(**_MANY)


def _same_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Outbox rows of different kinds with one set of columns (one INSERT for all): a column a row lacks
    takes the column's scalar default, else NULL."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    out = []
    for row in rows:
        if len(row) < len(names):
            row = dict(row)
            for name in names:
                if name not in row:
                    default = _OUTBOX_T.c[name].default
                    row[name] = default.arg if default is not None and default.is_scalar else None
        out.append(row)
    return out


def _resolve_refs(session: Session, refs: Sequence[int | str]) -> list[int | WatchkeeperError]:
    """Each ref as an incident id: an id (int or digits) as it is; a key, its open incident (the latest
    one), else its latest incident. A ref that names nothing is its error."""
    out: list[int | str | WatchkeeperError] = []
    for ref in refs:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isdigit()):
            out.append(int(ref))
            continue
        key = str(ref).strip()
        out.append(key if key else ValidationError("an incident id or key is needed", field="ref"))
    keys = list(dict.fromkeys(x for x in out if isinstance(x, str)))
    found: dict[str, int] = {}
    conn = session.connection()
    for stmt in (_OPEN_BY_KEY, _LATEST_BY_KEY):
        missing = [k for k in keys if k not in found]
        for chunk in _chunks(missing):
            found.update({k: int(i) for k, i in conn.execute(stmt, {"keys": chunk})})
    return [
        (found[x] if x in found else NotFound(f"no incident with key {x!r}")) if isinstance(x, str) else x
        for x in out
    ]


def acknowledge_in(
    session: Session, refs: Sequence[int | str], *, by: str, via: str, now: datetime
) -> list[dict[str, Any] | WatchkeeperError]:
    """Acknowledge the incidents `refs` name, in order, inside the caller's write transaction; per ref the
    summary dict of engine.api.acknowledge or the error that ref met (NotFound, InvalidTransition,
    ValidationError), which writes nothing for it. `by` is already validated."""
    targets = _resolve_refs(session, refs)
    ids = sorted({t for t in targets if isinstance(t, int)})
    conn = session.connection()
    postgres = conn.dialect.name == "postgresql"
    incidents: dict[int, _Incident] = {}
    escalations: dict[int, list[_Escalation]] = {}  # per incident, oldest first
    snapshots: dict[str | None, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        read = _ACK_INCIDENTS_LOCKED_RUN if postgres else _ACK_INCIDENTS_RUN
        incidents.update({r.id: _Incident(*r) for r in read.rows(conn, {"ids": chunk})})
    for chunk in _chunks(list(incidents)):
        read = _ACK_ESCALATIONS_LOCKED_RUN if postgres else _ACK_ESCALATIONS_RUN
        for r in read.rows(conn, {"ids": chunk}):
            values = r._asdict()
            raw = values["policy_snapshot"]
            if raw not in snapshots:
                snapshots[raw] = json.loads(raw) if raw else {}
            values["policy_snapshot"] = snapshots[raw]
            escalations.setdefault(r.incident_id, []).append(_Escalation(**values))
    results: list[dict[str, Any] | WatchkeeperError] = []
    acknowledged: list[_Incident] = []
    moved: list[_Escalation] = []
    events: list[dict[str, Any]] = []
    message = f"acknowledged by {by} via {via}"
    for ref, target in zip(refs, targets, strict=True):
        if isinstance(target, WatchkeeperError):
            results.append(target)
            continue
        incident = incidents.get(target)
        if incident is None:
            results.append(NotFound(f"no incident {ref}"))
            continue
        if incident.status not in ACKNOWLEDGEABLE:
            results.append(
                InvalidTransition(f"incident {incident.id} is {incident.status}; it cannot be acknowledged")
            )
            continue
        escs = escalations.get(incident.id, [])
        esc = escs[-1] if escs else None
        old = incident.status
        incident.status = IncidentStatus.ACKNOWLEDGED.value
        incident.acknowledged_at = now
        incident.acknowledged_by = by
        data: dict[str, Any] = {"via": via, "incident_from": old}
        escalation_id: int | None = None
        for each in escs:
            if S.ACKNOWLEDGED not in esc_mod.TRANSITIONS[S(each.state)] or each.state == S.ACKNOWLEDGED:
                continue
            if each is esc:
                data = {"from": each.state, "to": S.ACKNOWLEDGED.value, **data}
                escalation_id = each.id
            each.state = S.ACKNOWLEDGED.value
            each.updated_at = now
            each.acknowledged_at = now
            each.acknowledged_by = by
            esc_mod._schedule(cast(Escalation, each), now)  # an auto-resolving level still resolves on time
            moved.append(each)
        events.append(
            {
                "kind": "acknowledged",
                "at": now,
                "incident_id": incident.id,
                "escalation_id": escalation_id,
                "actor": by,
                "message": message,
                "data": data,
            }
        )
        acknowledged.append(incident)
        results.append(_summary(cast(Incident, incident), cast(Escalation | None, esc)))
    if not acknowledged:
        return results
    for chunk in _chunks([incident.id for incident in acknowledged]):
        _SET_ACKNOWLEDGED_RUN.run(conn, {"b_ids": chunk, "b_now": now, "b_by": by})
    if moved:
        by_next: dict[datetime | None, list[int]] = {}
        for e in moved:  # usually one group: no level auto-resolves, nothing is due any more
            by_next.setdefault(e.next_action_at, []).append(e.id)
        for next_at, esc_ids in by_next.items():
            for chunk in _chunks(esc_ids):
                _SET_ESCALATIONS_ACKNOWLEDGED_RUN.run(
                    conn, {"b_ids": chunk, "b_now": now, "b_next": next_at, "b_by": by}
                )
    # Every page of these incidents, whichever escalation wrote it, in this same transaction.
    paging.stop_paging(session, [incident.id for incident in acknowledged], now)
    timeline.insert_rows(conn, events)
    notices = notice_rows_many(session, cast(list[Incident], acknowledged), now, "ack", by)
    reporters = _reporter_rows(session, acknowledged, now, IncidentStatus.ACKNOWLEDGED.value)
    outbox: list[dict[str, Any]] = []
    for incident in acknowledged:  # in the order single calls would have written them
        outbox.extend(notices.get(incident.id, ()))
        if incident.id in reporters:
            outbox.append(reporters[incident.id])
    if outbox:
        rows = _same_columns(outbox)
        if postgres and len(rows) > 1:  # one multi-row statement (compiled once per batch)
            conn.execute(_insert_ignoring_many(), rows)
        else:  # a statement compiled once for good; SQLite runs it for every row in one executemany
            insert_ignore(session, OutboxMessage, rows, ["idempotency_key"])
    esc_mod.notify_work(session, "dispatch")
    return results


def error_entry(ref: int | str, error: WatchkeeperError) -> dict[str, Any]:
    """What a batch reports for a ref it could not act on."""
    kinds = {NotFound: "not_found", InvalidTransition: "invalid_transition", ValidationError: "invalid"}
    return {"ref": ref, "error": kinds.get(type(error), "error"), "message": str(error)}


def acknowledge_many(
    ctx: AppContext, refs: Sequence[int | str], *, by: str, via: str = "console"
) -> list[dict[str, Any]]:
    """Acknowledge many incidents (ids or keys) in one write transaction; one entry per ref, in order.

    Each entry is what engine.api.acknowledge returns for that ref, with the same effects (escalation
    stopped, pending pages cancelled, everyone already paged told once, the reporter updated, events), or
    {"ref", "error": "not_found" | "invalid_transition" | "invalid", "message"} for a ref that names no
    incident or one that cannot be acknowledged. One bad ref does not stop the others: the refs are a
    selection an operator made on a live board, and by the time the batch runs another operator or a reply
    may already have acknowledged or resolved some of them; failing the whole selection for that would make
    the operator redo work already done. A failure of the database itself still rolls the whole batch back."""
    by = _text(by, "by", limit=200, required=True)
    refs = list(refs)
    if not refs:
        return []
    now = ctx.clock.now()

    def attempt() -> list[dict[str, Any] | WatchkeeperError]:
        with write_session(ctx.sessions) as session:
            return acknowledge_in(session, refs, by=by, via=via, now=now)

    outcomes = retrying(attempt)
    if any(isinstance(o, dict) for o in outcomes):
        ctx.wake("dispatch")
    return [o if isinstance(o, dict) else error_entry(ref, o) for ref, o in zip(refs, outcomes, strict=True)]
