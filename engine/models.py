"""The data model: people, teams, on-call, policies, incidents, escalations, the outbox and the timeline.

SQLAlchemy 2.0 typed ORM, the same schema on SQLite and PostgreSQL (Alembic migrations in engine/migrations).
Every time column holds timezone-aware UTC; `UTCDateTime` makes that true on SQLite too, which has no time
zone type. Every query the engine runs each second has an index (see the `Index` entries at the end of each
class): due escalations, due outbox messages, pages waiting for confirmation, SLA deadlines, the change feed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Default for created/updated columns when no clock is at hand; the engine passes its clock's time."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out, on both databases."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use timezone-aware UTC")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Any:
        """On SQLite, this type's conversion and the driver's text form in one step: the hot paths bind a dozen
        times per call, and the two-step form (here, then SQLAlchemy's %-formatting) costs twice as much.
        The text is SQLite DATETIME's own storage format (microseconds always written), so stored values,
        comparisons and indexes are unchanged."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the database; use timezone-aware UTC")
            if value.tzinfo is not UTC:
                value = value.astimezone(UTC)
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


# --------------------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------------------


class Channel(StrEnum):
    SMS = "sms"
    WHATSAPP = "whatsapp"
    VOICE = "voice"
    EMAIL = "email"
    WEBHOOK = "webhook"
    CONSOLE = "console"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


class IncidentStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


OPEN_INCIDENT_STATUSES = (
    IncidentStatus.OPEN,
    IncidentStatus.ACKNOWLEDGED,
    IncidentStatus.IN_PROGRESS,
    IncidentStatus.ESCALATED,
)


class EscalationState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    ESCALATING = "escalating"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    FAILED = "failed"


LIVE_ESCALATION_STATES = (EscalationState.PENDING, EscalationState.ACTIVE, EscalationState.ESCALATING)
# The same states as SQL, for the partial index that allows one live escalation per incident.
_LIVE_SQL = "state IN ('pending', 'active', 'escalating')"


class PageStatus(StrEnum):
    """One person's channel chain for one (escalation, level, repeat)."""

    ACTIVE = "active"  # a message is out or about to be; waiting for a result or a confirmation
    HELD = "held"  # quiet hours: waiting until they end
    CONFIRMED = "confirmed"  # the person responded
    SENT = "sent"  # the level asks for no acknowledgement: the message went out, the chain is done
    EXHAUSTED = "exhausted"  # every channel tried, nobody confirmed
    CANCELLED = "cancelled"  # the incident was acknowledged, resolved or cancelled


class MessageStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    CANCELLED = "cancelled"


class Role(StrEnum):
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class TargetType(StrEnum):
    PERSON = "person"
    TEAM = "team"
    TEAM_MANAGER = "team_manager"
    SCHEDULE = "schedule"
    EMAIL = "email"
    PHONE = "phone"
    WEBHOOK = "webhook"
    CONSOLE = "console"


class Trigger(StrEnum):
    UNACKNOWLEDGED = "unacknowledged"
    UNRESOLVED = "unresolved"
    MANUAL = "manual"
    SLA_BREACH = "sla_breach"
    OVERDUE = "overdue"
    REPEATED_FAILURE = "repeated_failure"


# --------------------------------------------------------------------------------------------------------
# People, teams, on-call
# --------------------------------------------------------------------------------------------------------


