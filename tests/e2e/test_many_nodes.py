"""Many nodes, one database: `serve` processes fed through the HTTP intake while one node is killed hard
half-way (its whole process group: the HTTP parent and the engine child together) and another restarted.
Every due level fires, and every page reaches the provider — the fake Twilio server this test runs — exactly
once, counted there per incident and person; and the statistics add up.

N incidents: 5,000 (the full run, in `make test` and CI: about 5 minutes for both databases); set
WATCHKEEPER_E2E_N=600 for a quicker local run.
PostgreSQL: three nodes; SQLite: two nodes on one file.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from engine.clock import SystemClock
from engine.context import AppContext
from engine.db import make_engine, session_factory, write_session
from engine.migrate import stamp
from engine.models import (
    Base,
    Escalation,
    Incident,
    IntakeEvent,
    OutboxMessage,
    Page,
    Person,
    Policy,
    PolicyLevel,
    PolicyTarget,
)
from engine.service.queue import queue_depth
from engine.settings import Settings
from tests.e2e.nodes import Node
from tests.fakes.twilio_server import FakeTwilio

ROOT = Path(__file__).resolve().parents[2]
N = int(os.environ.get("WATCHKEEPER_E2E_N", "5000"))
pytestmark = [pytest.mark.slow, pytest.mark.timeout(int(600 + N * 0.3))]
LEVEL2_DELAY = 3
FEED_THREADS = 8


def _seed(engine: Engine) -> str:
    """Policy "ops": level 1 pages Alice by SMS at once, level 2 pages Bob LEVEL2_DELAY s later; a routing key."""
    settings = Settings(db=engine.url.render_as_string(hide_password=False))
    ctx = AppContext.create(settings, clock=SystemClock(), mode="test", db=engine)
    with write_session(ctx.sessions) as session:
        session.add_all(
            [
                Person(handle="alice", name="Alice", phone="+27820000001", preferred_channel="sms"),
                Person(handle="bob", name="Bob", phone="+27820000002", preferred_channel="sms"),
            ]
        )
        pol = Policy(name="ops")
        pol.levels = [
            PolicyLevel(level=1, delay_seconds=0, targets=[PolicyTarget(type="person", identifier="alice")]),
            PolicyLevel(
                level=2, delay_seconds=LEVEL2_DELAY, targets=[PolicyTarget(type="person", identifier="bob")]
            ),
        ]
        session.add(pol)
    from engine.service.keys import create_routing_key

    return create_routing_key(ctx, policy="ops", label="e2e").secret


class Feeder:
    """Threads posting N events round-robin over the live nodes; a refused connection moves to another node."""

    def __init__(self, nodes: list[Node], routing_key: str, n: int) -> None:
        self.nodes = nodes
        self.routing_key = routing_key
        self.todo: queue.Queue[int] = queue.Queue()
        for i in range(n):
            self.todo.put(i)
        self.accepted = 0
        self.retries = 0
        self.lock = threading.Lock()
        self.rr = itertools.count()
        self.failures: list[str] = []

    def _post(self, i: int) -> bool:
        live = [n for n in self.nodes if n.alive() and n.base_url]
        if not live:
            time.sleep(0.1)
            return False
        node = live[next(self.rr) % len(live)]
        body = {
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": f"e2e-{i:05d}",
            "payload": {"summary": f"Alarm {i}", "source": "e2e", "severity": "critical"},
        }
        req = urllib.request.Request(
            node.base_url + "/v2/enqueue",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                ok = resp.status == 202
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code >= 500:
                    return False
                self.failures.append(f"{i}: {exc.code} {exc.read()[:200]!r}")
                return True
        except OSError:
            return False
        return ok

    def _worker(self) -> None:
        while True:
            try:
                i = self.todo.get_nowait()
            except queue.Empty:
                return
            while not self._post(i):
                with self.lock:
                    self.retries += 1
                time.sleep(0.05)
            with self.lock:
                self.accepted += 1

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(FEED_THREADS)]
        for t in threads:
            t.start()
        return threads


def _wait(predicate: Any, timeout: float, what: str, state: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1.0)
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {what}" + (f": {state()}" if state else "")
    )


def _stuck(engine: Engine) -> dict[str, Any]:
    """Where the work stands, for a timeout's message."""

    def by(column: Any, *where: Any) -> dict[str, int]:
        query = select(column, func.count()).where(*where).group_by(column)
        with session_factory(engine)() as session:
            return {str(k): int(n) for k, n in session.execute(query).all()}

    return {
        "progress": _progress(engine),
        "escalations": by(Escalation.state),
        "page outbox": by(OutboxMessage.status, OutboxMessage.kind == "page"),
        "pages": by(Page.level),
        "intake (PostgreSQL)": by(IntakeEvent.status),
    }


