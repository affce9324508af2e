"""Routing keys (Events API v2) and API tokens (REST): secrets shown once, stored only as a SHA-256 hash.

A routing key maps monitoring events to an escalation policy; an API token carries a role (operator,
supervisor, admin) for the REST API. Neither is ever written to the database, a log line or an error message
in the clear: `create_*` returns the plain value exactly once, for the administrator to copy.

Making, listing and revoking either needs an administrator (engine.permissions); each create and revoke is an
audit entry with the person who did it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit
from engine.context import AppContext
from engine.db import read_session, write_session
from engine.errors import NotFound, ValidationError
from engine.models import ApiToken, Policy, Role, RoutingKey
from engine.permissions import Action, Identity, as_identity, authorize
from engine.timeline import record

TOKEN_PREFIX = "wkt_"
ROLE_RANK = {Role.OPERATOR.value: 0, Role.SUPERVISOR.value: 1, Role.ADMIN.value: 2}


def hash_secret(value: str) -> str:
    """The stored form of a routing key or token: lowercase hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_routing_key() -> str:
    """32 lowercase hex characters, the shape PagerDuty integration keys have (tools validate the length)."""
    return secrets.token_hex(16)


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class CreatedSecret:
    """What `create_*` hands back: the row id and the plain secret, which is never shown again."""

    id: int
    label: str
    secret: str
    policy: str | None = None
    role: str | None = None


@dataclass(frozen=True)
class RoutingTarget:
    routing_key_id: int
    label: str
    policy_id: int
    policy_name: str


@dataclass(frozen=True)
class TokenIdentity:
    token_id: int
    label: str
    role: str

    def can(self, role: Role | str) -> bool:
        return ROLE_RANK.get(self.role, -1) >= ROLE_RANK[Role(role).value]


# ----------------------------------------------------------------------------------------------------------
# Routing keys
# ----------------------------------------------------------------------------------------------------------


def create_routing_key(
    ctx: AppContext, *, policy: str, label: str, by: Identity | str = "admin"
) -> CreatedSecret:
    label = label.strip()
    if not label:
        raise ValidationError("a routing key needs a label (where it is used, e.g. 'alertmanager-prod')")
    plain = new_routing_key()
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        who = authorize(session, as_identity(by), Action.MANAGE_ROUTING_KEYS)
        pol = session.scalars(select(Policy).where(Policy.name == policy)).first()
        if pol is None:
            raise NotFound(f"no escalation policy named {policy!r}")
        row = RoutingKey(key_hash=hash_secret(plain), label=label[:200], policy_id=pol.id, created_at=now)
        session.add(row)
        session.flush()
        audit.record(
            session,
            now,
            who,
            "routing_key_created",
            object_kind="routing_key",
            object_name=row.label,
            message=f"Routing key {label!r} created for policy {pol.name!r}",
            data={"routing_key_id": row.id, "policy": pol.name},
        )
        record(
            session,
            "routing_key_created",
            now,
            actor=who.name,
            message=f"Routing key {label!r} created for policy {pol.name!r}",
            data={"routing_key_id": row.id, "policy": pol.name},
        )
        return CreatedSecret(id=row.id, label=row.label, secret=plain, policy=pol.name)


def revoke_routing_key(ctx: AppContext, ref: int | str, *, by: Identity | str = "admin") -> None:
    """Delete a routing key by id or label; events sent with it are refused from then on."""
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        who = authorize(session, as_identity(by), Action.MANAGE_ROUTING_KEYS)
        row = _find_routing_key(session, ref)
        audit.record(
            session,
            now,
            who,
            "routing_key_revoked",
            object_kind="routing_key",
            object_name=row.label,
            message=f"Routing key {row.label!r} revoked",
            data={"routing_key_id": row.id},
        )
        record(
            session,
            "routing_key_revoked",
            now,
            actor=who.name,
            message=f"Routing key {row.label!r} revoked",
            data={"routing_key_id": row.id},
        )
        session.delete(row)


def _find_routing_key(session: Session, ref: int | str) -> RoutingKey:
    row: RoutingKey | None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        row = session.get(RoutingKey, int(ref))
    else:
        row = session.scalars(select(RoutingKey).where(RoutingKey.label == ref)).first()
    if row is None:
        raise NotFound(f"no routing key {ref!r}")
    return row


