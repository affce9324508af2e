"""Batches through engine.api: `trigger_many` and `acknowledge_many` do what the same single calls would do, in
one transaction that is either written whole or not at all."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine import api
from engine.api import TriggerRequest
from engine.context import AppContext
from engine.errors import NotFound, ValidationError
from engine.models import Escalation, Event, Incident, OutboxMessage, Page

from .helpers import add_policy, add_team, count, events, outbox

# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def _policies(sessions: sessionmaker[Session]) -> None:
    add_policy(
        sessions,
        "water",
        [{"targets": [("person", "thandi")]}, {"targets": [("person", "sipho")], "delay_seconds": 60}],
        cooldown_seconds=600,
    )
    add_policy(sessions, "delayed", [{"targets": [("person", "thandi")], "delay_seconds": 120}])
    add_policy(sessions, "off", [{"targets": [("person", "thandi")]}], enabled=False)
    add_policy(sessions, "urgent", [{"targets": [("person", "thandi")]}], severity_filter=["critical"])


def _requests(prefix: str) -> list[TriggerRequest]:
    """A mixed batch: repeated keys (joining), several policies, none, a disabled one, a severity filter."""

    def req(policy: str | None, key: str | None, **kw: Any) -> TriggerRequest:
        return TriggerRequest(
            policy=policy,
            summary=kw.pop("summary", f"about {key}"),
            key=f"{prefix}{key}" if key else None,
            **kw,
        )

    return [
        req("water", "k1"),
        req("water", "k1", summary="again", actor="monitor"),
        req(
            "delayed",
            "k2",
            severity="low",
            team="ops",
            site="durban",
            category="water",
            reporter_name="Lindiwe",
            reporter_contact="+27820000001",
            custom={"meter": 7},
        ),
        req(None, "k3", source="ticket"),
        req("off", "k4"),
        req("urgent", "k5"),
        req("water", "k1", summary="third time"),
        req("water", "k4"),  # k4 is open (with no escalation: policy "off"): this joins it …
        req("water", "k4"),  # … and so does this
        req("water", None),
        req("water", "k6", sensitive=True, severity="critical"),
        req("delayed", "k1"),  # k1 is open: joined, whatever the policy …
        req("water", "k1", summary="fourth"),  # … one key, one open incident
    ]


def _key(key: str, prefix: str) -> str:
    return key[len(prefix) :] if key.startswith(prefix) else "<generated>"


def _dump(sessions: sessionmaker[Session], results: list[api.TriggerResult], prefix: str) -> list[Any]:
    """Everything the results wrote, with ids and key prefixes taken out, in result order."""
    with sessions() as s:
        order = {iid: n for n, iid in enumerate(dict.fromkeys(r.incident_id for r in results))}
        out: list[Any] = []
        for r in results:
            incident = s.get(Incident, r.incident_id)
            assert incident is not None
            data = api.incident_dict(incident)
            data.pop("id")
            data["key"] = _key(data["key"], prefix)
            data["team_id"] = data["team_id"] is not None
            esc = s.get(Escalation, r.escalation_id) if r.escalation_id is not None else None
            esc_data = api.escalation_dict(esc) if esc is not None else None
            if esc_data is not None:
                esc_data.pop("id")
            trail = [
                (e.kind, e.actor, e.message, e.data, e.escalation_id is not None)
                for e in s.scalars(select(Event).where(Event.incident_id == r.incident_id).order_by(Event.id))
            ]
            out.append((order[r.incident_id], r.deduplicated, data, esc_data, trail))
        return out


def _kinds(sessions: sessionmaker[Session], after: int = 0) -> list[str]:
    with sessions() as s:
        return list(s.scalars(select(Event.kind).where(Event.id > after).order_by(Event.id)))


def _last_event_id(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(Event.id).order_by(Event.id.desc()).limit(1)) or 0)


@contextmanager
def _database_fails_on(ctx: AppContext, *sql_starts: str) -> Iterator[None]:
    """The database raises when a statement starting with one of `sql_starts` runs (the rest of the batch has
    run)."""

    def fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.replace('"', "").lstrip().upper().startswith(sql_starts):
            raise OperationalError(statement, {}, Exception("disk I/O error"))

    event.listen(ctx.db, "before_cursor_execute", fail)
    try:
        yield
    finally:
        event.remove(ctx.db, "before_cursor_execute", fail)


# --------------------------------------------------------------------------------------------------------
# trigger_many
# --------------------------------------------------------------------------------------------------------


def test_a_batch_of_triggers_equals_the_same_triggers_one_by_one(ctx, sessions, people) -> None:
    _policies(sessions)
    add_team(sessions, "ops", ["thandi"])
    singles = [api.trigger(ctx, **vars(r)) for r in _requests("a:")]
    single_kinds = _kinds(sessions)
    mark = _last_event_id(sessions)
    batch = api.trigger_many(ctx, _requests("b:"))
    assert [(r.deduplicated, r.escalation_id is None) for r in batch] == [
        (r.deduplicated, r.escalation_id is None) for r in singles
    ]
    assert _dump(sessions, batch, "b:") == _dump(sessions, singles, "a:")
    assert _kinds(sessions, after=mark) == single_kinds  # the same events in the same order
    with sessions() as s:
        due = {e.incident_id: e.next_action_at for e in s.scalars(select(Escalation).order_by(Escalation.id))}
    assert [due.get(r.incident_id) for r in batch] == [due.get(r.incident_id) for r in singles]


def test_a_key_repeated_in_a_batch_joins_the_incident_the_batch_opened(ctx, sessions, people, run) -> None:
    _policies(sessions)
    results = api.trigger_many(ctx, [TriggerRequest(policy="water", summary="Trip", key="sub-12")] * 3)
    assert [r.deduplicated for r in results] == [False, True, True]
    assert len({r.incident_id for r in results}) == 1 and len({r.escalation_id for r in results}) == 1
    with sessions() as s:
        assert s.get(Incident, results[0].incident_id).trigger_count == 3
        assert s.get(Escalation, results[0].escalation_id).trigger_count == 3
    assert [e.message for e in events(sessions, "retriggered")] == [
        "triggered again (2 times): Trip",
        "triggered again (3 times): Trip",
    ]
    run()
    assert len(outbox(sessions, kind="page")) == 1  # one escalation, one page


def test_batches_join_the_open_incident_of_a_key_and_reopen_within_the_cooldown(
    ctx, sessions, people, run
) -> None:
    _policies(sessions)
    add_policy(sessions, "nodedup", [{"targets": [("person", "thandi")]}], cooldown_seconds=0)
    trip = TriggerRequest(policy="water", summary="Trip", key="sub-12")
    (first,) = api.trigger_many(ctx, [trip])
    run(100)
    again = api.trigger_many(ctx, [trip, trip])
    assert all(r.deduplicated and r.incident_id == first.incident_id for r in again)
    with sessions() as s:
        assert s.get(Incident, first.incident_id).trigger_count == 3
        assert s.get(Escalation, first.escalation_id).trigger_count == 3
    run(5000)  # long after the cooldown: the incident is still open, so it is still joined
    assert api.trigger_many(ctx, [trip])[0].incident_id == first.incident_id
    api.resolve(ctx, first.incident_id, by="thandi")
    run(10)  # within "water"'s cooldown of the resolution: the same incident opens again, once
    reopened = api.trigger_many(ctx, [trip, trip])
    assert [r.incident_id for r in reopened] == [first.incident_id] * 2
    assert reopened[0].escalation_id == reopened[1].escalation_id != first.escalation_id
    with sessions() as s:
        assert s.get(Incident, first.incident_id).status == "open"
        assert s.get(Incident, first.incident_id).trigger_count == 6
    # Without a cooldown a resolved key opens a new incident, and the batch's second request joins it.
    plain = TriggerRequest(policy="nodedup", summary="Trip", key="sub-13")
    (one,) = api.trigger_many(ctx, [plain])
    api.resolve(ctx, one.incident_id, by="thandi")
    two, three = api.trigger_many(ctx, [plain, plain])
    assert two.incident_id != one.incident_id and not two.deduplicated
    assert three.deduplicated and three.incident_id == two.incident_id


def test_an_invalid_request_names_its_item_and_field_and_nothing_is_stored(ctx, sessions, people) -> None:
    _policies(sessions)
    good = TriggerRequest(policy="water", summary="Main burst", key="ok")
    with pytest.raises(ValidationError) as caught:
        api.trigger_many(
            ctx, [good, good, TriggerRequest(policy="water", summary="x", severity="apocalyptic")]
        )
    assert caught.value.field == "severity" and "item 2" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        api.trigger_many(ctx, [good, TriggerRequest(policy="water", summary="   ")])
    assert caught.value.field == "summary" and str(caught.value).startswith("item 1: summary:")
    with pytest.raises(NotFound, match="item 1: no escalation policy named 'nope'"):
        api.trigger_many(ctx, [good, TriggerRequest(policy="nope", summary="x"), good])
    with pytest.raises(NotFound, match="item 2: no team with handle 'nobody'"):
        api.trigger_many(ctx, [good, good, TriggerRequest(policy="water", summary="x", team="nobody")])
    assert count(sessions, Incident) == 0 and count(sessions, Escalation) == 0 and count(sessions, Event) == 0
    assert api.trigger_many(ctx, []) == []


def test_a_trigger_batch_the_database_fails_half_way_leaves_nothing(ctx, sessions, people) -> None:
    _policies(sessions)
    (existing,) = api.trigger_many(ctx, [TriggerRequest(policy="water", summary="Trip", key="k")])
    requests = [TriggerRequest(policy="water", summary=f"n{i}", key=f"n{i}") for i in range(5)]
    requests.append(TriggerRequest(policy="water", summary="Trip", key="k"))  # would join `existing`
    woken: list[str] = []
    ctx.wake = woken.append
    # (PostgreSQL writes a batch's events with COPY)
    with _database_fails_on(ctx, "INSERT INTO EVENT", "COPY EVENT"), pytest.raises(OperationalError):
        api.trigger_many(ctx, requests)  # incidents and escalations were written before the events failed
    assert woken == []
    assert count(sessions, Incident) == 1 and count(sessions, Escalation) == 1 and count(sessions, Event) == 2
    with sessions() as s:
        assert s.get(Incident, existing.incident_id).trigger_count == 1
    results = api.trigger_many(ctx, requests)  # the same batch again, once the database is well
    assert [r.deduplicated for r in results] == [False] * 5 + [True]
    assert woken == ["escalate"]  # one wake for the whole batch


# --------------------------------------------------------------------------------------------------------
# acknowledge_many
# --------------------------------------------------------------------------------------------------------


def _paged_incidents(ctx, sessions, run, n: int) -> list[api.TriggerResult]:
    """`n` incidents whose level 1 (thandi, paged twice) and level 2 (sipho) have been paged."""
    add_policy(
        sessions,
        "water",
        [
            {"targets": [("person", "thandi")], "repeat_count": 1, "repeat_interval_seconds": 30},
            {"targets": [("person", "sipho")], "delay_seconds": 60},
            {"targets": [("person", "anna")], "delay_seconds": 600},
        ],
    )
    results = api.trigger_many(
        ctx,
        [
            TriggerRequest(
                policy="water",
                summary=f"Main burst {i}",
                key=f"main-{i}",
                reporter_name="Lindiwe",
                reporter_contact="+27820000001",
            )
            for i in range(n)
        ],
    )
    run()
    run(30)
    run(30)
    _first_rounds_went_out(sessions)
    return results


def _first_rounds_went_out(sessions) -> None:
    """The dispatcher sent each level's first round; Thandi's repeat is still waiting in the outbox. Only
    people a page reached are told of an acknowledgement."""
    with sessions.begin() as s:
        for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "page")):
            if m.idempotency_key.split(":")[3] == "0":
                m.status, m.sent_at = "sent", m.created_at


def test_acknowledge_many_stops_escalating_cancels_pages_and_notifies_each_person_once(
    ctx, sessions, people, run
) -> None:
    incidents = _paged_incidents(ctx, sessions, run, 3)
    acked, other = incidents[:2], incidents[2]
    with sessions() as s:
        assert s.scalar(select(Page.id).where(Page.status == "active").limit(1)) is not None
    woken: list[str] = []
    ctx.wake = woken.append
    done = api.acknowledge_many(ctx, [acked[0].incident_id, "main-1"], by="anna", via="console")
    assert woken == ["dispatch"]
    assert [d["id"] for d in done] == [r.incident_id for r in acked]
    assert all(d["status"] == "acknowledged" and d["escalation_state"] == "acknowledged" for d in done)
    assert all(d["acknowledged_by"] == "anna" for d in done)
    with sessions() as s:
        for r in acked:
            esc = s.get(Escalation, r.escalation_id)
            assert (
                esc.state == "acknowledged" and esc.next_action_at is None and esc.acknowledged_by == "anna"
            )
            pages = s.scalars(select(Page).where(Page.escalation_id == r.escalation_id)).all()
            assert pages and all(p.status == "cancelled" and p.next_check_at is None for p in pages)
            unsent = s.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.escalation_id == r.escalation_id,
                    OutboxMessage.kind == "page",
                    OutboxMessage.status != "sent",
                )
            ).all()
            assert unsent and all(m.status == "cancelled" for m in unsent)  # the repeat never goes out
        other_pages = s.scalars(select(Page).where(Page.escalation_id == other.escalation_id)).all()
        assert all(p.status == "active" for p in other_pages)
    notices = outbox(sessions, kind="notice")
    # thandi was paged twice, sipho once; anna acknowledged and is not told what she did.
    assert sorted(m.idempotency_key for m in notices) == sorted(
        f"notice:ack:{r.incident_id}:{people[name]}" for r in acked for name in ("thandi", "sipho")
    )
    assert all("anna" in m.body for m in notices)
    assert sorted(m.idempotency_key for m in outbox(sessions, kind="reporter_update")) == sorted(
        f"reporter:{r.incident_id}:acknowledged:0" for r in acked
    )
    ack_events = events(sessions, "acknowledged")
    assert [e.incident_id for e in ack_events] == [r.incident_id for r in acked]
    assert all(e.actor == "anna" and e.data["via"] == "console" for e in ack_events)
    run(3600)  # acknowledged: nothing escalates any more; the other incident reaches level 3
    with sessions() as s:
        levels = {
            m.escalation_id: m.level
            for m in s.scalars(
                select(OutboxMessage).where(OutboxMessage.kind == "page").order_by(OutboxMessage.id)
            )
        }
    assert levels[acked[0].escalation_id] == 2 and levels[other.escalation_id] == 3


def test_acknowledge_many_reports_bad_refs_and_acknowledges_the_rest(ctx, sessions, people, run) -> None:
    incidents = _paged_incidents(ctx, sessions, run, 3)
    resolved = incidents[2]
    api.resolve(ctx, resolved.incident_id, by="thandi")
    refs: list[int | str] = [
        resolved.incident_id,
        incidents[0].incident_id,
        999_999,
        "no-such-key",
        "  ",
        incidents[1].incident_id,
        incidents[0].incident_id,  # already acknowledged by this batch
    ]
    done = api.acknowledge_many(ctx, refs, by="sipho")
    assert [d.get("error") for d in done] == [
        "invalid_transition",
        None,
        "not_found",
        "not_found",
        "invalid",
        None,
        "invalid_transition",
    ]
    assert done[0]["ref"] == resolved.incident_id and "resolved" in done[0]["message"]
    assert done[2]["message"] == "no incident 999999"
    assert done[3]["message"] == "no incident with key 'no-such-key'"
    assert "acknowledged" in done[6]["message"]
    assert [d["id"] for d in (done[1], done[5])] == [incidents[0].incident_id, incidents[1].incident_id]
    assert len(events(sessions, "acknowledged")) == 2
    with sessions() as s:
        assert s.get(Incident, resolved.incident_id).status == "resolved"
    # The single call reports the same errors by raising them.
    with pytest.raises(NotFound):
        api.acknowledge(ctx, 999_999, by="sipho")
    assert api.acknowledge_many(ctx, [], by="sipho") == []
    with pytest.raises(ValidationError):
        api.acknowledge_many(ctx, [incidents[0].incident_id], by=" ")


def _outbox_dump(sessions: sessionmaker[Session], incident_id: int, kinds: tuple[str, ...]) -> list[Any]:
    def plain(text: str | None, count: int = 0) -> str | None:
        return re.sub(rf"\b{incident_id}\b", "<id>", text, count=count) if text is not None else None

    with sessions() as s:
        rows = s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.incident_id == incident_id, OutboxMessage.kind.in_(kinds))
            .order_by(OutboxMessage.id)
        ).all()
        return [
            (
                m.kind,
                plain(m.idempotency_key, count=1),  # notice:ack:<incident>:<person>, reporter:<incident>:…
                m.person_id,
                m.channel,
                m.address,
                plain(m.subject),
                plain(m.body),
                m.status,
                m.next_attempt_at,
                m.hold_reason,
                m.critical,
            )
            for m in rows
        ]


def test_acknowledge_many_equals_acknowledging_one_by_one(ctx, sessions, people, run) -> None:
    add_policy(
        sessions,
        "flap",
        [{"targets": [("person", "thandi"), ("person", "sipho")], "auto_resolve_seconds": 900}],
    )
    twins = api.trigger_many(
        ctx,
        [
            TriggerRequest(
                policy="flap", summary="Link flapping", key=f"{side}-{i}", reporter_contact="a@b.org"
            )
            for side in ("a", "b")
            for i in range(3)
        ],
    )
    run()
    singles = [api.acknowledge(ctx, r.incident_id, by="thandi", via="sms") for r in twins[:3]]
    batch = api.acknowledge_many(ctx, [r.incident_id for r in twins[3:]], by="thandi", via="sms")

    def plain(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in ("id", "key", "escalation_id")}

    assert [plain(d) for d in batch] == [plain(d) for d in singles]
    for one, many in zip(twins[:3], twins[3:], strict=True):
        shown_one, shown_many = (
            api.show_incident(ctx, one.incident_id),
            api.show_incident(ctx, many.incident_id),
        )
        esc_one, esc_many = dict(shown_one["escalation"]), dict(shown_many["escalation"])
        esc_one.pop("id"), esc_many.pop("id")
        assert esc_many == esc_one and esc_one["next_action_at"] is not None  # auto-resolve still due
        trail = [(e["kind"], e["actor"], e["message"], e["data"]) for e in shown_one["events"]]
        assert [(e["kind"], e["actor"], e["message"], e["data"]) for e in shown_many["events"]] == trail
        kinds = ("notice", "reporter_update")
        assert _outbox_dump(sessions, many.incident_id, kinds) == _outbox_dump(
            sessions, one.incident_id, kinds
        )
    run(900)  # the auto-resolving level still resolves them all on time
    assert len(events(sessions, "auto_resolved")) == 6


def test_an_acknowledge_batch_the_database_fails_half_way_leaves_nothing(ctx, sessions, people, run) -> None:
    incidents = _paged_incidents(ctx, sessions, run, 3)
    ids = [r.incident_id for r in incidents]
    before = _outbox_dump(sessions, ids[0], ("page",))
    mark = _last_event_id(sessions)
    # Incidents, escalations, pages and events are written before the outbox rows; the outbox INSERT fails.
    with _database_fails_on(ctx, "INSERT INTO OUTBOX_MESSAGE"), pytest.raises(OperationalError):
        api.acknowledge_many(ctx, ids, by="anna")
    with sessions() as s:
        assert all(s.get(Incident, i).status == "open" for i in ids)
        assert all(s.get(Escalation, r.escalation_id).state == "active" for r in incidents)
        assert s.scalar(select(Page.id).where(Page.status == "cancelled").limit(1)) is None
    assert _kinds(sessions, after=mark) == []
    assert outbox(sessions, kind="notice") == [] and _outbox_dump(sessions, ids[0], ("page",)) == before
    done = api.acknowledge_many(ctx, ids, by="anna")  # and once the database is well, it all goes through
    assert all(d["status"] == "acknowledged" for d in done)
    assert len(outbox(sessions, kind="notice")) == 6


def test_the_same_alert_triggered_at_once_from_two_places_opens_one_incident(ctx, sessions, people) -> None:
    """Two nodes (here two threads) given the same key at the same moment: one opens the incident, the other
    joins it, on either database; never two incidents, never two escalations paging the same people."""
    import threading

    _policies(sessions)
    rounds = 12
    for n in range(rounds):
        gate = threading.Barrier(2)
        results: list[api.TriggerResult] = []

        def trigger(
            key: str = f"feeder-{n}", gate: threading.Barrier = gate, results: list[Any] = results
        ) -> None:
            gate.wait()
            batch = [
                TriggerRequest(policy="water", summary=f"Other {key} {i}", key=f"{key}-{i}")
                for i in range(20)
            ]
            results.extend(
                api.trigger_many(ctx, [*batch, TriggerRequest(policy="water", summary="Trip", key=key)])[-1:]
            )

        threads = [threading.Thread(target=trigger) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == 2
        assert len({r.incident_id for r in results}) == 1, f"round {n}: two incidents for one key"
        assert sorted(r.deduplicated for r in results) == [False, True]
    with sessions() as s:
        keys = s.scalars(select(Incident.key).where(Incident.key.like("feeder-%"))).all()
    # Each round's 21 keys (the alert and the 20 beside it, sent by both) have one incident each.
    assert len(keys) == rounds * 21 and len(set(keys)) == len(keys)
