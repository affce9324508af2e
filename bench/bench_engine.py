"""Benchmark of the escalation engine: trigger and acknowledge rates, due→outbox lag, a burst, memory.

    .venv/bin/python bench/bench_engine.py [--incidents 10000] [--active 100000] [--burst 10000]
        [--spread 60] [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--only rates|lag|burst]
        [--db sqlite|postgres] [--sqlite-batch N]

Prints the database, sizes, cores and each figure. Targets (README): ≥ 4,000 triggers/s and acks/s on
SQLite, p99 due→outbox lag ≤ 1 s with the active escalations' due times spread over `--spread` seconds,
a burst of `--burst` due at once written in ≤ 5 s, engine RSS ≤ 250 MB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import bindparam, insert, select, text, update

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import api, escalation  # noqa: E402
from engine.context import AppContext  # noqa: E402
from engine.db import make_engine  # noqa: E402
from engine.escalation import escalate_pass  # noqa: E402
from engine.models import Base, Escalation, Incident, OutboxMessage, Person, Policy, PolicyLevel, PolicyTarget  # noqa: E402
from engine.runner import EngineRunner, _pass_escalate  # noqa: E402
from engine.settings import Settings  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def fresh_sqlite() -> str:
    return f"sqlite:///{tempfile.mkdtemp()}/bench.db"


@contextmanager
def fresh_pg(admin_url: str) -> Iterator[str]:
    """A new PostgreSQL database for one run, dropped afterwards (its benchmark's connections included)."""
    from sqlalchemy import make_url

    name = f"wk_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT", pool_size=1)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def setup(url: str) -> AppContext:
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    ctx = AppContext.create(Settings(db=url), db=engine, mode="bench")
    with ctx.sessions.begin() as s:
        s.add(
            Person(
                handle="thandi",
                name="Thandi",
                phone="+27821234567",
                fallback_channels=["email"],
                email="t@example.org",
            )
        )
        policy = Policy(name="bench")
        level = PolicyLevel(level=1, repeat_interval_seconds=3600)
        level.targets = [PolicyTarget(type="person", identifier="thandi")]
        policy.levels = [level]
        s.add(policy)
    return ctx


def bulk(ctx: AppContext, due: list[datetime]) -> dict[int, datetime]:
    """Escalations written in bulk (not through trigger): {escalation id: due time}."""
    from engine.api import _load_snapshot

    now = datetime.now(UTC)
    out: dict[int, datetime] = {}
    tag = uuid.uuid4().hex[:6]
    for start in range(0, len(due), 5000):
        chunk = due[start : start + 5000]
        with ctx.sessions.begin() as s:
            snapshot, _ = _load_snapshot(s, "bench")
            keys = [f"{tag}-{start + i}" for i in range(len(chunk))]
            s.execute(
                insert(Incident),
                [
                    {"key": k, "summary": k, "created_at": now, "updated_at": now, "last_triggered_at": now}
                    for k in keys
                ],
            )
            ids = {
                k: i for k, i in s.execute(select(Incident.key, Incident.id).where(Incident.key.in_(keys)))
            }
            rows = [
                {
                    "incident_id": ids[k],
                    "policy_id": snapshot["id"],
                    "policy_name": "bench",
                    "policy_snapshot": snapshot,
                    "state": "pending",
                    "level_rounds": {},
                    "next_action_at": d,
                    "started_at": now,
                    "updated_at": now,
                }
                for k, d in zip(keys, chunk, strict=True)
            ]
            s.execute(insert(Escalation), rows)
            by_incident = {ids[k]: d for k, d in zip(keys, chunk, strict=True)}
            for eid, inc in s.execute(
                select(Escalation.id, Escalation.incident_id).where(
                    Escalation.incident_id.in_(list(ids.values()))
                )
            ):
                out[eid] = by_incident[inc]
    return out


def outbox_times(ctx: AppContext, ids: dict[int, datetime]) -> dict[int, datetime]:
    with ctx.sessions() as s:
        return {
            e: c
            for e, c in s.execute(select(OutboxMessage.escalation_id, OutboxMessage.created_at))
            if e in ids
        }


