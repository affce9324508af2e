"""The console's engine in a process of its own (engine.engine_process), and wake-ups between processes on one
SQLite file (engine.wakeup): pages go out at once though the engine is another process, the engine takes the
console's settings as they change, and it never outlives the console.

Real processes (`watchkeeper engine --control`) on real databases. Every pass's tick is set to a minute, so a
page written within seconds can only come from a wake-up; the waits poll the database, with a deadline far
above what the wake-up takes (0.2 s here) and far below the tick.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select

from engine import api, migrate, wakeup
from engine.bootstrap import open_context
from engine.context import AppContext
from engine.db import make_engine
from engine.engine_process import EngineProcess
from engine.models import EngineNode, Event, OutboxMessage
from engine.settings import Settings
from tests.engine.escalation.helpers import add_person, add_policy

TICK = 60.0
PROMPTLY = 10.0  # seconds: far above a wake-up, far below a tick


def _eventually(what: Callable[[], bool], within: float = PROMPTLY) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if what():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not within {within} s")


@pytest.fixture
def centre(db_url: str) -> Iterator[AppContext]:
    settings = Settings(
        db=db_url,
        escalate_interval_seconds=TICK,
        dispatch_interval_seconds=TICK,
        confirm_interval_seconds=TICK,
        sla_interval_seconds=TICK,
        overdue_interval_seconds=TICK,
    )
    schema = make_engine(db_url)
    migrate.upgrade(schema)  # as `watchkeeper db upgrade` (PostgreSQL) or a first start does
    schema.dispose()
    ctx = open_context(settings, "test")
    add_person(ctx.sessions, "thandi", fallback_channels=[])
    add_policy(ctx.sessions, "night", [{"targets": [("person", "thandi")], "repeat_interval_seconds": 3600}])
    yield ctx
    ctx.db.dispose()


@pytest.fixture
def engine(centre: AppContext) -> Iterator[EngineProcess]:
    process = EngineProcess(centre)
    process.start()
    yield process
    process.stop(timeout=10)


def _pages(ctx: AppContext) -> int:
    with ctx.sessions() as s:
        return int(
            s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "page"))
        )


def test_the_engine_process_pages_at_once_and_stops_with_the_console(
    centre: AppContext, engine: EngineProcess
) -> None:
    assert engine.running
    api.trigger(centre, policy="night", summary="pump station 4 flooding", key="p4")
    _eventually(lambda: _pages(centre) == 1)
    engine.stop(timeout=10)
    assert not engine.running and engine.proc is not None and engine.proc.returncode == 0


def test_the_engine_process_beats_as_the_consoles_own_engine(
    centre: AppContext, engine: EngineProcess
) -> None:
    """Its heartbeat is the console's node: the console counts it as its own engine, not another one (and so
    asks before quitting stops the only engine)."""

    def beating() -> bool:
        with centre.sessions() as s:
            return s.scalar(select(EngineNode.status).where(EngineNode.id == centre.node_id)) == "running"

    _eventually(beating)
    with centre.sessions() as s:
        assert s.scalar(select(func.count()).select_from(EngineNode)) == 1


def test_an_engine_whose_console_is_gone_stops(centre: AppContext, engine: EngineProcess) -> None:
    """The console killed: its end of the pipe closes without a word, and the engine stops all the same."""
    assert engine.proc is not None and engine.proc.stdin is not None
    engine.proc.stdin.close()
    _eventually(lambda: engine.proc is not None and engine.proc.poll() is not None)
    assert engine.proc.returncode == 0


def test_the_engine_process_takes_the_consoles_new_settings(
    centre: AppContext, engine: EngineProcess
) -> None:
    """No channel is set up: the first page is skipped. The supervisor turns on simulated sending in
    Settings; the engine process sends the next page without a restart."""
    api.trigger(centre, policy="night", summary="first", key="a")
    with centre.sessions() as s:
        first = s.scalar(select(func.min(Event.id)))

    def skipped() -> bool:
        with centre.sessions() as s:
            return bool(
                s.scalar(select(func.count()).where(Event.kind == "message_skipped", Event.id > first))
            )

    _eventually(skipped)
    centre.settings.simulated_channels = ["all"]
    # No wait needed: the engine reads its input in order, so the settings line is applied before the wake-up
    # the next trigger sends behind it (and the passes' ticks are a minute away).
    centre.settings_changed()
    api.trigger(centre, policy="night", summary="second", key="b")

    def delivered() -> bool:
        with centre.sessions() as s:
            return bool(
                s.scalar(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.kind == "page", OutboxMessage.status.in_(["sent", "delivered"]))
                )
            )

    _eventually(delivered)


def test_another_process_on_a_sqlite_file_wakes_its_engine(centre: AppContext, engine: EngineProcess) -> None:
    """`watchkeeper trigger` from a shell, or a second console, beside an engine on the same SQLite file:
    the trigger's commit wakes that engine (PostgreSQL's engines hear NOTIFY instead)."""
    url = centre.db.url.render_as_string(hide_password=False)
    sender = wakeup.sender_for(url)
    if sender is None:
        pytest.skip("PostgreSQL wakes engines with NOTIFY")
    centre.wake = sender  # as in a process that has no engine of its own
    api.trigger(centre, policy="night", summary="from the command line", key="cli")
    _eventually(lambda: _pages(centre) == 1)
