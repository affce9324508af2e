"""SMS through the Twilio Messages API (the official `twilio` client)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.channels.base import (
    CannotTell,
    Capabilities,
    InboundItem,
    OutgoingMessage,
    SendResult,
    StatusResult,
)
from engine.channels.twilio_common import (
    MESSAGE_STATUS_MAP,
    answer_lost,
    int_or_none,
    make_client,
    price_of,
    send_error_from,
)
from engine.templates import sms_info

log = logging.getLogger("watchkeeper.channels.twilio")
# How far Twilio's clock may be behind ours when matching a message it created to the one we sent.
CLOCK_SKEW = timedelta(seconds=5)


class TwilioMessagesSender:
    """Shared by SMS and WhatsApp: create, fetch and list Message resources."""

    name = "sms"
    simulated = False
    capabilities = Capabilities(supports_status_poll=True, supports_inbound=True)

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str,
        timeout: float,
        messaging_service_sid: str = "",
        status_callback: str | None = None,
        pool_size: int = 32,
    ) -> None:
        self.account_sid = account_sid
        self._token = auth_token
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.status_callback = status_callback
        self.client, self.http = make_client(account_sid, auth_token, base_url, timeout, pool_size)

    def _address(self, number: str) -> str:
        return number

    def _create_args(self, message: OutgoingMessage) -> dict[str, Any]:
        args: dict[str, Any] = {"to": self._address(message.address), "body": message.body}
        if self.messaging_service_sid:
            args["messaging_service_sid"] = self.messaging_service_sid
        else:
            args["from_"] = self._address(self.from_number)
        return args

    def send(self, message: OutgoingMessage) -> SendResult:
        args = self._create_args(message)
        if self.status_callback:
            args["status_callback"] = self.status_callback
        started = datetime.now(UTC)
        try:
            created = self._create(args, started)
        except Exception as exc:
            raise send_error_from(exc, self.http, [self._token]) from None
        encoding, segments, _chars = sms_info(message.body)
        return SendResult(
            provider_id=created.sid,
            status=MESSAGE_STATUS_MAP.get(str(created.status), "sent"),
            segments=int_or_none(created.num_segments) or segments,
            encoding=encoding,
            price=price_of(created.price),
            currency=(created.price_unit or None),
            detail=f"{created.sid} {created.status}",
        )

    def _create(self, args: dict[str, Any], started: datetime) -> Any:
        """Create the message. When the request went out but its answer was lost, Twilio may have the message:
        look for it before writing it again, so a dropped connection does not page someone twice."""
        try:
            return self.client.messages.create(**args)
        except Exception as exc:
            if not answer_lost(exc):
                raise
            try:
                found = self._created_since(args, started)
            except Exception:
                log.warning(
                    "no answer from Twilio and it cannot be asked whether it has the message; it is retried"
                )
                raise exc from None
            if found is not None:
                log.info("no answer from Twilio, but it has the message: %s", found.sid)
                return found
            if "body" not in args:
                raise  # a content template: Twilio's body is its rendering, so the message cannot be told apart
            return self.client.messages.create(**args)  # Twilio does not have it: it never arrived

    def _created_since(self, args: dict[str, Any], started: datetime) -> Any:
        """The message Twilio created from these arguments since `started` (allowing for clock skew), or None.
        Matched on recipient, sender and the exact body: a page's body names its incident, so another message
        to the same person within those seconds does not match."""
        if "body" not in args:
            return None
        since = started - CLOCK_SKEW
        # Newest first, page by page, until older than `since`: a person paged for many incidents at once has
        # many messages from us in those seconds, and the one we look for may be far down the list.
        for m in self.client.messages.stream(to=args["to"], page_size=200):
            created = m.date_created
            if created is not None and created < since:
                break
            if (
                str(m.direction or "").startswith("outbound")
                and m.body == args["body"]
                and ("from_" not in args or getattr(m, "from_", None) == args["from_"])
            ):
                return m
        return None

    def find_sent(self, message: OutgoingMessage, since: datetime) -> SendResult | None:
        """The message as Twilio has it when it created this one since `since` (an engine stopped while
        sending it), else None; CannotTell for a content template, whose body Twilio writes itself."""
        args = self._create_args(message)
        if "body" not in args:
            raise CannotTell("a content template cannot be matched")
        found = self._created_since(args, since + CLOCK_SKEW)
        if found is None:
            return None
        encoding, segments, _chars = sms_info(message.body)
        return SendResult(
            provider_id=found.sid,
            status=MESSAGE_STATUS_MAP.get(str(found.status), "sent"),
            segments=int_or_none(found.num_segments) or segments,
            encoding=encoding,
            price=price_of(found.price),
            currency=(found.price_unit or None),
            detail=f"{found.sid} {found.status} (found after a stop)",
        )

    def fetch_status(self, provider_id: str) -> StatusResult:
        try:
            found = self.client.messages(provider_id).fetch()
        except Exception as exc:
            raise send_error_from(exc, self.http, [self._token]) from None
        return StatusResult(
            provider_id=provider_id,
            status=MESSAGE_STATUS_MAP.get(str(found.status), "sent"),
            error_code=str(found.error_code) if found.error_code else None,
            error_text=found.error_message or None,
            price=price_of(found.price),
            currency=found.price_unit or None,
            segments=int_or_none(found.num_segments),
        )

    def fetch_inbound(self, since_provider_ids: set[str], limit: int = 50) -> list[InboundItem]:
        """Messages people sent to our number that we have not stored yet (newest `limit`)."""
        to = self._address(self.from_number)
        if not self.from_number:
            return []
        try:
            listed = self.client.messages.list(to=to, limit=limit)
        except Exception as exc:
            raise send_error_from(exc, self.http, [self._token]) from None
        items: list[InboundItem] = []
        for m in listed:
            if m.sid in since_provider_ids or (m.direction and m.direction != "inbound"):
                continue
            items.append(
                InboundItem(
                    provider_id=str(m.sid),
                    from_address=str(getattr(m, "from_", "") or ""),
                    to_address=str(m.to or ""),
                    body=str(m.body or ""),
                    channel=self.name,
                )
            )
        return items


class TwilioSmsSender(TwilioMessagesSender):
    name = "sms"
    capabilities = Capabilities(supports_status_poll=True, supports_inbound=True, max_body_chars=1600)
