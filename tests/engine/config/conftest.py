"""Fixtures for the configuration import/export tests: a document with every field set, row counts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from engine.config_io import count_rows
from engine.context import AppContext
from engine.db import read_session

# Every section, every field, non-default values wherever a field has a default.
FULL_DOCUMENT = """\
version: 1
default_policy: critical-incidents
people:
  - handle: lindiwe.khumalo
    name: Lindiwe Khumalo
    email: lindiwe.khumalo@dispatch.example.org
    phone: "+27825550111"
    whatsapp: "+27835550112"
    preferred_channel: whatsapp
    fallback_channels: [sms, voice, email]
    disabled_channels: [console]
    opted_out_channels: [webhook]
    confirm_wait: 10m
    fallback_wait: 2m
    language: zu
    timezone: Africa/Johannesburg
    quiet_hours: {start: "22:00", end: "06:00"}
    active: true
  - handle: marius.smit
    name: Marius Smit
    email: marius.smit@dispatch.example.org
    phone: "+442079460958"
    whatsapp: null
    preferred_channel: voice
    fallback_channels: [sms]
    disabled_channels: []
    opted_out_channels: []
    confirm_wait: 90s
    fallback_wait: 2h
    language: af
    timezone: Europe/London
    quiet_hours: null
    active: false
teams:
  - handle: fire-rescue
    name: Fire & Rescue
    description: Stations 1 and 4
    manager: marius.smit
    members: [marius.smit, lindiwe.khumalo]
    schedule: duty-officer
schedules:
  - handle: duty-officer
    name: Duty officer
    timezone: Africa/Johannesburg
    description: Weekly, Monday 08:00
    rotations:
      - name: Weekdays
        start_date: "2026-01-05"
        handoff_time: "08:00"
        shift: 7d
        members: [lindiwe.khumalo, marius.smit]
      - name: Backup
        start_date: "2026-01-06"
        handoff_time: "18:30"
        shift: 12h
        members: [marius.smit]
    overrides:
      - person: marius.smit
        start: "2026-03-06T18:00:00+02:00"
        end: "2026-03-09T08:00:00+02:00"
        note: Swap for the long weekend
policies:
  - name: critical-incidents
    description: Life-threatening incidents
    enabled: false
    severity_filter: [critical, high]
    triggers: [unacknowledged, sla_breach]
    max_escalations: 4
    cooldown: 30m
    business_hours_only: true
    business_days: [0, 1, 2, 3, 4, 5]
    business_start: "07:30"
    business_end: "18:00"
    timezone: Africa/Johannesburg
    version: 3
    levels:
      - level: 1
        delay: 0s
        repeat_count: 2
        repeat_interval: 2m
        require_ack: false
        auto_resolve: 4h
        targets:
          - {type: person, identifier: lindiwe.khumalo, name: Shift leader}
          - {type: console, identifier: "#floor", name: Floor}
      - level: 2
        delay: 5m
        repeat_count: 0
        repeat_interval: 5m
        require_ack: true
        auto_resolve: 0s
        targets:
          - {type: team_manager, identifier: fire-rescue, name: ""}
          - {type: team, identifier: fire-rescue, name: Whole team}
          - {type: schedule, identifier: duty-officer, name: On call}
          - {type: email, identifier: ops@dispatch.example.org, name: Ops}
          - {type: phone, identifier: "+27315550100", name: Control room}
          - {type: webhook, identifier: "https://hooks.example.org/wk", name: Chat}
calendars:
  - name: Munich office
    timezone: Europe/Berlin
    hours:
      mon: ["09:00-24:00"]
      tue: []
      wed: []
      thu: []
      fri: []
      sat: []
      sun: []
    holiday_country: DE
    holiday_subdivision: BY
    extra_holidays: []
  - name: Office hours
    timezone: Africa/Johannesburg
    hours:
      mon: ["08:00-12:30", "13:30-17:00"]
      tue: ["08:00-17:00"]
      wed: ["08:00-17:00"]
      thu: ["08:00-17:00"]
      fri: ["08:00-16:00"]
      sat: []
      sun: []
    holiday_country: ZA
    holiday_subdivision: null
    extra_holidays: ["2026-12-24", "2026-12-31"]
sla:
  - site: ""
    category: general
    response: 4h
    resolution: 5d
    warning_percent: 90
    calendar: Office hours
    breach_policy: null
  - site: Umlazi
    category: fire
    response: 10m
    resolution: 4h
    warning_percent: 70
    calendar: null
    breach_policy: critical-incidents
templates:
  - kind: page
    channel: email
    language: zu
    version: 2
    active: true
    subject: "[{{ severity }}] {{ summary }}"
    body: |
      Isigameko {{ incident_id }} e-{{ site }}:
      {{ summary }}
    body_html: "<p>{{ summary }}</p>"
    whatsapp_content_sid: HX0123456789abcdef0123456789abcdef
    created_by: lindiwe
  - kind: page
    channel: sms
    language: zu
    version: 1
    active: false
    subject: ""
    body: "Isigameko {{ incident_id }}: {{ summary }}"
    body_html: null
    whatsapp_content_sid: null
    created_by: thandi
"""


@pytest.fixture
def full_document() -> str:
    return FULL_DOCUMENT


@pytest.fixture
def rows(ctx: AppContext) -> Callable[[], dict[str, int]]:
    """Row counts of every configuration table, to show a refused import wrote nothing."""

    def _rows() -> dict[str, int]:
        with read_session(ctx.sessions) as session:
            return count_rows(session)

    return _rows


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str], Path]:
    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write
