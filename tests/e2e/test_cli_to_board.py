"""End to end: an incident triggered by the CLI in another process appears on the board, the operator
acknowledges it with the keyboard, and the escalation stops paging.

Real parts throughout: a SQLite file shared by two processes, `main.py trigger` as a separate process, the
embedded EngineRunner with its scheduler, the board's change feed and the real engine.api behind the key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from sqlalchemy import func, select

from console.board.widget import BoardWidget
from console.services import ConsoleServices, SignedIn
from engine import config_io, migrate
from engine.context import AppContext
from engine.db import make_engine
from engine.demo import demo_document_text
from engine.models import Base, Escalation, Incident, OutboxMessage, Page
from engine.runner import EngineRunner
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[AppContext]:
    url = f"sqlite:///{tmp_path}/centre.db"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    migrate.stamp(engine)
    ctx = AppContext.create(Settings(db=url), mode="console", db=engine)
    config_io.import_text(ctx, demo_document_text(), "demo", "test")
    yield ctx
    engine.dispose()


def test_cli_trigger_appears_on_the_board_and_keyboard_ack_stops_the_escalation(
    qtbot: QtBot, centre: AppContext, tmp_path: Path
) -> None:
    runner = EngineRunner(centre, mode="console")
    runner.start()
    services = ConsoleServices(centre, SignedIn(None, "thandi", "Thandi Nkosi", "operator"))
    try:
        board = BoardWidget(services)
        qtbot.addWidget(board)
        board.show()
        qtbot.waitUntil(lambda: board.feed.is_loaded, timeout=5000)

        cli = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "main.py"),
                "--db",
                centre.settings.db,
                "trigger",
                "--json",
                "--policy",
                "critical-incidents",
                "--severity",
                "critical",
                "--site",
                "umlazi",
                "--summary",
                "E2E: structure fire, Umlazi Section C",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")},
        )
        qtbot.waitUntil(lambda: cli.poll() is not None, timeout=30_000)
        out, err = cli.communicate()
        assert cli.returncode == 0, err
        incident_id = int(json.loads(out)["incident_id"])

        # The CLI's commit reaches the board through the change feed, and the embedded engine pages level 1.
        def paging() -> None:
            row = board.model.row_for_id(incident_id)
            assert row is not None
            assert row["current_level"] >= 1 and row["escalation_state"] == "active"
            assert row["paged"]

        qtbot.waitUntil(paging, timeout=10_000)
        assert board.select_incident(incident_id)
        board.view.setFocus()
        qtbot.keyClick(board.view, Qt.Key.Key_A)

        def acknowledged() -> None:
            row = board.model.row_for_id(incident_id)
            assert row is not None and row["status"] == "acknowledged"
            assert row["escalation_state"] == "acknowledged"

        qtbot.waitUntil(acknowledged, timeout=5000)

        # The escalation stopped: no page is still active, nothing is due, and further passes send nothing.
        with centre.sessions() as s:
            esc = s.scalars(select(Escalation).where(Escalation.incident_id == incident_id)).one()
            assert esc.acknowledged_by == "thandi"
            assert s.get(Incident, incident_id).acknowledged_by == "thandi"  # type: ignore[union-attr]
            active = s.scalar(
                select(func.count())
                .select_from(Page)
                .where(Page.escalation_id == esc.id, Page.status == "active")
            )
            assert active == 0
            pages_before = s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.escalation_id == esc.id, OutboxMessage.kind == "page")
            )
        for _ in range(3):
            runner.run_pass("escalate")
            runner.run_pass("confirm")
        with centre.sessions() as s:
            pages_after = s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.escalation_id == esc.id, OutboxMessage.kind == "page")
            )
            assert s.get(Escalation, esc.id).state == "acknowledged"  # type: ignore[union-attr]
        assert pages_after == pages_before
    finally:
        runner.stop()
        services.shutdown()
