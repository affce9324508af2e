"""The one small interface every channel implements, and the vocabulary of results and errors.

A sender takes an `OutgoingMessage` (a plain copy of an outbox row, so no database session crosses into the
thread that talks to the provider), returns a `SendResult`, or raises `SendError` saying whether trying again
can help. Secrets never appear in error text: `scrub` removes them from anything a provider library raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Capabilities:
    supports_status_poll: bool = False
    supports_inbound: bool = False
    supports_html: bool = False
    supports_keypress: bool = False
    max_body_chars: int | None = None


@dataclass(frozen=True)
class OutgoingMessage:
    """What a sender needs to know about one outbox row."""

    id: int
    channel: str
    address: str
    body: str
    subject: str = ""
    body_html: str | None = None
    kind: str = "page"
    idempotency_key: str = ""
    incident_id: int | None = None
    escalation_id: int | None = None
    page_id: int | None = None
    person_id: int | None = None
    critical: bool = False
    reply_code: str | None = None
    # WhatsApp outside the 24-hour session window: an approved content template and its variables.
    content_sid: str | None = None
    content_variables: dict[str, str] = field(default_factory=dict)
    whatsapp_session_open: bool = True
    ack_url: str | None = None
    language: str = "en"  # the person's language (a call is spoken in it where Twilio has a voice for it)
    target: str | None = None  # the policy target's name, for a webhook: it picks the target's signing key


@dataclass(frozen=True)
class SendResult:
    provider_id: str | None
    status: str = "sent"  # a MessageStatus value: sent, delivered (console, webhook), …
    segments: int | None = None
    encoding: str | None = None
    price: Decimal | None = None
    currency: str | None = None
    simulated: bool = False
    detail: str = ""  # the provider's answer, for test-send and the event log (never a secret)
    event_kind: str | None = None  # an extra timeline event the dispatcher records (console pop-ups)


@dataclass(frozen=True)
class StatusResult:
    provider_id: str
    status: str  # a MessageStatus value
    error_code: str | None = None
    error_text: str | None = None
    price: Decimal | None = None
    currency: str | None = None
    segments: int | None = None


@dataclass(frozen=True)
class InboundItem:
    """A message a person sent us, as a provider lists it (polling)."""

    provider_id: str
    from_address: str
    to_address: str
    body: str
    channel: str


class SendError(Exception):
    """A send that did not work. `retryable` says whether the same message may succeed later."""

    def __init__(
        self, text: str, *, retryable: bool, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(text)
        self.text = text
        self.retryable = retryable
        self.code = code
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"SendError({self.text!r}, retryable={self.retryable}, code={self.code!r})"


class CannotTell(Exception):
    """A provider cannot say whether it has a message (a WhatsApp content template: its body is Twilio's)."""


@runtime_checkable
class Sender(Protocol):
    name: str
    capabilities: Capabilities
    simulated: bool

    def send(self, message: OutgoingMessage) -> SendResult: ...

    def fetch_status(self, provider_id: str) -> StatusResult: ...


class InboundSource(Protocol):
    def fetch_inbound(self, since_provider_ids: set[str], limit: int = 50) -> list[InboundItem]: ...


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Text with every secret replaced by a marker, for error messages and logs."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[secret]")
    return text


def classify_http_status(status: int, retry_after: float | None = None) -> tuple[bool, float | None]:
    """(retryable, retry_after) for an HTTP status: 429 and 5xx may work later, other 4xx never will."""
    if status == 429:
        return True, retry_after
    if status >= 500 or status in (408, 425):
        return True, retry_after
    return False, None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; an HTTP date is treated as 'soon')."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None