def _timelines(engine: Engine, incident_ids: list[int]) -> dict[int, list[str]]:
    """What happened to these incidents, for a failure's message."""
    from engine.models import Event

    with session_factory(engine)() as session:
        out: dict[int, list[str]] = {}
        for e in session.scalars(select(Event).where(Event.incident_id.in_(incident_ids)).order_by(Event.id)):
            out.setdefault(e.incident_id or 0, []).append(f"{e.at:%H:%M:%S.%f} {e.kind}: {e.message}")
        return out


def _progress(engine: Engine) -> dict[str, int]:
    with session_factory(engine)() as session:
        return {
            "incidents": int(session.scalar(select(func.count()).select_from(Incident)) or 0),
            "level2_pages": int(session.scalar(select(func.count()).where(Page.level == 2)) or 0),
            "unsent": int(
                session.scalar(
                    select(func.count()).where(
                        OutboxMessage.kind == "page", OutboxMessage.status.notin_(["sent", "delivered"])
                    )
                )
                or 0
            ),
        }


@pytest.fixture
def e2e_db(db_url: str) -> Iterator[tuple[str, Engine]]:
    engine = make_engine(db_url)
    # The full schema from the models, stamped at head (what `db upgrade` leaves behind).
    Base.metadata.create_all(engine)
    stamp(engine)
    yield db_url, engine
    engine.dispose()


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


INCIDENT_IN_BODY = re.compile(r"#(\d+):")