def list_routing_keys(ctx: AppContext, *, by: Identity | str = "admin") -> list[dict[str, object]]:
    with read_session(ctx.sessions) as session:
        authorize(session, as_identity(by), Action.MANAGE_ROUTING_KEYS)
        rows = session.execute(
            select(RoutingKey, Policy.name)
            .join(Policy, Policy.id == RoutingKey.policy_id)
            .order_by(RoutingKey.id)
        ).all()
        return [
            {"id": rk.id, "label": rk.label, "policy": name, "created_at": rk.created_at.isoformat()}
            for rk, name in rows
        ]


def resolve_routing_key(session: Session, plain: str) -> RoutingTarget | None:
    """The policy a routing key points to, or None for an unknown (or revoked) key. Read-only."""
    if not plain:
        return None
    row = session.execute(
        select(RoutingKey.id, RoutingKey.label, Policy.id, Policy.name)
        .join(Policy, Policy.id == RoutingKey.policy_id)
        .where(RoutingKey.key_hash == hash_secret(plain))
    ).first()
    if row is None:
        return None
    return RoutingTarget(routing_key_id=row[0], label=row[1], policy_id=row[2], policy_name=row[3])


# ----------------------------------------------------------------------------------------------------------
# API tokens
# ----------------------------------------------------------------------------------------------------------


def create_api_token(
    ctx: AppContext, *, label: str, role: str = Role.OPERATOR.value, by: Identity | str = "admin"
) -> CreatedSecret:
    label = label.strip()
    if not label:
        raise ValidationError("an API token needs a label (who or what uses it)")
    if role not in ROLE_RANK:
        raise ValidationError(f"unknown role {role!r}: use one of {', '.join(ROLE_RANK)}", field="role")
    plain = new_api_token()
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        who = authorize(session, as_identity(by), Action.MANAGE_API_TOKENS)
        row = ApiToken(token_hash=hash_secret(plain), label=label[:200], role=role, created_at=now)
        session.add(row)
        session.flush()
        audit.record(
            session,
            now,
            who,
            "token_created",
            object_kind="token",
            object_name=row.label,
            message=f"API token {label!r} created with role {role}",
            data={"api_token_id": row.id, "role": role},
        )
        record(
            session,
            "api_token_created",
            now,
            actor=who.name,
            message=f"API token {label!r} created with role {role}",
            data={"api_token_id": row.id, "role": role},
        )
        return CreatedSecret(id=row.id, label=row.label, secret=plain, role=role)


def revoke_api_token(ctx: AppContext, ref: int | str, *, by: Identity | str = "admin") -> None:
    """Mark a token revoked (kept for the audit trail); it is refused from then on."""
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        who = authorize(session, as_identity(by), Action.MANAGE_API_TOKENS)
        row: ApiToken | None
        if isinstance(ref, int) or ref.isdigit():
            row = session.get(ApiToken, int(ref))
        else:
            row = session.scalars(
                select(ApiToken).where(ApiToken.label == ref, ApiToken.revoked_at.is_(None))
            ).first()
        if row is None:
            raise NotFound(f"no API token {ref!r}")
        if row.revoked_at is None:
            row.revoked_at = now
            audit.record(
                session,
                now,
                who,
                "token_revoked",
                object_kind="token",
                object_name=row.label,
                message=f"API token {row.label!r} revoked",
                data={"api_token_id": row.id},
            )
            record(
                session,
                "api_token_revoked",
                now,
                actor=who.name,
                message=f"API token {row.label!r} revoked",
                data={"api_token_id": row.id},
            )


def list_api_tokens(ctx: AppContext, *, by: Identity | str = "admin") -> list[dict[str, object]]:
    with read_session(ctx.sessions) as session:
        authorize(session, as_identity(by), Action.MANAGE_API_TOKENS)
        rows = session.scalars(select(ApiToken).order_by(ApiToken.id)).all()
        return [
            {
                "id": t.id,
                "label": t.label,
                "role": t.role,
                "created_at": t.created_at.isoformat(),
                "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
            }
            for t in rows
        ]


def authenticate_token(session: Session, plain: str) -> TokenIdentity | None:
    """The identity behind a bearer token, or None when it is unknown or revoked. Read-only."""
    if not plain:
        return None
    digest = hash_secret(plain)
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    # The lookup is by hash; compare again in constant time so timing says nothing about near misses.
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return TokenIdentity(token_id=row.id, label=row.label, role=row.role)


def token_identity(token: TokenIdentity, via: str = "api") -> Identity:
    """The person-or-system behind a token, as the rule book and the audit trail know it: `api:<label>`."""
    return Identity(name=f"api:{token.label}", role=token.role, kind="token", via=via)
