"""Speed while the centre is busy (issue #17): Watchkeeper beside raw sqlite3 and, where installed, its peers.

    .venv/bin/python -m bench.bench_busy [--n 2000] [--reps 7] [--db sqlite|postgres|both]
        [--paced-rate 1000] [--paced-seconds 20] [--paced-reps 1] [--only a,b,c,d,e,f,g]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Every engine runs the same workload (bench/peers/workload.py): N incidents, a policy of 3 levels (level 1 at
once, level 2 at +3 s, level 3 at +6 s, one person each), every other incident acknowledged right after its
trigger. Each engine gets a fresh database per run; the engines run one after another, never at once, in R
interleaved repetitions with the order rotated each repetition, and every ratio is taken within a
repetition (then its median and range across repetitions are printed). Figures:

 a. durable triggers/s, one call each, with the engine running: the trigger calls' own time (time inside
    `trigger` calls; the acknowledgements between them are timed apart);
 b. Watchkeeper only: `trigger_many` in batches of 100 and `acknowledge_many` of 100 (the odd incidents of two
    trigger batches), per second and batches per second;
 c. acknowledgements/s, one call each;
 d. level-2 and level-3 lag p99 while triggers keep arriving: when the level's page was written minus when it
    was due (the trigger's issue time + 3 s / + 6 s), over the unacknowledged incidents;
 e. trigger -> first page p99: the level-1 page written minus when the trigger was issued;
 f. paced (`--paced-rate`, default 1,000/s, for `--paced-seconds`, default 20 s): triggers arrive one by one
    on a fixed schedule (open loop: each counted from when it was due, so a stall is not hidden), every other
    one acknowledged right after; level-2/level-3 lag p99 and trigger -> first page p99, on SQLite and on
    PostgreSQL (and for the peers, on their SQLite stores). An engine slower than the rate falls behind the
    schedule: its triggers leave late (counted in every lag) and those still unsent when the time is up are
    not sent (printed: sent of scheduled). `--paced-reps` rounds, default 1 (20 s each);
 g. correctness, counted at the end of every run once the last level 3 was due (the engine gets 20 s more):
    pages lost (an unacknowledged incident without all 3 levels' pages), pages twice (the same
    incident + level + person written twice), pages after an acknowledgement (a page written after the
    incident was acknowledged: for Watchkeeper an outbox page row whose `created_at` is later than the
    incident's `acknowledged_at` and that the acknowledgement did not withdraw — a row it cancelled was
    written before it committed, its later stamp notwithstanding, and is shown apart as "withdrawn"). All
    must be 0.

Watchkeeper (this process): only the public API, `engine.api.trigger` / `acknowledge` / `trigger_many` /
`acknowledge_many`, on an `AppContext` with an `EngineRunner` running every pass the engine normally runs
except dispatch (escalate, confirm, poll, price, sla, overdue, housekeeping, at their default intervals, woken
by the API as in production; on PostgreSQL also its LISTEN thread), so pages are written to `outbox_message`
and nothing sends them. The three people are reachable by SMS. A page "written" is its `outbox_message` row,
kind page, at its `created_at` (the engine stamps the time its escalate batch began); acknowledged at is the
incident's `acknowledged_at`. SQLite runs as the engine opens it: WAL, synchronous=NORMAL (engine/db.py).

Raw sqlite3 (the baseline, this process, Python's stdlib): per trigger BEGIN IMMEDIATE, 4 INSERTs (incident,
escalation, event, the level-1 page in an outbox table; the indexes a lookup needs) and COMMIT; per
acknowledgement BEGIN IMMEDIATE, UPDATE of the incident and of its escalation, one event INSERT, COMMIT.
journal_mode=WAL, synchronous=NORMAL, one call each. No scheduler: it has no lag figures. Lean tables: the
few columns and indexes this workload needs.

Raw sqlite3, Watchkeeper's rows (the goal's "same rows and commits"): the rows and commits a Watchkeeper
trigger and acknowledgement write, with the same values, into Watchkeeper's own tables made by its migrations
(every column and index the board, the SLA pass and the reports read by), with the connection settings
Watchkeeper uses (engine/db.py); see `run_sqlite3_own`. Its single calls are the yardstick of the "≥ 0.5×"
goal; the lean figure is printed beside it.

Peers (optional): truthound 3.2.0's checkpoint escalation engine with its SQLite store, and APScheduler 3.11
with its SQLAlchemy job store on SQLite, each in a subprocess run with `.venv-peers/bin/python` (`make
bench-peers` creates it; this module imports nothing of theirs). What each does per trigger and per
acknowledgement is in the docstrings of bench/peers/truthound_driver.py and bench/peers/apscheduler_driver.py.

Runs about 15 minutes with the defaults on 2 cores at today's speed, most of it PostgreSQL's one-call runs
(`--db sqlite`: about 9; each run also waits for its last level 3, 6 s after its last trigger). The engine's
log (its warnings: a pass that failed, the scheduler skipping a wake) goes to a file whose path and count of
warnings are printed at the end, not between the figures. A benchmark, not a test: not run in CI. Every line
says the database, N, cores and load average; on a shared machine read the figures beside the load average,
and quote a quiet run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_engine import fresh_pg  # noqa: E402
from bench.peers import workload  # noqa: E402
from bench.peers.workload import Result, Stream  # noqa: E402
from engine import api, migrate  # noqa: E402
from engine.context import AppContext  # noqa: E402
from engine.db import SQLITE_CACHE_KIB, SQLITE_SYNCHRONOUS, make_engine  # noqa: E402
from engine.engine_process import EngineProcess  # noqa: E402
from engine.models import EngineNode, Incident, OutboxMessage, Person, Policy, PolicyLevel, PolicyTarget  # noqa: E402
from engine.runner import EngineRunner, available_passes  # noqa: E402
from engine.settings import Settings  # noqa: E402

PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
PEERS = ("truthound", "apscheduler")
BATCH = 100
# The raw sqlite3 baseline that writes what Watchkeeper writes (the goal's "same rows and commits").
RAW_OWN = "raw sqlite3, Watchkeeper's rows"
FIGURES = "abcdefg"


def cores() -> int:
    return os.cpu_count() or 0


def load() -> float:
    return os.getloadavg()[0]


# --------------------------------------------------------------------------------------------------------
# Watchkeeper
# --------------------------------------------------------------------------------------------------------


def setup(url: str) -> AppContext:
    """Schema (by the migrations, as a site's database is made), three people reachable by SMS, the policy
    "busy": level 1 at once, 2 and 3 each 3 s later."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    ctx = AppContext.create(Settings(db=url), db=engine, mode="bench")
    with ctx.sessions.begin() as s:
        s.add_all([Person(handle=f"p{n}", name=f"Person {n}", phone=f"+2782000000{n}") for n in (1, 2, 3)])
        policy = Policy(name="busy")
        policy.levels = [
            PolicyLevel(
                level=n,
                delay_seconds=0 if n == 1 else int(workload.LEVEL_DELAY),
                targets=[PolicyTarget(type="person", identifier=f"p{n}")],
            )
            for n in (1, 2, 3)
        ]
        s.add(policy)
    return ctx


def running_engine(ctx: AppContext, where: str) -> Any:
    """The engine as production runs it. `where`: "process" — `watchkeeper engine`, a process of its own, as
    the console and `serve` run it (every pass; dispatch skips the SMS channel, which is not set up here, so
    nothing is sent); "thread" — the passes as threads of this process, less dispatch (pages written to the
    outbox stay there)."""
    if where == "process":
        engine = EngineProcess(ctx)
        engine.start()
        deadline = time.monotonic() + 30
        while not _beating(ctx) and time.monotonic() < deadline:  # passes scheduled before the clock starts
            time.sleep(0.05)
        return engine
    passes = {name: fn for name, fn in available_passes().items() if name != "dispatch"}
    runner = EngineRunner(ctx, mode="bench", passes=passes)
    runner.start()
    return runner


def _beating(ctx: AppContext) -> bool:
    with ctx.db.connect() as conn:
        found = conn.execute(select(EngineNode.status).where(EngineNode.id == ctx.node_id)).scalar()
    return found == "running"


def _unacked_pages(ctx: AppContext) -> int:
    with ctx.db.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM outbox_message o JOIN incident i ON i.id = o.incident_id "
                    "WHERE o.kind = 'page' AND i.acknowledged_at IS NULL"
                )
            ).scalar_one()
        )


