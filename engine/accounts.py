"""Operator accounts for the console: scrypt password hashes, sign-in, and the first administrator.

A password is stored only as `scrypt$n$r$p$salt$hash` (hex salt and hash, a random 16-byte salt per account);
`verify_password` recomputes it with the stored parameters and compares in constant time, so the cost can be
raised later without breaking old hashes. `authenticate` answers the same "wrong user name or password" for a
missing account, a wrong password and a disabled account, so a sign-in screen never tells which one it was.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import timeline
from engine.errors import ValidationError, WatchkeeperError
from engine.models import Operator, Role

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD_LENGTH = 8


class SignInFailed(WatchkeeperError):
    """Wrong user name or password (deliberately not saying which)."""


def hash_password(password: str) -> str:
    if not password:
        raise ValidationError("the password is empty", field="password")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=HASH_BYTES
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_hex, hash_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = bytes.fromhex(hash_hex)
        digest = hashlib.scrypt(
            password.encode("utf-8"),
            salt=bytes.fromhex(salt_hex),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def operator_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Operator)) or 0)


def create_operator(
    session: Session,
    now: datetime,
    *,
    username: str,
    password: str,
    display_name: str = "",
    role: str = Role.OPERATOR.value,
    person_id: int | None = None,
    actor: str = "system",
) -> Operator:
    username = username.strip()
    if not username:
        raise ValidationError("a user name is needed", field="username")
    if len(username) > 80 or any(ch.isspace() for ch in username):
        raise ValidationError("a user name has no spaces and at most 80 characters", field="username")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(
            f"the password needs at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    if role not in {r.value for r in Role}:
        raise ValidationError(f"unknown role {role!r}", field="role")
    if session.scalar(select(Operator.id).where(Operator.username == username)) is not None:
        raise ValidationError(f"the user name {username!r} is taken", field="username")
    operator = Operator(
        username=username,
        display_name=display_name.strip() or username,
        password_hash=hash_password(password),
        role=role,
        person_id=person_id,
        active=True,
        created_at=now,
    )
    session.add(operator)
    session.flush()
    timeline.record(
        session,
        "operator_created",
        now,
        actor=actor,
        message=f"Operator account {username} ({role}) created",
        data={"operator_id": operator.id, "role": role},
    )
    return operator


def authenticate(session: Session, username: str, password: str, now: datetime | None = None) -> Operator:
    """The active operator with this user name and password, or SignInFailed."""
    operator = session.scalar(select(Operator).where(Operator.username == username.strip()))
    if operator is None:
        # Spend the same time as a real check, so timing does not reveal which user names exist.
        verify_password(password, _DUMMY_HASH)
        raise SignInFailed("wrong user name or password")
    if not verify_password(password, operator.password_hash) or not operator.active:
        raise SignInFailed("wrong user name or password")
    if now is not None:
        operator.last_login_at = now
    return operator


def needs_first_admin(session: Session) -> bool:
    """True on a database with no operator accounts: the console then offers to create the first admin."""
    return operator_count(session) == 0


def ensure_first_admin(
    session: Session, now: datetime, *, username: str, password: str, display_name: str = ""
) -> Operator | None:
    """Create the first administrator when there is no operator at all; otherwise do nothing (None)."""
    if not needs_first_admin(session):
        return None
    return create_operator(
        session,
        now,
        username=username,
        password=password,
        display_name=display_name or "Administrator",
        role=Role.ADMIN.value,
        actor=username,
    )


_DUMMY_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${'00' * SALT_BYTES}${'00' * HASH_BYTES}"
