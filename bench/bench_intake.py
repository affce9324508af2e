"""HTTP intake benchmark: sustained `POST /v2/enqueue` against one `watchkeeper serve` node.

    .venv/bin/python bench/bench_intake.py [--db URL] [--rate 1000] [--events 100000] [--seconds 20] [--threads 32]

The node is a real `serve` process (its engine passes running, simulated channels); the load generator runs
in this process with threads on persistent HTTP/1.1 connections over loopback, bounded by --events and
--seconds. Target: >= 1,000 events/s sustained with p99 response <= 50 ms on 2 cores.

By default the events are sent at 1,000 a second on a fixed schedule (--rate), as a monitoring storm would
send them (open loop), and each response time is counted from the moment its event was due to be sent, so a
node that falls behind cannot hide it by slowing the clients down. --rate 0 sends as fast as the node answers
(closed loop: the HTTP front end's ceiling, while the engine falls behind).

BENCH_SERVE_SCRIPT=path runs that script instead of main.py as the node (e.g. one that stubs out the engine
process, to measure the HTTP intake alone).

Prints the database, N, cores, throughput, latency percentiles, how far the node's intake workers got
applying the queued events (incidents opened) during and shortly after the run, and how long each triggering
event waited from its 202 to the first page of its incident in the outbox. Not a timed test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prepare(url: str) -> str:
    """Schema, a two-level policy paging two people by (simulated) SMS, and a routing key."""
    from engine.clock import SystemClock
    from engine.context import AppContext
    from engine.db import make_engine, write_session
    from engine.migrate import stamp
    from engine.models import Base, Person, Policy, PolicyLevel, PolicyTarget
    from engine.service.keys import create_routing_key
    from engine.settings import Settings

    engine = make_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    stamp(engine)
    ctx = AppContext.create(Settings(db=url), clock=SystemClock(), mode="bench", db=engine)
    with write_session(ctx.sessions) as session:
        session.add_all(
            [
                Person(handle="alice", name="Alice", phone="+27820000001"),
                Person(handle="bob", name="Bob", phone="+27820000002"),
            ]
        )
        policy = Policy(name="ops")
        policy.levels = [
            PolicyLevel(level=1, delay_seconds=0, targets=[PolicyTarget(type="person", identifier="alice")]),
            PolicyLevel(level=2, delay_seconds=300, targets=[PolicyTarget(type="person", identifier="bob")]),
        ]
        session.add(policy)
    key = create_routing_key(ctx, policy="ops", label="bench").secret
    engine.dispose()
    return key


def start_node(url: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env.update(
        {
            "WATCHKEEPER_DB": url,
            "WATCHKEEPER_HTTP_PORT": "0",
            "WATCHKEEPER_CONFIG": str(log_path.parent / "none.toml"),
            "WATCHKEEPER_LOG_FILE": str(log_path),
            "WATCHKEEPER_RATE_PER_CHANNEL_PER_SECOND": "sms=100000",
            "WATCHKEEPER_RATE_PER_RECIPIENT_PER_MINUTE": "10000000",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, os.environ.get("BENCH_SERVE_SCRIPT", str(ROOT / "main.py")), "serve"],
        cwd=str(ROOT),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    pattern = re.compile(r"listening on http://([\d.]+):(\d+)")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"serve exited {proc.returncode}:\n{log_path.read_text() if log_path.exists() else ''}"
            )
        if log_path.exists():
            m = pattern.search(log_path.read_text())
            if m:
                return proc, m.group(1), int(m.group(2))
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("serve did not start listening within 60 s")


class Load:
    def __init__(
        self, host: str, port: int, key: str, events: int, seconds: float, rate: float | None = None
    ) -> None:
        self.host, self.port, self.key = host, port, key
        self.events, self.seconds = events, seconds
        self.rate = rate
        self.first = 0
        self.started = 0.0
        self.late = 0  # paced sends that left the client more than 10 ms after they were due
        self.lock = threading.Lock()
        self.next = 0
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.deadline = 0.0

    def _take(self) -> int | None:
        with self.lock:
            if self.next >= self.events or time.monotonic() >= self.deadline:
                return None
            self.next += 1
            return self.next

    def worker(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        mine: list[float] = []
        errors: dict[str, int] = {}
        while (i := self._take()) is not None:
            due: float | None = None
            if self.rate:
                due = self.started + (i - self.first - 1) / self.rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                elif wait < -0.010:
                    self.late += 1
            body = json.dumps(
                {
                    "routing_key": self.key,
                    "event_action": "trigger",
                    "dedup_key": f"bench-{i}",
                    "payload": {
                        "summary": f"Synthetic alarm {i}",
                        "source": "bench.example.org",
                        "severity": "error",
                        "custom_details": {"n": i},
                    },
                }
            ).encode()
            started = time.perf_counter()
            try:
                conn.request("POST", "/v2/enqueue", body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__  # type: ignore[assignment]
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            # Paced: from when the event was due, so time spent waiting for a free client counts too.
            elapsed = time.perf_counter() - (started if due is None else min(due, started))
            if status == 202:
                mine.append(elapsed)
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1
        conn.close()
        with self.lock:
            self.latencies.extend(mine)
            for k, v in errors.items():
                self.errors[k] = self.errors.get(k, 0) + v

    def run(self, threads: int) -> float:
        workers = [threading.Thread(target=self.worker) for _ in range(threads)]
        started = time.monotonic()
        self.first = self.next
        self.started = time.perf_counter()
        self.deadline = started + self.seconds
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return time.monotonic() - started


def proc_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by a process, and by its live descendants (Linux /proc; zeros
    elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    own = descendants = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            used = (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError, IndexError):
            continue
        if current == pid:
            own = used
        else:
            descendants += used
    return own, descendants


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine so far (Linux /proc/stat; zeros elsewhere)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return float(sum(values) - idle), float(sum(values))


def postgres_cpu_seconds() -> float:
    """CPU seconds used so far by the PostgreSQL server's processes on this machine (0 when none)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        if name.startswith("postgres"):
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _queue_engine(engine: Any) -> Any:
    """The database holding the intake queue: the SQLite intake spool beside the file, or the database."""
    from engine.db import make_engine
    from engine.service.queue import spool_path

    path = spool_path(engine)
    return make_engine(f"sqlite:///{path}") if path is not None else engine