def _written(ctx: AppContext, ids: dict[int, int]) -> tuple[list[tuple[Any, ...]], dict[int, float]]:
    """Every page written, as (incident index, level, person, epoch, withdrawn), and when each incident was
    acknowledged. Withdrawn: cancelled, as an acknowledgement does in its own transaction to the pages not yet
    handed to a provider (nothing sends them here), so the page was written before that acknowledgement
    committed even when the escalate batch's time stamp (taken before it waited for the write lock) is later
    than the acknowledgement's (taken before it waited)."""
    index = {incident: i for i, incident in ids.items()}
    with ctx.sessions() as s:
        pages = [
            (index[inc], int(level or 0), person, at.timestamp(), status == "cancelled")
            for inc, level, person, at, status in s.execute(
                select(
                    OutboxMessage.incident_id,
                    OutboxMessage.level,
                    OutboxMessage.person_id,
                    OutboxMessage.created_at,
                    OutboxMessage.status,
                ).where(OutboxMessage.kind == "page")
            )
            if inc in index
        ]
        acked_at = {
            index[inc]: at.timestamp()
            for inc, at in s.execute(
                select(Incident.id, Incident.acknowledged_at).where(Incident.acknowledged_at.is_not(None))
            )
            if inc in index
        }
    return pages, acked_at


