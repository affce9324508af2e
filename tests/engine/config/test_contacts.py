"""Phone numbers, e-mail addresses, time zones, durations and times of day are checked and normalised."""

from __future__ import annotations

import pytest

from engine.contacts import (
    format_duration,
    is_valid_email,
    normalise_email,
    normalise_phone,
    parse_duration,
    parse_hhmm,
    validate_timezone,
)
from engine.errors import ValidationError


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("082 123 4567", "+27821234567"),
        ("0821234567", "+27821234567"),
        ("+27 82 123 4567", "+27821234567"),
        ("+27 (0)82 123-4567", "+27821234567"),
        ("0027821234567", "+27821234567"),
        ("031 311 1111", "+27313111111"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+1 202 555 0143", "+12025550143"),
    ],
)
def test_phone_numbers_are_normalised_to_e164(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == e164


@pytest.mark.parametrize("raw", ["whatsapp:+27821234567", "WhatsApp: +27 82 123 4567", "tel:082 123 4567"])
def test_channel_prefixes_are_stripped_from_phone_numbers(raw: str) -> None:
    assert normalise_phone(raw) == "+27821234567"


def test_a_local_number_is_read_in_the_given_region() -> None:
    assert normalise_phone("020 7946 0958", default_region="GB") == "+442079460958"


@pytest.mark.parametrize(
    "raw", ["082 123", "1234567890", "+27 82 123 45678", "phone me", "", "   ", "+999 123"]
)
def test_incomplete_or_invalid_phone_numbers_are_refused_naming_the_value(raw: str) -> None:
    with pytest.raises(ValidationError) as info:
        normalise_phone(raw)
    assert repr(raw) in str(info.value)
    assert "not a valid phone number" in str(info.value)


def test_the_short_number_082_123_is_refused_with_a_readable_message() -> None:
    with pytest.raises(ValidationError, match=r"^'082 123' is not a valid phone number$"):
        normalise_phone("082 123")


@pytest.mark.parametrize(
    "address", ["thandi@example.org", "sipho.dlamini+pager@dispatch.example.org", "a_b@sub.example.co.za"]
)
def test_plausible_email_addresses_are_valid(address: str) -> None:
    assert is_valid_email(address)


@pytest.mark.parametrize(
    "address",
    [
        "",
        "thandi",
        "thandi@",
        "@example.org",
        "thandi@example",
        "two words@example.org",
        "a..b@example.org",
        "Thandi <thandi@example.org>",
        "a@b@example.org",
        " thandi@example.org",
    ],
)
def test_implausible_email_addresses_are_invalid(address: str) -> None:
    assert not is_valid_email(address)


def test_email_domain_is_lower_cased_and_local_part_kept() -> None:
    assert normalise_email("Thandi.Nkosi@Dispatch.Example.ORG") == "Thandi.Nkosi@dispatch.example.org"
    with pytest.raises(ValidationError, match="'nobody' is not a valid e-mail address"):
        normalise_email("nobody")


@pytest.mark.parametrize(
    "name", ["Africa/Johannesburg", "Europe/London", "America/Argentina/Buenos_Aires", "UTC"]
)
def test_iana_time_zones_are_accepted(name: str) -> None:
    assert validate_timezone(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("SAST", "abbreviation"),
        ("CET", "abbreviation"),
        ("+02:00", "UTC offset"),
        ("UTC+2", "UTC offset"),
        ("GMT-5", "UTC offset"),
        ("Africa/Durban", "unknown time zone"),
        ("", "not a time zone"),
    ],
)
def test_abbreviations_offsets_and_unknown_zones_are_refused(name: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        validate_timezone(name)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2d", 172800),
        ("0", 0),
        ("0s", 0),
        (300, 300),
        ("45", 45),
        (" 1h 5m ", 3900),
        ("1d2h3m4s", 93784),
    ],
)
def test_durations_are_read_in_seconds(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "fast", "15 minutes", "1.5h", "-5m", -1, "m", "1h1h", True, None, [1]])
def test_unreadable_or_negative_durations_are_refused(text: object) -> None:
    with pytest.raises(ValidationError):
        parse_duration(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (90, "90s"),
        (900, "15m"),
        (3600, "1h"),
        (5400, "90m"),
        (86400, "1d"),
        (3661, "3661s"),
        (7 * 86400, "7d"),
        (93784, "93784s"),
        (3900, "65m"),
        (90000, "25h"),
    ],
)
def test_durations_are_written_in_their_shortest_form(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


def test_every_written_duration_reads_back_as_the_same_number_of_seconds() -> None:
    for seconds in [*range(0, 4000, 7), 86399, 86400, 90061, 604800, 10**7]:
        assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "hhmm"), [("08:00", "08:00"), ("8:00", "08:00"), (" 17:30 ", "17:30"), (9, "09:00")]
)
def test_times_of_day_are_normalised(text: str, hhmm: str) -> None:
    assert parse_hhmm(text) == hhmm


@pytest.mark.parametrize("text", ["24:00", "8", "08:60", "25:00", "8am", "", "08:00:00"])
def test_impossible_times_of_day_are_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="not a time of day"):
        parse_hhmm(text)


def test_midnight_at_the_end_of_a_day_is_allowed_where_asked_for() -> None:
    assert parse_hhmm("24:00", allow_end_of_day=True) == "24:00"
