"""Settings: a TOML file in the platform's config directory, every value overridable by environment.

`WATCHKEEPER_<NAME>` overrides the setting `<name>` (upper case), e.g. `WATCHKEEPER_DB`,
`WATCHKEEPER_TWILIO_BASE_URL`, `WATCHKEEPER_SMTP_PORT`. Secrets are never settings: see engine.secrets.
The file carries a schema version so later releases can migrate it.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs
import tomli_w

from engine.errors import ConfigurationError

APP_NAME = "watchkeeper"
SCHEMA_VERSION = 1
ENV_PREFIX = "WATCHKEEPER_"


class SettingsError(ConfigurationError, ValueError):
    """A settings file or environment value that cannot be used; the message names the file and key."""


# Settings whose value must be one of a few words; checked when settings are loaded from a file or the
# environment, so a typo is reported with the file (or variable) it came from instead of failing later.
# Settings that are lists of names, and the names each accepts.
LIST_CHOICES: dict[str, tuple[str, ...]] = {
    "simulated_channels": ("all", "sms", "whatsapp", "voice", "email", "webhook"),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "log_format": ("plain", "json"),
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    "smtp_security": ("starttls", "ssl", "none"),
    "engine_mode": ("embedded", "watch"),
    "engine_process": ("separate", "console"),
}


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def default_settings_file() -> Path:
    return config_dir() / "settings.toml"


def default_db_url() -> str:
    return "sqlite:///" + str(data_dir() / "watchkeeper.db")


@dataclass
class Settings:
    db: str = field(default_factory=default_db_url)
    # Logging (service mode): "plain" or "json" lines on stderr, plus a rotating file when set.
    log_format: str = "plain"
    log_level: str = "INFO"
    log_file: str = ""
    # Twilio. The account SID is not secret; the auth token is (keyring / WATCHKEEPER_SECRET_TWILIO_AUTH_TOKEN).
    twilio_account_sid: str = ""
    twilio_base_url: str = "https://api.twilio.com"
    twilio_sms_from: str = ""
    twilio_whatsapp_from: str = ""
    twilio_voice_from: str = ""
    twilio_messaging_service_sid: str = ""
    twilio_timeout_seconds: float = 10.0
    # SMTP. The password is a secret (WATCHKEEPER_SECRET_SMTP_PASSWORD).
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: str = "starttls"  # starttls, ssl, none
    smtp_username: str = ""
    smtp_from: str = ""
    smtp_timeout_seconds: float = 10.0
    webhook_timeout_seconds: float = 5.0
    # Channels that send nothing for real and record their messages as delivered: the demo, a rehearsal. A site
    # that sends for real leaves this empty; a channel it has not set up is then skipped in everyone's chain at
    # once ("all" simulates every channel).
    simulated_channels: list[str] = field(default_factory=list)
    # Service mode HTTP server.
    http_host: str = "127.0.0.1"
    http_port: int = 8650
    public_base_url: str = ""  # links in e-mails and Twilio callbacks, e.g. https://watchkeeper.example.org
    # Engine.
    engine_mode: str = "embedded"  # embedded: the console runs the passes; watch: a service does
    # Where an embedded engine runs: "separate" (a process of its own, started and stopped by the console:
    # the board and the engine each get a core) or "console" (threads of the console's own process).
    engine_process: str = "separate"
    escalate_interval_seconds: float = 1.0
    dispatch_interval_seconds: float = 1.0
    confirm_interval_seconds: float = 5.0
    poll_interval_seconds: float = 15.0
    sla_interval_seconds: float = 60.0
    overdue_interval_seconds: float = 60.0
    housekeeping_interval_seconds: float = 3600.0
    delivery_polling: bool = True  # poll providers for status and replies (sites behind a firewall)
    send_max_attempts: int = 5
    send_backoff_seconds: float = 5.0
    send_deadline_seconds: float = 60.0
    rate_per_channel_per_second: dict[str, float] = field(
        default_factory=lambda: {"sms": 50.0, "whatsapp": 50.0, "voice": 5.0, "email": 20.0, "webhook": 50.0}
    )
    rate_per_recipient_per_minute: float = 6.0
    retention_days: int = 365
    default_language: str = "en"
    default_timezone: str = "Africa/Johannesburg"
    # Where a phone number typed without a country code is read (every phone field: people, reporters).
    phone_region: str = "ZA"

    source: Path | None = field(default=None, repr=False, compare=False)

    def to_toml_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for f in fields(self):
            if f.name == "source":
                continue
            data[f.name] = getattr(self, f.name)
        return data

    def save(self, path: Path | None = None) -> Path:
        target = path or self.source or default_settings_file()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        # Write then rename, so a crash never leaves half a settings file.
        tmp.write_bytes(tomli_w.dumps(self.to_toml_dict()).encode())
        tmp.replace(target)
        self.source = target
        return target

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(name: str, raw: Any, example: Any, origin: str) -> Any:
    value = _convert(name, raw, example, origin)
    if name == "phone_region":
        import phonenumbers

        value = str(value).strip().upper()
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise SettingsError(
                f"{origin}: setting {name!r}: {raw!r} is not a two-letter country code such as ZA or GB"
            )
    if name in CHOICES:
        if name == "log_level":
            value = str(value).upper()
        else:
            value = str(value).lower()
        if value not in CHOICES[name]:
            allowed = ", ".join(CHOICES[name])
            raise SettingsError(f"{origin}: setting {name!r}: {raw!r} is not one of {allowed}")
    return value


def _convert(name: str, raw: Any, example: Any, origin: str) -> Any:
    try:
        if isinstance(example, bool):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(f"expected true or false, got {raw!r}")
        if isinstance(example, int | float) and isinstance(raw, bool):
            raise ValueError(f"expected a number, got {raw!r}")
        if isinstance(example, int):
            return int(raw)
        if isinstance(example, float):
            return float(raw)
        if isinstance(example, dict):
            if isinstance(raw, dict):
                return {str(k): float(v) for k, v in raw.items()}
            # env form: "sms=50,voice=5"
            out: dict[str, float] = {}
            for part in str(raw).split(","):
                if part.strip():
                    k, sep, v = part.partition("=")
                    if not sep:
                        raise ValueError(f"expected name=number pairs separated by commas, got {raw!r}")
                    out[k.strip()] = float(v)
            return out
        if isinstance(example, list):
            items = raw if isinstance(raw, list) else str(raw).split(",")
            out_list = [str(x).strip().lower() for x in items if str(x).strip()]
            if name in LIST_CHOICES:
                unknown = [x for x in out_list if x not in LIST_CHOICES[name]]
                if unknown:
                    allowed = ", ".join(LIST_CHOICES[name])
                    raise ValueError(f"unknown {', '.join(map(repr, unknown))}; use {allowed}")
            return out_list
        if isinstance(raw, dict | list):
            raise ValueError(f"expected text, got {type(raw).__name__}")
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{origin}: setting {name!r}: {exc}") from None


def load_settings(
    path: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    required: bool = False,
) -> Settings:
    """Defaults, then the TOML file (if it exists), then `WATCHKEEPER_*` environment variables.

    The file is `path`, else `WATCHKEEPER_CONFIG`, else settings.toml in the platform's config directory. With
    `required` (the CLI's `--config FILE`) a missing file is an error instead of "use the defaults".
    """
    env = dict(os.environ) if env is None else env
    file_path = (
        Path(path).expanduser() if path else Path(env.get("WATCHKEEPER_CONFIG") or default_settings_file())
    )
    settings = Settings()
    known = {f.name: f for f in fields(Settings) if f.name != "source"}
    if required and not file_path.is_file():
        raise SettingsError(f"{file_path}: settings file not found")
    if file_path.is_file():
        try:
            data = tomllib.loads(file_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{file_path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise SettingsError(
                f"{file_path}: cannot read the settings file: {exc.strerror or exc}"
            ) from None
        version = data.pop("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise SettingsError(f"{file_path}: schema_version {version!r} is newer than this Watchkeeper")
        for key, raw in data.items():
            if key not in known:
                raise SettingsError(f"{file_path}: unknown setting {key!r}")
            setattr(settings, key, _coerce(key, raw, getattr(settings, key), str(file_path)))
        settings.source = file_path
    else:
        settings.source = file_path
    for name in known:
        env_name = ENV_PREFIX + name.upper()
        if env_name in env:
            setattr(settings, name, _coerce(name, env[env_name], getattr(settings, name), env_name))
    return settings