async def _batches(ctx: AppContext, n: int, tag: str, ids: dict[int, int]) -> Stream:
    """`trigger_many` of BATCH, and `acknowledge_many` of BATCH: the odd incidents of the last two batches."""
    out = Stream()
    started_wall, started = time.time(), time.perf_counter()
    waiting: list[int] = []

    def acknowledge(refs: list[int]) -> None:
        t = time.perf_counter()
        for entry in api.acknowledge_many(ctx, [ids[i] for i in refs], by="operator"):
            assert "error" not in entry, entry
        t2 = time.perf_counter()
        out.ack_busy += t2 - t
        out.acks += len(refs)
        for i in refs:
            out.ack_done[i] = started_wall + (t2 - started)

    for first in range(0, n, BATCH):
        chunk = range(first, min(n, first + BATCH))
        requests = [
            api.TriggerRequest(policy="busy", summary=f"Incident {tag}{i}", key=f"{tag}{i}") for i in chunk
        ]
        t = time.perf_counter()
        for i, r in zip(chunk, api.trigger_many(ctx, requests), strict=True):
            ids[i] = r.incident_id
        out.trigger_busy += time.perf_counter() - t
        out.due.extend(started_wall + (t - started) for _ in chunk)
        waiting.extend(i for i in chunk if workload.acked(i))
        if len(waiting) >= BATCH:
            acknowledge(waiting[:BATCH])
            waiting = waiting[BATCH:]
        await asyncio.sleep(0)
    if waiting:
        acknowledge(waiting)
    out.wall = time.perf_counter() - started
    out.ended = started_wall + out.wall
    return out


