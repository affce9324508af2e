"""Statistics: figures for inserted incidents, charts and tables, CSV and PDF export; breaches_by on both DBs."""

from __future__ import annotations

import csv
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from PySide6.QtCore import QDate

from console.stats import StatsWidget
from engine.context import AppContext
from engine.history import breaches_by
from engine.models import OutboxMessage, Page, Person
from tests.conftest import CLOCK_START
from tests.console.supervisor.conftest import add_incident

T0 = CLOCK_START


def _seed(ctx: AppContext) -> None:
    with ctx.sessions.begin() as s:
        thandi = Person(handle="thandi", name="Thandi Nkosi", phone="+27821234567")
        s.add(thandi)
        s.flush()
        day = T0 - timedelta(days=1)
        a = add_incident(
            s,
            day,
            summary="Fire",
            category="fire",
            site="depot",
            acknowledged_at=day + timedelta(minutes=2),
            resolved_at=day + timedelta(hours=1),
            response_due_at=day + timedelta(hours=1),
            resolution_due_at=day + timedelta(hours=4),
        )
        b = add_incident(
            s,
            day + timedelta(hours=1),
            summary="Leak",
            category="water",
            site="depot",
            acknowledged_at=day + timedelta(hours=1, minutes=6),
            resolved_at=day + timedelta(hours=4),
            response_due_at=day + timedelta(hours=2),
            resolution_due_at=day + timedelta(hours=2),
            resolution_breached_at=day + timedelta(hours=3),
        )
        add_incident(
            s,
            day + timedelta(hours=2),
            summary="Smoke",
            category="fire",
            site="harbour",
            status="open",
            response_due_at=day + timedelta(hours=3),
            response_breached_at=day + timedelta(hours=3),
        )
        add_incident(s, T0 - timedelta(days=60), summary="Old", category="fire", site="depot")
        for n, (incident, status) in enumerate([(a, "confirmed"), (b, "exhausted")]):
            s.add(Page(incident_id=incident.id, person_id=thandi.id, status=status, level=1))
            s.add(
                OutboxMessage(
                    idempotency_key=f"k{n}",
                    incident_id=incident.id,
                    person_id=thandi.id,
                    channel="sms",
                    address="+27821234567",
                    status="delivered" if n == 0 else "failed",
                    price=Decimal("-0.0500"),
                    currency="USD",
                )
            )


def _show(qtbot: Any, widget: StatsWidget) -> None:
    widget.date_from.setDate(QDate(2026, 2, 20))
    widget.date_to.setDate(QDate(2026, 3, 2))
    with qtbot.waitSignal(widget.refreshed, timeout=10000):
        widget.show_button.click()


def test_stats_widget_shows_figures_for_inserted_incidents(qtbot: Any, supervisor: Any) -> None:
    _seed(supervisor.ctx)
    widget = StatsWidget(supervisor)
    qtbot.addWidget(widget)
    _show(qtbot, widget)
    assert widget.tiles["incidents"].value.text() == "3"
    assert widget.tiles["mtta"].value.text() == "4 min"  # median of 2 and 6 minutes
    assert widget.tiles["mttr"].value.text() == "2.0 h"  # median of 1 h and 3 h
    assert widget.tiles["ack"].value.text() == "66.7 %"
    assert widget.tiles["breaches"].value.text() == "2"
    assert widget.tiles["sla"].value.text() == "33.3 %"  # 3 monitored, 2 breached
    assert [(r.group, r.breaches) for r in widget.categories.rows()] == [("fire", 1), ("water", 1)]
    assert [(r.group, r.breaches) for r in widget.sites.rows()] == [("depot", 1), ("harbour", 1)]
    assert widget.people.display_rows() == [["Thandi Nkosi", "thandi", "2", "1", "1"]]
    assert widget.channels.display_rows() == [["sms", "2", "1", "1", "50.0 %", "0.10000 USD"]]
    assert widget.people_chart.chart().series(), "the pages chart is drawn"

    widget.category.setText("water")
    with qtbot.waitSignal(widget.refreshed, timeout=10000):
        widget.show_button.click()
    assert widget.tiles["incidents"].value.text() == "1"