class Person(Base):
    __tablename__ = "person"

    id: Mapped[int] = mapped_column(primary_key=True)
    handle: Mapped[str] = mapped_column(String(80), unique=True)  # stable identifier used by policy files
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))  # E.164
    whatsapp: Mapped[str | None] = mapped_column(String(20))  # E.164; falls back to phone
    preferred_channel: Mapped[str] = mapped_column(String(16), default=Channel.SMS.value)
    fallback_channels: Mapped[list[Any]] = mapped_column(default=list)
    disabled_channels: Mapped[list[Any]] = mapped_column(default=list)
    # Channels the person opted out of by replying STOP; START removes the entry.
    opted_out_channels: Mapped[list[Any]] = mapped_column(default=list)
    # How long a page that needs confirmation waits on the first channel, then on each fallback (seconds).
    confirm_wait_seconds: Mapped[int] = mapped_column(default=900)
    fallback_wait_seconds: Mapped[int] = mapped_column(default=300)
    language: Mapped[str] = mapped_column(String(8), default="en")
    timezone: Mapped[str] = mapped_column(String(64), default="Africa/Johannesburg")
    quiet_start: Mapped[str | None] = mapped_column(String(5))  # "22:00" local time
    quiet_end: Mapped[str | None] = mapped_column(String(5))  # "06:00" local time
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_person_phone", "phone"),
        Index("ix_person_whatsapp", "whatsapp"),
        Index("ix_person_email", "email"),
    )


class Team(Base):
    __tablename__ = "team"

    id: Mapped[int] = mapped_column(primary_key=True)
    handle: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    # The team's on-call schedule: a team target pages whoever is on call on it (engine.targets), and the
    # board's on-call strip names the team's person now and next. None: a team target pages every member.
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedule.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    manager: Mapped[Person | None] = relationship(foreign_keys=[manager_id])
    schedule: Mapped[Schedule | None] = relationship()
    members: Mapped[list[TeamMember]] = relationship(
        back_populates="team", cascade="all, delete-orphan", order_by="TeamMember.position"
    )


class TeamMember(Base):
    __tablename__ = "team_member"

    team_id: Mapped[int] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(default=0)

    team: Mapped[Team] = relationship(back_populates="members")
    person: Mapped[Person] = relationship()


class Schedule(Base):
    """An on-call schedule: rotations evaluated in the schedule's own time zone, plus overrides."""

    __tablename__ = "schedule"

    id: Mapped[int] = mapped_column(primary_key=True)
    handle: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Africa/Johannesburg")
    description: Mapped[str] = mapped_column(Text, default="")

    rotations: Mapped[list[Rotation]] = relationship(
        back_populates="schedule", cascade="all, delete-orphan", order_by="Rotation.position"
    )
    overrides: Mapped[list[ScheduleOverride]] = relationship(
        back_populates="schedule", cascade="all, delete-orphan", order_by="ScheduleOverride.start_at"
    )


class Rotation(Base):
    """Members take turns: the first shift starts at `start_date` + `handoff_time` local, each lasts
    `shift_hours`. Several rotations in one schedule are layers; the one with the lowest position that has
    someone on call wins."""

    __tablename__ = "rotation"

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedule.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), default="Primary")
    position: Mapped[int] = mapped_column(default=0)
    start_date: Mapped[str] = mapped_column(String(10))  # ISO date, local to the schedule
    handoff_time: Mapped[str] = mapped_column(String(5), default="08:00")  # local "HH:MM"
    shift_hours: Mapped[int] = mapped_column(default=24)

    schedule: Mapped[Schedule] = relationship(back_populates="rotations")
    members: Mapped[list[RotationMember]] = relationship(
        back_populates="rotation", cascade="all, delete-orphan", order_by="RotationMember.position"
    )


