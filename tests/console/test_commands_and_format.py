"""The command line parses what dispatchers type; board cells read right (pure functions, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from console.board import format as fmt
from console.board.commands import Command, CommandError, parse_command

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("ack 1234", Command("acknowledge", ids=(1234,))),
        ("a #12 13", Command("acknowledge", ids=(12, 13))),
        ("res 1234", Command("resolve", ids=(1234,))),
        ("res 1234 pump replaced", Command("resolve", ids=(1234,), text="pump replaced")),
        ("esc 1234", Command("escalate", ids=(1234,))),
        ("esc 1234 3", Command("escalate", ids=(1234,), level=3)),
        ("ESC 1234 L2", Command("escalate", ids=(1234,), level=2)),
        (
            "note 77 caller rang back, smoke visible",
            Command("note", ids=(77,), text="caller rang back, smoke visible"),
        ),
        ("cancel 77 duplicate of 76", Command("cancel", ids=(77,), text="duplicate of 76")),
        ("assign 9 team fire-rescue", Command("assign", ids=(9,), target_kind="team", target="fire-rescue")),
        (
            "assign 9 person thandi night cover",
            Command("assign", ids=(9,), target_kind="person", target="thandi", text="night cover"),
        ),
        ("new Smoke reported, Block C", Command("new", text="Smoke reported, Block C")),
        ("show 5", Command("show", ids=(5,))),
        ("/umlazi", Command("find", text="umlazi")),
        ("ack", Command("acknowledge")),  # the selected rows
        ("classify 12 roads", Command("classify", ids=(12,), text="roads")),
        ("classify #12 sensitive", Command("classify", ids=(12,), sensitive=True)),
        ("cl 12 water not-sensitive", Command("classify", ids=(12,), text="water", sensitive=False)),
        ("k storm water", Command("classify", text="storm water")),  # the selected incident
        ("classify 12", Command("classify", ids=(12,))),  # the K dialog asks
    ],
)
def test_command_line_parses_dispatcher_commands(line: str, expected: Command) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("", "type a command"),
        ("launch 12", "unknown command"),
        ("ack twelve", "not an incident number"),
        ("esc 12 zero", "not a level"),
        ("esc 12 3 4", "optional level"),
        ("new", "needs a summary"),
        ("cancel 12", "needs a reason"),
        ("assign 12 crew fire", "assign 1234 team"),
        ("show", "one incident number"),
        ("classify 12 sensitive not-sensitive", "not both"),
    ],
)
def test_command_line_explains_what_it_cannot_run(line: str, hint: str) -> None:
    with pytest.raises(CommandError, match=hint):
        parse_command(line)


def _row(**fields: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": 1,
        "status": "open",
        "severity": "high",
        "created_at": NOW - timedelta(minutes=10),
        "acknowledged_at": None,
        "resolved_at": None,
        "response_due_at": NOW + timedelta(minutes=5),
        "response_warn_at": NOW - timedelta(minutes=1),
        "resolution_due_at": NOW + timedelta(hours=3),
        "resolution_warn_at": NOW + timedelta(hours=2),
    }
    row.update(fields)
    return row


def test_sla_cell_says_breached_with_minutes_and_warns_before() -> None:
    assert fmt.sla_state(_row(), "response", NOW) == (fmt.WARNING, "5m left")
    assert fmt.sla_state(_row(), "resolution", NOW) == (fmt.NORMAL, "3h 00m left")
    late = NOW + timedelta(minutes=17)
    assert fmt.sla_state(_row(), "response", late) == (fmt.BREACHED, "breached 12m")


def test_the_board_says_how_long_ago_a_deadline_was_breached_in_its_largest_unit() -> None:
    """The board's SLA columns stay as narrow as their headers; the detail has the minutes."""
    late = NOW + timedelta(minutes=5 + 125)  # breached 2 h 05 min ago
    assert fmt.sla_state(_row(), "response", late) == (fmt.BREACHED, "breached 2h 05m")
    assert fmt.sla_state(_row(), "response", late, compact=True) == (fmt.BREACHED, "breached 2h")
    assert fmt.sla_state(_row(), "response", NOW + timedelta(minutes=17), compact=True)[1] == "breached 12m"
    assert fmt.sla_state(_row(), "response", NOW + timedelta(days=3), compact=True)[1] == "breached 2d"
    assert fmt.sla_state(_row(), "response", NOW, compact=True)[1] == "5m left"  # a countdown: to the minute


def test_acknowledged_in_time_meets_the_response_sla() -> None:
    row = _row(status="acknowledged", acknowledged_at=NOW)
    assert fmt.sla_state(row, "response", NOW + timedelta(hours=1)) == (fmt.DONE, "met")
    assert not fmt.is_unacknowledged(row)


def test_sensitive_incident_is_never_shown_as_breached() -> None:
    assert fmt.sla_state(_row(sensitive=True), "response", NOW + timedelta(days=3))[1] == "not monitored"


def test_tint_deepens_as_unacknowledged_incident_ages_past_its_threshold() -> None:
    critical = _row(severity="critical", created_at=NOW)
    assert fmt.tint_depth(critical, NOW + timedelta(minutes=1)) == 0.0
    early = fmt.tint_depth(critical, NOW + timedelta(minutes=4))
    later = fmt.tint_depth(critical, NOW + timedelta(minutes=6))
    assert 0.0 < early < later <= 1.0
    assert fmt.tint_depth(critical, NOW + timedelta(hours=1)) == 1.0
    acked = _row(severity="critical", created_at=NOW, status="acknowledged", acknowledged_at=NOW)
    assert fmt.tint_depth(acked, NOW + timedelta(hours=1)) == 0.0


def test_durations_read_compactly() -> None:
    assert [fmt.duration(s) for s in (42, 720, 3 * 3600 + 300, 2 * 86400 + 4 * 3600)] == [
        "42s",
        "12m",
        "3h 05m",
        "2d 4h",
    ]


def test_paged_cell_names_person_channel_and_delivery() -> None:
    row = _row(paged="Thandi Nkosi", last_channel="sms", last_delivery="failed", page_status="exhausted")
    assert fmt.paged_text(row) == "Thandi Nkosi · SMS · failed · EXHAUSTED"
    assert fmt.paged_text(_row()) == "—"
    waiting = _row(paged="Sipho", last_channel="voice", last_delivery="undelivered", last_simulated=True)
    assert fmt.paged_text(waiting) == "Sipho · VOICE · not delivered (simulated)"
