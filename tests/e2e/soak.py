"""The soak: `serve` nodes on one database fed Events API traffic over HTTP at a fixed rate — triggers, the same
alert sent twice, resolves a few seconds later, bad events — while whole nodes are killed hard and restarted
at random and (on PostgreSQL) the database server itself is restarted. Everything is then counted where it
would hurt: incidents per dedup key, pages per incident and person, messages at the fake Twilio server, the
intake queue, and the HTTP answers. Used by tests/e2e/test_soak.py (a size CI affords) and bench/bench_soak.py.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from engine.clock import SystemClock
from engine.context import AppContext
from engine.db import make_engine, write_session
from engine.migrate import upgrade
from engine.models import (
    Incident,
    IntakeEvent,
    OutboxMessage,
    Page,
    Person,
    Policy,
    PolicyLevel,
    PolicyTarget,
)
from engine.settings import Settings
from tests.e2e.nodes import Node
from tests.fakes.twilio_server import FakeTwilio

ALICE, BOB = "+27820000001", "+27820000002"
LEVEL2_DELAY = 3


@dataclass
class SoakConfig:
    backend: str  # sqlite or postgresql
    nodes: int
    alerts: int
    rate: float  # events a second, offered
    kills: int  # hard kills of whole nodes (each replaced)
    db_restart_seconds: float = 0.0  # PostgreSQL: the server is down this long, mid-run (0: no restart)
    resolve_share: float = 0.15
    duplicate_share: float = 0.05
    bad_share: float = 0.01
    seed: int = 7
    settle_seconds: float = 300.0


@dataclass
class SoakReport:
    config: SoakConfig
    accepted: int = 0
    bad_sent: int = 0
    bad_refused: int = 0
    bad_5xx: int = 0
    retries: int = 0
    fed_seconds: float = 0.0
    settled_seconds: float = 0.0
    kills_done: int = 0
    db_outage_seconds: float = 0.0
    healthy_after_db_seconds: float | None = None
    incidents: int = 0
    keys: int = 0
    keys_with_two_incidents: int = 0
    duplicate_pages: int = 0
    resolves_accepted: int = 0
    resolves_lost: int = 0
    page_messages_twice: int = 0
    messages_twice: int = 0
    missing_pages: int = 0
    intake_unapplied: int = 0
    intake_set_aside: int = 0
    errors: list[str] = field(default_factory=list)

    def failures(self) -> dict[str, int]:
        """Every count the promises say must be 0."""
        return {
            k: v
            for k, v in {
                "alerts with 2+ incidents": self.keys_with_two_incidents,
                "duplicate pages": self.duplicate_pages,
                "resolves accepted, incident left open": self.resolves_lost,
                "pages sent to Twilio a second time": self.page_messages_twice,
                "messages sent to Twilio a second time": self.messages_twice,
                "pages never sent": self.missing_pages,
                "accepted events not applied": self.intake_unapplied,
                "accepted events set aside": self.intake_set_aside,
                "5xx answers to bad events": self.bad_5xx,
            }.items()
            if v
        }

    def lines(self) -> list[str]:
        c = self.config
        out = [
            f"soak: {c.backend}, {c.nodes} nodes, {c.alerts} alerts at {c.rate:g} events/s offered, "
            f"{self.kills_done} hard kills, database down {self.db_outage_seconds:.1f} s",
            f"  accepted {self.accepted} events in {self.fed_seconds:.1f} s (retries {self.retries}); "
            f"bad events {self.bad_sent}: {self.bad_refused} refused with 400, {self.bad_5xx} answered 5xx",
            f"  settled {self.settled_seconds:.1f} s after the last event; incidents {self.incidents} for "
            f"{self.keys} keys; resolves {self.resolves_accepted}",
        ]
        if self.healthy_after_db_seconds is not None:
            out.append(
                f"  every node's /healthz green {self.healthy_after_db_seconds:.1f} s after the database was back"
            )
        failures = self.failures()
        out.append("  all zero: " + ("yes" if not failures else f"NO: {failures}"))
        return out


class PrivatePostgres:
    """A PostgreSQL server of the test's own (initdb in a temporary directory, a free port), which the soak
    stops and starts again mid-run."""

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not bins:
            raise RuntimeError("PostgreSQL server binaries are not installed (/usr/lib/postgresql/*/bin)")
        self.bin = bins[-1]
        # Its own directory under /tmp: the server runs as the postgres user (initdb refuses root), which
        # cannot enter a test's private temporary directory.
        self.home = Path(tempfile.mkdtemp(prefix="watchkeeper-soak-pg-"))
        self.home.chmod(0o755)
        self.data = self.home / "pgdata"
        self.port = _free_port()
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres")
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust")
        self.start()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.run_as, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120
        )

    def start(self) -> None:
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.data / "server.log"),
            "-w",
            "-o",
            f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            "start",
        )

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seed(engine: Engine) -> str:
    """Alice (level 1, at once) and Bob (level 2, LEVEL2_DELAY s later), both SMS only; a routing key."""
    settings = Settings(db=engine.url.render_as_string(hide_password=False))
    ctx = AppContext.create(settings, clock=SystemClock(), mode="test", db=engine)
    with write_session(ctx.sessions) as session:
        session.add_all(
            [
                Person(
                    handle="alice", name="Alice", phone=ALICE, preferred_channel="sms", fallback_channels=[]
                ),
                Person(handle="bob", name="Bob", phone=BOB, preferred_channel="sms", fallback_channels=[]),
            ]
        )
        pol = Policy(name="ops")
        pol.levels = [
            PolicyLevel(level=1, delay_seconds=0, targets=[PolicyTarget(type="person", identifier="alice")]),
            PolicyLevel(
                level=2,
                delay_seconds=LEVEL2_DELAY,
                repeat_interval_seconds=3600,
                targets=[PolicyTarget(type="person", identifier="bob")],
            ),
        ]
        session.add(pol)
    from engine.service.keys import create_routing_key

    return create_routing_key(ctx, policy="ops", label="soak").secret


class Cluster:
    """The nodes, and which are alive."""

    def __init__(self, config: SoakConfig, url: str, work: Path, twilio: FakeTwilio) -> None:
        self.url, self.work, self.twilio = url, work, twilio
        self.lock = threading.Lock()
        self.count = 0
        self.nodes: list[Node] = []
        self.all: list[Node] = []
        for _ in range(config.nodes):
            self.add()

    def add(self) -> Node:
        with self.lock:
            self.count += 1
            name = f"node{self.count}"
        node = Node(name, self.url, self.work, self.twilio, {"WATCHKEEPER_SEND_DEADLINE_SECONDS": "10"})
        node.wait_listening()
        with self.lock:
            self.nodes.append(node)
            self.all.append(node)
        return node

    def live(self) -> list[Node]:
        with self.lock:
            return [n for n in self.nodes if n.alive() and n.base_url]

    def kill_one(self, rng: random.Random) -> None:
        with self.lock:
            victim = rng.choice(self.nodes)
            self.nodes.remove(victim)
        victim.kill_hard()

    def healthy(self) -> bool:
        for node in self.live():
            try:
                with urllib.request.urlopen(node.base_url + "/healthz", timeout=2) as reply:
                    if reply.status != 200:
                        return False
            except (urllib.error.URLError, OSError):
                return False
        return True

    def close(self) -> None:
        for node in self.all:
            if node.alive():
                with contextlib.suppress(Exception):
                    node.stop(timeout=30)
            elif not node.log.closed:
                node.log.close()


class Feeder:
    """Events at a fixed rate; the events of one alert in order, each sent once the one before was accepted
    (as a monitoring tool would): trigger; the same trigger again for some; a resolve 1–4 s later for some."""

    def __init__(self, config: SoakConfig, cluster: Cluster, routing_key: str, rng: random.Random) -> None:
        self.config, self.cluster, self.key, self.rng = config, cluster, routing_key, rng
        self.lock = threading.Lock()
        self.heap: list[tuple[float, int, str, str]] = []
        self.seq = 0
        self.started = time.monotonic()
        for n in range(config.alerts):
            self._schedule(self.started + n / config.rate, f"soak-{n:05d}", "trigger")
        self.pending = config.alerts
        self.accepted = 0
        self.retries = 0
        self.bad_sent = self.bad_refused = self.bad_5xx = 0
        self.resolves: set[str] = set()
        self.bad_every = int(1 / config.bad_share) if config.bad_share else 0

    def _schedule(self, at: float, key: str, action: str) -> None:
        with self.lock:
            self.seq += 1
            heapq.heappush(self.heap, (at, self.seq, key, action))

    def _body(self, key: str, action: str) -> dict[str, Any]:
        body: dict[str, Any] = {"routing_key": self.key, "event_action": action, "dedup_key": key}
        if action == "trigger":
            body["payload"] = {"summary": f"Alarm {key}", "source": "soak", "severity": "critical"}
        return body

    def _post(self, body: dict[str, Any]) -> int:
        live = self.cluster.live()
        if not live:
            return 0
        with self.lock:
            node = self.rng.choice(live)
        request = urllib.request.Request(
            node.base_url + "/v2/enqueue",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as exc:
            with exc:
                return int(exc.code)
        except OSError:
            return 0

    def _send(self, key: str, action: str) -> None:
        """`action` "again" is the same trigger sent a second time, as monitoring tools do."""
        body = self._body(key, "trigger" if action == "again" else action)
        while True:
            status = self._post(body)
            if status == 202:
                break
            if 400 <= status < 500:
                raise AssertionError(f"a good event was refused: {status} {body}")
            with self.lock:
                self.retries += 1
            time.sleep(0.1)
        now = time.monotonic()
        with self.lock:
            self.accepted += 1
            n = self.accepted
        if self.bad_every and n % self.bad_every == 0:
            self._bad()
        if action == "trigger":
            with self.lock:
                roll = self.rng.random()
                later = self.rng.uniform(1, 4)
            if roll < self.config.duplicate_share:
                self._schedule(now, key, "again")
            elif roll < self.config.duplicate_share + self.config.resolve_share:
                self._schedule(now + later, key, "resolve")
        elif action == "resolve":
            with self.lock:
                self.resolves.add(key)

    def _bad(self) -> None:
        body = self._body("bad", "trigger")
        body["payload"]["summary"] = "Disk\x00 full"
        status = self._post(body)
        with self.lock:
            self.bad_sent += 1
            self.bad_refused += status == 400
            self.bad_5xx += status >= 500

    def worker(self) -> None:
        while True:
            with self.lock:
                if not self.heap:
                    return
                at, _seq, key, action = self.heap[0]
                if at > time.monotonic():
                    item = None
                else:
                    item = heapq.heappop(self.heap)
            if item is None:
                time.sleep(min(0.01, max(0.0, at - time.monotonic())))
                continue
            _at, _seq, key, action = item
            self._send(key, action)

    def run(self, threads: int = 16) -> None:
        workers = [threading.Thread(target=self.worker, daemon=True) for _ in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()


def _at_the_provider(twilio: FakeTwilio) -> tuple[Counter[tuple[str, int]], Counter[tuple[str, str]]]:
    """(pages per (phone, incident), every message per (phone, body)) as Twilio received them."""
    pages: Counter[tuple[str, int]] = Counter()
    messages: Counter[tuple[str, str]] = Counter()
    for m in twilio.sent("Messages"):
        body, to = str(m["body"]), str(m["to"])
        messages[(to, body)] += 1
        found = re.search(r"#(\d+)", body)
        if found and "resolved" not in body and "acknowledged" not in body:
            pages[(to, int(found.group(1)))] += 1
    return pages, messages


def run_soak(config: SoakConfig, work: Path, admin_url: str | None = None) -> SoakReport:
    """Run one soak; `work` is a scratch directory (node logs, the SQLite file or the private server)."""
    rng = random.Random(config.seed)
    report = SoakReport(config)
    server: PrivatePostgres | None = None
    if config.backend == "postgresql":
        server = PrivatePostgres()
        url = server.url
    else:
        url = f"sqlite:///{work}/soak.db"
    engine = make_engine(url)
    twilio = FakeTwilio().start()
    cluster: Cluster | None = None
    try:
        upgrade(engine)
        routing_key = _seed(engine)
        cluster = Cluster(config, url, work, twilio)
        feeder = Feeder(config, cluster, routing_key, rng)
        feed_time = config.alerts / config.rate
        chaos = _Chaos(config, cluster, server, rng, feed_time, report)
        chaos.start()
        started = time.monotonic()
        feeder.run()
        report.fed_seconds = time.monotonic() - started
        chaos.join()
        report.accepted, report.retries = feeder.accepted, feeder.retries
        report.bad_sent, report.bad_refused, report.bad_5xx = (
            feeder.bad_sent,
            feeder.bad_refused,
            feeder.bad_5xx,
        )
        settle_started = time.monotonic()
        _settle(engine, feeder, config.settle_seconds)
        report.settled_seconds = time.monotonic() - settle_started
        _count(engine, twilio, feeder, report)
    finally:
        if cluster is not None:
            cluster.close()
        twilio.stop()
        engine.dispose()
        if server is not None:
            server.close()
    return report


class _Chaos(threading.Thread):
    """Hard kills of whole nodes spread over the feed (each node replaced), and the database restart."""

    def __init__(
        self,
        config: SoakConfig,
        cluster: Cluster,
        server: PrivatePostgres | None,
        rng: random.Random,
        feed_time: float,
        report: SoakReport,
    ) -> None:
        super().__init__(daemon=True)
        self.config, self.cluster, self.server, self.rng = config, cluster, server, rng
        self.feed_time, self.report = feed_time, report

    def run(self) -> None:
        plan: list[tuple[float, str]] = [
            (self.feed_time * (k + 1) / (self.config.kills + 1), "kill") for k in range(self.config.kills)
        ]
        if self.server is not None and self.config.db_restart_seconds:
            plan.append((self.feed_time * 0.45, "restart"))
        plan.sort()
        started = time.monotonic()
        for at, what in plan:
            time.sleep(max(0.0, started + at - time.monotonic()))
            try:
                if what == "kill":
                    self.cluster.kill_one(self.rng)
                    self.cluster.add()
                    self.report.kills_done += 1
                else:
                    self._restart()
            except Exception as exc:  # shown in the report, and fails the test there
                self.report.errors.append(f"{what}: {exc!r}")

    def _restart(self) -> None:
        assert self.server is not None
        down = time.monotonic()
        self.server.stop()
        time.sleep(self.config.db_restart_seconds)
        self.server.start()
        back = time.monotonic()
        self.report.db_outage_seconds = back - down
        deadline = back + 60
        while time.monotonic() < deadline:
            if self.cluster.healthy():
                self.report.healthy_after_db_seconds = time.monotonic() - back
                return
            time.sleep(0.1)
        self.report.errors.append("nodes not healthy 60 s after the database came back")


def _settle(engine: Engine, feeder: Feeder, limit: float) -> None:
    """Wait until the intake queue is empty, every message is out and level 2 of every open incident fired."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(
                select(func.count()).where(OutboxMessage.status.in_(("pending", "sending")))
            ).scalar()
            open_without_l2 = conn.execute(
                select(func.count())
                .select_from(Incident)
                .where(
                    Incident.status == "open",
                    ~select(Page.id).where(Page.incident_id == Incident.id, Page.level == 2).exists(),
                )
            ).scalar()
        if not waiting and not open_without_l2 and _queue_waiting(engine) == 0:
            time.sleep(2)  # late answers (status callbacks, retries) land
            return
        time.sleep(0.5)