class RotationMember(Base):
    __tablename__ = "rotation_member"

    id: Mapped[int] = mapped_column(primary_key=True)
    rotation_id: Mapped[int] = mapped_column(ForeignKey("rotation.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(default=0)

    rotation: Mapped[Rotation] = relationship(back_populates="members")
    person: Mapped[Person] = relationship()


class ScheduleOverride(Base):
    __tablename__ = "schedule_override"

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedule.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    note: Mapped[str] = mapped_column(Text, default="")

    schedule: Mapped[Schedule] = relationship(back_populates="overrides")
    person: Mapped[Person] = relationship()

    __table_args__ = (CheckConstraint("end_at > start_at", name="override_ends_after_start"),)


# --------------------------------------------------------------------------------------------------------
# Escalation policies
# --------------------------------------------------------------------------------------------------------


class Policy(Base):
    __tablename__ = "policy"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(default=True)
    severity_filter: Mapped[list[Any]] = mapped_column(default=list)  # empty: every severity
    triggers: Mapped[list[Any]] = mapped_column(default=lambda: [Trigger.UNACKNOWLEDGED.value])
    max_escalations: Mapped[int] = mapped_column(default=10)
    cooldown_seconds: Mapped[int] = mapped_column(default=0)
    business_hours_only: Mapped[bool] = mapped_column(default=False)
    business_days: Mapped[list[Any]] = mapped_column(default=lambda: [0, 1, 2, 3, 4])  # 0 = Monday
    business_start: Mapped[str] = mapped_column(String(5), default="08:00")
    business_end: Mapped[str] = mapped_column(String(5), default="17:00")
    timezone: Mapped[str] = mapped_column(String(64), default="Africa/Johannesburg")
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    levels: Mapped[list[PolicyLevel]] = relationship(
        back_populates="policy", cascade="all, delete-orphan", order_by="PolicyLevel.level"
    )


class PolicyLevel(Base):
    __tablename__ = "policy_level"

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"))
    level: Mapped[int]  # 1 = first
    delay_seconds: Mapped[int] = mapped_column(default=0)  # after the previous level (level 1: after start)
    repeat_count: Mapped[int] = mapped_column(default=0)
    repeat_interval_seconds: Mapped[int] = mapped_column(default=300)
    require_ack: Mapped[bool] = mapped_column(default=True)
    auto_resolve_seconds: Mapped[int] = mapped_column(default=0)  # 0: never

    policy: Mapped[Policy] = relationship(back_populates="levels")
    targets: Mapped[list[PolicyTarget]] = relationship(
        back_populates="level", cascade="all, delete-orphan", order_by="PolicyTarget.position"
    )

    __table_args__ = (UniqueConstraint("policy_id", "level"),)


class PolicyTarget(Base):
    __tablename__ = "policy_target"

    id: Mapped[int] = mapped_column(primary_key=True)
    level_id: Mapped[int] = mapped_column(ForeignKey("policy_level.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(default=0)
    type: Mapped[str] = mapped_column(String(20))  # TargetType
    identifier: Mapped[str] = mapped_column(String(500))  # handle, address, URL
    name: Mapped[str] = mapped_column(String(200), default="")

    level: Mapped[PolicyLevel] = relationship(back_populates="targets")


# --------------------------------------------------------------------------------------------------------
# Incidents and their escalations
# --------------------------------------------------------------------------------------------------------


_RESPONSE_STATUSES = "('open')"
_RESOLUTION_STATUSES = "('open', 'acknowledged', 'in_progress', 'escalated')"


def _sla_deadline_indexes(deadline: str, done_column: str, statuses: str) -> tuple[Index, Index]:
    """The SLA pass's claim of one deadline (engine.sla), answered from one index per database, never two:
    every index is one more write in each trigger and acknowledgement.

    PostgreSQL: a partial index of the live, not yet handled, non-sensitive rows (its predicate repeats the
    claim's conditions), so the pass costs the same with a thousand tickets or ten million and the planner
    never mistakes it for a large share of the table. SQLite's planner keeps no statistics for a partial
    index and always prefers one that starts with `status` (it assumes an equality keeps ten rows), so SQLite
    has (status, deadline)."""
    column = f"{deadline}_at"
    return (
        Index(
            f"ix_incident_{deadline}_pending",
            column,
            postgresql_where=text(f"status IN {statuses} AND NOT sensitive AND {done_column} IS NULL"),
        ).ddl_if(dialect="postgresql"),
        Index(f"ix_incident_{deadline}", "status", column).ddl_if(dialect="sqlite"),
    )


class Incident(Base):
    __tablename__ = "incident"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    key: Mapped[str] = mapped_column(String(255))  # dedup key; several closed incidents may share one
    source: Mapped[str] = mapped_column(String(32), default="operator")  # operator, monitoring, ticket, api
    summary: Mapped[str] = mapped_column(String(1024))
    details: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(16), default=Severity.HIGH.value)
    category: Mapped[str] = mapped_column(String(80), default="general")
    site: Mapped[str] = mapped_column(String(80), default="")
    status: Mapped[str] = mapped_column(String(16), default=IncidentStatus.OPEN.value)
    sensitive: Mapped[bool] = mapped_column(default=False)  # never SLA-monitored
    reporter_name: Mapped[str | None] = mapped_column(String(200))
    reporter_contact: Mapped[str | None] = mapped_column(String(320))  # E.164 phone or e-mail
    reporter_channel: Mapped[str | None] = mapped_column(String(16))
    reporter_language: Mapped[str] = mapped_column(String(8), default="en")
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id", ondelete="SET NULL"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("policy.id", ondelete="SET NULL"))
    custom: Mapped[dict[str, Any]] = mapped_column(default=dict)  # monitoring payload details
    trigger_count: Mapped[int] = mapped_column(default=1)
    # SLA deadlines, computed by engine.sla when the incident is created or its category changes.
    sla_computed_at: Mapped[datetime | None]
    response_due_at: Mapped[datetime | None]
    resolution_due_at: Mapped[datetime | None]
    response_warn_at: Mapped[datetime | None]
    resolution_warn_at: Mapped[datetime | None]
    response_warned_at: Mapped[datetime | None]
    resolution_warned_at: Mapped[datetime | None]
    response_breached_at: Mapped[datetime | None]
    resolution_breached_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_triggered_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    cancelled_at: Mapped[datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(Text)

    team: Mapped[Team | None] = relationship()
    assignee: Mapped[Person | None] = relationship()
    policy: Mapped[Policy | None] = relationship()

    __table_args__ = (
        Index("ix_incident_key_status", "key", "status"),
        # One dedup key, one open incident, however many nodes trigger at once (the trigger path locks the key
        # first; this makes a bug there an error instead of a second incident paging the same people).
        Index(
            "ux_incident_open_key",
            "key",
            unique=True,
            sqlite_where=text(f"status IN {_RESOLUTION_STATUSES}"),
            postgresql_where=text(f"status IN {_RESOLUTION_STATUSES}"),
        ),
        Index("ix_incident_status_created", "status", "created_at"),
        Index("ix_incident_updated", "updated_at"),
        # Incidents still waiting for SLA deadlines (engine.sla): a partial index, tiny however many exist.
        Index(
            "ix_incident_sla_pending",
            "id",
            sqlite_where=text("sla_computed_at IS NULL"),
            postgresql_where=text("sla_computed_at IS NULL"),
        ),
        # The SLA pass's warning and breach claims (engine.sla).
        *_sla_deadline_indexes("response_warn", "response_warned_at", _RESPONSE_STATUSES),
        *_sla_deadline_indexes("response_due", "response_breached_at", _RESPONSE_STATUSES),
        *_sla_deadline_indexes("resolution_warn", "resolution_warned_at", _RESOLUTION_STATUSES),
        *_sla_deadline_indexes("resolution_due", "resolution_breached_at", _RESOLUTION_STATUSES),
    )


class Assignment(Base):
    """Assignment history: every change of team or person on an incident, kept for review."""

    __tablename__ = "assignment"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id", ondelete="SET NULL"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)
    assigned_by: Mapped[str] = mapped_column(String(200), default="system")
    reason: Mapped[str] = mapped_column(Text, default="")


class Escalation(Base):
    __tablename__ = "escalation"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # Looked up through ix_escalation_incident_state, which starts with it.
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("policy.id", ondelete="SET NULL"))
    policy_name: Mapped[str] = mapped_column(String(120))
    # The policy as it was when the escalation started: editing the policy never changes a running one.
    policy_snapshot: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default=EscalationState.PENDING.value)
    trigger: Mapped[str] = mapped_column(String(32), default=Trigger.UNACKNOWLEDGED.value)
    current_level: Mapped[int] = mapped_column(default=0)  # 0: not started
    repeat_no: Mapped[int] = mapped_column(default=0)
    # Where the current visit of the level began: its first repeat_no and when it was paged. A level paged
    # again (a manual escalation back to it) continues its own numbering from `level_rounds`, so no page
    # idempotency key is ever reused within one escalation.
    repeat_base: Mapped[int] = mapped_column(default=0)
    level_started_at: Mapped[datetime | None]
    level_rounds: Mapped[dict[str, Any]] = mapped_column(default=dict)  # "level" -> next unused repeat_no
    next_action_at: Mapped[datetime | None]
    escalation_count: Mapped[int] = mapped_column(default=0)
    notification_count: Mapped[int] = mapped_column(default=0)
    trigger_count: Mapped[int] = mapped_column(default=1)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(Text)
    # When the escalation ran out of levels (or reached max_escalations) while people it paged were still being
    # tried through their channel chains: it escalates no further, and times out once the last chain ends.
    levels_done_at: Mapped[datetime | None]
    # A claimed row: on SQLite (no SKIP LOCKED) an engine marks what it works on, the lease makes a dead
    # engine's claim visible and lets another take over once it expires.
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_expires_at: Mapped[datetime | None]

    incident: Mapped[Incident] = relationship()

    __table_args__ = (
        Index("ix_escalation_due", "state", "next_action_at"),
        Index("ix_escalation_incident_state", "incident_id", "state"),
        # One live escalation per incident, guarded by the database: an SLA breach or a manual escalation
        # raises the live one instead of starting a second, so acknowledging always has one thing to stop.
        Index(
            "ux_escalation_one_live",
            "incident_id",
            unique=True,
            sqlite_where=text(_LIVE_SQL),
            postgresql_where=text(_LIVE_SQL),
        ),
    )


class Page(Base):
    """Reaching one person for one (escalation, level, repeat): the channel chain and where it stands."""

    __tablename__ = "page"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    escalation_id: Mapped[int | None] = mapped_column(
        ForeignKey("escalation.id", ondelete="CASCADE"), index=True
    )
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"), index=True)
    level: Mapped[int] = mapped_column(default=1)
    repeat_no: Mapped[int] = mapped_column(default=0)
    # [{"channel": "sms", "address": "+27…", "wait_seconds": 900}, …]
    chain: Mapped[list[Any]] = mapped_column(default=list)
    step: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default=PageStatus.ACTIVE.value)
    require_confirmation: Mapped[bool] = mapped_column(default=True)
    critical: Mapped[bool] = mapped_column(default=False)  # goes through quiet hours
    reply_code: Mapped[str | None] = mapped_column(String(12))  # "<code> ack" in a reply picks this page
    next_check_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    confirmation_method: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    person: Mapped[Person | None] = relationship()

    __table_args__ = (
        UniqueConstraint("escalation_id", "level", "repeat_no", "person_id"),
        Index("ix_page_check_due", "status", "next_check_at"),
        Index("ix_page_reply_code", "reply_code"),
    )


class OutboxMessage(Base):
    """Every outgoing message is a row here before any provider is called."""

    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # escalation:level:repeat:person:step (or another stable recipe per kind): two engines can never write
    # the same page twice.
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(
        String(32), default="page"
    )  # page, notice, reporter_update, reminder, test
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), index=True)
    escalation_id: Mapped[int | None] = mapped_column(ForeignKey("escalation.id", ondelete="CASCADE"))
    page_id: Mapped[int | None] = mapped_column(ForeignKey("page.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    level: Mapped[int | None]
    chain_step: Mapped[int | None]
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(500), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str | None] = mapped_column(Text)
    template_id: Mapped[int | None] = mapped_column(ForeignKey("template.id", ondelete="SET NULL"))
    critical: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.PENDING.value)
    simulated: Mapped[bool] = mapped_column(default=False)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    sending_deadline: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    hold_reason: Mapped[str | None] = mapped_column(String(64))  # quiet_hours, rate_limit
    provider_id: Mapped[str | None] = mapped_column(String(120))
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_text: Mapped[str | None] = mapped_column(Text)
    segments: Mapped[int | None]
    encoding: Mapped[str | None] = mapped_column(String(8))  # GSM-7 / UCS-2
    price: Mapped[Decimal | None] = mapped_column(Numeric(12, 5))
    currency: Mapped[str | None] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    status_checked_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_deadline", "status", "sending_deadline"),
        Index("ix_outbox_provider_id", "provider_id"),
        Index("ix_outbox_person_created", "person_id", "created_at"),
        # Acknowledging withdraws an escalation's unsent pages: found by escalation, not by a table scan.
        Index("ix_outbox_escalation_status", "escalation_id", "status"),
    )


