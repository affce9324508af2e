"""Logging for the console, the service and the CLI, with every known secret value redacted.

`configure_logging(settings, mode)` installs Watchkeeper's handlers on the root logger: stderr as plain text
or JSON lines (`settings.log_format`), and a rotating file when `settings.log_file` is set. Every handler
carries the one process-wide `SecretRedactor`, which replaces each known secret value with `***` in the
message, its arguments, the traceback and the stack. Secret values become known when engine.secrets reads or
stores them (and when configure_logging preloads them), so a value is redacted even if it is read after
logging was set up. Handlers are attached, never a filter on a logger: a logger's filter does not see records
propagated from its children.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.secrets import SecretStore
    from engine.settings import Settings

REDACTED = "***"
# Shorter values would turn ordinary words into asterisks; no real token or password is this short.
MIN_REDACT_LENGTH = 4
LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 5
_MARK = "_watchkeeper_handler"


class SecretRedactor(logging.Filter):
    """Replaces every registered secret value in a log record; never drops a record."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()
        for value in values:
            self.add(value)

    def add(self, value: str | None) -> None:
        if not value or len(value) < MIN_REDACT_LENGTH:
            return
        with self._lock:
            if value in self._values:
                return
            # Longest first, so a secret that contains another is replaced whole.
            self._values = tuple(sorted((*self._values, value), key=len, reverse=True))

    def __len__(self) -> int:
        return len(self._values)

    def redact(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._values:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as logging does
            return True
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


# One per process: logging is process-wide, and a secret read anywhere must be hidden everywhere.
_redactor = SecretRedactor()


def redactor() -> SecretRedactor:
    return _redactor


def register_secret(value: str | None) -> None:
    """Called by engine.secrets (and the database bootstrap for a URL's password) for every secret value."""
    _redactor.add(value)


def redact(text: str) -> str:
    """The text with every known secret value replaced; for messages built outside logging."""
    return _redactor.redact(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, and exc/stack when present."""

    def __init__(self, mode: str = "") -> None:
        super().__init__()
        self.mode = mode

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.mode:
            data["mode"] = self.mode
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc"] = record.exc_text
        if record.stack_info:
            data["stack"] = record.stack_info
        return json.dumps(data, ensure_ascii=False, default=str)


PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time of the record (pytest and consoles swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _formatter(settings: Settings, mode: str) -> logging.Formatter:
    if settings.log_format == "json":
        return JsonFormatter(mode)
    return logging.Formatter(PLAIN_FORMAT)


def _level(name: str) -> int:
    level = logging.getLevelName(name.upper())
    return level if isinstance(level, int) else logging.INFO


def configure_logging(settings: Settings, mode: str, secrets: SecretStore | None = None) -> SecretRedactor:
    """Install (or replace) Watchkeeper's log handlers on the root logger; returns the redactor.

    mode: "service" and "console" log at settings.log_level on stderr; "cli" shows only warnings on stderr
    (a command's output is its result), while the log file, if any, still gets settings.log_level.
    """
    if secrets is None:
        from engine.secrets import SecretStore

        secrets = SecretStore()
    # A one-shot CLI command does not unlock the keyring just to preload it: whatever it reads is registered
    # as it is read. The console and the service preload everything stored.
    for value in secrets.known_values(include_keyring=mode != "cli"):
        _redactor.add(value)

    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
            handler.close()

    level = _level(settings.log_level)
    formatter = _formatter(settings, mode)
    handlers: list[logging.Handler] = []
    stderr = _StderrHandler()
    stderr.setLevel(max(level, logging.WARNING) if mode == "cli" else level)
    handlers.append(stderr)
    if settings.log_file:
        path = Path(settings.log_file).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_FILE_MAX_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
        )
        file_handler.setLevel(level)
        handlers.append(file_handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_redactor)
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    root.setLevel(min(h.level for h in handlers))
    # Alembic announces its plugins at INFO every time a migration context is made (each schema check);
    # its "Running upgrade" lines stay.
    logging.getLogger("alembic.runtime.plugins").setLevel(max(level, logging.WARNING))
    if mode == "service":
        logging.captureWarnings(True)
    return _redactor
