"""A centre for each story: one database (SQLite and PostgreSQL), an injected clock, the fake Twilio server, a
real SMTP server on loopback, an in-memory keyring holding the credentials, and one engine (or two, on the same
database) running every pass the product runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import keyring
import pytest
from sqlalchemy import Engine

from engine import dispatch
from engine.channels import build_senders, install_senders
from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import make_engine
from engine.runner import EngineRunner
from engine.settings import Settings
from tests.fakes.memory_keyring import MemoryKeyring
from tests.fakes.smtp_server import FakeSmtp
from tests.fakes.twilio_server import FakeTwilio

from .story import PUBLIC_URL, SMS_FROM, VOICE_FROM, WHATSAPP_FROM, Story

SMTP_PASSWORD = "smtp-pw-scenarios"
# Friday 4 December 2026, 14:00 in Johannesburg (12:00 UTC): a working afternoon.
STORY_START = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(STORY_START)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


@pytest.fixture
def smtp_server() -> Iterator[FakeSmtp]:
    server = FakeSmtp(username="watchkeeper", password=SMTP_PASSWORD).start()
    yield server
    server.stop()


def centre_settings(db: Engine, twilio: FakeTwilio, smtp: FakeSmtp, **changes: Any) -> Settings:
    """A site that sends for real: Twilio (SMS, WhatsApp, voice) and SMTP, callbacks at the public URL."""
    settings = Settings(db=db.url.render_as_string(hide_password=False))
    settings.twilio_account_sid = twilio.account_sid
    settings.twilio_base_url = twilio.base_url
    settings.twilio_sms_from = SMS_FROM
    settings.twilio_whatsapp_from = WHATSAPP_FROM
    settings.twilio_voice_from = VOICE_FROM
    settings.twilio_timeout_seconds = 2.0
    settings.smtp_host = "127.0.0.1"
    settings.smtp_port = smtp.port
    settings.smtp_security = "none"
    settings.smtp_username = "watchkeeper"
    settings.smtp_from = "watchkeeper@dispatch.example.org"
    settings.public_base_url = PUBLIC_URL
    settings.send_backoff_seconds = 5.0
    # The stories are about paging, not the rate limiter: generous limits (engine/ratelimit has its own tests).
    settings.rate_per_channel_per_second = {
        c: 1000.0 for c in ("sms", "whatsapp", "voice", "email", "webhook", "console")
    }
    settings.rate_per_recipient_per_minute = 600.0
    for name, value in changes.items():
        setattr(settings, name, value)
    return settings


def _engine_for(ctx: AppContext) -> EngineRunner:
    install_senders(ctx, build_senders(ctx.settings, clock=ctx.clock))
    return EngineRunner(ctx, mode="test", listen=False)


@pytest.fixture
def make_story(
    db: Engine,
    clock: FakeClock,
    fake_twilio: FakeTwilio,
    smtp_server: FakeSmtp,
    memory_keyring: MemoryKeyring,
) -> Iterator[Callable[..., Story]]:
    """make_story(engines=1, **settings): a centre with its engines (each its own context, node and database
    connections, as separate processes would have), ready for a story."""
    memory_keyring.set_password("watchkeeper", "twilio_auth_token", fake_twilio.auth_token)
    memory_keyring.set_password("watchkeeper", "smtp_password", SMTP_PASSWORD)
    made: list[AppContext] = []
    extra_dbs: list[Engine] = []

    def _make(engines: int = 1, **changes: Any) -> Story:
        settings = centre_settings(db, fake_twilio, smtp_server, **changes)
        main = AppContext.create(settings, clock=clock, mode="test", db=db)
        made.append(main)
        runners = [_engine_for(main)]
        for _ in range(engines - 1):
            other_db = make_engine(settings.db)
            extra_dbs.append(other_db)
            other = AppContext.create(settings.replace(), clock=clock, mode="test", db=other_db)
            made.append(other)
            runners.append(_engine_for(other))

        def service() -> Any:
            from engine.service.app import ServiceApp, ServiceState
            from tests.service.conftest import WsgiClient

            return WsgiClient(ServiceApp(main, ServiceState(started_at=clock.now())))

        return Story(main, clock, fake_twilio, smtp_server, runners, service)

    yield _make
    for ctx in made:
        dispatch.shutdown(ctx)
    for engine in extra_dbs:
        engine.dispose()


@pytest.fixture
def story(make_story: Callable[..., Story]) -> Story:
    return make_story()