class InboundMessage(Base):
    """Replies and other messages from people; never lost, even when nothing matches them."""

    __tablename__ = "inbound_message"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    from_address: Mapped[str] = mapped_column(String(320))
    to_address: Mapped[str] = mapped_column(String(320), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    provider_id: Mapped[str | None] = mapped_column(String(120), unique=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"), index=True)
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incident.id", ondelete="SET NULL"), index=True
    )
    page_id: Mapped[int | None] = mapped_column(ForeignKey("page.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(16), default="unknown")  # ack, resolve, stop, start, unknown
    handled: Mapped[bool] = mapped_column(default=False)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_inbound_unhandled", "handled", "received_at"),)


class Template(Base):
    __tablename__ = "template"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(
        String(48)
    )  # page, ack_notice, resolve_notice, status_update, reminder…
    channel: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(8), default="en")
    version: Mapped[int] = mapped_column(default=1)
    active: Mapped[bool] = mapped_column(default=True)
    subject: Mapped[str] = mapped_column(String(500), default="")
    body: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    # Twilio content template SID for WhatsApp messages outside the 24-hour session window.
    whatsapp_content_sid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="system")

    __table_args__ = (
        UniqueConstraint("kind", "channel", "language", "version"),
        Index("ix_template_lookup", "kind", "channel", "language", "active"),
    )


# --------------------------------------------------------------------------------------------------------
# SLA
# --------------------------------------------------------------------------------------------------------


class BusinessCalendar(Base):
    __tablename__ = "business_calendar"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="Africa/Johannesburg")
    # {"mon": [["08:00", "17:00"]], …, "sun": []}
    hours: Mapped[dict[str, Any]] = mapped_column(default=dict)
    holiday_country: Mapped[str | None] = mapped_column(String(8))  # for the `holidays` package, e.g. "ZA"
    holiday_subdivision: Mapped[str | None] = mapped_column(String(16))
    extra_holidays: Mapped[list[Any]] = mapped_column(default=list)  # ISO dates


