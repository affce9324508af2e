"""Hearing people answer: SMS/WhatsApp replies, voice keypresses, Twilio webhooks.

Every inbound message is stored first (an InboundMessage row; a duplicate provider id is ignored), then acted
on, so nothing a person sends is ever lost, even when it matches nothing. What a reply means:

* `1`, `ack`, `ok` — acknowledge the incident of the page this person most recently received;
* `<code> ack` / `<code> resolve` (or `ack <code>`) — that page, by its reply code, when a person holds several;
* `STOP` (and Twilio's other opt-out words) — the channel goes into person.opted_out_channels; `START` removes it;
* anything else is kept as "unknown" with an event so operators see it; from a paged person it still counts
  as a response for the page's confirmation (engine.paging).

The Twilio webhook handlers are plain functions; the service's HTTP layer checks the signature
(`validate_twilio_signature`) and hands over the form fields.
"""

from __future__ import annotations

import importlib
import logging
import re
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from engine.channels.base import StatusResult
from engine.channels.twilio_common import CALL_STATUS_MAP, MESSAGE_STATUS_MAP
from engine.channels.twilio_voice import Speaker, call_twiml
from engine.claims import lock_incidents
from engine.context import AppContext
from engine.db import write_session
from engine.errors import InvalidTransition, NotFound, WatchkeeperError
from engine.models import InboundMessage, Incident, MessageStatus, OutboxMessage, Page, Person
from engine.timeline import record

log = logging.getLogger(__name__)
FAILED_STATUSES = (MessageStatus.FAILED.value, MessageStatus.UNDELIVERED.value)

ACK_WORDS = {"1", "ack", "ok", "okay", "acknowledge", "yebo", "ja"}
RESOLVE_WORDS = {"resolve", "resolved", "res"}
STOP_WORDS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit"}
START_WORDS = {"start", "unstop"}
DELIVERED_PAGE_STATUSES = (
    MessageStatus.SENT.value,
    MessageStatus.DELIVERED.value,
    MessageStatus.READ.value,
)


def normalise_address(channel: str, address: str) -> str:
    address = address.strip()
    if address.lower().startswith("whatsapp:"):
        address = address[len("whatsapp:") :]
    if channel == "email":
        match = re.search(r"<([^>]+)>", address)
        return (match.group(1) if match else address).strip().lower()
    return address.replace(" ", "")


def parse_reply(body: str) -> tuple[str, str | None]:
    """(action, reply code): action is ack, resolve, stop, start or unknown."""
    words = re.findall(r"[a-z0-9]+", body.strip().lower())
    if not words:
        return "unknown", None
    if len(words) == 1:
        word = words[0]
        if word in ACK_WORDS:
            return "ack", None
        if word in STOP_WORDS:
            return "stop", None
        if word in START_WORDS:
            return "start", None
        return "unknown", None
    if len(words) == 2:
        first, second = words
        for code, verb in ((first, second), (second, first)):
            if code in ACK_WORDS | RESOLVE_WORDS:
                continue
            if verb in ACK_WORDS:
                return "ack", code
            if verb in RESOLVE_WORDS:
                return "resolve", code
    return "unknown", None


def find_person(session: Session, channel: str, address: str) -> Person | None:
    if not address:
        return None
    if channel == "email":
        query = select(Person).where(func.lower(Person.email) == address)
    elif channel == "whatsapp":
        query = select(Person).where(or_(Person.whatsapp == address, Person.phone == address))
    else:
        query = select(Person).where(Person.phone == address)
    return session.execute(
        query.where(Person.active.is_(True)).order_by(Person.id).limit(1)
    ).scalar_one_or_none()


