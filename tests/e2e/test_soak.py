"""The soak at a size CI affords (bench/bench_soak.py runs it larger): several `serve` nodes fed over HTTP,
whole nodes killed hard and replaced, the PostgreSQL server restarted mid-run, bad events among the good.
Every count the promises say must be zero is zero: duplicate incidents, duplicate pages, lost resolves,
messages at the fake Twilio twice, accepted events not applied, 5xx answers to bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.soak import SoakConfig, run_soak

ALERTS = int(os.environ.get("WATCHKEEPER_SOAK_ALERTS", "400"))
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_soak_with_kills_and_a_database_restart_pages_everyone_once(backend: str, tmp_path: Path) -> None:
    config = SoakConfig(
        backend=backend,
        nodes=3 if backend == "postgresql" else 2,
        alerts=ALERTS,
        rate=40.0,
        kills=2,
        db_restart_seconds=5.0 if backend == "postgresql" else 0.0,
    )
    report = run_soak(config, tmp_path)
    print("\n" + "\n".join(report.lines()))
    assert report.errors == []
    assert report.failures() == {}
    assert report.kills_done == 2
    assert report.bad_sent > 0 and report.bad_refused == report.bad_sent
    if backend == "postgresql":
        assert report.db_outage_seconds >= 5.0
        assert report.healthy_after_db_seconds is not None
