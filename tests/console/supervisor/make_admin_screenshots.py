"""Screenshots of the accounts editor and the audit view, for docs/screenshots/ (run under Xvfb):

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m tests.console.supervisor.make_admin_screenshots

A throwaway SQLite database gets a small centre and a day of its administration, done through the engine as
the people would do it: accounts made and changed, sign-ins (one locked out after failed attempts), a policy
edited by a supervisor, a switch turned off, a token made, a handover note.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QDateTime
from PySide6.QtWidgets import QApplication

from console.app import sign_in
from console.audit import AuditWidget
from console.editors import EditorsWidget
from console.services import ConsoleServices
from engine import accounts, config_io, handover, switches
from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import make_engine, write_session
from engine.models import Base
from engine.service.keys import create_api_token
from engine.settings import Settings
from tests.console.supervisor.make_screenshots import PEOPLE, wait

START = datetime(2026, 3, 2, 5, 58, 12, tzinfo=UTC)
OUT = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
POLICY = {
    "name": "Fire and rescue",
    "description": "Structure fires, vehicle fires and rescues",
    "severity_filter": ["critical", "high"],
    "levels": [
        {"delay": "0s", "repeat_count": 1, "targets": [{"type": "person", "identifier": "thandi"}]},
        {"delay": "10m", "targets": [{"type": "person", "identifier": "pieter"}]},
    ],
}


def day_of_administration(ctx: AppContext, clock: FakeClock) -> None:
    config_io.save_objects(
        ctx, "people", [{"handle": h, "name": n, "phone": p} for h, n, p in PEOPLE], "setup"
    )
    with write_session(ctx.sessions) as s:
        accounts.ensure_first_admin(s, clock.now(), username="lindiwe", password="centre-admin-9",
                                    display_name="Lindiwe Mkhize")  # fmt: skip
    admin = accounts.sign_in(ctx, "lindiwe", "centre-admin-9", via="console").identity
    made = {}
    for username, name, role, person in (
        ("pieter", "Pieter van Wyk", "supervisor", "pieter"),
        ("thandi", "Thandi Nkosi", "operator", "thandi"),
        ("sipho", "Sipho Dlamini", "operator", "sipho"),
        ("anele", "Anele Mthembu", "operator", "anele"),
        ("johan", "Johan Botha", "operator", "johan"),
        ("naledi", "Naledi Khumalo", "supervisor", "naledi"),
    ):
        clock.advance(timedelta(minutes=2, seconds=17))
        made[username] = accounts.add_account(
            ctx, admin, username=username, role=role, display_name=name, person=person
        ).password
    own = {}
    for username in ("pieter", "thandi", "sipho", "naledi"):
        clock.advance(timedelta(minutes=7, seconds=41))
        who = accounts.sign_in(ctx, username, made[username] or "", via="console").identity
        own[username] = f"{username}-own-password"
        accounts.change_password(ctx, who, made[username] or "", own[username])
    clock.advance(timedelta(minutes=31, seconds=5))
    pieter = accounts.sign_in(ctx, "pieter", own["pieter"], via="console").identity
    config_io.save_objects(ctx, "policies", [POLICY], pieter)
    clock.advance(timedelta(hours=1, minutes=12, seconds=44))
    edited = {
        **POLICY,
        "description": "Structure and vehicle fires, rescues",
        "cooldown": "10m",
        "levels": [
            {"delay": "0s", "repeat_count": 2, "repeat_interval": "3m",
             "targets": [{"type": "person", "identifier": "thandi"}, {"type": "console", "identifier": "all"}]},
            {"delay": "5m", "targets": [{"type": "person", "identifier": "pieter"}]},
        ],
    }  # fmt: skip
    config_io.save_objects(ctx, "policies", [edited], pieter)
    clock.advance(timedelta(minutes=3, seconds=9))
    with write_session(ctx.sessions) as s:
        switches.set_switch(s, switches.NOTIFICATIONS_ENABLED, False, now=clock.now(), by=pieter)
    clock.advance(timedelta(minutes=48, seconds=30))
    clock.advance(timedelta(minutes=20, seconds=2))
    create_api_token(ctx, label="wallboard-hall-b", role="operator", by=admin)
    accounts.update_account(ctx, admin, "anele", active=False)
    accounts.set_role(ctx, admin, "sipho", "supervisor")
    clock.advance(timedelta(hours=2, minutes=6, seconds=51))
    thandi = accounts.sign_in(ctx, "thandi", own["thandi"], via="console").identity
    handover.write_note(
        ctx,
        thandi,
        "Pinetown gas leak handed to the gas board; call them back at 07:00.",
        shift_started_at=START,
    )
    accounts.sign_out(ctx, thandi)
    clock.advance(timedelta(minutes=1, seconds=38))
    for _ in range(5):  # someone tries Johan's account: locked for 15 minutes
        clock.advance(timedelta(seconds=11))
        with contextlib.suppress(accounts.SignInFailed):
            accounts.sign_in(ctx, "johan", "summer2026", via="console")
    clock.advance(timedelta(minutes=2, seconds=3))


def main() -> int:
    app = QApplication.instance() or QApplication(sys.argv)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/shots.db")
        Base.metadata.create_all(engine)
        clock = FakeClock(START)
        ctx = AppContext.create(Settings(db=str(engine.url)), clock=clock, mode="test", db=engine)
        day_of_administration(ctx, clock)
        services = ConsoleServices(ctx, sign_in(ctx, "lindiwe", "centre-admin-9"))

        editors = EditorsWidget(services)
        editors.resize(1500, 920)
        editors.show()
        editors.tabs.setCurrentWidget(editors.editor("accounts"))
        wait(800)
        editors.editor("accounts").select_handle("thandi")
        wait(300)
        editors.grab().save(str(OUT / "accounts-editor.png"))

        audit_view = AuditWidget(services)
        audit_view.resize(1500, 920)
        audit_view.since.setDateTime(QDateTime.fromSecsSinceEpoch(int(START.timestamp())))
        audit_view.show()
        audit_view.search()
        wait(800)
        for row in range(audit_view.entries.rowCount()):
            if audit_view.entries.record(row).action == "config_updated":
                audit_view.entry_view.selectRow(row)
                break
        wait(300)
        audit_view.grab().save(str(OUT / "audit.png"))
        services.shutdown()
        QCoreApplication.processEvents()
        engine.dispose()
    print("wrote", OUT / "accounts-editor.png", OUT / "audit.png")
    app.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