def _latest_page(session: Session, person_id: int) -> Page | None:
    """The page whose message most recently reached this person."""
    row = session.execute(
        select(OutboxMessage.page_id)
        .where(
            OutboxMessage.person_id == person_id,
            OutboxMessage.page_id.is_not(None),
            OutboxMessage.status.in_(DELIVERED_PAGE_STATUSES),
        )
        .order_by(OutboxMessage.sent_at.desc(), OutboxMessage.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return session.get(Page, row) if row is not None else None


def _page_by_code(session: Session, code: str, person_id: int | None) -> Page | None:
    query = select(Page).where(Page.reply_code == code)
    if person_id is not None:
        query = query.where(or_(Page.person_id == person_id, Page.person_id.is_(None)))
    return session.execute(query.order_by(Page.id.desc()).limit(1)).scalar_one_or_none()


def _act_on_incident(ctx: AppContext, action: str, incident_id: int, by: str, via: str) -> tuple[bool, str]:
    """Call the engine's public API; (done, what happened)."""
    try:
        api: Any = importlib.import_module("engine.api")
    except ImportError:  # pragma: no cover - only while the escalation part is being built
        return False, "engine.api is not installed"
    try:
        if action == "ack":
            api.acknowledge(ctx, incident_id, by=by, via=via)
            return True, f"acknowledged #{incident_id}"
        api.resolve(ctx, incident_id, by=by, via=via)
        return True, f"resolved #{incident_id}"
    except (InvalidTransition, NotFound) as exc:
        return False, str(exc)
    except WatchkeeperError as exc:
        return False, str(exc)


def handle_inbound(
    ctx: AppContext,
    channel: str,
    from_address: str,
    body: str,
    provider_id: str | None = None,
    to_address: str = "",
) -> dict[str, Any]:
    """Store one inbound message and act on it. Returns what was done (for the webhook's reply and tests)."""
    now = ctx.clock.now()
    address = normalise_address(channel, from_address)
    action, code = parse_reply(body)
    result: dict[str, Any] = {"action": action, "code": code, "duplicate": False, "person": None}
    try:
        with write_session(ctx.sessions) as session:
            if provider_id is not None:
                existing = session.execute(
                    select(InboundMessage.id).where(InboundMessage.provider_id == provider_id)
                ).scalar_one_or_none()
                if existing is not None:
                    return result | {"duplicate": True, "inbound_id": existing}
            person = find_person(session, channel, address)
            inbound = InboundMessage(
                channel=channel,
                from_address=address,
                to_address=to_address,
                body=body,
                provider_id=provider_id,
                person_id=person.id if person else None,
                action=action,
                handled=False,
                received_at=now,
            )
            session.add(inbound)
            page: Page | None = None
            if person is not None:
                result["person"] = person.name
                if action in ("ack", "resolve"):
                    page = (
                        _page_by_code(session, code, person.id) if code else _latest_page(session, person.id)
                    )
                elif action in ("stop", "start"):
                    _opt(session, person, channel, action == "stop", now)
                    inbound.handled = True
                else:
                    page = _latest_page(session, person.id)
            elif action in ("ack", "resolve") and code:
                page = _page_by_code(session, code, None)
            if page is not None:
                inbound.page_id = page.id
                inbound.incident_id = page.incident_id
                if action in ("ack", "resolve"):
                    # The person answered their page: it shows confirmed by this reply, whatever the
                    # acknowledgement that follows does to the incident's other pages.
                    lock_incidents(session, [page.incident_id])
                    _confirm(session, page, now, f"{channel} {action}")
            session.flush()
            inbound_id = inbound.id
            incident_id = page.incident_id if page is not None else None
            page_id = page.id if page is not None else None
            person_name = person.name if person is not None else None
            if action == "unknown" or (action in ("ack", "resolve") and page is None):
                record(
                    session,
                    "inbound_unmatched" if action == "unknown" else "reply_unmatched",
                    now,
                    incident_id=incident_id,
                    actor=person_name or address,
                    message=f"{channel} from {person_name or address}: {body[:300]}",
                    data={"inbound_id": inbound_id, "channel": channel, "from": address, "action": action},
                )
                if action == "unknown" and page is not None:
                    _confirm(session, page, now, f"{channel} reply")
    except IntegrityError:
        # Another engine stored the same provider message a moment ago.
        return result | {"duplicate": True}
    result.update(inbound_id=inbound_id, incident_id=incident_id, page_id=page_id)
    if action in ("ack", "resolve") and incident_id is not None:
        by = person_name or address
        done, what = _act_on_incident(ctx, action, incident_id, by, channel)
        with write_session(ctx.sessions) as session:
            row = session.get(InboundMessage, inbound_id)
            if row is not None:
                row.handled = done
            _reply_outcome(
                session,
                page_id,
                now,
                f"{channel} {action}",
                confirm=True,
                incident_id=incident_id,
                by=by,
                done=done,
                message=f"{channel} reply {body.strip()[:40]!r} from {by}: {what}",
                data={"inbound_id": inbound_id, "action": action, "page_id": page_id, "done": done},
            )
        result.update(done=done, outcome=what)
    else:
        result["done"] = action in ("stop", "start") and result["person"] is not None
    return result


def ack_link(ctx: AppContext, incident_id: int, code: str, *, act: bool) -> dict[str, Any] | None:
    """The acknowledge link in a page e-mail (`/ack?incident=…&code=…`): None when no page of that incident
    has that reply code. With act=False it only describes the incident (a mail scanner that follows the
    link must not acknowledge anything); with act=True it acknowledges as the paged person and confirms
    the page, like an SMS reply would."""
    if not code.isdigit() or len(code) > 12:
        return None
    with ctx.sessions() as session:
        page = session.execute(
            select(Page)
            .where(Page.reply_code == code, Page.incident_id == incident_id)
            .order_by(Page.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        if page is None:
            return None
        incident = session.get(Incident, incident_id)
        if incident is None:
            return None
        person = session.get(Person, page.person_id) if page.person_id is not None else None
        info: dict[str, Any] = {
            "incident_id": incident.id,
            "summary": incident.summary,
            "severity": incident.severity,
            "status": incident.status,
            "acknowledged_by": incident.acknowledged_by,
            "person": person.name if person is not None else None,
            "page_id": page.id,
            "done": False,
        }
    if not act:
        return info
    by = info["person"] or "e-mail link"
    done, what = _act_on_incident(ctx, "ack", incident_id, by, "email link")
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        _reply_outcome(
            session,
            info["page_id"],
            now,
            "email link",
            confirm=done,
            incident_id=incident_id,
            by=by,
            done=done,
            message=f"e-mail acknowledge link from {by}: {what}",
            data={"action": "ack", "page_id": info["page_id"], "done": done, "via": "email link"},
        )
    return info | {"done": done, "outcome": what}


def _reply_outcome(
    session: Session,
    page_id: int | None,
    now: datetime,
    method: str,
    *,
    confirm: bool,
    incident_id: int,
    by: str,
    done: bool,
    message: str,
    data: dict[str, Any],
) -> None:
    """After a reply or link acted on an incident: confirm the page (stops its chain) and record the outcome."""
    page_row = session.get(Page, page_id) if page_id is not None else None
    if page_row is not None and confirm:
        _confirm(session, page_row, now, method)
    record(
        session,
        "reply_handled" if done else "reply_not_applied",
        now,
        incident_id=incident_id,
        actor=by,
        message=message,
        data=data,
    )


def _confirm(session: Session, page: Page, now: datetime, method: str) -> None:
    try:
        from engine import paging
    except ImportError:  # pragma: no cover
        return
    paging.confirm_page(session, page, now, method)


def _opt(session: Session, person: Person, channel: str, out: bool, now: datetime) -> None:
    current = [str(c) for c in (person.opted_out_channels or [])]
    if out and channel not in current:
        person.opted_out_channels = [*current, channel]
    elif not out and channel in current:
        person.opted_out_channels = [c for c in current if c != channel]
    else:
        return
    record(
        session,
        "person_opted_out" if out else "person_opted_in",
        now,
        actor=person.name,
        message=f"{person.name} {'opted out of' if out else 'opted back in to'} {channel}",
        data={"person_id": person.id, "channel": channel},
    )


# --------------------------------------------------------------------------------------------------------
# Twilio webhooks
# --------------------------------------------------------------------------------------------------------


def validate_twilio_signature(url: str, params: dict[str, Any], signature: str, auth_token: str) -> bool:
    """Is this request really from Twilio? (X-Twilio-Signature over the full URL and the POST fields.)"""
    ok = (
        bool(auth_token) and bool(signature) and RequestValidator(auth_token).validate(url, params, signature)
    )
    if not ok:
        log.warning("refused a Twilio webhook with a bad signature for %s", url.split("?")[0])
    return bool(ok)


def handle_status_callback(ctx: AppContext, params: dict[str, Any]) -> dict[str, Any]:
    """A delivery status from Twilio (Messages or Calls); only moves a message forward."""
    from engine.dispatch import apply_status

    sid = str(params.get("MessageSid") or params.get("SmsSid") or params.get("CallSid") or "")
    if "MessageStatus" in params or "SmsStatus" in params:
        raw = str(params.get("MessageStatus") or params.get("SmsStatus"))
        status = MESSAGE_STATUS_MAP.get(raw, "sent")
    else:
        raw = str(params.get("CallStatus") or "")
        status = CALL_STATUS_MAP.get(raw, "sent")
    if not sid:
        return {"updated": False, "reason": "no message sid"}
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        row = session.execute(
            select(OutboxMessage).where(OutboxMessage.provider_id == sid)
        ).scalar_one_or_none()
        if row is None:
            return {"updated": False, "reason": "unknown message", "sid": sid}
        if status in FAILED_STATUSES and row.page_id is not None:
            lock_incidents(session, [row.incident_id])  # a failure moves the chain on: incident first
        error_code = str(params.get("ErrorCode") or "") or None
        answer = StatusResult(
            provider_id=sid,
            status=status,
            error_code=error_code,
            error_text=f"Twilio error {error_code}" if error_code else None,
        )
        updated = apply_status(session, row, answer, now, "callback")
        return {"updated": updated, "sid": sid, "status": row.status, "message_id": row.id}


def handle_inbound_webhook(ctx: AppContext, params: dict[str, Any]) -> dict[str, Any]:
    """An SMS or WhatsApp message to our number; the result carries the TwiML to answer with."""
    sender = str(params.get("From") or "")
    channel = "whatsapp" if sender.lower().startswith("whatsapp:") else "sms"
    result = handle_inbound(
        ctx,
        channel,
        sender,
        str(params.get("Body") or ""),
        provider_id=str(params.get("MessageSid") or params.get("SmsSid") or "") or None,
        to_address=str(params.get("To") or ""),
    )
    response = MessagingResponse()
    if result.get("done") and result.get("outcome"):
        response.message(f"Watchkeeper: {result['outcome']}. Thank you.")
    elif result["action"] in ("ack", "resolve") and not result.get("duplicate"):
        response.message("Watchkeeper: no page of yours matches that reply.")
    result["twiml"] = str(response)
    return result


def voice_twiml(ctx: AppContext, message_id: int) -> str:
    """The TwiML for a page call, fetched by Twilio from the service (when calls are placed by URL)."""
    with ctx.sessions() as session:
        row = session.get(OutboxMessage, message_id)
        if row is None:
            return _spoken("en", "unavailable")
        person = session.get(Person, row.person_id) if row.person_id else None
        page = session.get(Page, row.page_id) if row.page_id else None
        return call_twiml(
            row.body,
            message_id=row.id,
            public_base_url=ctx.settings.public_base_url,
            language=person.language if person else "en",
            reply_code=page.reply_code if page else None,
        )


def _spoken(language: str, prompt: str, **context: str) -> str:
    """TwiML that says one prompt in the language of the call."""
    response = VoiceResponse()
    speaker = Speaker(language)
    speaker.say(response, speaker.prompt(prompt, **context))
    return str(response)


def handle_voice_gather(ctx: AppContext, params: dict[str, Any]) -> str:
    """The keypress of a page call: 1 acknowledges, 2 resolves; the answer is TwiML to speak."""
    digits = str(params.get("Digits") or "").strip()
    message_id = params.get("message_id")
    call_sid = str(params.get("CallSid") or "")
    with ctx.sessions() as session:
        row: OutboxMessage | None = None
        if message_id not in (None, ""):
            try:
                row = session.get(OutboxMessage, int(str(message_id)))
            except ValueError:
                row = None
        if row is None and call_sid:
            row = session.execute(
                select(OutboxMessage).where(OutboxMessage.provider_id == call_sid)
            ).scalar_one_or_none()
        incident_id = row.incident_id if row else None
        page_id = row.page_id if row else None
        person = session.get(Person, row.person_id) if row and row.person_id else None
        by = person.name if person else str(params.get("To") or "phone")
        language = person.language if person else "en"
    if incident_id is None or digits not in ("1", "2"):
        return _spoken(language, "wrong_key" if digits else "no_key")
    action = "ack" if digits == "1" else "resolve"
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        if page_id is not None:
            lock_incidents(session, [incident_id])
            page_row = session.get(Page, page_id)
            if page_row is not None:
                _confirm(session, page_row, now, f"voice {action}")
        session.add(
            InboundMessage(
                channel="voice",
                from_address=str(params.get("To") or ""),
                to_address=str(params.get("From") or ""),
                body=f"keypress {digits}",
                provider_id=f"{call_sid}:{digits}" if call_sid else None,
                person_id=person.id if person else None,
                incident_id=incident_id,
                page_id=page_id,
                action=action,
                handled=False,
                received_at=now,
            )
        )
    done, what = _act_on_incident(ctx, action, incident_id, by, "voice")
    with write_session(ctx.sessions) as session:
        _reply_outcome(
            session,
            page_id,
            now,
            f"voice {action}",
            confirm=True,
            incident_id=incident_id,
            by=by,
            done=done,
            message=f"voice keypress {digits} from {by}: {what}",
            data={"action": action, "page_id": page_id, "done": done},
        )
    if done:
        return _spoken(language, "acknowledged" if action == "ack" else "resolved")
    return _spoken(language, "not_done", reason=what)