def applied(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from engine.db import make_engine, session_factory
    from engine.models import Incident, IntakeEvent

    engine = make_engine(url)
    queue = _queue_engine(engine)
    try:
        with session_factory(queue)() as session:
            by_status = dict(
                session.execute(select(IntakeEvent.status, func.count()).group_by(IntakeEvent.status))
                .tuples()
                .all()
            )
        with session_factory(engine)() as session:
            incidents = int(session.scalar(select(func.count()).select_from(Incident)) or 0)
        return {
            "queued_pending": int(by_status.get("pending", 0)),
            "applied": int(by_status.get("done", 0)),
            "failed": int(by_status.get("failed", 0)),
            "incidents": incidents,
        }
    finally:
        queue.dispose()
        engine.dispose()


def page_lag(url: str) -> tuple[list[float], int]:
    """Seconds from each triggering event's arrival (its 202) to the first page of its incident written to the
    outbox: the intake's share of the engine's due->outbox lag, under this load. (lags, events not paged yet)."""
    from sqlalchemy import func, select

    from engine.db import make_engine, session_factory
    from engine.models import IntakeEvent, OutboxMessage

    engine = make_engine(url)
    queue = _queue_engine(engine)
    try:
        with session_factory(engine)() as session:
            first_page = dict(
                session.execute(
                    select(OutboxMessage.incident_id, func.min(OutboxMessage.created_at)).group_by(
                        OutboxMessage.incident_id
                    )
                )
                .tuples()
                .all()
            )
        with session_factory(queue)() as session:
            arrivals = session.execute(
                select(IntakeEvent.received_at, IntakeEvent.incident_id).where(
                    IntakeEvent.outcome == "triggered"
                )
            ).all()
        pairs = [(received, first_page[i]) for received, i in arrivals if i in first_page]
        lags = [(_aware(paged) - _aware(received)).total_seconds() for received, paged in pairs]
        return lags, len(arrivals) - len(pairs)
    finally:
        queue.dispose()
        engine.dispose()


def _aware(value: Any) -> Any:
    from datetime import UTC

    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: a new SQLite file in a temp directory)")
    parser.add_argument("--events", type=int, default=100_000, help="stop after this many events")
    parser.add_argument("--seconds", type=float, default=20.0, help="stop after this long")
    parser.add_argument("--threads", type=int, default=32, help="concurrent client connections")
    parser.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="send this many events per second on a fixed schedule (0: as fast as the node answers)",
    )
    parser.add_argument("--warmup", type=int, default=300, help="events sent (and not measured) first")
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=30.0,
        help="wait this long for the queue and the first pages after",
    )
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="wk-bench-intake-"))
    url = args.db or f"sqlite:///{tmp}/bench.db"
    key = prepare(url)
    proc, host, port = start_node(url, tmp / "serve.log")
    try:
        Load(host, port, key, args.warmup, 30).run(min(4, args.threads))
        load = Load(host, port, key, args.events, args.seconds, args.rate)
        load.next = args.warmup  # distinct dedup keys
        load.events += args.warmup
        front_before, engine_before = proc_cpu_seconds(proc.pid)
        client_cpu_before = time.process_time()
        machine_before, pg_before = machine_cpu(), postgres_cpu_seconds()
        elapsed = load.run(args.threads)
        machine_after, pg_cpu = machine_cpu(), postgres_cpu_seconds() - pg_before
        busy = (machine_after[0] - machine_before[0]) / max(1.0, machine_after[1] - machine_before[1])
        front_after, engine_after = proc_cpu_seconds(proc.pid)
        front_cpu, engine_cpu = front_after - front_before, engine_after - engine_before
        node_cpu = front_cpu + engine_cpu
        client_cpu = time.process_time() - client_cpu_before
        load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        at_end = applied(url)
        drain_started = time.monotonic()
        while time.monotonic() - drain_started < args.drain_seconds and applied(url)["queued_pending"] > 0:
            time.sleep(0.5)
        # Then until every triggered incident has its first page (a page still missing would flatter the lag).
        lags, unpaged = page_lag(url)
        while time.monotonic() - drain_started < args.drain_seconds and unpaged:
            time.sleep(0.5)
            lags, unpaged = page_lag(url)
        drained_in = time.monotonic() - drain_started
        after = applied(url)
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -9
    ok = len(load.latencies)
    lat_ms = [x * 1000 for x in load.latencies]
    rate = ok / elapsed if elapsed else 0.0
    p99 = _percentile(lat_ms, 0.99)
    backend = "PostgreSQL" if url.startswith("postgres") else "SQLite"
    print(f"database: {backend} ({url if backend == 'SQLite' else url.split('@')[-1]})")
    print(
        f"cores: {os.cpu_count()}  client threads: {args.threads}  N: {ok} events accepted (202) in {elapsed:.1f} s"
    )
    print(f"errors: {load.errors or 'none'}")
    if args.rate:
        print(
            f"paced at {args.rate:,.0f} events/s (open loop; latency counted from when each event was due); "
            f"{load.late} sends left over 10 ms late for want of a free client"
        )
    print(f"throughput: {rate:,.0f} events/s  [target >= 1,000]")
    print(
        f"cpu during the load: HTTP front end {front_cpu:.1f} s = {ok / front_cpu if front_cpu else float('nan'):,.0f} "
        f"events per CPU-second; engine process {engine_cpu:.1f} s; whole node "
        f"{ok / node_cpu if node_cpu else float('nan'):,.0f} events per CPU-second"
    )
    print(
        f"load client (this process, same cores): {client_cpu:.1f} s CPU "
        f"({client_cpu / elapsed if elapsed else 0:.0%} of a core); 1-min load average at the end {load_average:.2f}"
    )
    print(
        f"whole machine busy {busy:.0%} of {os.cpu_count()} cores during the load"
        + (f"; PostgreSQL server processes {pg_cpu:.1f} s CPU" if backend == "PostgreSQL" else "")
    )
    print(
        f"latency ms: p50 {_percentile(lat_ms, 0.5):.1f}  p90 {_percentile(lat_ms, 0.9):.1f}  "
        f"p99 {p99:.1f}  max {max(lat_ms) if lat_ms else float('nan'):.1f}  "
        f"mean {statistics.fmean(lat_ms) if lat_ms else float('nan'):.1f}  [target p99 <= 50]"
    )
    print(
        f"applied by the node's intake workers: {at_end['applied']} by the end of the load, "
        f"{after['applied']} after {drained_in:.0f} s more ({after['queued_pending']} still queued, "
        f"{after['failed']} failed); incidents: {after['incidents']}"
    )
    if lags:
        print(
            f"arrival -> first page in the outbox, {len(lags)} triggering events: median "
            f"{_percentile(lags, 0.5):.2f} s, p99 {_percentile(lags, 0.99):.2f} s, max {max(lags):.2f} s "
            f"(the engine's lag target: p99 <= 1 s); {unpaged} triggering events without a page yet"
        )
    print(f"serve exit code after SIGTERM: {code}")
    lag_p99 = _percentile(lags, 0.99) if lags and not unpaged else float("inf")
    # Paced: the node sustained the offered rate if it took every event on schedule (its lateness would show in
    # the latencies, which count from when each event was due); the measured rate is a hair under it because
    # the run's clock also covers the last answers.
    sustained = args.rate if args.rate and not load.errors and rate >= 0.99 * args.rate else rate
    verdict = "MET" if sustained >= 1000 and p99 <= 50 and lag_p99 <= 1.0 else "NOT MET"
    print(f"target (>= 1,000 events/s, p99 <= 50 ms, arrival -> first page p99 <= 1 s): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