def run_watchkeeper(url: str, database: str, mode: str, opts: argparse.Namespace, tag: str) -> Result:
    """One run on a fresh database: the engine running, the workload driven through engine.api."""
    ctx = setup(url)
    runner = running_engine(ctx, opts.engine)
    ids: dict[int, int] = {}

    def trigger(i: int) -> None:
        ids[i] = api.trigger(ctx, policy="busy", summary=f"Incident {tag}{i}", key=f"{tag}{i}").incident_id

    def acknowledge(i: int) -> None:
        api.acknowledge(ctx, ids[i], by="operator")

    async def go() -> Stream:
        if mode == "batch":
            stream = await _batches(ctx, opts.n, tag, ids)
        else:
            stream = await workload.drive(trigger, acknowledge, **_stream_kwargs(mode, opts))
        await workload.wait_for_pages(stream, lambda: _unacked_pages(ctx))
        return stream

    try:
        stream = asyncio.run(go())
    finally:
        runner.stop()
    calls = stream.triggers if mode != "batch" else -(-stream.triggers // BATCH)
    acks = stream.acks if mode != "batch" else -(-stream.acks // BATCH)
    pages, acked_at = _written(ctx, ids)
    ctx.db.dispose()
    result = Result(
        engine="watchkeeper" if mode != "batch" else "watchkeeper batches", mode=mode, database=database
    )
    result.calls, result.ack_calls = calls, acks
    result.extra["runner_errors"] = getattr(runner, "errors", 0)
    return workload.judge(result, stream, pages, acked_at)


def _stream_kwargs(mode: str, opts: argparse.Namespace) -> dict[str, Any]:
    return workload.stream_for(
        {"mode": mode, "n": opts.n, "rate": opts.paced_rate, "seconds": opts.paced_seconds}
    )


# --------------------------------------------------------------------------------------------------------
# The raw sqlite3 baseline
# --------------------------------------------------------------------------------------------------------

RAW_SCHEMA = """
CREATE TABLE incident (id INTEGER PRIMARY KEY, key TEXT NOT NULL, summary TEXT NOT NULL, severity TEXT NOT NULL,
    status TEXT NOT NULL, policy_id INTEGER, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    acknowledged_at TEXT, acknowledged_by TEXT);
CREATE UNIQUE INDEX ux_incident_open_key ON incident (key) WHERE status IN ('open', 'acknowledged');
CREATE TABLE escalation (id INTEGER PRIMARY KEY, incident_id INTEGER NOT NULL REFERENCES incident (id),
    policy_id INTEGER, state TEXT NOT NULL, current_level INTEGER NOT NULL, next_action_at TEXT,
    started_at TEXT NOT NULL, updated_at TEXT NOT NULL, acknowledged_at TEXT);
CREATE INDEX ix_escalation_due ON escalation (state, next_action_at);
CREATE INDEX ix_escalation_incident ON escalation (incident_id, state);
CREATE TABLE event (id INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, incident_id INTEGER,
    escalation_id INTEGER, actor TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX ix_event_incident ON event (incident_id, id);
CREATE TABLE outbox (id INTEGER PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, incident_id INTEGER,
    escalation_id INTEGER, person TEXT, level INTEGER, channel TEXT NOT NULL, address TEXT NOT NULL,
    body TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX ix_outbox_incident ON outbox (incident_id);
"""


def run_sqlite3(path: str, opts: argparse.Namespace, tag: str) -> Result:
    """4 rows and one commit per trigger; 2 UPDATEs, an event and one commit per acknowledgement."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(RAW_SCHEMA)
    ids: dict[int, tuple[int, int]] = {}

    def trigger(i: int) -> None:
        at = _now_text()
        conn.execute("BEGIN IMMEDIATE")
        inc = conn.execute(
            "INSERT INTO incident (key, summary, severity, status, policy_id, created_at, updated_at) "
            "VALUES (?, ?, 'high', 'open', 1, ?, ?)",
            (f"{tag}{i}", f"Incident {tag}{i}", at, at),
        ).lastrowid
        esc = conn.execute(
            "INSERT INTO escalation (incident_id, policy_id, state, current_level, next_action_at, started_at, "
            "updated_at) VALUES (?, 1, 'active', 1, ?, ?, ?)",
            (inc, at, at, at),
        ).lastrowid
        conn.execute(
            "INSERT INTO event (at, kind, incident_id, escalation_id, actor, data) "
            "VALUES (?, 'triggered', ?, ?, 'operator', '{}')",
            (at, inc, esc),
        )
        conn.execute(
            "INSERT INTO outbox (idempotency_key, incident_id, escalation_id, person, level, channel, address, "
            "body, status, created_at) VALUES (?, ?, ?, 'p1', 1, 'sms', '+27820000001', ?, 'pending', ?)",
            (f"{esc}:1:0:p1:0", inc, esc, f"Incident {tag}{i}", at),
        )
        conn.execute("COMMIT")
        ids[i] = (int(inc or 0), int(esc or 0))

    def acknowledge(i: int) -> None:
        at = _now_text()
        inc, esc = ids[i]
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE incident SET status = 'acknowledged', acknowledged_at = ?, acknowledged_by = 'operator', "
            "updated_at = ? WHERE id = ?",
            (at, at, inc),
        )
        conn.execute(
            "UPDATE escalation SET state = 'acknowledged', acknowledged_at = ?, next_action_at = NULL, "
            "updated_at = ? WHERE id = ?",
            (at, at, esc),
        )
        conn.execute(
            "INSERT INTO event (at, kind, incident_id, escalation_id, actor, data) "
            "VALUES (?, 'acknowledged', ?, ?, 'operator', '{}')",
            (at, inc, esc),
        )
        conn.execute("COMMIT")

    return _raw_run("raw sqlite3", conn, trigger, acknowledge, opts)


def _now_text() -> str:
    """Now, in SQLite DATETIME's text form (as Watchkeeper stores times)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9 // 1000:06d}"


def _raw_run(
    name: str,
    conn: sqlite3.Connection,
    trigger: Callable[[int], None],
    acknowledge: Callable[[int], None],
    opts: argparse.Namespace,
) -> Result:
    """Drive a raw sqlite3 baseline through the workload's one-call loop and judge it."""
    stream = asyncio.run(workload.drive(trigger, acknowledge, n=opts.n))
    conn.close()
    result = Result(engine=name, mode="single", database="sqlite")
    result.calls, result.ack_calls = stream.triggers, stream.acks
    result = workload.judge(result, stream, [])
    result.lost = 0  # no scheduler: nothing is paged beyond level 1, nothing is expected
    result.note = "no scheduler"
    return result


def run_sqlite3_own(path: str, opts: argparse.Namespace, tag: str) -> Result:
    """The same rows and commits as a Watchkeeper trigger and acknowledgement, into Watchkeeper's own tables
    (made by its migrations, every index included), with its connection settings, as plain sqlite3: per
    trigger the open-incident lookup by key, the incident row, the escalation row (with its policy snapshot),
    two events, one commit; per acknowledgement the incident's and the escalation's UPDATEs, the pages' and
    their pending messages' cancellation, one event, one commit. What it leaves out is Watchkeeper's own
    Python and its reads (the policy, the rows it changes)."""
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
    conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(
        "INSERT INTO policy (name, description, version, enabled, severity_filter, triggers, max_escalations, "
        "cooldown_seconds, business_hours_only, business_days, business_start, business_end, timezone, "
        "created_at, updated_at) VALUES ('busy', '', 1, 1, '[]', '[\"unacknowledged\"]', 10, 0, 0, "
        "'[0, 1, 2, 3, 4]', '08:00', '17:00', 'Africa/Johannesburg', '2026-01-01', '2026-01-01')"
    )
    snapshot = json.dumps(
        {
            "id": 1,
            "name": "busy",
            "version": 1,
            "levels": [
                {
                    "level": n,
                    "delay_seconds": 0 if n == 1 else 3,
                    "repeat_count": 0,
                    "repeat_interval_seconds": 300,
                    "require_ack": True,
                    "auto_resolve_seconds": 0,
                    "targets": [{"type": "person", "identifier": f"p{n}", "name": ""}],
                }
                for n in (1, 2, 3)
            ],
        }
    )
    ids: dict[int, tuple[int, int]] = {}
    open_statuses = "('open', 'acknowledged', 'in_progress', 'escalated')"

    def trigger(i: int) -> None:
        at, key = _now_text(), f"{tag}{i}"
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            f'SELECT id, "key", status, trigger_count FROM incident WHERE "key" = ? AND status IN {open_statuses}',
            (key,),
        ).fetchall()
        inc = conn.execute(
            'INSERT INTO incident ("key", source, summary, details, severity, category, site, status, sensitive, '
            "reporter_name, reporter_contact, reporter_language, team_id, policy_id, custom, trigger_count, "
            "sla_computed_at, response_due_at, resolution_due_at, response_warn_at, resolution_warn_at, created_at, "
            "updated_at, last_triggered_at) VALUES (?, 'operator', ?, '', 'high', 'general', '', 'open', 0, NULL, "
            "NULL, 'en', NULL, 1, '{}', 1, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (key, f"Incident {key}", at, at, at, at, at, at, at, at),
        ).fetchone()[0]
        esc = conn.execute(
            'INSERT INTO escalation (incident_id, policy_id, policy_name, policy_snapshot, state, "trigger", '
            "current_level, repeat_no, repeat_base, level_rounds, next_action_at, escalation_count, "
            "notification_count, trigger_count, started_at, updated_at) VALUES (?, 1, 'busy', ?, 'pending', "
            "'unacknowledged', 0, 0, 0, '{}', ?, 0, 0, 1, ?, ?) RETURNING id",
            (inc, snapshot, at, at, at),
        ).fetchone()[0]
        conn.executemany(
            "INSERT INTO event (at, kind, incident_id, escalation_id, actor, message, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    at,
                    "triggered",
                    inc,
                    None,
                    "operator",
                    f"Incident {key}",
                    '{"severity": "high", "source": "operator", "policy": "busy"}',
                ),
                (
                    at,
                    "escalation_started",
                    inc,
                    esc,
                    "operator",
                    "escalation started with policy busy",
                    json.dumps(
                        {
                            "policy": "busy",
                            "trigger": "unacknowledged",
                            "first_action_at": at,
                            "waiting_business_hours": False,
                        }
                    ),
                ),
            ],
        )
        conn.execute("COMMIT")
        ids[i] = (int(inc), int(esc))

    def acknowledge(i: int) -> None:
        at = _now_text()
        inc, esc = ids[i]
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE incident SET status='acknowledged', updated_at=?, acknowledged_at=?, acknowledged_by='operator' "
            "WHERE id = ?",
            (at, at, inc),
        )
        conn.execute(
            "UPDATE escalation SET state='acknowledged', next_action_at=NULL, updated_at=?, acknowledged_at=?, "
            "acknowledged_by='operator' WHERE id = ?",
            (at, at, esc),
        )
        conn.execute(
            "UPDATE page SET status='cancelled', next_check_at=NULL WHERE incident_id = ? "
            "AND status IN ('active', 'held')",
            (inc,),
        )
        conn.execute(
            "UPDATE outbox_message SET status='cancelled', updated_at=? WHERE incident_id = ? AND status = "
            "'pending' AND kind = 'page'",
            (at, inc),
        )
        conn.execute(
            "INSERT INTO event (at, kind, incident_id, escalation_id, actor, message, data) VALUES (?, 'acknowledged', "
            "?, ?, 'operator', 'acknowledged by operator via console', ?)",
            (
                at,
                inc,
                esc,
                '{"from": "pending", "to": "acknowledged", "via": "console", "incident_from": "open"}',
            ),
        )
        conn.execute("COMMIT")

    return _raw_run(RAW_OWN, conn, trigger, acknowledge, opts)