class SlaConfig(Base):
    """SLA targets for (site, category); site with no category is the site default, neither is the system
    default. Missing altogether: 24 h response, 168 h resolution."""

    __tablename__ = "sla_config"

    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(80), default="")  # "" = any site
    category: Mapped[str] = mapped_column(String(80), default="")  # "" = any category
    response_minutes: Mapped[int] = mapped_column(default=24 * 60)
    resolution_minutes: Mapped[int] = mapped_column(default=168 * 60)
    warning_percent: Mapped[int] = mapped_column(default=80)
    calendar_id: Mapped[int | None] = mapped_column(ForeignKey("business_calendar.id", ondelete="SET NULL"))
    breach_policy_id: Mapped[int | None] = mapped_column(ForeignKey("policy.id", ondelete="SET NULL"))

    calendar: Mapped[BusinessCalendar | None] = relationship()
    breach_policy: Mapped[Policy | None] = relationship()

    __table_args__ = (UniqueConstraint("site", "category"),)


# --------------------------------------------------------------------------------------------------------
# Timeline, notifications, workflow items
# --------------------------------------------------------------------------------------------------------


class Event(Base):
    """The append-only timeline and audit log. Its increasing id is the change feed consoles follow."""

    __tablename__ = "event"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(48))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    escalation_id: Mapped[int | None] = mapped_column(ForeignKey("escalation.id", ondelete="CASCADE"))
    actor: Mapped[str] = mapped_column(String(200), default="system")
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        Index("ix_event_incident", "incident_id", "id"),
        Index("ix_event_at", "at"),
        Index("ix_event_kind_at", "kind", "at"),
    )


