"""The pass runner: passes on a scheduler, woken at once by new work, errors contained, heartbeats recorded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import api
from engine.context import AppContext
from engine.db import make_engine
from engine.models import EngineNode, OutboxMessage
from engine.runner import EngineRunner, _pass_confirm, _pass_escalate, run_once
from engine.settings import Settings

from .helpers import add_policy


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Wait for a background thread's effect (the runner's threads, not the engine's clock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _outbox_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


def test_run_once_runs_every_pass_and_reports_each(ctx: AppContext, sessions, people) -> None:
    ctx.settings.simulated_channels = ["all"]  # a rehearsal: the page is "delivered", nothing falls back
    add_policy(sessions, "water", [{"targets": [("person", "thandi")]}])
    api.trigger(ctx, policy="water", summary="Main burst")
    result = run_once(ctx)
    assert list(result)[:3] == ["escalate", "dispatch", "confirm"]
    assert {"poll", "sla", "overdue", "housekeeping"} <= set(result)
    assert result["escalate"]["done"] == 1
    assert _outbox_count(sessions) == 1
    again = run_once(ctx)  # idempotent: nothing new is written
    assert again["escalate"]["done"] == 0 and _outbox_count(sessions) == 1


def test_new_work_wakes_the_escalate_pass_at_once(ctx: AppContext, sessions, people) -> None:
    add_policy(sessions, "water", [{"targets": [("person", "thandi")]}])
    runner = EngineRunner(
        ctx,
        mode="test",
        passes={"escalate": _pass_escalate, "confirm": _pass_confirm},
        intervals={"escalate": 3600, "confirm": 3600},  # ticks far away: only a wake can run them
        listen=False,
    )
    runner.start()
    try:
        assert wait_for(lambda: "escalate" in runner.last_pass())
        api.trigger(ctx, policy="water", summary="Main burst")
        assert wait_for(lambda: _outbox_count(sessions) == 1, timeout=10)
    finally:
        runner.stop()
    assert getattr(ctx.wake, "__self__", None) is not runner  # the wake-up is handed back on stop


def test_a_failing_pass_is_logged_and_retried_without_stopping_the_others(
    ctx: AppContext, sessions, people
) -> None:
    calls = {"boom": 0}

    def boom(_ctx: AppContext) -> int:
        calls["boom"] += 1
        raise RuntimeError("provider down")

    add_policy(sessions, "water", [{"targets": [("person", "thandi")]}])
    runner = EngineRunner(
        ctx,
        mode="test",
        passes={"escalate": _pass_escalate, "boom": boom},
        intervals={"escalate": 0.1, "boom": 0.05},
        listen=False,
    )
    runner.start()
    try:
        assert wait_for(lambda: calls["boom"] >= 3)
        api.trigger(ctx, policy="water", summary="Main burst")
        assert wait_for(lambda: _outbox_count(sessions) == 1)
        assert runner.errors >= 3
        assert runner.last_pass()["boom"]["ok"] is False
        assert runner.last_pass()["escalate"]["ok"] is True
    finally:
        runner.stop()


def test_the_engine_node_row_is_its_heartbeat(ctx: AppContext, sessions) -> None:
    runner = EngineRunner(
        ctx, mode="serve", passes={"escalate": _pass_escalate}, listen=False, heartbeat_seconds=0.1
    )
    runner.start()
    try:
        assert wait_for(lambda: "escalate" in runner.last_pass())

        def beat_with_passes() -> bool:
            with sessions() as s:
                node = s.get(EngineNode, ctx.node_id)
                return node is not None and "escalate" in node.last_pass

        assert wait_for(beat_with_passes)
    finally:
        runner.stop()
    with sessions() as s:
        node = s.get(EngineNode, ctx.node_id)
        assert node is not None and node.status == "stopped" and node.mode == "serve"


def test_postgresql_notify_from_another_process_wakes_the_engine(
    db: Engine, ctx: AppContext, sessions, people
) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    add_policy(sessions, "water", [{"targets": [("person", "thandi")]}])
    runner = EngineRunner(ctx, mode="test", passes={"escalate": _pass_escalate}, intervals={"escalate": 3600})
    runner.start()
    url = db.url.render_as_string(hide_password=False)
    other = AppContext.create(Settings(db=url), clock=ctx.clock, mode="other", db=make_engine(url))
    try:
        assert wait_for(lambda: "escalate" in runner.last_pass())
        assert runner.listening.wait(timeout=10)
        api.trigger(other, policy="water", summary="Main burst")  # `other` has no runner: only NOTIFY tells
        assert wait_for(lambda: _outbox_count(sessions) == 1, timeout=10)
    finally:
        runner.stop()
        other.db.dispose()


def test_stopping_while_a_pass_is_finishing_does_not_hang(ctx: AppContext, sessions, people) -> None:
    """A pass that schedules its next run (the next due time) while the runner stops: the scheduler's
    shutdown must not wait for a job that is itself waiting for the scheduler."""
    from apscheduler.schedulers.base import STATE_STOPPED

    runner = EngineRunner(
        ctx, mode="test", passes={"escalate": _pass_escalate}, intervals={"escalate": 3600}, listen=False
    )
    entered, release = threading.Event(), threading.Event()

    def next_due_slowly(ctx_: AppContext) -> datetime:
        entered.set()
        release.wait(10)
        return ctx_.clock.now() + timedelta(seconds=5)  # before the next tick: a run would be scheduled

    runner._next_due["escalate"] = next_due_slowly
    runner.start()
    assert entered.wait(10)
    stopper = threading.Thread(target=runner.stop)
    stopper.start()
    assert wait_for(lambda: runner.scheduler.state == STATE_STOPPED, timeout=10)
    release.set()  # the pass now finishes and would schedule its next run
    stopper.join(timeout=20)
    assert not stopper.is_alive(), "stop() hung"
    with sessions() as s:
        assert s.get(EngineNode, ctx.node_id).status == "stopped"
