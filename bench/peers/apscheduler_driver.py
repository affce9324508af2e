"""The busy-centre workload (bench/peers/workload.py) on APScheduler 3.11 with its SQLAlchemy job store.

    .venv-peers/bin/python -m bench.peers.apscheduler_driver --dir DIR [--mode single|paced] [--n N]
        [--rate R] [--seconds S]

Run by bench/bench_busy.py in the peers' venv (`make bench-peers`); prints one JSON line (workload.Result).

APScheduler is a scheduler, not an escalation engine: the escalation is built from its parts the plain way.
- the engine: a `BackgroundScheduler` (its own thread, its default executor: a pool of 10 threads) with one
  `SQLAlchemyJobStore` on a SQLite file in DIR, through an SQLAlchemy engine whose connections use
  journal_mode=WAL and synchronous=NORMAL (the settings Watchkeeper and the raw sqlite3 baseline run with).
- per trigger: three `add_job(page, "date", run_date=…, id="<i>-<level>")` calls, one per level, due at the
  trigger's time + 0, 3 and 6 s: each pickles the job and INSERTs it into the job store with its own commit.
- per acknowledgement: `remove_job("<i>-<level>")` for each level (a DELETE and commit each; a job already
  run is gone and answers JobLookupError, ignored).
- a page: the job function running in the executor (recorded in memory with time.time(): no durable write,
  which favours APScheduler). The scheduler thread finds due jobs with a SELECT, hands each to the executor
  and DELETEs it from the store.
- APScheduler's misfire handling is left as it ships (`misfire_grace_time` 1 s): a job that the scheduler
  reaches more than 1 s after its run time is not run but dropped (EVENT_JOB_MISSED). Each dropped job is
  counted (`dropped`) and, for an unacknowledged incident, is a page lost.
- acknowledged at: when the last `remove_job` returned (a job already handed to the executor may still run
  after it: counted as a page after the acknowledgement).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.peers import workload  # noqa: E402

PAGES: list[tuple[int, int, str, float]] = []
MISSED: list[str] = []
_LOCK = threading.Lock()


def page(i: int, level: int, person: str) -> None:
    """The job: one level's page for incident i."""
    at = time.time()
    with _LOCK:
        PAGES.append((i, level, person, at))


def run(args: dict) -> workload.Result:
    import logging

    from apscheduler.events import EVENT_JOB_MISSED
    from apscheduler.jobstores.base import JobLookupError
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from sqlalchemy import create_engine, event

    logging.disable(logging.CRITICAL)
    db = create_engine(f"sqlite:///{os.path.join(args['dir'], 'apscheduler.db')}")

    @event.listens_for(db, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    scheduler = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(engine=db)}, timezone=UTC)

    def missed(ev) -> None:
        with _LOCK:
            MISSED.append(ev.job_id)

    scheduler.add_listener(missed, EVENT_JOB_MISSED)
    scheduler.start()

    def trigger(i: int) -> None:
        now = time.time()
        for level, offset in enumerate(workload.LEVEL_OFFSETS, start=1):
            scheduler.add_job(
                page,
                "date",
                run_date=datetime.fromtimestamp(now + offset, UTC),
                args=[i, level, f"p{level}"],
                id=f"{i}-{level}",
            )

    def acknowledge(i: int) -> None:
        for level in range(1, len(workload.LEVEL_OFFSETS) + 1):
            with contextlib.suppress(JobLookupError):
                scheduler.remove_job(f"{i}-{level}")

    def progress() -> int:
        with _LOCK:
            done = sum(1 for p in PAGES if not workload.acked(p[0]))
            return done + sum(1 for m in MISSED if not workload.acked(int(m.split("-")[0])))

    stream = asyncio.run(workload.drive(trigger, acknowledge, **workload.stream_for(args)))
    asyncio.run(workload.wait_for_pages(stream, progress))
    scheduler.shutdown(wait=True)
    result = workload.Result(engine="apscheduler", mode=args["mode"], database="sqlite")
    result.calls, result.ack_calls = stream.triggers, stream.acks
    result.dropped = len(MISSED)
    return workload.judge(result, stream, list(PAGES))


def main(argv: list[str]) -> int:
    args = workload.driver_args(argv)
    workload.emit(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
