"""The hot paths' driver SQL (engine.prepared) stores and reads what SQLAlchemy Core would, on both databases,
and a trigger always escalates with the policy as it is now, however it was edited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, event, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from engine import api
from engine.context import AppContext
from engine.models import Escalation, Event, Incident, PolicyLevel, PolicyTarget
from engine.prepared import Prepared, constants

from .helpers import add_person, add_policy

_EVENT: Any = Event.__table__
_INCIDENT: Any = Incident.__table__


def _event_row(**over: Any) -> dict[str, Any]:
    row = {
        "at": datetime(2026, 3, 1, 8, 0, 0, 123456, tzinfo=UTC),
        "kind": "note",
        "incident_id": None,
        "escalation_id": None,
        "actor": "thandi",
        "message": "ünïcode ✓",
        "data": {"nested": [1, "two", None], "flag": True},
    }
    row.update(over)
    return row


def test_rows_written_as_driver_sql_read_back_as_core_writes_them(db: Engine) -> None:
    prepared = Prepared(_EVENT.insert())
    with db.begin() as conn:
        prepared.run_many(conn, [_event_row(), _event_row(kind="other", data=None)], columns=True)
        conn.execute(_EVENT.insert(), [_event_row(kind="core"), _event_row(kind="core-null", data=None)])
    with db.connect() as conn:
        rows = {r.kind: r for r in conn.execute(select(_EVENT))}
    assert rows["note"].at == rows["core"].at == datetime(2026, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)
    assert rows["note"].data == rows["core"].data == {"nested": [1, "two", None], "flag": True}
    assert rows["note"].message == "ünïcode ✓"
    assert rows["other"].data == rows["core-null"].data  # None stored the way Core stores it


def test_a_list_given_as_a_value_is_stored_as_that_value(db: Engine) -> None:
    """Only the statement's own IN lists are expanded: a JSON column's list is stored whole."""
    with db.begin() as conn:
        Prepared(_EVENT.insert()).run(conn, _event_row(data=["a", "b", 3]), columns=True)
    with db.connect() as conn:
        assert conn.execute(select(_EVENT.c.data)).scalar_one() == ["a", "b", 3]


def test_a_select_gives_named_rows_with_core_conversions_and_lists_of_any_length(db: Engine) -> None:
    with db.begin() as conn:
        conn.execute(_EVENT.insert(), [_event_row(kind=f"k{i}", incident_id=None) for i in range(5)])
    read = Prepared(
        select(_EVENT.c.id, _EVENT.c.kind, _EVENT.c.at, _EVENT.c.data)
        .where(_EVENT.c.kind.in_(bindparam("kinds", expanding=True)), _EVENT.c.actor.in_(["thandi", "x"]))
        .order_by(_EVENT.c.id)
    )
    with db.connect() as conn:
        for kinds in (["k1"], ["k0", "k3", "k4"], ["k2", "nothing"], ["k0", "k1", "k2", "k3", "k4"]):
            rows = read.rows(conn, {"kinds": kinds})
            assert [r.kind for r in rows] == [k for k in sorted(kinds) if k != "nothing"]
            assert all(r.at.tzinfo is not None and r.data["flag"] is True for r in rows)


def test_in_lists_of_any_kind_select_what_core_selects(db: Engine) -> None:
    """Empty, negated and integer lists: on PostgreSQL they go as one array parameter (`= ANY`, `<> ALL`),
    on SQLite as one placeholder per item; both select what Core's own expansion selects."""
    with db.begin() as conn:
        conn.execute(_EVENT.insert(), [_event_row(kind=f"k{i}", incident_id=None) for i in range(5)])
        ids = [r.id for r in conn.execute(select(_EVENT.c.id).order_by(_EVENT.c.id))]
    by_kind = select(_EVENT.c.kind).order_by(_EVENT.c.id)
    cases: list[tuple[Any, dict[str, Any]]] = [
        (by_kind.where(_EVENT.c.kind.in_(bindparam("kinds", expanding=True))), {"kinds": []}),
        (by_kind.where(_EVENT.c.kind.not_in(bindparam("kinds", expanding=True))), {"kinds": ["k1", "k3"]}),
        (by_kind.where(_EVENT.c.kind.not_in(bindparam("kinds", expanding=True))), {"kinds": []}),
        (by_kind.where(_EVENT.c.id.in_(bindparam("ids", expanding=True))), {"ids": ids[1:4]}),
        (by_kind.where(_EVENT.c.id.in_(bindparam("ids", expanding=True))), {"ids": ids * 3}),
    ]
    with db.connect() as conn:
        for statement, params in cases:
            expected = [r.kind for r in conn.execute(statement, params)]
            assert [r.kind for r in Prepared(statement).rows(conn, params)] == expected
    assert expected == ["k0", "k1", "k2", "k3", "k4"]  # the last case: every id, each named three times


