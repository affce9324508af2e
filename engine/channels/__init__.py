"""Channels: one module per way of reaching a person, behind the small interface in `base`.

`build_senders` turns settings and secrets into one sender per channel. A channel named in the
`simulated_channels` setting (the demo, a rehearsal) gets a `SimulatedSender`, clearly labelled in the outbox and
the timeline; a channel the site has not set up gets an `UnavailableSender`, which the dispatcher skips at once
in each person's chain with an event saying why — never "delivered". `senders_for(ctx)` keeps one set
per AppContext so HTTP connection pools and worker threads are reused between passes; tests may install
their own with `install_senders`. `test_send` is what `watchkeeper test-send` runs.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any, Protocol, cast

from engine.channels.base import (
    Capabilities,
    InboundItem,
    OutgoingMessage,
    Sender,
    SendError,
    SendResult,
    StatusResult,
)
from engine.channels.console import ConsoleSender
from engine.channels.setup import setup_gaps, simulated_channels
from engine.channels.simulated import SimulatedSender
from engine.channels.unavailable import UnavailableSender
from engine.clock import Clock, SystemClock
from engine.context import AppContext
from engine.errors import ValidationError, WatchkeeperError
from engine.models import Channel
from engine.settings import Settings

__all__ = [
    "Capabilities",
    "ChannelSet",
    "InboundItem",
    "OutgoingMessage",
    "SendError",
    "SendResult",
    "Sender",
    "StatusResult",
    "build_senders",
    "install_senders",
    "senders_for",
    "test_send",
]

ALL_CHANNELS = [c.value for c in Channel]


class SecretSource(Protocol):
    def get(self, name: str) -> str | None: ...


@dataclass
class ChannelSet:
    senders: dict[str, Sender]

    def close(self) -> None:
        """Close the senders' network connections (service stop, settings change, test teardown)."""
        for sender in self.senders.values():
            transport = getattr(sender, "http", None)
            closer = getattr(transport, "close", None)
            if callable(closer):
                closer()

    def get(self, channel: str) -> Sender:
        try:
            return self.senders[channel]
        except KeyError:
            raise ValidationError(f"unknown channel {channel!r}", field="channel") from None


def _default_secrets() -> SecretSource:
    from engine.secrets import SecretStore

    return SecretStore()


def _secret(secrets: SecretSource, name: str) -> tuple[str | None, str]:
    """(value, why-not) — a keyring that fails makes the channel simulated rather than stopping dispatch."""
    try:
        return secrets.get(name), "no credentials"
    except WatchkeeperError as exc:
        return None, f"secret unavailable: {exc}"


