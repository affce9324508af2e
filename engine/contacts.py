"""Contact details and small value types as people type them: phone numbers, e-mail addresses, time zones,
durations and wall-clock times.

Everything here is pure: a value in, the normalised value out, or a ValidationError whose text names the value
and says what is wrong with it ("'082 123' is not a valid phone number"). Configuration import, the console's
editors and the CLI all validate through these functions, so a number is stored in one form (E.164) whichever
way it arrived.
"""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers

from engine.errors import ValidationError

DEFAULT_REGION = "ZA"

# National significant number lengths we insist on where phonenumbers' metadata also admits short service
# codes (South Africa's mobile pattern matches 5-digit USSD/short codes, which cannot be paged).
_NATIONAL_LENGTHS: dict[int, tuple[int, ...]] = {27: (9,)}

# Prefixes channels put in front of an address: Twilio's "whatsapp:+27…", "tel:", "sms:".
_ADDRESS_PREFIXES = ("whatsapp:", "tel:", "sms:", "voice:")

# A practical address check (RFC 5322 is far wider): one @, a local part without spaces, a dotted domain
# whose labels are letters, digits and hyphens, a top-level label of at least two letters.
_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})$"
)

_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_HHMM_RE = re.compile(r"^(\d{1,2}):(\d{2})$")


# ------------------------------------------------------------------------------------------------------
# Phone numbers
# ------------------------------------------------------------------------------------------------------