def test_a_long_list_is_planned_for_its_values_and_a_short_one_keeps_its_saved_plan(
    db: Engine,
) -> None:
    """PostgreSQL: psycopg prepares a statement it has run five times, and the server then plans it once for
    any values. A plan made for one key list was kept for the next (made while the incident table was small,
    it scanned every open incident for each of a batch's keys: 22 ms for 100 keys at 12,000 open incidents,
    3 ms planned for the keys). A list longer than PLAN_FOR_VALUES_FROM items is planned for its values
    every time; a short one (an acknowledgement's one id) keeps the saved plan."""
    if db.dialect.name != "postgresql":
        pytest.skip("a prepared statement's saved plan is PostgreSQL's")
    from engine.prepared import PLAN_FOR_VALUES_FROM

    read = Prepared(select(_INCIDENT.c.id).where(_INCIDENT.c.key.in_(bindparam("keys", expanding=True))))
    long_keys = [f"key-{i}" for i in range(PLAN_FOR_VALUES_FROM + 1)]
    saved = "SELECT name FROM pg_prepared_statements WHERE strpos(statement, 'ANY') > 0"
    with db.connect() as conn:
        for _ in range(10):
            assert read.rows(conn, {"keys": long_keys}) == []
        assert conn.exec_driver_sql(saved).all() == []
        for _ in range(10):
            assert read.rows(conn, {"keys": long_keys[:2]}) == []
        assert len(conn.exec_driver_sql(saved).all()) == 1


def test_rows_copied_to_postgresql_read_back_as_core_writes_them_with_ids_in_row_order(db: Engine) -> None:
    """A batch's rows go to PostgreSQL by COPY (engine.prepared.Copied): the same values as Core's INSERT
    stores (times, JSON, JSON null, text with tabs, newlines and backslashes), ids drawn in row order."""
    if db.dialect.name != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    from engine.prepared import Copied

    awkward = "tab\there\nnew line\\ back\\slash, ünïcode ✓, \\N"
    rows = [_event_row(kind=f"copied-{i}", message=awkward) for i in range(3)] + [
        _event_row(kind="copied-null", data=None)
    ]
    with db.begin() as conn:
        conn.execute(_EVENT.insert(), [_event_row(kind="core", message=awkward)])
        conn.execute(_EVENT.insert(), [_event_row(kind="core-null", data=None)])
        ids = Copied(_EVENT).write(conn, rows, ids=True)
        assert Copied(_EVENT).write(conn, [_event_row(kind="no-ids")]) == []
    assert ids == sorted(ids) and len(set(ids)) == 4
    with db.connect() as conn:
        stored = {r.kind: r for r in conn.execute(select(_EVENT))}
    assert [stored[f"copied-{i}"].id for i in range(3)] + [stored["copied-null"].id] == ids
    for i in range(3):
        copied, core = stored[f"copied-{i}"], stored["core"]
        assert (copied.at, copied.message, copied.data) == (core.at, core.message, core.data)
    assert stored["copied-null"].data == stored["core-null"].data
    assert "no-ids" in stored


def test_copy_refuses_rows_that_would_need_a_python_default_by_name(db: Engine) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    from engine.prepared import Copied

    row = _event_row()
    del row["at"]  # has a Python-side default, which COPY cannot run
    with pytest.raises(ValueError, match="needs values for at"), db.begin() as conn:
        Copied(_EVENT).write(conn, [row])


def test_constant_lists_are_written_into_the_sql_and_refuse_anything_but_constants() -> None:
    assert [str(c) for c in constants(["open", "escalated"])] == ["'open'", "'escalated'"]
    with pytest.raises(ValueError, match="not a constant"):
        constants(["x'); DROP TABLE incident; --"])


