"""How a board row reads: durations, SLA countdowns, tint depth. Pure functions, no Qt, tested on their own.

Colour never carries meaning alone: every state a colour shows is also in the cell's text ("breached 12m",
"CRITICAL", "L2 escalating").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine import wording

SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
STATUS_RANK = {"open": 0, "escalated": 1, "acknowledged": 2, "in_progress": 3, "resolved": 4, "cancelled": 5}
OPEN_STATUSES = frozenset({"open", "acknowledged", "in_progress", "escalated"})
UNACKED_STATUSES = frozenset({"open", "escalated"})
STATUS_LABEL = {
    "open": "Open",
    "acknowledged": "Acknowledged",
    "in_progress": "In progress",
    "escalated": "Escalated",
    "resolved": "Resolved",
    "cancelled": "Cancelled",
}
# An unacknowledged incident's row starts to deepen after this long, by severity (seconds).
ACK_THRESHOLD_SECONDS = {"critical": 120, "high": 300, "medium": 900, "low": 3600, "info": 4 * 3600}

NORMAL, WARNING, BREACHED, DONE = "normal", "warning", "breached", "done"


def duration(seconds: float) -> str:
    """Compact operator-readable duration: 45s, 12m, 3h 05m, 2d 4h."""
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def rough(seconds: float) -> str:
    """The largest unit only, rounded down: 12m, 5h, 2d (how long a deadline has been breached, on the board;
    the detail gives it to the minute)."""
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def is_open(row: dict[str, Any]) -> bool:
    return row.get("status") in OPEN_STATUSES


def is_unacknowledged(row: dict[str, Any]) -> bool:
    return row.get("status") in UNACKED_STATUSES and row.get("acknowledged_at") is None


def age_seconds(row: dict[str, Any], now: datetime) -> float:
    end = now if is_open(row) else (row.get("resolved_at") or row.get("cancelled_at") or now)
    created: datetime = row["created_at"]
    return max(0.0, (end - created).total_seconds())


def sla_state(row: dict[str, Any], which: str, now: datetime, *, compact: bool = False) -> tuple[str, str]:
    """(state, text) of the response or resolution deadline of a row at `now`.

    Response is met by an acknowledgement, resolution by resolving; a sensitive incident is never monitored.
    `compact` (the board's cells): how long ago a deadline was breached in its largest unit ("breached 2h"),
    which keeps the SLA columns narrow; a countdown is always to the minute.
    """
    if row.get("sensitive"):
        return DONE, "not monitored"
    due: datetime | None = row.get(f"{which}_due_at")
    warn: datetime | None = row.get(f"{which}_warn_at")
    breached_at: datetime | None = row.get(f"{which}_breached_at")
    if due is None:
        return DONE, ""
    if which == "response":
        met_at = row.get("acknowledged_at") or row.get("resolved_at")
    else:
        met_at = row.get("resolved_at")
    if met_at is not None or not is_open(row):
        if met_at is not None and met_at > due:
            return DONE, f"late {duration((met_at - due).total_seconds())}"
        return DONE, "met" if met_at is not None else ""
    if breached_at is not None or now >= due:
        late = (now - due).total_seconds()
        return BREACHED, f"breached {rough(late) if compact else duration(late)}"
    left = f"{duration((due - now).total_seconds())} left"
    if warn is not None and now >= warn:
        return WARNING, left
    return NORMAL, left


def sla_sort_key(row: dict[str, Any], which: str) -> float:
    """Earliest live deadline first; met or absent deadlines last."""
    due: datetime | None = row.get(f"{which}_due_at")
    met = row.get("acknowledged_at") if which == "response" else None
    if due is None or not is_open(row) or met is not None or row.get("sensitive"):
        return 1e12
    return due.timestamp()


def tint_depth(row: dict[str, Any], now: datetime) -> float:
    """0.0 … 1.0: how far an unacknowledged incident is past its severity's threshold (1.0 at 4x)."""
    if not is_unacknowledged(row):
        return 0.0
    threshold = ACK_THRESHOLD_SECONDS.get(str(row.get("severity")), 900)
    over = age_seconds(row, now) - threshold
    if over <= 0:
        return 0.0
    return min(1.0, over / (3 * threshold))


# The escalation's state in a word: the Status column already says "Acknowledged" or "Resolved", so the level
# says what that did to the paging (and the column stays narrow enough for a 1600-pixel screen).
LEVEL_STATE = {
    "pending": "waiting",
    "active": "paging",
    "escalating": "escalating",
    "acknowledged": "stopped",
    "resolved": "ended",
    "cancelled": "cancelled",
    "timed_out": "timed out",
    "failed": "failed",
}


def level_text(row: dict[str, Any]) -> str:
    state = row.get("escalation_state") or ""
    level = int(row.get("current_level") or 0)
    if not state:
        return "—"
    label = LEVEL_STATE.get(state, state.replace("_", " "))
    return f"L{level} {label}" if level else label


def paged_text(row: dict[str, Any]) -> str:
    """The last page: who, on which channel, how its delivery went (engine.board takes pages only)."""
    who = row.get("paged") or row.get("last_recipient") or ""
    if not who:
        return "—"
    channel = (row.get("last_channel") or "").upper()
    delivery = row.get("last_delivery") or ""
    parts = [who]
    if channel:
        parts.append(channel)
    if delivery:
        parts.append(wording.message_status_text(delivery, bool(row.get("last_simulated"))))
    if row.get("page_status") == "exhausted":
        parts.append("EXHAUSTED")
    return " · ".join(parts)


def search_blob(row: dict[str, Any]) -> str:
    """Everything search-as-you-type matches, lower case."""
    return " ".join(
        str(row.get(k) or "")
        for k in (
            "id",
            "key",
            "summary",
            "site",
            "category",
            "team",
            "team_handle",
            "assignee",
            "paged",
            "reporter_name",
            "reporter_contact",
            "policy",
            "severity",
            "status",
        )
    ).lower()