def _at_the_provider(twilio: FakeTwilio) -> dict[tuple[str, int], int]:
    """How many times each (phone number, incident) reached Twilio: a page counted where a duplicate hurts."""
    counts: dict[tuple[str, int], int] = {}
    for message in twilio.sent("Messages"):
        found = INCIDENT_IN_BODY.search(str(message["body"]))
        assert found, message["body"]
        key = (str(message["to"]), int(found.group(1)))
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_nodes_share_the_work_and_every_page_reaches_the_provider_once(
    e2e_db: tuple[str, Engine], tmp_path: Path, fake_twilio: FakeTwilio
) -> None:
    url, engine = e2e_db
    backend = engine.dialect.name
    routing_key = _seed(engine)
    count = 3 if backend == "postgresql" else 2
    nodes = [Node(f"node{i}", url, tmp_path, fake_twilio) for i in range(count)]
    started = time.monotonic()
    try:
        for node in nodes:
            node.wait_listening()
        feeder = Feeder(nodes, routing_key, N)
        threads = feeder.start()
        _wait(lambda: feeder.accepted >= N // 2, 60 + N * 0.1, "half the events accepted")
        # Half-way: one node dies hard (parent and engine), another restarts cleanly.
        nodes[0].kill_hard()
        restarted = nodes[-1]
        assert restarted.stop(signal.SIGTERM) == 0, restarted.log_path.read_text()
        replacement = Node(f"{restarted.name}-again", url, tmp_path, fake_twilio)
        feeder.nodes.append(replacement)
        replacement.wait_listening()
        for t in threads:
            t.join(timeout=120 + N * 0.1)
        fed = time.monotonic() - started
        assert feeder.accepted == N
        assert feeder.failures == []
        # Leases of the killed node expire (30 s), its `sending` messages pass their deadline (10 s).
        _wait(
            lambda: (p := _progress(engine))["level2_pages"] == N and p["unsent"] == 0,
            120 + N * 0.05,
            "every level-2 page sent",
            lambda: _stuck(engine),
        )
        done = time.monotonic() - started

        with session_factory(engine)() as session:
            incidents = session.scalar(select(func.count()).select_from(Incident))
            keys = session.scalar(select(func.count(func.distinct(Incident.key))))
            escalations = session.scalar(select(func.count()).select_from(Escalation))
            pages = session.execute(select(Page.level, func.count()).group_by(Page.level)).all()
            per_incident = session.execute(
                select(Page.incident_id, func.count()).group_by(Page.incident_id).having(func.count() != 2)
            ).all()
            level_chain = session.execute(
                select(func.count()).where(OutboxMessage.kind == "page", OutboxMessage.level.notin_([1, 2]))
            ).scalar()
            ids = set(session.scalars(select(Incident.id)))
        if incidents != N:
            with session_factory(engine)() as session:
                twice = session.scalars(
                    select(Incident.key).group_by(Incident.key).having(func.count() > 1).limit(3)
                ).all()
                ids = session.scalars(select(Incident.id).where(Incident.key.in_(twice))).all()
            raise AssertionError(f"{incidents} incidents for {keys} keys: {_timelines(engine, list(ids))}")
        assert incidents == N and keys == N
        assert escalations == N
        assert dict(pages) == {1: N, 2: N}, "every due level fired exactly once per incident"
        assert per_incident == []
        assert level_chain == 0
        # At the provider: Alice (level 1) and Bob (level 2) each got exactly one SMS per incident.
        reached = _at_the_provider(fake_twilio)
        twice = {k: n for k, n in reached.items() if n > 1}
        assert twice == {}, (
            f"{len(twice)} pages reached Twilio more than once, e.g. {list(twice.items())[:5]}; "
            f"their timelines: {_timelines(engine, [i for _p, i in list(twice)[:3]])}"
        )
        expected = {(phone, i) for i in ids for phone in ("+27820000001", "+27820000002")}
        missing = expected - set(reached)
        assert not missing, f"{len(missing)} pages never reached Twilio, e.g. {sorted(missing)[:5]}"
        assert set(reached) == expected

        # Resolve a third through the intake (any live node), then the statistics must add up.
        to_resolve = list(range(0, N, 3))
        live = [n for n in feeder.nodes if n.alive()]
        for j, i in enumerate(to_resolve):
            body = {"routing_key": routing_key, "event_action": "resolve", "dedup_key": f"e2e-{i:05d}"}
            req = urllib.request.Request(
                live[j % len(live)].base_url + "/v2/enqueue",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=30) as resp:
                assert resp.status == 202

        # A 202 means queued: wait for the nodes' intake workers to apply the resolves.
        ctx = AppContext.create(Settings(db=url), clock=SystemClock(), mode="test", db=engine)

        def _queue_empty() -> bool:
            return not queue_depth(ctx).get("pending", 0)

        _wait(_queue_empty, 60 + N * 0.05, "the intake queue to drain")
        from engine.api import stats

        now = ctx.clock.now()
        figures = stats(ctx, since=now - timedelta(days=1), until=now + timedelta(minutes=1))
        assert figures["incidents"]["total"] == N
        assert figures["incidents"]["by_status"].get("resolved", 0) == len(to_resolve)
        assert sum(figures["incidents"]["by_status"].values()) == N
        assert figures["escalations"]["total"] == N
        assert figures["resolution_rate"] == round(len(to_resolve) / N, 4)
        people = {p["handle"]: p["pages"] for p in figures["pages_per_person"]}
        assert people == {"alice": N, "bob": N}
        sms = next(c for c in figures["channels"] if c["channel"] == "sms")
        assert json.dumps(sms)  # JSON-serialisable
        print(
            f"\n[e2e] backend={backend} nodes={count} N={N} fed_in={fed:.1f}s all_sent_in={done:.1f}s "
            f"retries={feeder.retries} sms={sms}"
        )
    finally:
        everyone = list(nodes)
        if "feeder" in locals():
            everyone += [n for n in feeder.nodes if n not in everyone]
        for node in everyone:
            if node.alive():
                node.stop(signal.SIGTERM)
            elif not node.log.closed:
                node.log.close()
    # The service's own errors fail the test; other parts' logged errors are shown (SQLite lock waits…).
    errors = [
        f"{log.name}: {line}"
        for log in sorted(tmp_path.glob("node*.log"))
        for line in log.read_text().splitlines()
        if " ERROR " in line
    ]
    ours = [e for e in errors if "watchkeeper.service" in e or "uvicorn" in e]
    if errors:
        print(f"[e2e] {len(errors)} ERROR lines in node logs, e.g. {errors[:3]}")
    assert ours == [], "\n".join(ours[:20])
