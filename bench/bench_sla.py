"""SLA pass over a large ticket table: N tickets (1,000,000 by default), a realistic few due, one timed pass.

The table is filled the fast way (sqlite3 executemany in one transaction; PostgreSQL COPY), then ANALYZEd as
autovacuum would. Most tickets are closed; the open ones mostly have deadlines ahead; some are escalated and
long past every deadline (they stay in the index ranges the pass scans); a few hundred are due now. The figures:
database, N, cores, seconds for the first pass (which escalates the due ones) and for the next pass (nothing
due), plus the query plans of the claim queries.

    python -m bench.bench_sla [--n 1000000] [--db sqlite|postgresql|both] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, Index, make_url, text
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateIndex

from engine import sla
from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import make_engine
from engine.models import Base, Incident, Person, Team
from engine.settings import Settings

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
COLUMNS = [
    "id",
    "key",
    "source",
    "summary",
    "details",
    "severity",
    "category",
    "site",
    "status",
    "sensitive",
    "reporter_contact",
    "reporter_language",
    "team_id",
    "custom",
    "trigger_count",
    "sla_computed_at",
    "response_due_at",
    "resolution_due_at",
    "response_warn_at",
    "resolution_warn_at",
    "response_warned_at",
    "resolution_warned_at",
    "response_breached_at",
    "resolution_breached_at",
    "created_at",
    "updated_at",
    "last_triggered_at",
]
# Due in one 60-second pass: a busy centre, not a backlog after an outage.
DUE_RESPONSE = 20
DUE_RESOLUTION = 20
DUE_WARNINGS = 60


def rows(n: int, team_id: int) -> Iterator[tuple[Any, ...]]:
    """Tickets: 80 % resolved, 1 % sensitive, 1 % escalated long ago, a few hundred due now, the rest ahead."""
    rnd = random.Random(42)
    due = DUE_RESPONSE + DUE_RESOLUTION + DUE_WARNINGS
    for i in range(1, n + 1):
        h = timedelta(hours=1)
        if i <= DUE_RESPONSE:  # open, response deadline just passed
            created = NOW - 25 * h
            status, warned, breached = "open", NOW - 5 * h, None
        elif i <= DUE_RESPONSE + DUE_RESOLUTION:  # in progress, resolution deadline just passed
            created = NOW - 169 * h
            status, warned, breached = "in_progress", NOW - 150 * h, NOW - 140 * h
        elif i <= due:  # open, response warning due now
            created = NOW - 20 * h
            status, warned, breached = "open", None, None
        else:
            r = rnd.random()
            if r < 0.80:
                created = NOW - timedelta(days=rnd.uniform(8, 1000))
                status, warned, breached = "resolved", created + 20 * h, None
            elif r < 0.81:
                created = NOW - timedelta(days=rnd.uniform(0, 30))
                status, warned, breached = "sensitive", None, None
            elif r < 0.82:
                created = NOW - timedelta(days=rnd.uniform(8, 60))
                status, warned, breached = "escalated", created + 20 * h, created + 24 * h
            else:
                created = NOW - timedelta(hours=rnd.uniform(0, 19))
                status, warned, breached = rnd.choice(["open", "acknowledged", "in_progress"]), None, None
        sensitive = status == "sensitive"
        if sensitive:
            status = "open"
        resp_due, resol_due = created + 24 * h, created + 168 * h
        resp_warn, resol_warn = created + 19.2 * h, created + 134.4 * h
        escalated = status == "escalated"
        yield (
            i,
            f"ticket-{i}",
            "ticket",
            f"Ticket {i}",
            "",
            "medium",
            "roads",
            "durban",
            status,
            sensitive,
            f"+2783{i:07d}" if i <= due else None,
            "en",
            team_id,
            "{}",
            1,
            created,
            None if sensitive else resp_due,
            None if sensitive else resol_due,
            None if sensitive else resp_warn,
            None if sensitive else resol_warn,
            warned,
            created + 140 * h if escalated else None,
            breached,
            created + 168 * h if escalated else None,
            created,
            created,
            created,
        )


def _sqlite_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return v


def _secondary_indexes() -> list[Index]:
    return list(Incident.__table__.indexes)


def load_sqlite(engine: Engine, n: int, team_id: int) -> None:
    """Bulk load: indexes dropped and rebuilt afterwards, no journal during the load (a throwaway file)."""
    indexes = _secondary_indexes()
    with engine.begin() as conn:
        for index in indexes:
            conn.exec_driver_sql(f"DROP INDEX {index.name}")
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA journal_mode=OFF")
        cur.execute("PRAGMA synchronous=OFF")
        cur.execute("PRAGMA cache_size=-400000")
        cur.execute("BEGIN")
        sql = f"INSERT INTO incident ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        batch: list[tuple[Any, ...]] = []
        for row in rows(n, team_id):
            batch.append(tuple(_sqlite_value(v) for v in row))
            if len(batch) == 50_000:
                cur.executemany(sql, batch)
                batch.clear()
        if batch:
            cur.executemany(sql, batch)
        cur.execute("COMMIT")
        for index in indexes:
            cur.execute(str(CreateIndex(index).compile(engine)))
        cur.execute("ANALYZE")
        cur.execute("PRAGMA journal_mode=WAL")
    finally:
        raw.close()
    engine.dispose()  # later connections start with the normal pragmas


def _pg_text(v: Any) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


def load_postgresql(engine: Engine, n: int, team_id: int) -> None:
    """COPY with the secondary indexes dropped, then rebuilt, then VACUUM ANALYZE."""
    indexes = _secondary_indexes()
    with engine.begin() as conn:
        for index in indexes:
            conn.exec_driver_sql(f"DROP INDEX {index.name}")
    raw = engine.raw_connection()
    try:
        cur: Any = raw.cursor()
        with cur.copy(f"COPY incident ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            buf = io.StringIO()
            for i, row in enumerate(rows(n, team_id), 1):
                buf.write("\t".join(_pg_text(v) for v in row))
                buf.write("\n")
                if i % 50_000 == 0:
                    copy.write(buf.getvalue())
                    buf = io.StringIO()
            copy.write(buf.getvalue())
        cur.execute(f"SELECT setval(pg_get_serial_sequence('incident', 'id'), {n})")
        for index in indexes:
            cur.execute(str(CreateIndex(index).compile(engine)))
        raw.commit()
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE incident")


def plans(engine: Engine) -> list[str]:
    out = []
    for kind in ("response", "resolution"):
        for label, conditions in (
            ("warn", sla.warning_conditions(kind, NOW)),
            ("breach", sla.breach_conditions(kind, NOW)),
        ):
            stmt = sla.claim_query(conditions).with_for_update(nowait=False, read=False, skip_locked=False)
            sql = str(
                stmt.compile(engine, compile_kwargs={"literal_binds": True, "render_postcompile": True})
            )
            prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
            with engine.connect() as conn:
                lines = [str(r[-1]) for r in conn.exec_driver_sql(prefix + sql)]
            out.append(f"  {kind} {label}: " + " | ".join(line.strip() for line in lines[:3]))
    return out


def run(url: str, n: int) -> None:
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with Session(engine) as s, s.begin():
        manager = Person(handle="manager", name="Manager")
        s.add(manager)
        s.flush()
        team = Team(handle="roads", name="Roads", manager_id=manager.id)
        s.add(team)
        s.flush()
        team_id = team.id
    t0 = time.perf_counter()
    if engine.dialect.name == "sqlite":
        load_sqlite(engine, n, team_id)
    else:
        load_postgresql(engine, n, team_id)
    load_s = time.perf_counter() - t0
    ctx = AppContext.create(Settings(db=url), clock=FakeClock(NOW), mode="bench", db=engine)
    t0 = time.perf_counter()
    first = sla.sla_pass(ctx)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = sla.sla_pass(ctx)
    second_s = time.perf_counter() - t0
    cores = os.cpu_count()
    db = engine.dialect.name
    print(f"database={db} N={n} cores={cores} load_seconds={load_s:.1f}", flush=True)
    handled = {k: v for k, v in first.items() if v}
    print(f"database={db} N={n} cores={cores} seconds={first_s:.3f} pass=first handled={handled}", flush=True)
    print(
        f"database={db} N={n} cores={cores} seconds={second_s:.3f} pass=steady handled={second}", flush=True
    )
    for line in plans(engine):
        print(line, flush=True)
    engine.dispose()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("WATCHKEEPER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args(argv)
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{tmp}/bench.db", args.n)
    if args.db in ("postgresql", "both"):
        admin = make_engine(args.pg_url, isolation_level="AUTOCOMMIT", pool_size=1)
        name = f"wk_bench_sla_{uuid.uuid4().hex[:6]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            run(make_url(args.pg_url).set(database=name).render_as_string(hide_password=False), args.n)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
