"""How the command line prints an incident (`show`) and the statistics (`stats`) for a person to read: in
operators' words and percentages, not field dumps. `--json` prints the engine's data instead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engine import wording

STATUS_WORDS = {
    "open": "open, not acknowledged",
    "acknowledged": "acknowledged",
    "in_progress": "in progress (someone is on it)",
    "escalated": "escalated",
    "resolved": "resolved",
    "cancelled": "cancelled",
}


def _time(value: Any) -> str:
    """ISO text or a datetime as 'YYYY-MM-DD HH:MM:SS UTC'; '' for none."""
    if not value:
        return ""
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if when.utcoffset() is not None else "")


def _lines(pairs: Sequence[tuple[str, Any]]) -> list[str]:
    shown = [(k, v) for k, v in pairs if v not in (None, "", [])]
    width = max((len(k) for k, _ in shown), default=0)
    return [f"  {k.ljust(width)}  {v}" for k, v in shown]


def format_incident(data: Mapping[str, Any]) -> str:
    """The `show` text: header, status and times, SLA, escalation, then the timeline and the messages."""
    head = f"#{data.get('id', '?')}  {data.get('summary', '')}"
    esc = data.get("escalation") if isinstance(data.get("escalation"), Mapping) else None
    status = str(data.get("status", ""))
    parts = [head, "=" * min(len(head), 100)]
    parts += _lines(
        [
            ("Status", STATUS_WORDS.get(status, status)),
            ("Severity", data.get("severity")),
            ("Category", data.get("category")),
            ("Site", data.get("site")),
            ("Key", data.get("key")),
            ("Opened", _time(data.get("created_at"))),
            ("Acknowledged", _time(data.get("acknowledged_at"))),
            ("Resolved", _time(data.get("resolved_at"))),
            ("Details", data.get("details")),
        ]
    )
    parts.append("\nSLA")
    sla = _lines(
        [
            ("Respond by", _time(data.get("response_due_at"))),
            ("Resolve by", _time(data.get("resolution_due_at"))),
            ("Response breached", _time(data.get("response_breached_at"))),
            ("Resolution breached", _time(data.get("resolution_breached_at"))),
        ]
    )
    if data.get("sensitive"):  # a breach recorded before it was marked sensitive is still shown
        parts += ["  not monitored (sensitive)", *sla]
    else:
        parts += sla or ["  (no SLA deadlines)"]
    parts.append("\nEscalation")
    if esc:
        parts += _lines(
            [
                ("State", esc.get("state")),
                ("Level", esc.get("current_level")),
                ("Next step", _time(esc.get("next_action_at"))),
                ("Started", _time(esc.get("started_at"))),
            ]
        )
    else:
        parts.append("  (none)")
    events = list(data.get("events") or [])
    parts.append(f"\nTimeline ({len(events)})")
    for e in events:
        by = f" — {e['actor']}" if e.get("actor") and e.get("actor") != "system" else ""
        message = f": {e['message']}" if e.get("message") else ""
        what = wording.event_text(str(e.get("kind", "")), e.get("data"))
        parts.append(f"  {_time(e.get('at'))}  {what}{by}{message}")
    messages = list(data.get("messages") or [])
    parts.append(f"\nMessages ({len(messages)})")
    for m in messages:
        error = f" — {m['error']}" if m.get("error") else ""
        level = f", level {m['level']}" if m.get("level") else ""
        what = wording.message_text(str(m.get("kind", "")))
        status = wording.message_status_text(str(m.get("status", "")))
        parts.append(
            f"  {_time(m.get('created_at'))}  {what} by {m.get('channel')} to {m.get('to')}{level}: {status}{error}"
        )
    return "\n".join(parts)


def _percent(rate: Any) -> str:
    return "—" if rate is None else f"{100 * float(rate):.1f} %"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "—"
    s = round(float(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _spread(summary: Any) -> str:
    s = summary or {}
    return (
        f"mean {_duration(s.get('mean'))}, median {_duration(s.get('median'))}, "
        f"90th percentile {_duration(s.get('p90'))}"
    )


def format_stats(data: Mapping[str, Any]) -> str:
    """The `stats` text: counts, rates as percentages, MTTA/MTTR, SLA compliance, channels with their cost."""
    incidents = data.get("incidents") or {}
    total = int(incidents.get("total") or 0)
    if not total:
        return "no incidents in this period"
    period = data.get("period") or {}
    filters = data.get("filters") or {}
    since, until = _time(period.get("since")) or "the start", _time(period.get("until")) or "now"
    head = f"Incidents from {since} to {until}" + (
        " (" + ", ".join(f"{k} {v}" for k, v in filters.items()) + ")" if filters else ""
    )
    by_status = ", ".join(f"{n} {s}" for s, n in sorted((incidents.get("by_status") or {}).items()))
    sla = data.get("sla") or {}
    compliance = sla.get("compliance_percent")
    mtta, mttr = _spread(data.get("mtta_seconds")), _spread(data.get("mttr_seconds"))
    lines = [head, *_lines([("Incidents", f"{total} ({by_status})")])]
    lines += _lines(
        [
            ("Acknowledged", _percent(data.get("ack_rate"))),
            ("Resolved", _percent(data.get("resolution_rate"))),
            ("Time to acknowledge", mtta),
            ("Time to resolve", mttr),
            (
                "SLA compliance",
                "—"
                if compliance is None
                else f"{compliance:.1f} % of {sla.get('monitored')} incidents "
                f"({sla.get('response_breaches')} response and {sla.get('resolution_breaches')} resolution "
                "breaches)",
            ),
        ]
    )
    channels = list(data.get("channels") or [])
    if channels:
        lines.append("\nMessages by channel")
        for c in channels:
            cost = ", ".join(f"{amount} {currency}" for currency, amount in (c.get("cost") or {}).items())
            unpriced = f" ({c['unpriced']} not priced yet)" if c.get("unpriced") else ""
            lines.append(
                f"  {c['channel']:<9} {c['messages']} sent or tried, {_percent(c.get('success_rate'))} got "
                f"through, cost {cost or '0'}{unpriced}"
            )
    return "\n".join(lines)
