"""The service's seams to the other parts of the engine, looked up when first needed.

The escalation engine (engine.api, engine.runner) and the channels (engine.replies) are separate modules;
importing them here, at call time, keeps `engine.service` importable on its own and gives one place that says
what the service needs from each.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from engine.errors import ConfigurationError


def module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigurationError(f"this Watchkeeper build lacks {name} ({exc})") from exc


def api() -> Any:
    return module("engine.api")


def replies() -> Any:
    return module("engine.replies")


def runner() -> Any:
    return module("engine.runner")


def get_secret(name: str) -> str | None:
    """A secret from the environment (WATCHKEEPER_SECRET_<NAME>) or the keyring; None when unset."""
    from engine.secrets import SecretStore

    return SecretStore().get(name)
