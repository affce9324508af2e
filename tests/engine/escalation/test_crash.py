"""An engine killed mid-run loses nothing and pages nobody twice: a new one sends every page that was due, and
the fake Twilio server — where a duplicate would hurt — receives each exactly once, even the ones the dead
engine had on the line when it died (Twilio is asked before anything is sent again)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.models import Incident, OutboxMessage
from tests.fakes.twilio_server import FakeTwilio

from .helpers import add_policy, bulk_escalations

ROOT = Path(__file__).resolve().parents[3]
ENGINE_PROCESS = """
import json, sys, time
from engine.context import AppContext
from engine.runner import EngineRunner, available_passes
from engine.settings import Settings

settings = Settings(db=sys.argv[1], **json.loads(sys.argv[2]))
ctx = AppContext.create(settings, mode="crash-test")
passes = {k: v for k, v in available_passes().items() if k in ("escalate", "dispatch", "confirm")}
runner = EngineRunner(ctx, mode="crash-test", passes=passes, intervals={k: 0.2 for k in passes})
runner.start()
print("running", flush=True)
time.sleep(600)
"""
N = 60
THANDI, SIPHO = "+27821234567", "+27829876543"


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    fake.delay = {"sms": 0.05, "whatsapp": 0.05}  # sends are on the line when the engine dies
    yield fake
    fake.stop()


def _start_engine(url: str, twilio: FakeTwilio) -> subprocess.Popen[str]:
    settings = {
        "twilio_account_sid": twilio.account_sid,
        "twilio_base_url": twilio.base_url,
        "twilio_sms_from": "+27870000001",
        "twilio_whatsapp_from": "+27870000002",
        "send_deadline_seconds": 3.0,
        "rate_per_channel_per_second": {"sms": 1000.0, "whatsapp": 1000.0},
        "rate_per_recipient_per_minute": 100000.0,
    }
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        WATCHKEEPER_SECRET_TWILIO_AUTH_TOKEN=twilio.auth_token,
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", ENGINE_PROCESS, url, json.dumps(settings)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "running"
    return proc


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _at_the_provider(twilio: FakeTwilio) -> dict[tuple[str, int], int]:
    """How often each (phone, incident) reached Twilio."""
    counts: dict[tuple[str, int], int] = {}
    for m in twilio.sent("Messages"):
        found = re.search(r"#(\d+)", str(m["body"]))
        assert found, m["body"]
        key = (str(m["to"]).removeprefix("whatsapp:"), int(found.group(1)))
        counts[key] = counts.get(key, 0) + 1
    return counts


def _unsent(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(
            s.scalar(
                select(func.count()).where(
                    OutboxMessage.kind == "page", OutboxMessage.status.in_(("pending", "sending"))
                )
            )
            or 0
        )


@pytest.mark.slow
def test_an_engine_killed_mid_run_is_replaced_without_losing_or_repeating_a_page(
    db: Engine, sessions: sessionmaker[Session], people: dict[str, int], fake_twilio: FakeTwilio
) -> None:
    add_policy(
        sessions,
        "crash",
        [{"targets": [("person", "thandi")]}, {"targets": [("person", "sipho")], "delay_seconds": 1}],
    )
    now = datetime.now(UTC)  # a real clock: the engines run in other processes
    due = [now + timedelta(seconds=2 * i / N) for i in range(N)]  # spread over two seconds
    bulk_escalations(sessions, "crash", N, now, due=due)
    with sessions() as s:
        incidents = list(s.scalars(select(Incident.id)))
    expected = {(THANDI, i) for i in incidents} | {(SIPHO, i) for i in incidents}
    url = db.url.render_as_string(hide_password=False)

    first = _start_engine(url, fake_twilio)
    try:
        deadline = time.monotonic() + 60
        while len(_at_the_provider(fake_twilio)) < N // 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        _kill(first)
    before = len(_at_the_provider(fake_twilio))
    assert 0 < before < len(expected), "the first engine must die mid-run"

    second = _start_engine(url, fake_twilio)
    try:
        deadline = time.monotonic() + 120
        while (
            set(_at_the_provider(fake_twilio)) != expected or _unsent(sessions)
        ) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        _kill(second)
    reached = _at_the_provider(fake_twilio)
    assert {k: n for k, n in reached.items() if n > 1} == {}, "a page reached Twilio twice"
    assert set(reached) == expected, "a page was lost"
