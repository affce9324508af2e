"""The busy-centre workload (bench/peers/workload.py) on truthound 3.2's checkpoint escalation engine.

    .venv-peers/bin/python -m bench.peers.truthound_driver --dir DIR [--mode single|paced] [--n N]
        [--rate R] [--seconds S]

Run by bench/bench_busy.py in the peers' venv (`make bench-peers`); prints one JSON line (workload.Result).

What truthound does, as its API allows and as favourably to it as it allows:
- the engine: `truthound.checkpoint.escalation.EscalationEngine` with its durable store, `store_type="sqlite"`
  (`SQLiteEscalationStore`, one file in DIR), and its own default scheduler running (`AsyncioScheduler`,
  started by `engine.start()` inside this process's event loop). The store's connection is switched to
  journal_mode=WAL and synchronous=NORMAL, the settings Watchkeeper and the raw sqlite3 baseline run with
  (truthound's own default is SQLite's rollback journal with synchronous=FULL: slower).
- the policy: 3 levels, one target each (`EscalationTarget` USER p1, p2, p3); level 1 `delay_minutes=0`,
  levels 2 and 3 `delay_minutes=0.05` (3 s; truthound schedules each level that long after the one before it
  was paged, as Watchkeeper does).
- per trigger: `await engine.trigger(str(i), policy_name="busy")`: under its asyncio lock one SELECT of the
  incident's records, level 1's notification handler called inline, an asyncio task scheduled for level 2,
  and one `INSERT OR REPLACE` of the record with its commit.
- per acknowledgement: `await engine.acknowledge(record_id, "operator")`: a SELECT of the record, the state
  transition, the level task cancelled (in memory), `INSERT OR REPLACE` and commit.
- a page: the notification handler being called (recorded in memory with time.time(): no durable write, which
  favours truthound); levels 2 and 3 run from the scheduler's asyncio tasks, which read the record back and
  save it. The driving loop yields to the event loop after every call so those tasks run while triggers go on.
- acknowledged at: when `acknowledge` returned. Its scheduled jobs live only in memory (a restart forgets
  them); that is truthound's design and is not counted against it here.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.peers import workload  # noqa: E402


async def run(args: dict) -> workload.Result:
    import logging

    from truthound.checkpoint.escalation import (
        EscalationEngine,
        EscalationLevel,
        EscalationPolicy,
        EscalationTarget,
        SchedulerConfig,
        SchedulerType,
        TargetType,
    )
    from truthound.checkpoint.escalation.engine import EscalationEngineConfig

    logging.disable(logging.CRITICAL)
    pages: list[tuple[int, int, str, float]] = []

    async def notify(record, level, targets) -> bool:
        at = time.time()
        for target in targets:
            pages.append((int(record.incident_id), level.level, target.identifier, at))
        return True

    path = os.path.join(args["dir"], "truthound.db")
    engine = EscalationEngine(
        EscalationEngineConfig(
            store_type="sqlite",
            store_config={"database": path},
            scheduler_config=SchedulerConfig(scheduler_type=SchedulerType.ASYNCIO),
            default_notification_handler=notify,
            check_business_hours=False,
        )
    )
    conn = engine.store._get_connection()  # the store's own (thread-local) connection, this thread's
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    delay = workload.LEVEL_DELAY / 60
    engine.register_policy(
        EscalationPolicy(
            name="busy",
            levels=[
                EscalationLevel(
                    level=n,
                    delay_minutes=0 if n == 1 else delay,  # type: ignore[arg-type]
                    targets=[EscalationTarget(type=TargetType.USER, identifier=f"p{n}")],
                )
                for n in (1, 2, 3)
            ],
        )
    )
    await engine.start()
    records: dict[int, str] = {}

    async def trigger(i: int) -> None:
        result = await engine.trigger(str(i), policy_name="busy")
        assert result.success, result
        records[i] = result.record.id

    async def acknowledge(i: int) -> None:
        result = await engine.acknowledge(records[i], "operator")
        assert result.success, result

    stream = await workload.drive(trigger, acknowledge, yield_each=True, **workload.stream_for(args))
    await workload.wait_for_pages(stream, lambda: sum(1 for p in pages if not workload.acked(p[0])))
    await engine.stop()
    result = workload.Result(engine="truthound", mode=args["mode"], database="sqlite")
    result.calls, result.ack_calls = stream.triggers, stream.acks
    return workload.judge(result, stream, pages)


def main(argv: list[str]) -> int:
    args = workload.driver_args(argv)
    workload.emit(asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
