"""On SQLite one escalate batch holds the file's only write lock, so a batch is kept small there (HTTP intake
commits wait for it); a backlog is still worked to the end in one pass, every escalation paged once."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from engine import escalation
from engine.clock import FakeClock
from engine.context import AppContext
from engine.dispatch import dispatch_pass
from engine.escalation import DEFAULT_BATCH, SQLITE_BATCH, batch_size, escalate_pass
from engine.models import OutboxMessage

from .helpers import add_policy, bulk_escalations, count


def test_sqlite_batches_are_smaller_than_postgresqls(ctx: AppContext) -> None:
    expected = SQLITE_BATCH if ctx.db.dialect.name == "sqlite" else DEFAULT_BATCH
    assert batch_size(ctx) == expected
    assert SQLITE_BATCH < DEFAULT_BATCH


def test_a_backlog_is_worked_in_bounded_batches_to_the_end(
    ctx: AppContext,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    people: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_policy(sessions, "p", [{"targets": [("person", "thandi")]}])
    n = 2 * SQLITE_BATCH + 7
    bulk_escalations(sessions, "p", n, clock.now())
    claimed: list[int] = []
    claim = escalation.claim_due_escalation_rows

    def counting_claim(*args: Any, **kwargs: Any) -> Any:
        rows = claim(*args, **kwargs)
        claimed.append(len(rows))
        return rows

    monkeypatch.setattr(escalation, "claim_due_escalation_rows", counting_claim)

    assert escalate_pass(ctx) == n  # one pass, however many batches it takes
    assert sum(claimed) == n
    assert max(claimed) <= batch_size(ctx), "no transaction holds more than one batch"
    if ctx.db.dialect.name == "sqlite":
        assert [c for c in claimed if c] == [SQLITE_BATCH, SQLITE_BATCH, 7]
    assert count(sessions, OutboxMessage) == n  # every escalation paged, once
    assert escalate_pass(ctx) == 0


def test_a_dispatch_pass_with_nothing_due_never_queues_for_the_write_lock(ctx: AppContext) -> None:
    """The dispatcher is woken after every acknowledgement; on SQLite a pass that took the file's only write
    lock just to find nothing would make the next trigger or acknowledgement wait for it."""
    if ctx.db.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's claim locks rows, not the database")
    writer = sqlite3.connect(str(ctx.db.url.database), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process is in the middle of a write
    try:
        result = dispatch_pass(ctx, wait=False)  # without the peek: "database is locked" after the timeout
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert result["claimed"] == 0
