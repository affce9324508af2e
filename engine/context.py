"""What every engine component is handed: the database, the clock, the settings, the secrets, a wake-up.

Components never reach for globals: a test builds an AppContext with a FakeClock and a fresh database, a
service builds one from its settings, and the console builds one for its embedded engine.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from engine import wakeup
from engine.clock import Clock, SystemClock
from engine.db import make_engine, session_factory
from engine.settings import Settings


def new_node_id(mode: str) -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{mode}:{uuid.uuid4().hex[:6]}"


@dataclass
class AppContext:
    db: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    settings: Settings
    node_id: str
    # Called after a commit that created due work (a new escalation, an outbox row), so the passes of an
    # engine run at once instead of at their next tick: this process's engine while one runs here, else on
    # SQLite the engine of the same file in another process (engine.wakeup), else nothing (PostgreSQL's
    # engines hear the commit's NOTIFY).
    wake: Callable[[str], None] = field(default=lambda _pass: None)
    # Called after `settings` were changed in place (the console's Settings dialog), so that an engine in
    # another process takes them too (engine.engine_process). A no-op otherwise.
    settings_changed: Callable[[], None] = field(default=lambda: None)

    @classmethod
    def create(
        cls,
        settings: Settings,
        clock: Clock | None = None,
        mode: str = "cli",
        db: Engine | None = None,
    ) -> AppContext:
        engine = db or make_engine(settings.db)
        ctx = cls(
            db=engine,
            sessions=session_factory(engine),
            clock=clock or SystemClock(),
            settings=settings,
            node_id=new_node_id(mode),
        )
        sender = wakeup.sender_for(engine.url.render_as_string(hide_password=False))
        if sender is not None:
            ctx.wake = sender
        return ctx