# --------------------------------------------------------------------------------------------------------
# Peers (subprocesses in .venv-peers)
# --------------------------------------------------------------------------------------------------------


def peers_installed() -> bool:
    return PEERS_PYTHON.exists()


def run_peer(name: str, mode: str, opts: argparse.Namespace, directory: str) -> Result:
    cmd = [
        str(PEERS_PYTHON),
        "-m",
        f"bench.peers.{name}_driver",
        "--dir",
        directory,
        "--mode",
        mode,
        "--n",
        str(opts.n),
        "--rate",
        str(opts.paced_rate),
        "--seconds",
        str(opts.paced_seconds),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"peer {name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return Result.from_json(lines[-1])


# --------------------------------------------------------------------------------------------------------
# Runs, repetitions, printing
# --------------------------------------------------------------------------------------------------------


@contextmanager
def scratch() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="wk-bench-busy-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_one(engine: str, mode: str, opts: argparse.Namespace, tag: str) -> Result:
    """`engine`: watchkeeper (SQLite), watchkeeper-pg, sqlite3, or a peer's name."""
    gc.collect()
    with scratch() as directory:
        if engine == "watchkeeper":
            return run_watchkeeper(f"sqlite:///{directory}/bench.db", "sqlite", mode, opts, tag)
        if engine == "watchkeeper-pg":
            with fresh_pg(opts.pg) as url:
                return run_watchkeeper(url, "postgresql", mode, opts, tag)
        if engine == "sqlite3":
            return run_sqlite3(f"{directory}/raw.db", opts, tag)
        if engine == "sqlite3-own":
            return run_sqlite3_own(f"{directory}/raw.db", opts, tag)
        return run_peer(engine, mode, opts, directory)


def _s(x: float) -> str:
    return "—" if workload.isnan(x) else f"{x:.2f} s"


def _rate(x: float) -> str:
    return "—" if workload.isnan(x) else f"{x:,.0f}/s"


def describe(r: Result, n: int) -> str:
    parts = [f"{r.engine:20} {r.database:10} N={n} cores={cores()} load {r.load:.2f}:"]
    if r.mode == "paced":
        parts.append(
            f"{r.triggers} of {r.scheduled} scheduled triggers sent ({r.triggers / r.wall if r.wall else 0:,.0f}/s, "
            f"one by one), late p99 {_s(r.late_p99)};"
        )
    else:
        parts.append(f"triggers {_rate(r.trigger_rate)}, acks {_rate(r.ack_rate)};")
        if r.mode == "batch":
            parts.append(
                f"batches of {BATCH}: {r.calls / r.trigger_busy if r.trigger_busy else 0:,.1f} trigger batches/s, "
                f"{r.ack_calls / r.ack_busy if r.ack_busy else 0:,.1f} ack batches/s;"
            )
    if r.note != "no scheduler":
        parts.append(
            f"first page p99 {_s(r.first_p99)}, level 2 p99 {_s(r.level2_p99)}, level 3 p99 {_s(r.level3_p99)};"
        )
    parts.append(f"pages lost {r.lost}, twice {r.twice}, after ack {r.after_ack}")
    if r.dropped:
        parts.append(f"(dropped by misfire {r.dropped})")
    if r.extra.get("runner_errors"):
        parts.append(f"(engine pass errors: {r.extra['runner_errors']})")
    if r.extra.get("withdrawn_by_ack"):
        parts.append(f"(stamped after the ack's time but withdrawn by it: {r.extra['withdrawn_by_ack']})")
    return " ".join(parts)


class Table:
    """Results by column (engine + mode + database) and repetition."""

    def __init__(self) -> None:
        self.runs: dict[str, list[Result]] = {}

    def add(self, column: str, r: Result) -> None:
        self.runs.setdefault(column, []).append(r)

    def values(self, column: str, fn: Callable[[Result], float]) -> list[float]:
        return [v for r in self.runs.get(column, []) if not workload.isnan(v := fn(r))]

    def ratios(self, a: str, b: str, fn: Callable[[Result], float]) -> list[float]:
        """a/b within each repetition (the i-th run of each)."""
        return [
            fn(x) / fn(y)
            for x, y in zip(self.runs.get(a, []), self.runs.get(b, []), strict=False)
            if fn(y) and not workload.isnan(fn(x) / fn(y))
        ]


def spread(values: list[float], fmt: Callable[[float], str]) -> str:
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(values))}–{fmt(max(values))})"


