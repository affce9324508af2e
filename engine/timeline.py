"""The timeline and audit log: every state change writes one Event row in the same transaction.

The event table's increasing id is the change feed consoles follow, so anything an operator should see change
must go through `record`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from engine.models import Event


def record(
    session: Session,
    kind: str,
    at: datetime,
    *,
    incident_id: int | None = None,
    escalation_id: int | None = None,
    actor: str = "system",
    message: str = "",
    data: dict[str, Any] | None = None,
) -> Event:
    event = Event(
        kind=kind,
        at=at,
        incident_id=incident_id,
        escalation_id=escalation_id,
        actor=actor,
        message=message,
        data=data or {},
    )
    session.add(event)
    return event