def _queue_context(engine: Engine) -> AppContext:
    settings = Settings(db=engine.url.render_as_string(hide_password=False))
    return AppContext.create(settings, clock=SystemClock(), mode="test", db=engine)


def _queue_waiting(engine: Engine) -> int:
    from engine.service.queue import queue_depth

    return int(queue_depth(_queue_context(engine)).get("pending", 0))


def _count(engine: Engine, twilio: FakeTwilio, feeder: Feeder, report: SoakReport) -> None:
    from engine.service.queue import intake_store

    with engine.connect() as conn:
        incidents = conn.execute(select(Incident.id, Incident.key, Incident.status)).all()
        pages = conn.execute(
            select(Page.incident_id, Page.level, Page.person_id, func.count()).group_by(
                Page.incident_id, Page.level, Page.person_id
            )
        ).all()
    report.incidents = len(incidents)
    per_key = Counter(key for _i, key, _s in incidents)
    report.keys = len(per_key)
    report.keys_with_two_incidents = sum(1 for n in per_key.values() if n > 1)
    report.duplicate_pages = sum(n - 1 for *_k, n in pages if n > 1)
    status_of = {key: status for _i, key, status in incidents}
    report.resolves_accepted = len(feeder.resolves)
    report.resolves_lost = sum(1 for key in feeder.resolves if status_of.get(key) != "resolved")
    by_provider, messages = _at_the_provider(twilio)
    report.page_messages_twice = sum(n - 1 for n in by_provider.values() if n > 1)
    report.messages_twice = sum(n - 1 for n in messages.values() if n > 1)
    report.missing_pages = sum(
        1
        for incident_id, _key, status in incidents
        if status == "open"
        and ((ALICE, incident_id) not in by_provider or (BOB, incident_id) not in by_provider)
    )
    store = intake_store(_queue_context(engine))
    with store.sessions() as session:
        by_status = dict(
            session.execute(select(IntakeEvent.status, func.count()).group_by(IntakeEvent.status)).all()
        )
    report.intake_unapplied = int(by_status.get("pending", 0))
    report.intake_set_aside = int(by_status.get("failed", 0))
