"""The story harness: a dispatch centre whose engines run every pass together while the story moves the clock.

A scenario reads like the night it describes. It loads a centre (people, teams, policies) through the
configuration import a supervisor would use, triggers or acknowledges through engine.api as the console, the CLI
or the HTTP service would, and moves an injected clock forward. At every moment something is due, each engine's
runner (engine.runner.EngineRunner, with every pass the product runs: escalate, dispatch, confirm, poll, sla,
overdue, housekeeping) runs its passes until none has work left, exactly as the scheduler would have run them
at that moment. Messages leave through the real `twilio` client to the fake Twilio server and through SMTP to a
real SMTP server on loopback.

Assertions are made where a person would notice: a `Phone` expects an SMS, a WhatsApp message or a call; a
`Mailbox` expects an e-mail; the operator's view is the board row and the incident's timeline. The rule of the
house (after GoAlert's smoke tests): a message nobody expected is a failure just as a missing one is. Every story
ends with `finish()`, which fails on anything a provider received that the story did not expect.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, union_all
from twilio.request_validator import RequestValidator

from engine import api, board
from engine.clock import FakeClock
from engine.config_io import import_text
from engine.context import AppContext
from engine.db import read_session
from engine.models import (
    Escalation,
    Event,
    Incident,
    OutboxMessage,
    Page,
    WorkflowItem,
)
from engine.runner import EngineRunner
from tests.fakes.smtp_server import FakeSmtp
from tests.fakes.twilio_server import FakeTwilio

SMS_FROM = "+27870000001"
WHATSAPP_FROM = "+27870000002"
VOICE_FROM = "+27870000003"
PUBLIC_URL = "http://watchkeeper.test"
# The longest the clock moves in one step: the poll pass (replies people send, delivery reports) sees time go
# by even when nothing in the database falls due.
MAX_STEP = timedelta(minutes=5)


class StoryError(AssertionError):
    pass


@dataclass
class Delivered:
    """One thing a provider received: an SMS, a WhatsApp message, a call or an e-mail."""

    kind: str  # sms, whatsapp, call, email
    to: str
    text: str
    at: datetime
    ref: str  # the provider's id (Twilio sid) or the mail's index
    raw: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.kind} to {self.to} at {self.at:%H:%M:%S}: {self.text[:120]!r}"


class Provider:
    """What the fake Twilio and the SMTP sink received, in order, and which of it the story has expected."""

    def __init__(self, twilio: FakeTwilio, smtp: FakeSmtp, clock: FakeClock) -> None:
        self.twilio, self.smtp, self.clock = twilio, smtp, clock
        self.seen: dict[str, Delivered] = {}
        self.expected: set[str] = set()
        self._mails = 0

    def collect(self) -> list[Delivered]:
        """Everything received so far (new items stamped with the story's time)."""
        now = self.clock.now()
        for m in self.twilio.sent("Messages"):
            if m["sid"] not in self.seen:
                to = str(m["to"])
                kind = "whatsapp" if to.startswith("whatsapp:") else "sms"
                self.seen[m["sid"]] = Delivered(
                    kind, to.removeprefix("whatsapp:"), str(m["body"]), now, m["sid"], m
                )
        for c in self.twilio.sent("Calls"):
            if c["sid"] not in self.seen:
                self.seen[c["sid"]] = Delivered(
                    "call", str(c["to"]), str(c.get("twiml") or ""), now, c["sid"], c
                )
        mails = list(self.smtp.mails)
        for i in range(self._mails, len(mails)):
            mail = mails[i]
            body = mail.message.get_body(("plain", "html"))
            text = f"{mail.message['Subject']}\n{body.get_content() if body is not None else ''}"
            for rcpt in mail.recipients:
                ref = f"mail:{i}:{rcpt}"
                self.seen[ref] = Delivered("email", rcpt, text, now, ref)
        self._mails = len(mails)
        return list(self.seen.values())

    def unexpected(self) -> list[Delivered]:
        return [d for d in self.collect() if d.ref not in self.expected]

    def take(self, kind: str, to: str, contains: Iterable[str]) -> Delivered | None:
        wanted = list(contains)
        for d in self.collect():
            if d.ref in self.expected or d.kind != kind or d.to != to:
                continue
            if all(w.lower() in d.text.lower() for w in wanted):
                self.expected.add(d.ref)
                return d
        return None

    def count(self, kind: str, to: str) -> int:
        return sum(1 for d in self.collect() if d.kind == kind and d.to == to)


class Phone:
    """A person's phone: what reached it by SMS, WhatsApp and voice, and what its owner sends back."""

    def __init__(self, story: Story, number: str) -> None:
        self.story, self.number = story, number

    def _expect(self, kind: str, contains: tuple[str, ...]) -> Delivered:
        found = self.story.provider.take(kind, self.number, contains)
        if found is None:
            raise StoryError(
                f"expected {kind} to {self.number} containing {list(contains)} by "
                f"{self.story.now:%H:%M:%S}; not yet expected there: "
                + "; ".join(str(d) for d in self.story.provider.unexpected() if d.to == self.number)
            )
        return found

    def expect_sms(self, *contains: str) -> Delivered:
        return self._expect("sms", contains)

    def expect_whatsapp(self, *contains: str) -> Delivered:
        return self._expect("whatsapp", contains)

    def expect_call(self, *contains: str) -> Delivered:
        return self._expect("call", contains)

    def nothing(self) -> None:
        """Nothing new reached this phone."""
        extra = [d for d in self.story.provider.unexpected() if d.to == self.number]
        if extra:
            raise StoryError(f"{self.number} received what nobody expected: " + "; ".join(map(str, extra)))

    def received(self, kind: str = "sms") -> int:
        return self.story.provider.count(kind, self.number)

    def reply(self, text: str, channel: str = "sms") -> None:
        """The owner answers by SMS (or WhatsApp); the engine learns of it when it polls Twilio."""
        to = SMS_FROM if channel == "sms" else f"whatsapp:{WHATSAPP_FROM}"
        sender = self.number if channel == "sms" else f"whatsapp:{self.number}"
        self.story.twilio.add_inbound(sender, to, text)

    def press(self, call: Delivered, digit: str) -> str:
        """The owner presses a key during a page call: Twilio posts the gather to the service."""
        match = re.search(r'action="[^"]*message_id=(\d+)"', call.text)
        if match is None:
            raise StoryError(f"the call to {self.number} offered no keypress: {call.text[:200]!r}")
        return self.story.twilio_webhook(
            f"/twilio/voice/gather?message_id={match.group(1)}",
            {"Digits": digit, "CallSid": call.ref, "To": self.number, "From": VOICE_FROM},
        )


class Mailbox:
    def __init__(self, story: Story, address: str) -> None:
        self.story, self.address = story, address

    def expect_mail(self, *contains: str) -> Delivered:
        found = self.story.provider.take("email", self.address, contains)
        if found is None:
            raise StoryError(
                f"expected an e-mail to {self.address} containing {list(contains)} by {self.story.now:%H:%M:%S}"
            )
        return found

    def nothing(self) -> None:
        extra = [d for d in self.story.provider.unexpected() if d.to == self.address]
        if extra:
            raise StoryError(f"{self.address} received what nobody expected: " + "; ".join(map(str, extra)))


class Story:
    """A centre, its engines and its providers, and a clock the story moves."""

    def __init__(
        self,
        ctx: AppContext,
        clock: FakeClock,
        twilio: FakeTwilio,
        smtp: FakeSmtp,
        engines: list[EngineRunner],
        make_service: Callable[[], Any],
    ) -> None:
        self.ctx, self.clock, self.twilio, self.smtp = ctx, clock, twilio, smtp
        self.engines = engines
        self.provider = Provider(twilio, smtp, clock)
        self._make_service = make_service
        self._service: Any = None
        self.running = True  # False: the engines are stopped; time passes with nobody working

    # -- the centre -------------------------------------------------------------------------------------

    def load(self, yaml_text: str) -> dict[str, Any]:
        """Import a configuration document as a supervisor would (people, teams, schedules, policies …)."""
        return import_text(self.ctx, yaml_text, "centre.yaml", "supervisor")

    def phone(self, number: str) -> Phone:
        return Phone(self, number)

    def mailbox(self, address: str) -> Mailbox:
        return Mailbox(self, address)

    # -- time -------------------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def run(self) -> None:
        """Every pass of every running engine, again and again, until none has anything left to do now."""
        if not self.running:
            return
        for _ in range(30):
            if not self._all_round():
                return
        raise StoryError("the engines never settled: a pass keeps finding work at the same moment")

    def _all_round(self) -> int:
        """One round of every engine; several engines on one database work at the same moment, each in its
        own thread, as separate processes would."""
        if len(self.engines) == 1:
            return self._round(self.engines[0])
        results: list[int] = [0] * len(self.engines)
        errors: list[BaseException] = []

        def work(i: int, runner: EngineRunner) -> None:
            try:
                results[i] = self._round(runner)
            except BaseException as exc:  # surfaced below, in the story's thread
                errors.append(exc)

        threads = [
            threading.Thread(target=work, args=(i, r), daemon=True) for i, r in enumerate(self.engines)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        if errors:
            raise errors[0]
        return sum(results)

    def _round(self, runner: EngineRunner) -> int:
        did = 0
        for name in runner.passes:
            result = runner.run_pass(name)
            last = runner.last_pass()[name]
            if not last["ok"]:
                raise StoryError(f"pass {name} of {runner.ctx.node_id} failed: {result}")
            did += int(last["count"])
        return did

    def next_due(self) -> datetime | None:
        """The next moment anything in the database falls due (after now)."""
        now = self.now
        with read_session(self.ctx.sessions) as s:
            parts = [
                select(func.min(Escalation.next_action_at).label("t")).where(
                    Escalation.state.in_(("pending", "active", "escalating", "acknowledged")),
                    Escalation.next_action_at > now,
                ),
                select(func.min(Page.next_check_at).label("t")).where(
                    Page.status.in_(("active", "held")), Page.next_check_at > now
                ),
                select(func.min(OutboxMessage.next_attempt_at).label("t")).where(
                    OutboxMessage.status == "pending", OutboxMessage.next_attempt_at > now
                ),
                select(func.min(OutboxMessage.sending_deadline).label("t")).where(
                    OutboxMessage.status == "sending", OutboxMessage.sending_deadline > now
                ),
            ]
            for column in (
                Incident.response_warn_at,
                Incident.response_due_at,
                Incident.resolution_warn_at,
                Incident.resolution_due_at,
            ):
                parts.append(
                    select(func.min(column).label("t")).where(
                        Incident.status.in_(api.OPEN_STATUSES), column > now
                    )
                )
            found = [r[0] for r in s.execute(union_all(*parts)) if r[0] is not None]
            for item in s.scalars(select(WorkflowItem).where(WorkflowItem.status == "open")):
                # Reminded at 1x its limit, escalated at 2x, expired at its end.
                for at in (
                    item.started_at + timedelta(seconds=item.time_limit_seconds),
                    item.started_at + timedelta(seconds=2 * item.time_limit_seconds),
                    item.ends_at,
                ):
                    if at is not None and at > now:
                        found.append(at)
        times = [t if isinstance(t, datetime) else datetime.fromisoformat(str(t)) for t in found]
        times = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in times]
        return min(times) if times else None

    def advance(self, seconds: float = 0, *, minutes: float = 0, hours: float = 0) -> None:
        """Let time pass: the clock stops at every moment something falls due, and the engines act there."""
        self.until(self.now + timedelta(seconds=seconds, minutes=minutes, hours=hours))

    def until(self, target: datetime) -> None:
        self.run()
        while self.now < target:
            step = min(target, self.now + MAX_STEP)
            due = self.next_due() if self.running else None
            if due is not None and due < step:
                step = due
            self.clock.set(step)
            self.run()

    def stop_engines(self) -> None:
        self.running = False

    def start_engines(self) -> None:
        self.running = True
        self.run()

    # -- what people do ---------------------------------------------------------------------------------

    def trigger(self, policy: str | None, summary: str, **kw: Any) -> int:
        result = api.trigger(self.ctx, policy=policy, summary=summary, **kw)
        self.run()
        return result.incident_id

    def ack(self, incident_id: int, by: str = "operator", via: str = "console") -> None:
        api.acknowledge(self.ctx, incident_id, by=by, via=via)
        self.run()

    def resolve(self, incident_id: int, by: str = "operator") -> None:
        api.resolve(self.ctx, incident_id, by=by)
        self.run()

    def cancel(self, incident_id: int, reason: str = "false alarm", by: str = "operator") -> None:
        api.cancel(self.ctx, incident_id, reason=reason, by=by)
        self.run()

    def escalate(self, incident_id: int, level: int | None = None, by: str = "supervisor") -> None:
        api.escalate(self.ctx, incident_id, by=by, level=level)
        self.run()

    def twilio_webhook(self, path: str, params: dict[str, str]) -> str:
        """Twilio calls the service back (signed with the account's auth token); the answer's text."""
        from urllib.parse import urlencode

        if self._service is None:
            self._service = self._make_service()
        signature = RequestValidator(self.twilio.auth_token).compute_signature(PUBLIC_URL + path, params)
        reply = self._service.post(
            path,
            body=urlencode(params).encode(),
            content_type="application/x-www-form-urlencoded",
            headers={"X-Twilio-Signature": signature},
        )
        assert reply.status == 200, reply.text
        self.run()
        return str(reply.text)

    # -- what the operator sees -------------------------------------------------------------------------

    def board(self, incident_id: int) -> dict[str, Any]:
        with read_session(self.ctx.sessions) as s:
            rows = board.board_rows(s, [incident_id])
        assert rows, f"incident {incident_id} is not on the board"
        return rows[0]

    def status(self, incident_id: int) -> str:
        return str(self.board(incident_id)["status"])

    def timeline(self, incident_id: int) -> list[str]:
        """The incident's timeline as an operator reads it: 'kind: message' lines, oldest first."""
        with read_session(self.ctx.sessions) as s:
            return [
                f"{e.kind}: {e.message}"
                for e in s.scalars(select(Event).where(Event.incident_id == incident_id).order_by(Event.id))
            ]

    def said(self, incident_id: int, kind: str) -> list[str]:
        return [line for line in self.timeline(incident_id) if line.startswith(f"{kind}:")]

    def escalation_states(self, incident_id: int) -> list[str]:
        with read_session(self.ctx.sessions) as s:
            return list(
                s.scalars(
                    select(Escalation.state)
                    .where(Escalation.incident_id == incident_id)
                    .order_by(Escalation.id)
                )
            )

    def page_statuses(self, incident_id: int) -> list[str]:
        with read_session(self.ctx.sessions) as s:
            return list(
                s.scalars(select(Page.status).where(Page.incident_id == incident_id).order_by(Page.id))
            )

    # -- the end ----------------------------------------------------------------------------------------

    def quiet_for(self, **kw: float) -> None:
        """Time passes and nothing more reaches anyone."""
        self.advance(**kw)
        extra = self.provider.unexpected()
        if extra:
            raise StoryError("after the story ended, providers still received: " + "; ".join(map(str, extra)))

    def finish(self) -> None:
        """Fail on anything a provider received that the story did not expect."""
        extra = self.provider.unexpected()
        if extra:
            raise StoryError(
                "providers received what the story did not expect: " + "; ".join(map(str, extra))
            )
