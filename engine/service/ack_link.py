"""The acknowledge link in page e-mails: `GET /ack?incident=…&code=…` and the form it shows.

A GET never changes anything: mail scanners and link previews open every link in a message, and a page must
not be acknowledged by a robot. The GET answers a small page naming the incident with one button; the button
POSTs the same two values and acknowledges as the person who was paged.

The reply code is six digits, so wrong codes are counted per incident (and malformed links per client
address) and further tries refused with 429 after `MAX_FAILURES` within `FAILURE_WINDOW_SECONDS`.
"""

from __future__ import annotations

import html
import threading
import time
from collections import deque
from typing import Any

MAX_FAILURES = 10
FAILURE_WINDOW_SECONDS = 600.0
HTML_CONTENT_TYPE = "text/html; charset=utf-8"
HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
    ("Referrer-Policy", "no-referrer"),
]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Watchkeeper: {title}</title>
<style>body{{font-family:sans-serif;max-width:36em;margin:2em auto;padding:0 1em;color:#1b1f24}}
h1{{font-size:1.3em}} .sev{{font-weight:bold;text-transform:uppercase}}
button{{font-size:1.2em;padding:.6em 1.4em;background:#b3261e;color:#fff;border:0;border-radius:4px}}</style>
</head><body><h1>{title}</h1>{body}</body></html>
"""


def page(title: str, body: str) -> str:
    return _PAGE.format(title=html.escape(title), body=body)


def describe(info: dict[str, Any]) -> str:
    return (
        f"<p>Incident #{info['incident_id']} "
        f"<span class='sev'>{html.escape(str(info['severity']))}</span>: "
        f"{html.escape(str(info['summary']))}</p>"
    )


def confirm_form(info: dict[str, Any], code: str) -> str:
    """The GET answer: the incident, and a button that acknowledges it (or why it needs none)."""
    if info["status"] not in ("open", "escalated"):
        by = info.get("acknowledged_by")
        state = f"{info['status']}" + (f" by {by}" if by else "")
        return page("Nothing to acknowledge", describe(info) + f"<p>It is already {html.escape(state)}.</p>")
    who = f" as {html.escape(info['person'])}" if info.get("person") else ""
    form = (
        "<form method='post' action='ack'>"
        f"<input type='hidden' name='incident' value='{int(info['incident_id'])}'>"
        f"<input type='hidden' name='code' value='{html.escape(code, quote=True)}'>"
        f"<button type='submit'>Acknowledge{who}</button></form>"
        "<p>Acknowledging stops the escalation: nobody else is paged for this incident.</p>"
    )
    return page(f"Acknowledge incident #{info['incident_id']}", describe(info) + form)


def outcome(info: dict[str, Any]) -> str:
    """The POST answer."""
    if info.get("done"):
        return page(
            "Acknowledged",
            describe(info) + "<p>Thank you. The escalation has stopped; the operators can see it.</p>",
        )
    return page(
        "Not acknowledged",
        describe(info) + f"<p>{html.escape(str(info.get('outcome') or 'nothing was changed'))}</p>",
    )


INVALID = page(
    "This link is not valid",
    "<p>The acknowledge link is incomplete, or no page of that incident has that code. "
    "Reply to the SMS or call the control room instead.</p>",
)
TOO_MANY = page(
    "Too many attempts",
    "<p>Too many wrong codes for this incident. Try again later, or reply to the SMS.</p>",
)


class FailureLimiter:
    """Wrong codes per incident (or per client address) within a sliding window."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._seen.setdefault(client, deque())
        while times and now - times[0] > self.window:
            times.popleft()
        return times

    def blocked(self, client: str) -> bool:
        with self._lock:
            return len(self._recent(client, time.monotonic())) >= self.limit

    def failed(self, client: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._recent(client, now).append(now)
            if len(self._seen) > 10_000:  # many subjects: forget the quiet ones
                for key in [k for k, v in self._seen.items() if not v]:
                    del self._seen[key]
