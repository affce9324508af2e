"""Statistics over time: incidents, MTTA, MTTR and SLA compliance per day or week, and this period against the
one before, on both databases, with known incidents and the injected clock."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine import stats
from engine.context import AppContext
from engine.errors import ValidationError
from tests.console.supervisor.conftest import add_incident

SAST = ZoneInfo("Africa/Johannesburg")


def _local(day: int, month: int = 2, hour: int = 9) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=SAST).astimezone(UTC)


def _seed(ctx: AppContext) -> None:
    """Now is Monday 2 March 2026, 10:00 in Johannesburg. Two incidents on 27 February, two on 1 March (one
    sensitive), one in the 30 days before the period, one before that."""
    with ctx.sessions.begin() as s:

        def add(created: datetime, ack: float | None, done: float | None, **fields: Any) -> None:
            add_incident(
                s,
                created,
                summary=f"at {created.isoformat()}",
                acknowledged_at=created + timedelta(seconds=ack) if ack is not None else None,
                resolved_at=created + timedelta(seconds=done) if done is not None else None,
                **fields,
            )

        due = timedelta(hours=1)
        add(_local(27), 60, 600, response_due_at=_local(27) + due, severity="critical")
        add(_local(27, hour=23), 180, 1800, response_due_at=_local(27) + due, response_breached_at=_local(28))
        add(_local(1, 3), 120, None, status="acknowledged")
        add(
            _local(1, 3),
            30,
            90,
            sensitive=True,
            response_due_at=_local(1, 3) + due,
            response_breached_at=_local(2, 3),
        )
        add(
            _local(15, 1),
            600,
            None,
            response_due_at=_local(15, 1) + due,
            resolution_breached_at=_local(16, 1),
        )
        add(datetime(2025, 12, 20, tzinfo=UTC), 5, 5)  # before the period compared with


def test_days_of_the_last_thirty_and_the_thirty_before(ctx: AppContext) -> None:
    _seed(ctx)
    with ctx.sessions() as s:
        trend = stats.trend(s, now=ctx.clock.now(), timezone="Africa/Johannesburg")
    assert trend["bucket"] == "day"
    periods = trend["periods"]
    # 31 January to 2 March, local days: the last one runs to now.
    assert len(periods) == 31
    assert periods[0]["start"] == _local(31, 1, hour=0).isoformat()
    assert periods[-1]["end"] == ctx.clock.now().isoformat()
    by_start = {p["start"]: p for p in periods}
    friday = by_start[_local(27, hour=0).isoformat()]
    assert (friday["incidents"], friday["mtta_median"], friday["mttr_median"]) == (2, 120.0, 1200.0)
    assert (friday["sla_monitored"], friday["sla_breaches"], friday["sla_compliance_percent"]) == (2, 1, 50.0)
    sunday = by_start[_local(1, 3, hour=0).isoformat()]
    assert sunday["incidents"] == 2 and sunday["mtta_median"] == 75.0 and sunday["mttr_median"] == 90.0
    assert sunday["sla_monitored"] == 0 and sunday["sla_compliance_percent"] is None  # sensitive: not watched
    assert sum(p["incidents"] for p in periods) == 4
    current, previous = trend["current"], trend["previous"]
    assert (current["incidents"], current["sla_compliance_percent"]) == (4, 50.0)
    assert (previous["incidents"], previous["mtta_median"], previous["sla_compliance_percent"]) == (
        1,
        600.0,
        0.0,
    )
    assert previous["until"] == current["since"]


def test_the_period_figures_are_those_of_the_statistics(ctx: AppContext) -> None:
    _seed(ctx)
    since, until = _local(20, hour=0), _local(2, 3, hour=0)
    with ctx.sessions() as s:
        trend = stats.trend(s, now=ctx.clock.now(), since=since, until=until, timezone="Africa/Johannesburg")
        figures = stats.compute(s, since=since, until=until)
    assert trend["current"]["incidents"] == figures["incidents"]["total"] == 4
    assert trend["current"]["mtta_median"] == figures["mtta_seconds"]["median"]
    assert trend["current"]["mttr_median"] == figures["mttr_seconds"]["median"]
    assert trend["current"]["sla_compliance_percent"] == figures["sla"]["compliance_percent"]


def test_a_quarter_is_shown_by_week_and_filters_apply(ctx: AppContext) -> None:
    _seed(ctx)
    since, until = _local(1, 1, hour=0), _local(2, 3, hour=0)  # 1 January to 2 March
    with ctx.sessions() as s:
        weekly = stats.trend(s, now=ctx.clock.now(), since=since, until=until, timezone="Africa/Johannesburg")
        high = stats.trend(
            s, now=ctx.clock.now(), since=since, until=until, bucket="week", severity="critical"
        )
    assert weekly["bucket"] == "week"
    starts = [datetime.fromisoformat(p["start"]) for p in weekly["periods"]]
    assert all(b - a == timedelta(days=7) for a, b in itertools.pairwise(starts))
    assert len(starts) == 9  # 60 days: eight whole weeks and four days
    assert sum(p["incidents"] for p in weekly["periods"]) == 5
    assert high["current"]["incidents"] == 1 and high["current"]["mttr_median"] == 600.0


def test_a_day_is_a_local_day_across_the_change_to_summer_time(ctx: AppContext) -> None:
    berlin = ZoneInfo("Europe/Berlin")  # clocks go forward on 29 March 2026
    since = datetime(2026, 3, 28, tzinfo=berlin)
    with ctx.sessions() as s:
        trend = stats.trend(
            s,
            now=ctx.clock.now(),
            since=since,
            until=datetime(2026, 3, 31, tzinfo=berlin),
            timezone="Europe/Berlin",
        )
    lengths = [
        datetime.fromisoformat(p["end"]) - datetime.fromisoformat(p["start"]) for p in trend["periods"]
    ]
    assert lengths == [timedelta(hours=24), timedelta(hours=23), timedelta(hours=24)]


def test_an_unknown_bucket_or_zone_is_refused_by_name(ctx: AppContext) -> None:
    with ctx.sessions() as s, pytest.raises(ValidationError, match="bucket 'month'"):
        stats.trend(s, now=ctx.clock.now(), bucket="month")
    with ctx.sessions() as s, pytest.raises(ValidationError, match="Mars/Olympus"):
        stats.trend(s, now=ctx.clock.now(), timezone="Mars/Olympus")