def test_database_errors_are_sqlalchemys_and_listeners_see_every_statement(db: Engine) -> None:
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.split()[0])

    insert = Prepared(_EVENT.insert().returning(_EVENT.c.id))
    event.listen(db, "before_cursor_execute", listen)
    try:
        with db.begin() as conn:
            new_id = insert.run(conn, _event_row(), columns=True)[0].id
        assert seen[-1:] == ["INSERT"]  # (SQLite: after our own BEGIN)
        with pytest.raises(IntegrityError), db.begin() as conn:  # the same id again: the primary key refuses
            insert.run(conn, {**_event_row(), "id": new_id}, columns=True)
    finally:
        event.remove(db, "before_cursor_execute", listen)
    assert issubclass(IntegrityError, DBAPIError)  # what engine.db.retrying and the callers handle


def test_an_insert_that_would_need_a_python_default_is_refused_by_name(db: Engine) -> None:
    with db.begin() as conn, pytest.raises(ValueError, match="data"):
        Prepared(_EVENT.insert()).run(
            conn, {k: v for k, v in _event_row().items() if k != "data"}, columns=True
        )


def test_a_trigger_escalates_with_the_policy_as_edited_even_without_a_new_version(
    ctx: AppContext, sessions: sessionmaker[Session]
) -> None:
    """Policy snapshots are reused while the policy's rows are the same; any change of any column — even one
    written straight to the database, with no new version number — is a new snapshot for the next trigger."""
    add_person(sessions, "thandi")
    add_person(sessions, "sipho", phone="+27829876543")
    add_policy(sessions, "night", [{"targets": [("person", "thandi")], "delay_seconds": 0}])
    first = api.trigger(ctx, policy="night", summary="pump 1 down", key="p1")
    with sessions.begin() as s:
        level_id = s.scalar(select(PolicyLevel.id))
        s.execute(update(PolicyLevel).values(delay_seconds=120))
        s.execute(update(PolicyTarget).where(PolicyTarget.level_id == level_id).values(identifier="sipho"))
    second = api.trigger(ctx, policy="night", summary="pump 2 down", key="p2")
    with sessions() as s:
        snaps = {e.id: e for e in s.scalars(select(Escalation))}
    before, after = snaps[first.escalation_id], snaps[second.escalation_id]
    assert before.policy_snapshot["levels"][0]["targets"][0]["identifier"] == "thandi"
    assert after.policy_snapshot["levels"][0]["targets"][0]["identifier"] == "sipho"
    assert after.next_action_at - after.started_at == timedelta(seconds=120)
    assert before.next_action_at == before.started_at
    # The snapshot a caller is handed is its own: changing it changes no later trigger.
    from engine.api import _load_snapshot

    with sessions() as s:
        mine, _ = _load_snapshot(s, "night")
    mine["levels"].clear()
    third = api.trigger(ctx, policy="night", summary="pump 3 down", key="p3")
    with sessions() as s:
        assert s.get(Escalation, third.escalation_id).policy_snapshot["levels"]  # type: ignore[union-attr]


def test_a_batch_on_sqlite_numbers_its_rows_as_sqlite_would_and_in_request_order(
    ctx: AppContext, sessions: sessionmaker[Session]
) -> None:
    add_person(sessions, "thandi")
    add_policy(sessions, "day", [{"targets": [("person", "thandi")]}])
    api.trigger(ctx, policy="day", summary="before", key="before")
    requests = [api.TriggerRequest(policy="day", summary=f"s{i}", key=f"b{i}") for i in range(7)]
    results = api.trigger_many(ctx, requests)
    after = api.trigger(ctx, policy="day", summary="after", key="after")
    with sessions() as s:
        by_id = {i.id: i for i in s.scalars(select(Incident))}
        escalations = {e.id: e.incident_id for e in s.scalars(select(Escalation))}
    assert [by_id[r.incident_id].summary for r in results] == [f"s{i}" for i in range(7)]
    assert [escalations[r.escalation_id] for r in results] == [r.incident_id for r in results]
    ids = [r.incident_id for r in results]
    assert ids == sorted(ids) and after.incident_id > ids[-1]  # the next single trigger follows on
