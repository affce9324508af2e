"""Secrets: the Twilio auth token, the SMTP password, the webhook signing keys.

A workstation keeps them in the operating system's keyring (service name "watchkeeper"): `watchkeeper secrets
set NAME` prompts for the value and stores it. A service reads them from its environment instead:
`WATCHKEEPER_SECRET_<NAME>` (upper case, ':' written as '__', '-' and '.' as '_'), and a value there wins
over the keyring. Secrets never go into the database, the settings file, a log line or an error message:
every value read or stored here is registered with the log redactor (engine.logs), and the errors raised
here name the secret, never its value.

The keyring cannot list what it holds, so the store keeps its own index of stored names in the keyring too
(the entry "__index__", a JSON list of names).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import keyring
import keyring.backend
import keyring.errors
from keyring.backends import chainer, fail

from engine.errors import ConfigurationError, NotFound, ValidationError
from engine.logs import redact, register_secret

SERVICE = "watchkeeper"
ENV_PREFIX = "WATCHKEEPER_SECRET_"
INDEX_ENTRY = "__index__"
KNOWN_SECRETS = ("twilio_auth_token", "smtp_password", "webhook_signing_key")
# A per-target webhook key: "webhook_signing_key:<target>", e.g. webhook_signing_key:ops-chat, signs the webhooks
# to the policy target of that name (lower case, spaces as '-'); other webhooks use webhook_signing_key.
TARGETED = "webhook_signing_key"
_TARGET_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")
# Names once documented that nothing reads: setting one is an error saying so; deleting one tidies it away.
RETIRED_SECRETS = {
    "api_signing_key": "Watchkeeper signs nothing with it: API tokens and routing keys are random and stored "
    "only as hashes, and e-mail acknowledge links carry the page's reply code",
}

NO_BACKEND_MESSAGE = (
    "no usable keyring backend on this machine, so Watchkeeper cannot store secrets here. Either install and "
    "unlock a keyring (on Linux a Secret Service such as gnome-keyring or KeePassXC; macOS Keychain and "
    "Windows Credential Manager work as they are), or `pip install keyrings.alt` for a file-based keyring, "
    "or give each secret to the process as an environment variable instead, "
    "e.g. WATCHKEEPER_SECRET_TWILIO_AUTH_TOKEN (see `watchkeeper secrets --help`)"
)
DISABLED_MESSAGE = (
    "the keyring is disabled (null backend, e.g. PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring), so "
    "secrets cannot be stored; unset it, or use WATCHKEEPER_SECRET_* environment variables"
)

T = TypeVar("T")


def normalise_name(name: str, *, retired_ok: bool = False) -> str:
    """The canonical form of a secret name, or ValidationError naming the allowed ones. `retired_ok` lets a
    retired name through (to delete it)."""
    clean = name.strip().lower()
    if clean in KNOWN_SECRETS or (retired_ok and clean in RETIRED_SECRETS):
        return clean
    if clean in RETIRED_SECRETS:
        raise ValidationError(
            f"the secret {clean!r} is not used: {RETIRED_SECRETS[clean]}; nothing stored "
            f"(remove it with `watchkeeper secrets delete {clean}`, or unset {env_var_name(clean, retired_ok=True)})",
            field="secret",
        )
    base, sep, target = clean.partition(":")
    if sep and base == TARGETED and _TARGET_RE.match(target):
        return clean
    allowed = ", ".join(KNOWN_SECRETS)
    raise ValidationError(
        f"unknown secret {name.strip()!r}: use one of {allowed}, or {TARGETED}:<target> for one webhook target "
        "(target: lower-case letters, digits, '-', '_', '.')",
        field="secret",
    )


def env_var_name(name: str, *, retired_ok: bool = False) -> str:
    """WATCHKEEPER_SECRET_TWILIO_AUTH_TOKEN, WATCHKEEPER_SECRET_WEBHOOK_SIGNING_KEY__OPS_CHAT, ..."""
    clean = normalise_name(name, retired_ok=retired_ok)
    return ENV_PREFIX + clean.upper().replace(":", "__").replace("-", "_").replace(".", "_")


def target_secret_name(target: str | None) -> str | None:
    """The secret that signs the webhooks to the policy target named `target` ("Ops chat" →
    webhook_signing_key:ops-chat), or None when the name cannot be part of a secret name."""
    slug = re.sub(r"\s+", "-", (target or "").strip().lower())
    return f"{TARGETED}:{slug}" if _TARGET_RE.match(slug) else None


def unused_environment_secrets(env: Mapping[str, str] | None = None) -> list[str]:
    """WATCHKEEPER_SECRET_* variables that name no secret Watchkeeper reads (a typo, a retired name)."""
    env = os.environ if env is None else env
    unused = []
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or not value:
            continue
        try:
            normalise_name(_name_from_env_var(var))
        except ValidationError:
            unused.append(var)
    return sorted(unused)


def _name_from_env_var(var: str) -> str:
    return var[len(ENV_PREFIX) :].lower().replace("__", ":")


def backend_name(backend: keyring.backend.KeyringBackend | None = None) -> str:
    kr = backend or keyring.get_keyring()
    cls = type(kr)
    return f"{cls.__module__}.{cls.__qualname__}"


def keyring_problem(backend: keyring.backend.KeyringBackend | None = None) -> str | None:
    """Why the current keyring cannot store secrets, or None when it can (as far as one can tell unused)."""
    kr = backend or keyring.get_keyring()
    if isinstance(kr, fail.Keyring):
        return NO_BACKEND_MESSAGE
    if isinstance(kr, chainer.ChainerBackend) and not kr.backends:
        return NO_BACKEND_MESSAGE
    if type(kr).__module__ == "keyring.backends.null":
        return DISABLED_MESSAGE
    return None


class SecretStore:
    """get / set / delete / list secrets; the environment wins over the keyring."""

    def __init__(self, env: Mapping[str, str] | None = None, service: str = SERVICE) -> None:
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.service = service

    # -- reading -------------------------------------------------------------------------------------

    def get(self, name: str) -> str | None:
        """The value, from the environment first, then the keyring; None when it is set nowhere.

        A machine without a usable keyring simply has no stored secrets here (channels then run simulated);
        a keyring that exists but fails (locked, D-Bus gone) is a ConfigurationError.
        """
        name = normalise_name(name)
        value = self.env.get(env_var_name(name))
        if value:
            register_secret(value)
            return value
        if keyring_problem() is not None:
            return None
        stored = self._call(f"read the secret {name!r}", lambda kr: kr.get_password(self.service, name))
        if stored:
            register_secret(stored)
            return str(stored)
        return None

    def require(self, name: str) -> str:
        """The value, or a ConfigurationError telling the operator how to provide it."""
        value = self.get(name)
        if value is None:
            name = normalise_name(name)
            raise ConfigurationError(
                f"the secret {name!r} is not set: run `watchkeeper secrets set {name}` on this machine, "
                f"or set {env_var_name(name)} in the service's environment"
            )
        return value

    def source(self, name: str) -> str | None:
        """ "environment", "keyring" or None: where get() would find the secret."""
        name = normalise_name(name, retired_ok=True)
        if self.env.get(env_var_name(name, retired_ok=True)):
            return "environment"
        if keyring_problem() is not None:
            return None
        found = self._call(f"read the secret {name!r}", lambda kr: kr.get_password(self.service, name))
        return "keyring" if found else None

    def list_names(self) -> list[str]:
        """Names of the secrets that are set, from the environment and the keyring's index (never values)."""
        names = set(self._env_names())
        if keyring_problem() is None:
            names.update(self._index())
        return sorted(names)

    def known_values(self, include_keyring: bool = True) -> list[str]:
        """Every secret value this process can see, for the log redactor. Never raises."""
        values: list[str] = []
        for var, value in self.env.items():
            if var.startswith(ENV_PREFIX) and value:
                values.append(value)
        if include_keyring and keyring_problem() is None:
            try:
                for name in self._index():
                    stored = keyring.get_keyring().get_password(self.service, name)
                    if stored:
                        values.append(str(stored))
            except Exception:  # a locked or broken keyring: nothing more to preload
                pass
        for value in values:
            register_secret(value)
        return values

    def keyring_problem(self) -> str | None:
        return keyring_problem()

    def backend_name(self) -> str:
        return backend_name()

    # -- writing -------------------------------------------------------------------------------------

    def set(self, name: str, value: str) -> None:
        name = normalise_name(name)
        if not value:
            raise ValidationError(f"empty value for the secret {name!r}: nothing stored", field="secret")
        register_secret(value)
        self._writable()
        self._call(
            f"store the secret {name!r}",
            lambda kr: kr.set_password(self.service, name, value),
            hide=value,
        )
        index = self._index()
        if name not in index:
            self._write_index([*index, name])

    def delete(self, name: str) -> None:
        name = normalise_name(name, retired_ok=True)
        self._writable()
        index = self._index()
        present = self._call(f"read the secret {name!r}", lambda kr: kr.get_password(self.service, name))
        if present is None:
            if name in index:
                self._write_index([n for n in index if n != name])
            raise NotFound(f"the secret {name!r} is not stored in the keyring")
        self._call(f"delete the secret {name!r}", lambda kr: kr.delete_password(self.service, name))
        if name in index:
            self._write_index([n for n in index if n != name])

    # -- internals -----------------------------------------------------------------------------------

    def _env_names(self) -> list[str]:
        return [
            _name_from_env_var(var) for var, value in self.env.items() if var.startswith(ENV_PREFIX) and value
        ]

    def _writable(self) -> None:
        problem = keyring_problem()
        if problem is not None:
            raise ConfigurationError(problem)

    def _index(self) -> list[str]:
        raw = self._call(
            "read its index of secret names", lambda kr: kr.get_password(self.service, INDEX_ENTRY)
        )
        if not raw:
            return []
        try:
            names = json.loads(raw)
        except ValueError:
            return []
        return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []

    def _write_index(self, names: list[str]) -> None:
        payload = json.dumps(sorted(set(names)))
        self._call(
            "update its index of secret names",
            lambda kr: kr.set_password(self.service, INDEX_ENTRY, payload),
        )

    def _call(self, action: str, op: Callable[[Any], T], hide: str | None = None) -> T:
        kr = keyring.get_keyring()
        try:
            return op(kr)
        except keyring.errors.NoKeyringError:
            raise ConfigurationError(NO_BACKEND_MESSAGE) from None
        except keyring.errors.PasswordDeleteError:
            raise NotFound(f"could not {action}: it is not stored in the keyring") from None
        except Exception as exc:
            # The backend's own text helps (a locked collection, no D-Bus session) but is not ours: strip
            # the value it was handed and any other known secret before showing it.
            detail = str(exc).splitlines()[0] if str(exc) else ""
            if hide:
                detail = detail.replace(hide, "***")
            detail = redact(detail)
            suffix = f": {detail}" if detail else ""
            raise ConfigurationError(
                f"the keyring ({backend_name(kr)}) could not {action}: {type(exc).__name__}{suffix}"
            ) from None
