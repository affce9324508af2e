"""Errors an operator can act on. Their text is shown as it is: it names what is wrong and where, and never
carries a secret."""

from __future__ import annotations


class WatchkeeperError(Exception):
    """Base for errors whose message is meant for a person (CLI exit code 1, a console dialog, an HTTP 4xx)."""


class NotFound(WatchkeeperError, LookupError):
    """An incident, policy, person… that does not exist."""


class InvalidTransition(WatchkeeperError):
    """The action is not allowed in the incident's or escalation's current state."""


class ValidationError(WatchkeeperError, ValueError):
    """Bad input: a phone number, a policy file, a template. `where` is file:line or a field path."""

    def __init__(self, message: str, *, where: str = "", field: str = "") -> None:
        self.where = where
        self.field = field
        prefix = ": ".join(p for p in (where, field) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ConfigurationError(WatchkeeperError):
    """Settings or secrets that are missing or unusable."""


class DatabaseUnavailable(WatchkeeperError):
    """The database cannot be reached; nothing was written."""


class DatabaseRefused(WatchkeeperError):
    """The database login this process uses is not allowed to make the change (a PostgreSQL role without the
    grant: see engine.dbroles). Nothing was written."""