def _rate(n: int, wall: float, cpu: float) -> str:
    return f"{n / wall:,.0f}/s ({n / max(1e-9, cpu):,.0f} per CPU-second)"


def _timed(fn: Callable[[], list[int]]) -> tuple[list[int], float, float]:
    """What `fn` returned, and the wall and CPU seconds (this process) it took."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def _trigger_singly(ctx: AppContext, keys: list[str]) -> list[int]:
    return [api.trigger(ctx, policy="bench", summary=f"Incident {k}", key=k).incident_id for k in keys]


def _acknowledge_singly(ctx: AppContext, ids: list[int]) -> list[int]:
    return [api.acknowledge(ctx, i, by="operator")["id"] for i in ids]


def _trigger_batches(ctx: AppContext, keys: list[str], size: int) -> list[int]:
    requests = [api.TriggerRequest(policy="bench", summary=f"Incident {k}", key=k) for k in keys]
    ids: list[int] = []
    for start in range(0, len(requests), size):
        ids.extend(r.incident_id for r in api.trigger_many(ctx, requests[start : start + size]))
    return ids


def _acknowledge_batches(ctx: AppContext, ids: list[int], size: int) -> list[int]:
    done: list[int] = []
    for start in range(0, len(ids), size):
        for entry in api.acknowledge_many(ctx, ids[start : start + size], by="operator"):
            assert "error" not in entry, entry
            done.append(entry["id"])
    return done


def bench_rates(url: str, label: str, n: int, batches: tuple[int, ...] = (100, 500)) -> None:
    """Triggers then acknowledgements through engine.api: one call (one short write transaction) each, then
    `trigger_many` / `acknowledge_many` in batches. Durable: every call has committed when it returns. Before
    each acknowledgement run the escalate pass pages level 1, so acknowledging cancels pages and writes a
    notice. Besides the wall rate it prints the rate per CPU-second of this process and the load average: on
    a shared machine the wall rate says as much about the neighbours as about Watchkeeper."""
    ctx = setup(url)
    print(f"{label:8} N={n} incidents per run, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    runs: list[tuple[str, str, Callable[[list[str]], list[int]], Callable[[list[int]], list[int]]]] = [
        ("one call each", "s", lambda k: _trigger_singly(ctx, k), lambda i: _acknowledge_singly(ctx, i))
    ]
    for size in batches:
        runs.append(
            (
                f"batches of {size}",
                f"b{size}-",
                lambda k, size=size: _trigger_batches(ctx, k, size),
                lambda i, size=size: _acknowledge_batches(ctx, i, size),
            )
        )
    for how, prefix, trigger, acknowledge in runs:
        keys = [f"{prefix}{i}" for i in range(n)]
        ids, wall, cpu = _timed(lambda trigger=trigger, keys=keys: trigger(keys))
        print(f"{label:8} triggers, {how:16} {_rate(n, wall, cpu)}; load average {os.getloadavg()[0]:.1f}")
        escalate_pass(ctx, limit=500, max_batches=10**6)  # level 1 paged: acknowledging cancels and notifies
        done, wall, cpu = _timed(lambda acknowledge=acknowledge, ids=ids: acknowledge(ids))
        assert len(done) == n
        print(
            f"{label:8} acks,     {how:16} {_rate(n, wall, cpu)}; load average {os.getloadavg()[0]:.1f} "
            "(level 1 paged: pages cancelled, notices written)"
        )


def bench_lag(url: str, label: str, active: int, spread: float) -> None:
    ctx = setup(url)
    # Written far in the future, then moved to start 15 s after the (slow) bulk insert has finished (time for
    # the move itself), so the lag measures the engine and not the time it took to set the benchmark up.
    far = datetime.now(UTC) + timedelta(days=1)
    ids = bulk(ctx, [far + timedelta(seconds=spread * i / active) for i in range(active)])
    shift = datetime.now(UTC) + timedelta(seconds=15) - far
    with ctx.sessions.begin() as s:
        table = Escalation.__table__
        s.connection().execute(
            update(table).where(table.c.id == bindparam("b_id")).values(next_action_at=bindparam("b_due")),
            [{"b_id": e, "b_due": d + shift} for e, d in ids.items()],
        )
    ids = {e: d + shift for e, d in ids.items()}
    runner = EngineRunner(
        ctx, mode="bench", passes={"escalate": _pass_escalate}, intervals={"escalate": 0.2}, listen=False
    )
    runner.start()
    deadline = time.monotonic() + 5 + spread + 600
    written: dict[int, datetime] = {}
    peak = rss_mb()
    while time.monotonic() < deadline:
        time.sleep(2)
        peak = max(peak, rss_mb())
        with ctx.sessions() as s:
            if s.scalar(text("SELECT count(*) FROM outbox_message")) >= active:
                break
    runner.stop()
    written = outbox_times(ctx, ids)
    lags = sorted(max(0.0, (written[e] - ids[e]).total_seconds()) for e in written)
    p99 = lags[int(0.99 * (len(lags) - 1))] if lags else float("nan")
    print(
        f"{label:7} {active} active escalations due over {spread:.0f} s: written {len(written)}, "
        f"lag median {statistics.median(lags) if lags else float('nan'):.2f} s, p99 {p99:.2f} s, max {lags[-1] if lags else float('nan'):.2f} s; "
        f"engine RSS peak {peak:.0f} MB"
    )


def bench_burst(url: str, label: str, burst: int) -> None:
    ctx = setup(url)
    now = datetime.now(UTC)
    ids = bulk(ctx, [now] * burst)
    load = os.getloadavg()[0]
    t, c = time.perf_counter(), time.process_time()
    while escalate_pass(ctx, max_batches=10**6):  # the engine's own batch size for this database
        pass
    took, cpu = time.perf_counter() - t, time.process_time() - c
    load = max(load, os.getloadavg()[0])
    print(
        f"{label:7} burst of {burst} due at once: all {len(outbox_times(ctx, ids))} written in {took:.1f} s "
        f"({cpu:.1f} CPU-seconds in this process = {cpu / burst * 1000:.2f} ms per escalation; "
        f"load average {load:.1f})"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--incidents", type=int, default=10_000)
    p.add_argument("--active", type=int, default=100_000)
    p.add_argument("--burst", type=int, default=10_000)
    p.add_argument("--spread", type=float, default=60.0)
    p.add_argument(
        "--pg",
        default=os.environ.get("WATCHKEEPER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    p.add_argument("--only", choices=["rates", "lag", "burst"], default=None)
    p.add_argument("--db", choices=["sqlite", "postgres"], default=None, help="one database only")
    p.add_argument(
        "--sqlite-batch",
        type=int,
        default=None,
        help="escalations per batch on SQLite instead of the engine's default (to compare sizes)",
    )
    a = p.parse_args()
    if a.sqlite_batch:
        escalation.SQLITE_BATCH = a.sqlite_batch
    sqlite, postgres = a.db in (None, "sqlite"), a.db in (None, "postgres")
    print(
        f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, SQLite WAL synchronous={os.environ.get('WATCHKEEPER_SQLITE_SYNCHRONOUS', 'NORMAL')}, "
        f"escalations per batch: SQLite {escalation.SQLITE_BATCH}, PostgreSQL {escalation.DEFAULT_BATCH}"
    )
    if a.only in (None, "rates"):
        if sqlite:
            bench_rates(fresh_sqlite(), "sqlite", a.incidents)
        if postgres:
            with fresh_pg(a.pg) as url:
                bench_rates(url, "postgres", a.incidents)
    if a.only in (None, "lag"):
        if sqlite:
            bench_lag(fresh_sqlite(), "sqlite", a.active, a.spread)
        if postgres:
            with fresh_pg(a.pg) as url:
                bench_lag(url, "postgres", a.active, a.spread)
    if a.only in (None, "burst"):
        if sqlite:
            bench_burst(fresh_sqlite(), "sqlite", a.burst)
        if postgres:
            with fresh_pg(a.pg) as url:
                bench_burst(url, "postgres", a.burst)


if __name__ == "__main__":
    main()