class Notification(Base):
    """In-app notifications to one person, one role or one team; the dedupe key makes the same (recipient,
    event, item, day) appear once. A role's or a team's notification is read once for all of them: `read_by`
    says who marked it read."""

    __tablename__ = "notification"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    role: Mapped[str | None] = mapped_column(String(16))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(48))
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text, default="")
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    workflow_item_id: Mapped[int | None] = mapped_column(ForeignKey("workflow_item.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]
    read_by: Mapped[str | None] = mapped_column(String(200))  # the name of whoever marked it read

    __table_args__ = (Index("ix_notification_created", "created_at"),)


class WorkflowItem(Base):
    """A step with a time limit: remind the assignee at 1x, escalate to a role at 2x, expire past its end."""

    __tablename__ = "workflow_item"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    kind: Mapped[str] = mapped_column(String(48), default="task")
    title: Mapped[str] = mapped_column(String(500))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    escalate_to_role: Mapped[str] = mapped_column(String(16), default=Role.SUPERVISOR.value)
    time_limit_seconds: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ends_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, done, expired
    reminded_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_workflow_open", "status", "started_at"),)


# --------------------------------------------------------------------------------------------------------
# Operators, engine nodes, leases, service settings
# --------------------------------------------------------------------------------------------------------


class Operator(Base):
    __tablename__ = "operator"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))  # scrypt, never plain
    role: Mapped[str] = mapped_column(String(16), default=Role.OPERATOR.value)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    # Failed sign-ins since the last good one (or since the last lock-out ended); at the limit the account is
    # locked until `locked_until` (engine.accounts).
    failed_sign_ins: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    locked_until: Mapped[datetime | None]
    # Set by a password reset (and for an account imported without a password): the next sign-in must choose
    # a new password before anything else.
    must_change_password: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    password_changed_at: Mapped[datetime | None]

    person: Mapped[Person | None] = relationship()