def verdict(values: list[float], ok: Callable[[float], bool]) -> str:
    if not values:
        return "not measured"
    return "MET" if ok(statistics.median(values)) else "NOT MET"


def columns_for(figures: str, sqlite: bool, postgres: bool, peers: bool) -> list[tuple[str, str, str]]:
    """(column, engine, mode) of the repeated runs (figures a–e, g)."""
    out: list[tuple[str, str, str]] = []
    single = any(f in figures for f in "acde")
    if sqlite and single:
        out.append(("watchkeeper sqlite", "watchkeeper", "single"))
    if sqlite and "b" in figures:
        out.append(("watchkeeper sqlite batches", "watchkeeper", "batch"))
    if sqlite and any(f in figures for f in "ac"):
        out.append(("raw sqlite3", "sqlite3", "single"))
        out.append((RAW_OWN, "sqlite3-own", "single"))
    if sqlite and peers and single:
        out.extend((name, name, "single") for name in PEERS)
    if postgres and single:
        out.append(("watchkeeper postgresql", "watchkeeper-pg", "single"))
    if postgres and "b" in figures:
        out.append(("watchkeeper postgresql batches", "watchkeeper-pg", "batch"))
    return out


def paced_columns(sqlite: bool, postgres: bool, peers: bool) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    if sqlite:
        out.append(("watchkeeper sqlite paced", "watchkeeper", "paced"))
        if peers:
            out.extend((f"{name} paced", name, "paced") for name in PEERS)
    if postgres:
        out.append(("watchkeeper postgresql paced", "watchkeeper-pg", "paced"))
    return out


def repeat(
    table: Table, columns: list[tuple[str, str, str]], reps: int, opts: argparse.Namespace, label: str
) -> None:
    for rep in range(reps):
        shift = rep % len(columns)
        order = columns[shift:] + columns[:shift]
        print(f"-- {label} repetition {rep + 1}/{reps}: load average {load():.2f}", flush=True)
        for column, engine, mode in order:
            r = run_one(engine, mode, opts, tag=f"r{rep}-")
            table.add(column, r)
            print(f"   {describe(r, r.triggers)}", flush=True)


