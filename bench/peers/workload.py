"""The busy-centre workload of bench/bench_busy.py, the same for every engine (standard library only).

Imported by bench/bench_busy.py (Watchkeeper and the raw sqlite3 baseline, in its own process) and by the peer
drivers beside this file (run with the peers' own venv), so each engine is driven by the same loop and judged
by the same arithmetic:

- N incidents, triggered one after another (as fast as the engine takes them, or paced: one every 1/rate
  seconds on a fixed schedule, each counted from when it was due so a stall is not hidden);
- a policy of 3 levels, one person each: level 1 at once, level 2 at +3 s, level 3 at +6 s;
- every other incident (the odd ones) acknowledged right after its trigger;
- at the end: the lag of each level's page behind its nominal due time (the trigger's due time + 0 / 3 / 6 s),
  and the pages lost, written twice, or written after the incident's acknowledgement.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

LEVEL_OFFSETS = (0.0, 3.0, 6.0)  # seconds after the trigger each level is due
LEVEL_DELAY = 3.0  # each level after the one before it (how both Watchkeeper and truthound express it)
# After the last trigger: its level 3 is due LEVEL_OFFSETS[-1] later; give the engine this long beyond that.
DRAIN_SECONDS = 20.0


def acked(i: int) -> bool:
    """Every other incident is acknowledged right after its trigger."""
    return i % 2 == 1


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Stream:
    """What driving the triggers and acknowledgements recorded (epoch seconds, as time.time())."""

    due: list[float] = field(default_factory=list)  # when each trigger was issued (paced: was due)
    trigger_busy: float = 0.0  # seconds spent inside trigger calls
    ack_busy: float = 0.0  # seconds spent inside acknowledgement calls
    acks: int = 0
    ack_done: dict[int, float] = field(default_factory=dict)  # incident index -> when its ack returned
    late: list[float] = field(default_factory=list)  # paced: how late each trigger left (s)
    scheduled: int = 0  # paced: triggers due within the run (those past its end were not sent)
    wall: float = 0.0
    ended: float = 0.0  # time.time() when the last call returned

    @property
    def triggers(self) -> int:
        return len(self.due)


async def _call(fn: Callable[[int], Any], i: int) -> Any:
    out = fn(i)
    if inspect.isawaitable(out):
        out = await out
    return out


async def drive(
    trigger: Callable[[int], Any],
    acknowledge: Callable[[int], Any],
    *,
    n: int,
    rate: float | None = None,
    seconds: float | None = None,
    yield_each: bool = False,
) -> Stream:
    """Trigger incidents 0, 1, 2… one call each (sync or async callables), acknowledging the odd ones right
    after their trigger. Unpaced: N of them, back to back. Paced (`rate`): one due every 1/rate seconds from the
    start for `seconds` (N is then ignored); a trigger that leaves late counts from when it was due, and the
    triggers still unsent when the `seconds` are up are not sent (`scheduled` says how many were due).
    `yield_each`: give the event loop a turn after every call (an asyncio engine's scheduler runs in it)."""
    out = Stream()
    started_wall, started = time.time(), time.perf_counter()
    limit = n if rate is None else int(rate * (seconds or 0.0))
    out.scheduled = limit
    for i in range(limit):
        due = None
        if rate is not None:
            if time.perf_counter() - started >= (seconds or 0.0):
                break  # the engine fell behind the schedule: the rest were due and never sent
            due = started + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            elif yield_each:
                await asyncio.sleep(0)
        t = time.perf_counter()
        out.due.append(started_wall + ((due if due is not None else t) - started))
        if due is not None:
            out.late.append(max(0.0, t - due))
        await _call(trigger, i)
        t2 = time.perf_counter()
        out.trigger_busy += t2 - t
        if yield_each:
            await asyncio.sleep(0)
        if acked(i):
            t3 = time.perf_counter()
            await _call(acknowledge, i)
            t4 = time.perf_counter()
            out.ack_busy += t4 - t3
            out.acks += 1
            out.ack_done[i] = started_wall + (t4 - started)
            if yield_each:
                await asyncio.sleep(0)
    out.wall = time.perf_counter() - started
    out.ended = started_wall + out.wall
    return out


def drain_deadline(stream: Stream) -> float:
    """time.time() by which every page of the run must have been written."""
    return (stream.due[-1] if stream.due else time.time()) + LEVEL_OFFSETS[-1] + DRAIN_SECONDS


def wanted_pages(stream: Stream) -> int:
    """Pages every unacknowledged incident must get: all its levels."""
    return sum(1 for i in range(stream.triggers) if not acked(i)) * len(LEVEL_OFFSETS)


async def wait_for_pages(stream: Stream, progress: Callable[[], int]) -> None:
    """Until `progress()` (pages written, plus any the engine dropped) reaches what the run needs, or the drain
    deadline; polled while the engine runs (an asyncio engine's scheduler in this loop)."""
    wanted, deadline = wanted_pages(stream), drain_deadline(stream)
    while time.time() < deadline and progress() < wanted:
        await asyncio.sleep(0.2)


@dataclass
class Result:
    """One run of one engine in one mode: its figures and its correctness counts (JSON between processes)."""

    engine: str
    mode: str
    database: str
    triggers: int = 0
    trigger_busy: float = 0.0
    acks: int = 0
    ack_busy: float = 0.0
    wall: float = 0.0
    calls: int = 0  # trigger calls made (batches: one per batch)
    ack_calls: int = 0
    first_p99: float = float("nan")  # trigger -> first (level 1) page
    level2_p99: float = float("nan")
    level3_p99: float = float("nan")
    first_median: float = float("nan")
    level2_median: float = float("nan")
    level3_median: float = float("nan")
    late_p99: float = float("nan")  # paced: how late the triggers left
    scheduled: int = 0  # paced: triggers due within the run; more than `triggers` when it fell behind
    pages: int = 0
    lost: int = 0
    twice: int = 0
    after_ack: int = 0
    dropped: int = 0  # pages the engine itself gave up (APScheduler's misfires), counted in `lost` too
    load: float = 0.0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def trigger_rate(self) -> float:
        return self.triggers / self.trigger_busy if self.trigger_busy else float("nan")

    @property
    def ack_rate(self) -> float:
        return self.acks / self.ack_busy if self.ack_busy else float("nan")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Result:
        return cls(**json.loads(text))


def judge(
    result: Result,
    stream: Stream,
    pages: Iterable[tuple[Any, ...]],
    acked_at: dict[int, float] | None = None,
) -> Result:
    """Fill `result` from the stream and the pages written: (incident index, level 1-3, person, written at),
    optionally with a fifth item, True when the acknowledgement itself withdrew that page in its transaction
    (the page was written before the acknowledgement committed, whatever its time stamp says: not a page
    after the acknowledgement; counted in `extra["withdrawn_by_ack"]`). `acked_at`: when each acknowledged
    incident was acknowledged by the engine's own record (default: when the acknowledgement call returned)."""
    acked_at = stream.ack_done if acked_at is None else acked_at
    result.triggers, result.trigger_busy = stream.triggers, stream.trigger_busy
    result.acks, result.ack_busy, result.wall = stream.acks, stream.ack_busy, stream.wall
    result.scheduled = stream.scheduled
    if stream.late:
        result.late_p99 = percentile(stream.late, 0.99)
    lags: dict[int, list[float]] = {1: [], 2: [], 3: []}
    seen: dict[tuple[int, int, Any], int] = {}
    levels: dict[int, set[int]] = {}
    withdrawn = 0
    for i, level, person, at, *rest in pages:
        if not 0 <= i < stream.triggers:
            continue
        result.pages += 1
        seen[(i, level, person)] = seen.get((i, level, person), 0) + 1
        levels.setdefault(i, set()).add(level)
        if i in acked_at and at > acked_at[i]:
            if rest and rest[0]:
                withdrawn += 1
            else:
                result.after_ack += 1
        if not acked(i) and level in lags:
            lags[level].append(at - (stream.due[i] + LEVEL_OFFSETS[level - 1]))
    result.twice = sum(c - 1 for c in seen.values())
    every = set(range(1, len(LEVEL_OFFSETS) + 1))
    result.lost = sum(len(every - levels.get(i, set())) for i in range(stream.triggers) if not acked(i))
    result.first_p99, result.first_median = percentile(lags[1], 0.99), percentile(lags[1], 0.5)
    result.level2_p99, result.level2_median = percentile(lags[2], 0.99), percentile(lags[2], 0.5)
    result.level3_p99, result.level3_median = percentile(lags[3], 0.99), percentile(lags[3], 0.5)
    if withdrawn:
        result.extra["withdrawn_by_ack"] = withdrawn
    result.load = os.getloadavg()[0]
    return result


def driver_args(argv: Sequence[str]) -> dict[str, Any]:
    """The peer drivers' command line: --mode single|paced --n N --rate R --seconds S --dir DIR."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["single", "paced"], default="single")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--dir", required=True)
    return vars(p.parse_args(argv))


def stream_for(args: dict[str, Any]) -> dict[str, Any]:
    """`drive` keyword arguments for a driver's mode."""
    if args["mode"] == "paced":
        return {"n": 0, "rate": args["rate"], "seconds": args["seconds"]}
    return {"n": args["n"]}


def emit(result: Result) -> None:
    """A driver's answer: its one JSON line, last on stdout."""
    sys.stdout.write(result.to_json() + "\n")
    sys.stdout.flush()


def isnan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)
