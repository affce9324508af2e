"""An engine killed mid-run loses nothing: a new one writes every page that was due, none of them twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from engine.models import OutboxMessage

from .helpers import add_policy, bulk_escalations

ROOT = Path(__file__).resolve().parents[3]
ENGINE_PROCESS = """
import sys, time
from engine.context import AppContext
from engine.runner import EngineRunner, _pass_escalate
from engine.settings import Settings

ctx = AppContext.create(Settings(db=sys.argv[1]), mode="crash-test")
runner = EngineRunner(ctx, mode="crash-test", passes={"escalate": _pass_escalate}, intervals={"escalate": 0.2})
runner.start()
print("running", flush=True)
time.sleep(600)
"""
N = 60


def _start_engine(url: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", ENGINE_PROCESS, url], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "running"
    return proc


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _keys(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as s:
        return list(s.scalars(select(OutboxMessage.idempotency_key)))


@pytest.mark.slow
def test_an_engine_killed_mid_run_is_replaced_without_losing_or_repeating_a_page(
    db: Engine, sessions: sessionmaker[Session], people: dict[str, int]
) -> None:
    add_policy(
        sessions,
        "crash",
        [{"targets": [("person", "thandi")]}, {"targets": [("person", "sipho")], "delay_seconds": 1}],
    )
    now = datetime.now(UTC)  # a real clock: the engines run in other processes
    due = [now + timedelta(seconds=2 * i / N) for i in range(N)]  # spread over two seconds
    escalations = bulk_escalations(sessions, "crash", N, now, due=due)
    expected = {f"page:{e}:1:0:{people['thandi']}:0" for e in escalations} | {
        f"page:{e}:2:0:{people['sipho']}:0" for e in escalations
    }
    url = db.url.render_as_string(hide_password=False)

    first = _start_engine(url)
    try:
        deadline = time.monotonic() + 60
        while len(_keys(sessions)) < N // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        _kill(first)
    written_before = len(_keys(sessions))
    assert 0 < written_before < len(expected), "the first engine must die mid-run"

    second = _start_engine(url)
    try:
        deadline = time.monotonic() + 120
        while len(_keys(sessions)) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        _kill(second)
    keys = _keys(sessions)
    assert len(keys) == len(set(keys))  # never twice
    assert set(keys) == expected  # nothing lost
