"""Secrets live in the keyring (or the environment for a service), and never leak into logs or errors.

The keyring is real: an in-memory `keyring.backend.KeyringBackend` installed with keyring.set_keyring, so the
store goes through the same keyring API it uses on a workstation.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail, null
from keyring.errors import KeyringLocked

from engine.errors import ConfigurationError, NotFound, ValidationError
from engine.logs import SecretRedactor, configure_logging
from engine.secrets import (
    INDEX_ENTRY,
    SERVICE,
    SecretStore,
    env_var_name,
    target_secret_name,
    unused_environment_secrets,
)
from engine.settings import Settings
from tests.fakes.memory_keyring import MemoryKeyring

TOKEN = "tw-auth-9f8e7d6c5b4a"
SMTP = "correct horse battery staple"


class LockedKeyring(MemoryKeyring):
    """A keyring that refuses to store, and (badly) repeats what it was given in its error."""

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringLocked(f"collection locked; could not store {password!r} for {username}")


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def no_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_a_secret_round_trips_through_the_keyring(memory_keyring: MemoryKeyring) -> None:
    store = SecretStore(env={})
    assert store.get("twilio_auth_token") is None
    store.set("twilio_auth_token", TOKEN)
    store.set("webhook_signing_key:ops-chat", "whsec-1234567890")

    assert store.get("twilio_auth_token") == TOKEN
    assert memory_keyring.store[(SERVICE, "twilio_auth_token")] == TOKEN
    assert store.list_names() == ["twilio_auth_token", "webhook_signing_key:ops-chat"]
    assert store.source("twilio_auth_token") == "keyring"

    store.delete("twilio_auth_token")
    assert store.get("twilio_auth_token") is None
    assert store.list_names() == ["webhook_signing_key:ops-chat"]
    with pytest.raises(NotFound, match="'twilio_auth_token' is not stored"):
        store.delete("twilio_auth_token")


def test_the_index_of_names_is_kept_in_the_keyring_itself(memory_keyring: MemoryKeyring) -> None:
    SecretStore(env={}).set("smtp_password", SMTP)
    SecretStore(env={}).set("webhook_signing_key", "whk-key-abcdef")
    assert json.loads(memory_keyring.store[(SERVICE, INDEX_ENTRY)]) == [
        "smtp_password",
        "webhook_signing_key",
    ]
    # A new process (a new store) sees the same names; the values are not in the index.
    assert SecretStore(env={}).list_names() == ["smtp_password", "webhook_signing_key"]
    assert SMTP not in memory_keyring.store[(SERVICE, INDEX_ENTRY)]


def test_api_signing_key_signs_nothing_so_setting_it_is_refused_naming_it(
    memory_keyring: MemoryKeyring,
) -> None:
    store = SecretStore(env={})
    with pytest.raises(ValidationError, match=r"the secret 'api_signing_key' is not used: Watchkeeper signs"):
        store.set("api_signing_key", "api-key-abcdef")
    assert store.list_names() == []
    # One stored by an earlier version can still be seen and removed.
    memory_keyring.set_password(SERVICE, "api_signing_key", "api-key-abcdef")
    memory_keyring.set_password(SERVICE, INDEX_ENTRY, json.dumps(["api_signing_key"]))
    assert store.list_names() == ["api_signing_key"]
    store.delete("api_signing_key")
    assert store.list_names() == [] and (SERVICE, "api_signing_key") not in memory_keyring.store
    assert unused_environment_secrets({"WATCHKEEPER_SECRET_API_SIGNING_KEY": "x" * 12}) == [
        "WATCHKEEPER_SECRET_API_SIGNING_KEY"
    ]


def test_a_webhook_targets_key_is_named_after_the_target(memory_keyring: MemoryKeyring) -> None:
    assert target_secret_name("ops-chat") == "webhook_signing_key:ops-chat"
    assert target_secret_name(" Fire  Desk ") == "webhook_signing_key:fire-desk"
    assert target_secret_name("") is None and target_secret_name("Ops/chat?") is None
    store = SecretStore(env={"WATCHKEEPER_SECRET_WEBHOOK_SIGNING_KEY__FIRE_DESK": "fire-key-123456"})
    assert store.get(target_secret_name("Fire Desk") or "") == "fire-key-123456"


def test_unknown_names_are_refused_with_the_list_of_known_ones(memory_keyring: MemoryKeyring) -> None:
    store = SecretStore(env={})
    with pytest.raises(ValidationError, match=r"unknown secret 'twilio_token'.*twilio_auth_token"):
        store.set("twilio_token", TOKEN)
    with pytest.raises(ValidationError):
        store.set("webhook_signing_key:", "x" * 10)
    with pytest.raises(ValidationError, match="empty value"):
        store.set("smtp_password", "")
    assert memory_keyring.store == {}


def test_environment_names_map_colons_and_dashes() -> None:
    assert env_var_name("twilio_auth_token") == "WATCHKEEPER_SECRET_TWILIO_AUTH_TOKEN"
    assert env_var_name("Webhook_Signing_Key:ops-chat") == "WATCHKEEPER_SECRET_WEBHOOK_SIGNING_KEY__OPS_CHAT"


def test_the_environment_wins_over_the_keyring(memory_keyring: MemoryKeyring) -> None:
    SecretStore(env={}).set("twilio_auth_token", "from-the-keyring")
    env = {
        "WATCHKEEPER_SECRET_TWILIO_AUTH_TOKEN": TOKEN,
        "WATCHKEEPER_SECRET_WEBHOOK_SIGNING_KEY__PAGER": "whsec-pager-0001",
    }
    store = SecretStore(env=env)
    assert store.get("twilio_auth_token") == TOKEN
    assert store.source("twilio_auth_token") == "environment"
    assert store.get("webhook_signing_key:pager") == "whsec-pager-0001"
    assert store.list_names() == ["twilio_auth_token", "webhook_signing_key:pager"]


def test_a_service_without_a_keyring_reads_its_secrets_from_the_environment(no_keyring: None) -> None:
    store = SecretStore(env={"WATCHKEEPER_SECRET_SMTP_PASSWORD": SMTP})
    assert store.get("smtp_password") == SMTP
    assert store.get("twilio_auth_token") is None  # not set anywhere: the channel runs simulated
    assert store.list_names() == ["smtp_password"]


def test_without_a_keyring_backend_storing_explains_what_to_install(no_keyring: None) -> None:
    store = SecretStore(env={})
    with pytest.raises(ConfigurationError) as caught:
        store.set("twilio_auth_token", TOKEN)
    message = str(caught.value)
    assert "no usable keyring backend" in message
    assert "gnome-keyring" in message
    assert "pip install keyrings.alt" in message
    assert "WATCHKEEPER_SECRET_TWILIO_AUTH_TOKEN" in message
    assert TOKEN not in message
    assert store.keyring_problem() is not None


def test_a_disabled_keyring_is_reported_as_disabled() -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(null.Keyring())
    try:
        with pytest.raises(ConfigurationError, match="keyring is disabled"):
            SecretStore(env={}).set("smtp_password", SMTP)
    finally:
        keyring.set_keyring(previous)


def test_require_tells_the_operator_how_to_provide_a_missing_secret(memory_keyring: MemoryKeyring) -> None:
    with pytest.raises(
        ConfigurationError, match=r"watchkeeper secrets set smtp_password.*WATCHKEEPER_SECRET_SMTP"
    ):
        SecretStore(env={}).require("smtp_password")


def test_a_keyring_error_never_carries_the_secret_value() -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(LockedKeyring())
    try:
        with pytest.raises(ConfigurationError) as caught:
            SecretStore(env={}).set("twilio_auth_token", TOKEN)
    finally:
        keyring.set_keyring(previous)
    text = "".join(traceback.format_exception(caught.value))
    assert "could not store the secret 'twilio_auth_token'" in text
    assert "KeyringLocked" in text
    assert TOKEN not in text
    assert TOKEN not in repr(caught.value)


def test_the_log_filter_redacts_secret_values_everywhere_in_a_record(
    memory_keyring: MemoryKeyring,
    restore_logging: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    SecretStore(env={}).set("twilio_auth_token", TOKEN)
    store = SecretStore(env={"WATCHKEEPER_SECRET_SMTP_PASSWORD": SMTP})
    log_file = tmp_path / "logs" / "watchkeeper.log"
    configure_logging(Settings(log_file=str(log_file), log_level="INFO"), "service", store)

    log = logging.getLogger("engine.channels.twilio_sms")  # a child logger: records propagate to root
    log.info("posting with token %s", TOKEN)
    log.warning(f"smtp login as ops with {SMTP} failed")
    try:
        raise RuntimeError(f"provider said: bad credentials {TOKEN}")
    except RuntimeError:
        log.exception("send failed")

    written = log_file.read_text(encoding="utf-8")
    shown = capsys.readouterr().err
    for text in (written, shown):
        assert "posting with token ***" in text
        assert "smtp login as ops with *** failed" in text
        assert "bad credentials ***" in text  # the traceback too
        assert TOKEN not in text
        assert SMTP not in text


def test_a_secret_read_after_logging_started_is_redacted_too(
    memory_keyring: MemoryKeyring, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(log_format="json"), "service", SecretStore(env={}))
    late = "late-secret-5e4d3c2b1a"
    store = SecretStore(env={"WATCHKEEPER_SECRET_WEBHOOK_SIGNING_KEY": late})
    assert store.get("webhook_signing_key") == late
    logging.getLogger("engine.service").warning("signing with %s", late)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert lines[-1]["message"] == "signing with ***"
    assert lines[-1]["level"] == "WARNING"
    assert lines[-1]["logger"] == "engine.service"


def test_redaction_leaves_records_without_secrets_alone() -> None:
    redactor = SecretRedactor(["abc", "s3cr3t-value", "s3cr3t-value-longer"])
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "%s and %s", ("s3cr3t-value-longer", "abc"), None
    )
    assert redactor.filter(record)
    # Longest first; values too short to be a real secret are not hunted through every word.
    assert record.getMessage() == "*** and abc"
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "nothing %d here", (5,), None)
    assert redactor.filter(plain)
    assert plain.getMessage() == "nothing 5 here"