def pg_reachable(url: str) -> bool:
    try:
        engine = make_engine(url, pool_size=1)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception as exc:
        print(
            f"PostgreSQL at {url.split('@')[-1]} not reachable ({type(exc).__name__}): its runs are skipped"
        )
        return False


def _trigger_rate(r: Result) -> float:
    return r.trigger_rate


def _ack_rate(r: Result) -> float:
    return r.ack_rate


def _sent_rate(r: Result) -> float:
    return r.triggers / r.wall if r.wall else float("nan")


def _sent_share(r: Result) -> float:
    return r.triggers / r.scheduled if r.scheduled else float("nan")


def _count(x: float) -> str:
    return f"{x:,.0f}"


def _secs(x: float) -> str:
    return f"{x:.2f} s"


def _times(x: float) -> str:
    return f"{x:.2f}×"


def _share(x: float) -> str:
    return f"{x:.0%}"


LAGS: list[tuple[str, Callable[[Result], float]]] = [
    ("level-2 lag p99", lambda r: r.level2_p99),
    ("level-3 lag p99", lambda r: r.level3_p99),
    ("trigger -> first page p99", lambda r: r.first_p99),
]
# (figure, its value in a run, format, which runs show it: "rate" one-call/batch runs, "paced", "lag" any run
# with a scheduler, "all")
ROWS: list[tuple[str, Callable[[Result], float], Callable[[float], str], str]] = [
    ("durable triggers/s (a, b)", _trigger_rate, _count, "rate"),
    ("acknowledgements/s (c, b)", _ack_rate, _count, "rate"),
    (
        "trigger batches/s (b)",
        lambda r: r.calls / r.trigger_busy if r.trigger_busy else float("nan"),
        _count,
        "batch",
    ),
    (
        "acknowledgement batches/s (b)",
        lambda r: r.ack_calls / r.ack_busy if r.ack_busy else float("nan"),
        _count,
        "batch",
    ),
    ("level-2 lag p99 while triggers arrive (d, f)", LAGS[0][1], _secs, "lag"),
    ("level-3 lag p99 while triggers arrive (d, f)", LAGS[1][1], _secs, "lag"),
    ("trigger -> first page p99 (e, f)", LAGS[2][1], _secs, "lag"),
    ("paced: triggers sent/s (f)", _sent_rate, _count, "paced"),
    ("paced: share of the scheduled triggers sent (f)", _sent_share, _share, "paced"),
    ("paced: triggers left late p99 (f)", lambda r: r.late_p99, _secs, "paced"),
    ("pages lost (g)", lambda r: float(r.lost), _count, "lag"),
    ("pages twice (g)", lambda r: float(r.twice), _count, "all"),
    ("pages after an acknowledgement (g)", lambda r: float(r.after_ack), _count, "all"),
]


def _shown(kind: str, r: Result) -> bool:
    if kind == "rate":
        return r.mode != "paced"
    if kind in ("batch", "paced"):
        return r.mode == kind
    if kind == "lag":
        return r.note != "no scheduler"
    return True


Goal = tuple[str, list[float], Callable[[float], str], str, Callable[[float], bool] | None]


def goals(table: Table, opts: argparse.Namespace) -> list[Goal]:
    """The issue's goals: (what, the per-repetition values or ratios, format, target, test of the median)."""
    wk, raw, batches = "watchkeeper sqlite", "raw sqlite3", "watchkeeper sqlite batches"
    pg, pg_batches = "watchkeeper postgresql", "watchkeeper postgresql batches"
    out: list[Goal] = []
    # The baselines and peers single calls are compared with: (column, target, test of the median ratio).
    against: list[tuple[str, str, Callable[[float], bool] | None]] = [
        (RAW_OWN, "≥ 0.5×", lambda v: v >= 0.5),
        (raw, "", None),
        ("truthound", "≥ 5×", lambda v: v >= 5),
        ("apscheduler", "", None),
    ]
    for what, fn in (("triggers", _trigger_rate), ("acks", _ack_rate)):
        for other, target, ok in against:
            out.append(
                (f"Watchkeeper single {what} / {other}", table.ratios(wk, other, fn), _times, target, ok)
            )
    for column, floor in ((batches, 10_000), (pg_batches, 5_000)):
        for what, fn in (("trigger_many", _trigger_rate), ("acknowledge_many", _ack_rate)):
            out.append(
                (
                    f"{column}: {what} of {BATCH}",
                    table.values(column, fn),
                    _count,
                    f"≥ {floor:,}/s",
                    lambda v, f=floor: v >= f,
                )
            )
    for what, fn in (("triggers", _trigger_rate), ("acks", _ack_rate)):
        out.append((f"{pg}: single {what}/s", table.values(pg, fn), _count, "≥ 2× the figure before", None))
    for column in (wk, batches, pg, pg_batches):
        out.extend(
            (f"{column}: {what}, unpaced", table.values(column, fn), _secs, "", None) for what, fn in LAGS
        )
    for column in ("watchkeeper sqlite paced", "watchkeeper postgresql paced"):
        out.append(
            (
                f"{column}: scheduled triggers sent",
                table.values(column, _sent_share),
                _share,
                "≥ 99%",
                lambda v: v >= 0.99,
            )
        )
        out.extend(
            (
                f"{column} at {opts.paced_rate:,.0f}/s: {what}",
                table.values(column, fn),
                _secs,
                "≤ 1 s",
                lambda v: v <= 1.0,
            )
            for what, fn in LAGS
        )
    return out