def test_the_trend_shows_each_day_and_this_period_against_the_last(qtbot: Any, supervisor: Any) -> None:
    _seed(supervisor.ctx)
    widget = StatsWidget(supervisor)
    qtbot.addWidget(widget)
    _show(qtbot, widget)
    days = widget.periods.display_rows()
    assert len(days) == 11  # 20 February to 2 March
    assert days[0][0] == "Fri 20 Feb"
    busy = [row for row in days if row[1] != "0"]
    assert busy == [["Sun 01 Mar", "3", "4 min", "2.0 h", "33.3 %", "2"]]
    comparison = {row[0]: row[1:] for row in widget.comparison.display_rows()}
    assert comparison["Incidents"] == ["3", "0", "+3"]
    assert comparison["SLA compliance"] == ["33.3 %", "—", "—"]
    assert widget.trend_chart.chart().series(), "the trend chart is drawn"
    with qtbot.waitSignal(widget.refreshed, timeout=10000):
        widget.bucket.setCurrentIndex(widget.bucket.findData("week"))
    assert [row[:2] for row in widget.periods.display_rows()] == [
        ["20 Feb – 26 Feb", "0"],
        ["27 Feb – 02 Mar", "3"],
    ]


def test_the_cost_column_says_how_many_messages_twilio_has_not_priced(qtbot: Any, supervisor: Any) -> None:
    _seed(supervisor.ctx)
    with supervisor.ctx.sessions.begin() as s:
        fire = s.query(OutboxMessage).filter_by(idempotency_key="k0").one()
        s.add(  # delivered through Twilio, whose price has not come in (yet)
            OutboxMessage(
                idempotency_key="k-unpriced",
                incident_id=fire.incident_id,
                person_id=fire.person_id,
                channel="sms",
                address="+27821234567",
                status="delivered",
                provider_id="SM" + "0" * 32,
            )
        )
    widget = StatsWidget(supervisor)
    qtbot.addWidget(widget)
    _show(qtbot, widget)
    assert widget.channels.display_rows() == [["sms", "3", "2", "1", "66.7 %", "0.10000 USD (+1 not priced)"]]


def test_stats_export_csv_and_pdf_write_files(qtbot: Any, supervisor: Any, tmp_path: Path) -> None:
    _seed(supervisor.ctx)
    widget = StatsWidget(supervisor)
    qtbot.addWidget(widget)
    widget.resize(1200, 800)
    _show(qtbot, widget)
    csv_path = tmp_path / "stats.csv"
    widget.export_csv(csv_path)
    rows = list(csv.reader(csv_path.read_text(encoding="utf-8").splitlines()))
    assert ["Incidents", "3"] in rows and ["MTTA median", "4 min"] in rows
    assert ["Thandi Nkosi", "thandi", "2", "1", "1"] in rows
    assert ["SLA breaches by site"] in rows

    pdf_path = tmp_path / "stats.pdf"
    widget.export_pdf(pdf_path)
    data = pdf_path.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 5000


def test_stats_models_pass_qt_model_tester(qtbot: Any, qtmodeltester: Any, supervisor: Any) -> None:
    _seed(supervisor.ctx)
    widget = StatsWidget(supervisor)
    qtbot.addWidget(widget)
    _show(qtbot, widget)
    for model in (widget.people, widget.channels, widget.categories, widget.sites):
        qtmodeltester.check(model)


def test_breaches_by_category_and_site_on_both_databases(ctx: AppContext) -> None:
    _seed(ctx)
    since, until = T0 - timedelta(days=7), T0
    with ctx.sessions() as s:
        by_category = breaches_by(s, "category", since=since, until=until)
        by_site = breaches_by(s, "site", since=since, until=until, category="fire")
    assert [
        (r.group, r.incidents, r.monitored, r.response_breaches, r.resolution_breaches) for r in by_category
    ] == [
        ("fire", 2, 2, 1, 0),
        ("water", 1, 1, 0, 1),
    ]
    assert [(r.group, r.breaches) for r in by_site] == [("harbour", 1), ("depot", 0)]