class AuditEntry(Base):
    """Who changed what, when: sign-ins, configuration saves with their field-by-field changes, settings,
    secrets (that they changed, never the value), accounts, tokens, switches, imports, handovers.

    Append-only: nothing in Watchkeeper updates or deletes a row, and the console's PostgreSQL role may only
    insert (engine.dbroles). Kept apart from the event timeline, which retention prunes."""

    __tablename__ = "audit_entry"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))  # user name, api:<label>, local:<login>, system
    actor_role: Mapped[str] = mapped_column(String(16), default="")
    via: Mapped[str] = mapped_column(String(16), default="")  # console, cli, api
    action: Mapped[str] = mapped_column(String(48))  # sign_in, config_updated, secret_set, …
    object_kind: Mapped[str] = mapped_column(String(32), default="")  # policy, account, setting, …
    object_name: Mapped[str] = mapped_column(String(255), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    # [{"field": "levels[0].delay_seconds", "before": 300, "after": 600}, …]
    changes: Mapped[list[Any]] = mapped_column(default=list)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        Index("ix_audit_entry_at", "at"),
        Index("ix_audit_entry_actor_at", "actor", "at"),
        Index("ix_audit_entry_action_at", "action", "at"),
        Index("ix_audit_entry_object", "object_kind", "object_name", "at"),
    )


