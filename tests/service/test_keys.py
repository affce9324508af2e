"""Routing keys and API tokens: shown once, stored only as a SHA-256 hash, revocable."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from engine.context import AppContext
from engine.errors import NotFound, ValidationError
from engine.models import ApiToken, Event, RoutingKey
from engine.service.keys import (
    authenticate_token,
    create_api_token,
    create_routing_key,
    list_api_tokens,
    list_routing_keys,
    resolve_routing_key,
    revoke_api_token,
    revoke_routing_key,
)


def test_routing_key_is_stored_only_as_its_sha256(ctx: AppContext, policy: str) -> None:
    created = create_routing_key(ctx, policy=policy, label="alertmanager-prod")
    assert len(created.secret) == 32
    with ctx.sessions() as session:
        [row] = session.scalars(select(RoutingKey)).all()
        assert row.key_hash == hashlib.sha256(created.secret.encode()).hexdigest()
        assert created.secret not in repr(session.execute(select(RoutingKey.__table__)).all())
        events = session.scalars(select(Event)).all()
        assert all(created.secret not in (e.message + repr(e.data)) for e in events)
        target = resolve_routing_key(session, created.secret)
    assert target is not None and target.policy_name == "ops" and target.label == "alertmanager-prod"
    assert list_routing_keys(ctx)[0]["policy"] == "ops"


def test_routing_key_for_an_unknown_policy_is_refused(ctx: AppContext) -> None:
    with pytest.raises(NotFound):
        create_routing_key(ctx, policy="nope", label="x")


def test_revoked_routing_key_no_longer_resolves(ctx: AppContext, policy: str) -> None:
    created = create_routing_key(ctx, policy=policy, label="grafana")
    revoke_routing_key(ctx, "grafana")
    with ctx.sessions() as session:
        assert resolve_routing_key(session, created.secret) is None
    with pytest.raises(NotFound):
        revoke_routing_key(ctx, created.id)


def test_api_token_is_hashed_and_carries_its_role(ctx: AppContext) -> None:
    created = create_api_token(ctx, label="ticket-bridge", role="supervisor")
    assert created.secret.startswith("wkt_")
    with ctx.sessions() as session:
        [row] = session.scalars(select(ApiToken)).all()
        assert row.token_hash == hashlib.sha256(created.secret.encode()).hexdigest()
        identity = authenticate_token(session, created.secret)
        assert authenticate_token(session, created.secret + "x") is None
    assert identity is not None and identity.role == "supervisor"
    assert identity.can("operator") and identity.can("supervisor") and not identity.can("admin")


def test_revoked_token_is_refused_but_kept_for_the_audit_trail(ctx: AppContext) -> None:
    created = create_api_token(ctx, label="old-script")
    revoke_api_token(ctx, "old-script")
    with ctx.sessions() as session:
        assert authenticate_token(session, created.secret) is None
    [listed] = list_api_tokens(ctx)
    assert listed["revoked_at"] is not None


def test_token_with_an_unknown_role_is_refused(ctx: AppContext) -> None:
    with pytest.raises(ValidationError):
        create_api_token(ctx, label="x", role="root")