def normalise_phone(raw: str, default_region: str = DEFAULT_REGION) -> str:
    """A phone number as typed ("082 123 4567", "+27 82 123 4567", "whatsapp:+27821234567") -> E.164.

    Numbers without a country code are read in `default_region` (South Africa unless told otherwise).
    Raises ValidationError for anything that is not a complete, valid number.
    """
    if not isinstance(raw, str):
        raise ValidationError(f"{raw!r} is not a valid phone number (expected text such as '+27821234567')")
    text = raw.strip()
    lowered = text.lower()
    for prefix in _ADDRESS_PREFIXES:
        if lowered.startswith(prefix):
            text = text[len(prefix) :].strip()
            break
    if not text:
        raise ValidationError(f"{raw!r} is not a valid phone number (it is empty)")
    if text.startswith("00"):
        # International prefix used in Europe and Africa: 0044… is +44…
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(f"{raw!r} is not a valid phone number") from exc
    national = str(number.national_number)
    lengths = _NATIONAL_LENGTHS.get(number.country_code or 0)
    if not phonenumbers.is_valid_number(number) or (lengths is not None and len(national) not in lengths):
        raise ValidationError(f"{raw!r} is not a valid phone number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def is_valid_phone(raw: str, default_region: str = DEFAULT_REGION) -> bool:
    try:
        normalise_phone(raw, default_region)
    except ValidationError:
        return False
    return True


# ------------------------------------------------------------------------------------------------------
# E-mail
# ------------------------------------------------------------------------------------------------------


def is_valid_email(value: str) -> bool:
    """True for a plausible single address ("thandi@example.org"); no display names, no lists."""
    if not isinstance(value, str) or len(value) > 320:
        return False
    text = value.strip()
    if text != value or ".." in text:
        return False
    local, _, domain = text.rpartition("@")
    if not local or len(local) > 64 or local.startswith(".") or local.endswith("."):
        return False
    return bool(_EMAIL_RE.match(text)) and len(domain) <= 253


def normalise_email(value: str) -> str:
    """A trimmed address with its domain in lower case, or ValidationError."""
    text = value.strip() if isinstance(value, str) else value
    if not isinstance(text, str) or not is_valid_email(text):
        raise ValidationError(f"{value!r} is not a valid e-mail address")
    local, _, domain = text.rpartition("@")
    return f"{local}@{domain.lower()}"


# ------------------------------------------------------------------------------------------------------
# Time zones
# ------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def validate_timezone(name: str) -> str:
    """An IANA zone name ("Africa/Johannesburg") is returned as it is; abbreviations ("SAST"), offsets
    ("+02:00") and unknown names are refused, because only a named zone knows its daylight-saving rules."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"{name!r} is not a time zone (use an IANA name such as 'Africa/Johannesburg')")
    text = name.strip()
    hint = "use an IANA name such as 'Africa/Johannesburg'"
    if re.match(r"^(?:UTC|GMT)?\s*[+-]\d{1,2}(?::?\d{2})?$", text):
        raise ValidationError(f"{name!r} is a UTC offset, not a time zone ({hint})")
    if text != "UTC" and re.match(r"^[A-Z]{2,5}$", text):
        raise ValidationError(f"{name!r} is an abbreviation, not a time zone ({hint})")
    if text not in _zone_names() and text != "UTC":
        raise ValidationError(f"unknown time zone {name!r} ({hint})")
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # pragma: no cover - listed zones always load
        raise ValidationError(f"unknown time zone {name!r} ({hint})") from exc
    if "/" not in text and text != "UTC":
        # Legacy aliases such as "EST", "CET", "Zulu" exist in tzdata but are abbreviations to a person.
        raise ValidationError(f"{name!r} is an abbreviation, not a time zone ({hint})")
    return text


# ------------------------------------------------------------------------------------------------------
# Durations and times of day
# ------------------------------------------------------------------------------------------------------


def parse_duration(value: str | int) -> int:
    """ "90s", "15m", "1h", "1h30m", "2d" or a whole number of seconds -> seconds (never negative)."""
    if isinstance(value, bool):
        raise ValidationError(f"{value!r} is not a duration (use e.g. '90s', '15m', '1h30m')")
    if isinstance(value, int):
        if value < 0:
            raise ValidationError(f"{value!r} is not a duration: it must not be negative")
        return value
    if isinstance(value, float) and value.is_integer():
        return parse_duration(int(value))
    if not isinstance(value, str):
        raise ValidationError(f"{value!r} is not a duration (use e.g. '90s', '15m', '1h30m')")
    text = value.strip().lower().replace(" ", "")
    if text.isdigit():
        return int(text)
    if text.startswith("-"):
        raise ValidationError(f"{value!r} is not a duration: it must not be negative")
    match = _DURATION_RE.match(text)
    if not text or match is None or not any(match.groups()):
        raise ValidationError(f"{value!r} is not a duration (use e.g. '90s', '15m', '1h30m')")
    return sum(int(part) * seconds for part, (_, seconds) in zip(match.groups(), _UNITS, strict=True) if part)


def format_duration(seconds: int) -> str:
    """The shortest of "90s", "15m", "1h", "1h30m", "2d" that parse_duration reads back as `seconds`."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise ValueError(f"not a duration in seconds: {seconds!r}")
    if seconds == 0:
        return "0s"
    candidates = [f"{seconds // size}{unit}" for unit, size in _UNITS if seconds % size == 0]
    compound = ""
    rest = seconds
    for unit, size in _UNITS:
        if rest >= size:
            compound += f"{rest // size}{unit}"
            rest %= size
    candidates.append(compound)
    # Shortest wins; on a tie the larger unit (listed first) wins.
    return min(candidates, key=len)


def parse_hhmm(value: str, *, allow_end_of_day: bool = False) -> str:
    """ "08:00" or "8:00" -> "08:00"; with allow_end_of_day, "24:00" is the end of a day."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 23:
        # A bare hour, as seed policy files write business_hours_start: 9
        return f"{value:02d}:00"
    text = value.strip() if isinstance(value, str) else ""
    match = _HHMM_RE.match(text)
    if match is None:
        raise ValidationError(f"{value!r} is not a time of day (use HH:MM, e.g. '08:00')")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour == 24 and minute == 0 and allow_end_of_day:
        return "24:00"
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise ValidationError(f"{value!r} is not a time of day (use HH:MM, e.g. '08:00')")
    return f"{hour:02d}:{minute:02d}"
