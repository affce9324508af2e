"""Screenshots of the policy editor and the statistics view, for docs/screenshots/ (run under Xvfb):

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m tests.console.supervisor.make_screenshots

A throwaway SQLite database is filled with a small, plausible centre: people, teams, an on-call schedule, a
three-level policy, and a month of incidents with pages, messages and SLA breaches.
"""

from __future__ import annotations

import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QDate, QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from console.editors import EditorsWidget
from console.services import ConsoleServices, SignedIn
from console.stats import StatsWidget
from engine import config_io
from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import make_engine
from engine.models import Base, Incident, OutboxMessage, Page, Person
from engine.settings import Settings

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
OUT = Path(__file__).resolve().parents[3] / "docs" / "screenshots"

PEOPLE = [
    ("thandi", "Thandi Nkosi", "+27821234567"),
    ("pieter", "Pieter van Wyk", "+27831234567"),
    ("sipho", "Sipho Dlamini", "+27841234567"),
    ("anele", "Anele Mthembu", "+27851234567"),
    ("naledi", "Naledi Khumalo", "+27861234567"),
    ("johan", "Johan Botha", "+27871234567"),
]


def wait(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def seed(ctx: AppContext) -> None:
    config_io.save_objects(
        ctx,
        "people",
        [{"handle": h, "name": n, "phone": p, "fallback_channels": ["voice", "email"]} for h, n, p in PEOPLE],
        "setup",
    )
    config_io.save_objects(
        ctx,
        "teams",
        [
            {
                "handle": "fire-crew",
                "name": "Fire crew",
                "manager": "pieter",
                "members": ["thandi", "sipho", "anele"],
            },
            {
                "handle": "water-ops",
                "name": "Water operations",
                "manager": "naledi",
                "members": ["johan", "naledi"],
            },
        ],
        "setup",
    )
    config_io.save_objects(
        ctx,
        "schedules",
        [
            {
                "handle": "fire-primary",
                "name": "Fire primary on-call",
                "timezone": "Africa/Johannesburg",
                "rotations": [
                    {
                        "start_date": "2026-03-01",
                        "handoff_time": "08:00",
                        "shift": "24h",
                        "members": ["thandi", "sipho", "anele"],
                    }
                ],
            }
        ],
        "setup",
    )
    config_io.save_objects(
        ctx,
        "policies",
        [
            {
                "name": "Fire and rescue",
                "description": "Structure fires, vehicle fires and rescues",
                "severity_filter": ["critical", "high"],
                "triggers": ["unacknowledged", "sla_breach"],
                "cooldown": "10m",
                "levels": [
                    {
                        "delay": "0s",
                        "repeat_count": 2,
                        "repeat_interval": "5m",
                        "targets": [
                            {"type": "schedule", "identifier": "fire-primary"},
                            {"type": "console", "identifier": "all"},
                        ],
                    },
                    {
                        "delay": "10m",
                        "repeat_count": 1,
                        "targets": [
                            {"type": "team", "identifier": "fire-crew"},
                            {"type": "phone", "identifier": "+27215550100", "name": "Station commander"},
                        ],
                    },
                    {
                        "delay": "20m",
                        "targets": [
                            {"type": "team_manager", "identifier": "fire-crew"},
                            {"type": "email", "identifier": "duty-officer@example.org"},
                        ],
                    },
                ],
            },
            {
                "name": "Water standby",
                "levels": [{"delay": "0s", "targets": [{"type": "team", "identifier": "water-ops"}]}],
            },
        ],
        "setup",
    )
    rng = random.Random(7)
    categories = ["fire", "water", "electricity", "roads", "medical"]
    sites = ["Durban North", "Umhlanga", "Pinetown", "Harbour"]
    with ctx.sessions.begin() as s:
        people = list(s.query(Person).all())
        for n in range(260):
            created = NOW - timedelta(days=rng.uniform(0, 30))
            category = rng.choices(categories, weights=[5, 4, 3, 2, 2])[0]
            ack = created + timedelta(seconds=rng.lognormvariate(6.0, 1.3))
            done = ack + timedelta(seconds=rng.lognormvariate(8.3, 0.9))
            resolved = done < NOW and rng.random() < 0.9
            response_due = created + timedelta(hours=1)
            resolution_due = created + timedelta(hours=6)
            inc = Incident(
                key=f"inc-{n}",
                summary=f"{category.title()} incident {n}",
                category=category,
                site=rng.choice(sites),
                severity=rng.choice(["critical", "high", "high", "medium", "low"]),
                status="resolved" if resolved else "acknowledged",
                created_at=created,
                updated_at=created,
                last_triggered_at=created,
                acknowledged_at=ack if rng.random() < 0.93 else None,
                resolved_at=done if resolved else None,
                response_due_at=response_due,
                resolution_due_at=resolution_due,
                response_breached_at=response_due if ack > response_due else None,
                resolution_breached_at=resolution_due if done > resolution_due else None,
            )
            s.add(inc)
            s.flush()
            for step, person in enumerate(rng.sample(people, rng.randint(1, 3))):
                s.add(
                    Page(
                        incident_id=inc.id,
                        person_id=person.id,
                        status=rng.choice(["confirmed", "confirmed", "exhausted"]),
                    )
                )
                channel = rng.choices(["sms", "whatsapp", "voice", "email"], weights=[6, 3, 1, 2])[0]
                ok = rng.random() < {"sms": 0.96, "whatsapp": 0.9, "voice": 0.8, "email": 0.99}[channel]
                s.add(
                    OutboxMessage(
                        idempotency_key=f"m{n}:{step}",
                        incident_id=inc.id,
                        person_id=person.id,
                        channel=channel,
                        address=person.phone or "",
                        status="delivered" if ok else "failed",
                        price=Decimal("-0.0450") if channel in ("sms", "whatsapp") else None,
                        currency="USD" if channel in ("sms", "whatsapp") else None,
                        created_at=created,
                    )
                )


def main() -> int:
    app = QApplication.instance() or QApplication(sys.argv)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/shots.db")
        Base.metadata.create_all(engine)
        ctx = AppContext.create(Settings(db=str(engine.url)), clock=FakeClock(NOW), mode="test", db=engine)
        seed(ctx)
        services = ConsoleServices(ctx, SignedIn(None, "mkhize", "Lindiwe Mkhize", "supervisor"))

        editors = EditorsWidget(services)
        editors.resize(1500, 920)
        editors.show()
        policies = editors.editor("policies")
        policies.reload()
        wait(600)
        policies.select_handle("Fire and rescue")
        policies.select_level(1)
        wait(300)
        editors.grab().save(str(OUT / "policy-editor.png"))

        stats = StatsWidget(services)
        stats.resize(1500, 980)
        stats.show()
        stats.date_from.setDate(QDate(2026, 2, 1))
        stats.date_to.setDate(QDate(2026, 3, 2))
        stats.refresh()
        wait(1200)
        stats.grab().save(str(OUT / "statistics.png"))
        services.shutdown()
        QCoreApplication.processEvents()
        engine.dispose()
    print("wrote", OUT / "policy-editor.png", OUT / "statistics.png")
    app.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