def report(table: Table, opts: argparse.Namespace) -> None:
    """The final table: figures by engine (median and range over the repetitions), then the goals' ratios."""
    print()
    print(
        f"== Figures: median (range) over the runs; N={opts.n} per run, {cores()} cores, load average {load():.2f}"
    )
    for column, runs in table.runs.items():
        print(f"{column} ({len(runs)} runs, {runs[0].database}):")
        for name, fn, fmt, kind in ROWS:
            values = table.values(column, fn)
            if values and _shown(kind, runs[0]):
                print(f"    {name:50} {spread(values, fmt)}")
    print()
    print(
        f"== Goals (issue #17): median (range) of the per-repetition figures and ratios; load average {load():.2f}"
    )
    for name, values, fmt, target, ok in goals(table, opts):
        if values:
            mark = f"  [{target}: {verdict(values, ok)}]" if ok else (f"  [{target}]" if target else "")
            print(f"  {name:66} {spread(values, fmt)}{mark}")
    bad = {
        c: sum(r.lost + r.twice + r.after_ack for r in runs)
        for c, runs in table.runs.items()
        if c.startswith("watchkeeper")
    }
    print(
        "  Watchkeeper pages lost + twice + after an acknowledgement, summed over its runs: "
        + (", ".join(f"{c} {v}" for c, v in bad.items()) or "—")
        + f"  [0: {'MET' if not any(bad.values()) else 'NOT MET'}]"
    )


def parse_figures(value: str) -> str:
    letters = "".join(c for c in value.lower() if c.isalpha())
    unknown = set(letters) - set(FIGURES)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown figure(s) {''.join(sorted(unknown))}: choose from {FIGURES}"
        )
    return letters


class _Counted(logging.FileHandler):
    """The engine's log in a file, counting its warnings and errors."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.warnings = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.warnings += record.levelno >= logging.WARNING
        super().emit(record)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="incidents per run (figures a–e)")
    p.add_argument("--reps", type=int, default=7, help="interleaved repetitions of figures a–e")
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument(
        "--engine",
        choices=["process", "thread"],
        default="process",
        help="Watchkeeper's engine in a process of its own (as the console and serve run it) or as threads "
        "of the benchmark's process",
    )
    p.add_argument("--paced-rate", type=float, default=1000.0, help="paced triggers per second (figure f)")
    p.add_argument(
        "--paced-seconds", type=float, default=20.0, help="how long each paced run offers triggers"
    )
    p.add_argument("--paced-reps", type=int, default=1, help="interleaved repetitions of figure f")
    p.add_argument("--only", type=parse_figures, default=FIGURES, help="figures to measure, e.g. a,c or f")
    p.add_argument(
        "--pg",
        default=os.environ.get("WATCHKEEPER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="an administrative PostgreSQL URL: each run creates (and drops) a database of its own",
    )
    opts = p.parse_args(argv)
    sqlite = opts.db in ("sqlite", "both")
    postgres = opts.db in ("postgres", "both") and pg_reachable(opts.pg)
    peers = peers_installed()
    databases = [
        name for name, on in (("SQLite (WAL, synchronous=NORMAL)", sqlite), ("PostgreSQL", postgres)) if on
    ]
    print(
        f"bench_busy: N={opts.n} per run, {opts.reps} repetitions, paced {opts.paced_rate:,.0f}/s for "
        f"{opts.paced_seconds:.0f} s × {opts.paced_reps}; databases: {', '.join(databases) or 'none'}; "
        f"cores {cores()}; load average {load():.2f}"
    )
    if not peers:
        print(
            f"peers skipped: {PEERS_PYTHON.relative_to(ROOT)} not found; `make bench-peers` installs truthound "
            "3.2.0 and APScheduler 3.11 into their own venv"
        )
    log = _Counted(os.path.join(tempfile.gettempdir(), f"wk-bench-busy-{os.getpid()}.log"))
    log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[log], force=True)
    table = Table()
    columns = columns_for(opts.only, sqlite, postgres, peers)
    if columns:
        repeat(table, columns, opts.reps, opts, "figures a–e")
    if "f" in opts.only:
        paced = paced_columns(sqlite, postgres, peers)
        if paced:
            repeat(table, paced, opts.paced_reps, opts, f"paced at {opts.paced_rate:,.0f}/s")
    report(table, opts)
    print(f"engine log: {log.warnings} warnings or errors, in {log.baseFilename}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