class HandoverNote(Base):
    """What the outgoing operator wrote at sign-out for the next one, with the shift's counts at that time."""

    __tablename__ = "handover_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    written_at: Mapped[datetime] = mapped_column(default=utcnow)
    author: Mapped[str] = mapped_column(String(200))  # user name
    author_name: Mapped[str] = mapped_column(String(200), default="")
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operator.id", ondelete="SET NULL"))
    shift_started_at: Mapped[datetime | None]
    text: Mapped[str] = mapped_column(Text, default="")
    open_count: Mapped[int] = mapped_column(default=0)
    unacknowledged_count: Mapped[int] = mapped_column(default=0)
    breached_count: Mapped[int] = mapped_column(default=0)

    __table_args__ = (Index("ix_handover_note_written", "written_at"),)


class EngineNode(Base):
    __tablename__ = "engine_node"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    mode: Mapped[str] = mapped_column(String(16))  # console, serve, check
    version: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running, degraded, stopped
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_pass: Mapped[dict[str, Any]] = mapped_column(default=dict)  # pass name -> {"at": iso, "ms": float}


class Lease(Base):
    """Singleton work on SQLite: one engine holds the lease for a pass until it expires or is released."""

    __tablename__ = "lease"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    owner: Mapped[str] = mapped_column(String(80))
    expires_at: Mapped[datetime]


class RoutingKey(Base):
    """Maps an Events API routing key to a policy. Only a hash is stored: the key itself is a secret."""

    __tablename__ = "routing_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default=Role.OPERATOR.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class SystemSetting(Base):
    """Centre-wide switches shared by every node (master switches for notifications and escalations)."""

    __tablename__ = "system_setting"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200), default="system")


class IntakeEvent(Base):
    """An Events API v2 event accepted over HTTP (202) and not yet applied: the service's durable intake queue.

    The HTTP answer is given once the row is committed; an intake worker on any node then applies it through
    engine.api (trigger / acknowledge / resolve) in id order. A worker that dies mid-batch leaves its claim to
    expire, and a trigger applied twice is deduplicated by its key, so nothing is lost or doubled.
    """

    __tablename__ = "intake_event"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    routing_key_id: Mapped[int | None] = mapped_column(ForeignKey("routing_key.id", ondelete="SET NULL"))
    policy_name: Mapped[str] = mapped_column(String(120))
    source_label: Mapped[str] = mapped_column(String(200))  # the routing key's label, for the actor
    event_action: Mapped[str] = mapped_column(String(16))  # trigger, acknowledge, resolve
    dedup_key: Mapped[str] = mapped_column(String(255))
    event: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the validated event, routing key removed
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, done, failed
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claim_expires_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    incident_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    outcome: Mapped[str | None] = mapped_column(String(16))  # triggered, deduplicated, acknowledged, …
    error: Mapped[str | None] = mapped_column(Text)
    # Names the event for good (its receipt in intake_receipt), whichever node or store holds the row.
    uid: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (
        Index("ix_intake_event_due", "status", "id"),
        Index("ix_intake_event_processed", "status", "processed_at"),
        # Events of one dedup key are applied in the order they came (engine.service.queue).
        Index("ix_intake_event_key_pending", "dedup_key", "status", "id"),
    )


class IntakeReceipt(Base):
    """An Events API event that was applied, written in the same transaction as what it did (the incident
    opened, acknowledged or resolved). Applying an event first looks here: an event whose effect committed is
    never applied again, whatever failed after (recording its outcome in the queue, a node killed, the
    database restarting) — and on SQLite, whose queue is a file of its own, this is what makes the two agree."""

    __tablename__ = "intake_receipt"

    uid: Mapped[str] = mapped_column(String(40), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16))
    incident_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    applied_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_intake_receipt_applied", "applied_at"),)


ALL_MODELS: tuple[type[Base], ...] = tuple(m.class_ for m in Base.registry.mappers)


@event.listens_for(Base.metadata, "after_create")
def _sign_in_functions(target: MetaData, connection: Connection, **_kw: Any) -> None:
    """On PostgreSQL the schema includes the sign-in functions (engine.signin_sql); migrations create them too."""
    if connection.dialect.name != "postgresql":
        return
    from engine.signin_sql import FUNCTIONS

    for statement in FUNCTIONS:
        connection.exec_driver_sql(statement)
