"""Which channels a site sends on for real, which it simulates, and which it has not set up — from settings
alone, so the console's banner and the health page can say so without building senders."""

from __future__ import annotations

from engine.settings import Settings

SIMULATABLE = ("sms", "whatsapp", "voice", "email", "webhook")


def simulated_channels(settings: Settings) -> set[str]:
    """The channels this site simulates by choice (the `simulated_channels` setting; "all" is every one)."""
    chosen = {str(c).lower() for c in settings.simulated_channels}
    return set(SIMULATABLE) if "all" in chosen else chosen & set(SIMULATABLE)


def setup_gaps(settings: Settings) -> dict[str, str]:
    """What the settings lack for each channel to send for real: {channel: why}, from settings alone (the
    Twilio auth token and the SMTP password live in the keyring; build_senders checks those)."""
    gaps: dict[str, str] = {}
    twilio = bool(settings.twilio_account_sid)
    if not twilio or not (settings.twilio_sms_from or settings.twilio_messaging_service_sid):
        gaps["sms"] = "no Twilio account or SMS sender number" if twilio else "no Twilio account"
    if not twilio or not settings.twilio_whatsapp_from:
        gaps["whatsapp"] = "no WhatsApp sender number" if twilio else "no Twilio account"
    if not twilio or not settings.twilio_voice_from:
        gaps["voice"] = "no voice caller number" if twilio else "no Twilio account"
    if not settings.smtp_host:
        gaps["email"] = "no SMTP host"
    return gaps


def channel_modes(settings: Settings) -> dict[str, str]:
    """{channel: "simulated" | "not set up: <why>" | "real"} for the channels that reach people."""
    simulate = simulated_channels(settings)
    gaps = setup_gaps(settings)
    out: dict[str, str] = {}
    for name in SIMULATABLE:
        if name in simulate:
            out[name] = "simulated"
        elif name in gaps:
            out[name] = f"not set up: {gaps[name]}"
        else:
            out[name] = "real"
    return out