def build_senders(
    settings: Settings, secrets: SecretSource | None = None, clock: Clock | None = None
) -> dict[str, Sender]:
    from engine.channels.email_smtp import SmtpEmailSender
    from engine.channels.twilio_sms import TwilioSmsSender
    from engine.channels.twilio_voice import TwilioVoiceSender
    from engine.channels.twilio_whatsapp import TwilioWhatsAppSender
    from engine.channels.webhook import WebhookSender

    secrets = secrets or _default_secrets()
    clock = clock or SystemClock()
    simulate = simulated_channels(settings)
    senders: dict[str, Sender] = {"console": ConsoleSender()}
    token, why = _secret(secrets, "twilio_auth_token")
    public = settings.public_base_url.rstrip("/")
    status_callback = f"{public}/twilio/status" if public else None
    common: dict[str, Any] = {
        "account_sid": settings.twilio_account_sid,
        "auth_token": token or "",
        "base_url": settings.twilio_base_url,
        "timeout": settings.twilio_timeout_seconds,
    }
    missing = setup_gaps(settings)
    if not token:
        for name in ("sms", "whatsapp", "voice"):
            missing.setdefault(
                name, why if why != "no credentials" else "no Twilio auth token in the keyring"
            )

    def pick(name: str, real: Any) -> Sender:
        if name in simulate:
            return SimulatedSender(name, "simulated by the simulated_channels setting")
        if name in missing:
            return UnavailableSender(name, missing[name])
        return cast(Sender, real())

    senders["sms"] = pick(
        "sms",
        lambda: TwilioSmsSender(
            from_number=settings.twilio_sms_from,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            status_callback=status_callback,
            **common,
        ),
    )
    senders["whatsapp"] = pick(
        "whatsapp",
        lambda: TwilioWhatsAppSender(
            from_number=settings.twilio_whatsapp_from, status_callback=status_callback, **common
        ),
    )
    # Without a public URL a call asks for the reply code by text, if a text can reach us at all.
    sms_real = _sends_for_real(senders["sms"])
    senders["voice"] = pick(
        "voice",
        lambda: TwilioVoiceSender(
            from_number=settings.twilio_voice_from,
            public_base_url=public,
            reply_by_text=sms_real or _sends_for_real(senders["whatsapp"]),
            sms_number=settings.twilio_sms_from if sms_real else "",
            **common,
        ),
    )

    def smtp() -> Sender:
        password, _ = _secret(secrets, "smtp_password")
        return SmtpEmailSender(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=password,
            from_address=settings.smtp_from,
            timeout=settings.smtp_timeout_seconds,
        )

    senders["email"] = pick("email", smtp)
    signing_key, _ = _secret(secrets, "webhook_signing_key")
    senders["webhook"] = pick(
        "webhook",
        lambda: WebhookSender(
            signing_key=signing_key, timeout=settings.webhook_timeout_seconds, clock=clock, secret=secrets.get
        ),
    )
    return senders


def _sends_for_real(sender: Sender) -> bool:
    return not sender.simulated and bool(getattr(sender, "available", True))


_SETS: dict[int, tuple[weakref.ref[AppContext], ChannelSet]] = {}
_SETS_LOCK = threading.Lock()


def install_senders(ctx: AppContext, senders: dict[str, Sender]) -> ChannelSet:
    """Use these senders for this context (tests, or a service that rebuilt them after a settings change)."""
    channel_set = ChannelSet(dict(senders))
    with _SETS_LOCK:
        previous = _SETS.get(id(ctx))
        if previous is not None and previous[0]() is ctx:
            previous[1].close()
        _SETS[id(ctx)] = (weakref.ref(ctx), channel_set)
        for key, (ref, _) in list(_SETS.items()):
            if ref() is None:
                del _SETS[key]
    return channel_set


def close_senders(ctx: AppContext) -> None:
    with _SETS_LOCK:
        found = _SETS.pop(id(ctx), None)
    if found is not None:
        found[1].close()


def senders_for(ctx: AppContext) -> ChannelSet:
    with _SETS_LOCK:
        found = _SETS.get(id(ctx))
        if found and found[0]() is ctx:
            return found[1]
    return install_senders(ctx, build_senders(ctx.settings, clock=ctx.clock))


def test_send(ctx: AppContext, channel: str, to: str, text: str) -> dict[str, Any]:
    """Send one message straight through a channel (no outbox, no retries) and report the provider's answer."""
    if channel not in ALL_CHANNELS:
        raise ValidationError(
            f"unknown channel {channel!r}: use one of {', '.join(ALL_CHANNELS)}", field="channel"
        )
    if not to.strip():
        raise ValidationError("give an address to send to", field="to")
    sender = senders_for(ctx).get(channel)
    message = OutgoingMessage(
        id=0,
        channel=channel,
        address=to.strip(),
        body=text,
        subject="Watchkeeper test message",
        kind="test",
        idempotency_key=f"test:{ctx.clock.now().isoformat()}",
    )
    answer: dict[str, Any] = {"channel": channel, "to": to, "simulated": sender.simulated}
    try:
        result = sender.send(message)
    except SendError as exc:
        answer.update(ok=False, retryable=exc.retryable, error_code=exc.code, error=exc.text)
        return answer
    answer.update(
        ok=True,
        provider_id=result.provider_id,
        status=result.status,
        segments=result.segments,
        encoding=result.encoding,
        price=str(result.price) if result.price is not None else None,
        currency=result.currency,
        detail=result.detail,
    )
    return answer
