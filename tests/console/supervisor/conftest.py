"""Fixtures for the supervisor console tests: a signed-in supervisor or operator on a SQLite database, and
helpers that insert incidents and audit events directly (the history and statistics views only read them)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from engine.clock import FakeClock
from engine.context import AppContext
from engine.models import Event, Incident
from engine.settings import Settings


def add_incident(session: Session, created: datetime, **fields: Any) -> Incident:
    values: dict[str, Any] = {
        "key": f"key-{created.isoformat()}-{fields.get('summary', '')}",
        "summary": "Incident",
        "status": "resolved",
        "created_at": created,
        "updated_at": created,
        "last_triggered_at": created,
    }
    values.update(fields)
    incident = Incident(**values)
    session.add(incident)
    session.flush()
    return incident


def add_event(session: Session, at: datetime, kind: str, actor: str = "system", **fields: Any) -> Event:
    event = Event(at=at, kind=kind, actor=actor, **fields)
    session.add(event)
    session.flush()
    return event


@pytest.fixture
def console_ctx(sqlite_db: Engine, clock: FakeClock, tmp_path: os.PathLike[str]) -> AppContext:
    settings = Settings(db=sqlite_db.url.render_as_string(hide_password=False))
    settings.source = None
    return AppContext.create(settings, clock=clock, mode="test", db=sqlite_db)


def _services(ctx: AppContext, role: str) -> Iterator[Any]:
    from PySide6.QtCore import QCoreApplication

    from console.services import ConsoleServices, SignedIn

    services = ConsoleServices(
        ctx, SignedIn(operator_id=None, username=f"{role}1", display_name=role.title(), role=role)
    )
    yield services
    services.shutdown()
    # Deliver what the worker finished, so no result arrives in the next test's event loop.
    QCoreApplication.processEvents()


@pytest.fixture
def supervisor(qapp: Any, console_ctx: AppContext) -> Iterator[Any]:
    yield from _services(console_ctx, "supervisor")


@pytest.fixture
def operator(qapp: Any, console_ctx: AppContext) -> Iterator[Any]:
    yield from _services(console_ctx, "operator")
