"""Operator accounts: sign-in with lock-out, passwords, and what an administrator does with accounts.

A password is stored only as `scrypt$n$r$p$salt$hash` (hex salt and hash, a random 16-byte salt per account).
Signing in computes the salted scrypt of the typed password with the stored parameters and compares digests;
on PostgreSQL the comparison and its bookkeeping happen inside the database (engine.signin_sql), so a
workstation's database login never reads a hash. Either way the rules are the same: five failed sign-ins in a
row lock the account for 15 minutes (a correct password does not open it early; an administrator's password
reset or `enable` does), and a sign-in screen is told only "wrong user name or password" or "locked for a
while" — never which of the two fields was wrong, nor whether the account exists (an unknown name is locked
out the same way, counted from the audit trail).

An account may be linked to a person record (the board's "Mine" and "assign to me" use it). An administrator
creates accounts, changes their role, name and person, disables and enables them, and resets passwords (a
temporary password, shown once, that must be changed at the next sign-in). Every one of these, and every
sign-in, failed sign-in, lock-out and sign-out, is an audit entry with the real person. The last active
administrator can be neither disabled nor given a lower role.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import audit, timeline
from engine.audit import Change
from engine.context import AppContext
from engine.db import read_session, write_session
from engine.errors import NotFound, ValidationError, WatchkeeperError
from engine.models import AuditEntry, Operator, Person, Role
from engine.permissions import ROLES, Action, Identity, authorize
from engine.signin_sql import LOCK_MINUTES, MAX_FAILED_SIGN_INS

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD_LENGTH = 8
LOCK = timedelta(minutes=LOCK_MINUTES)
# The stored form of an account that has no password yet (imported from a file): no digest matches it.
NO_PASSWORD = "!"
_USERNAME_RE = re.compile(r"^[^\s:]{1,80}$")
RESERVED_NAMES = {"system", "engine", "cli", "api", "local"}
WRONG = "wrong user name or password"


class SignInFailed(WatchkeeperError):
    """Wrong user name or password (deliberately not saying which), or an account locked for a while."""

    def __init__(self, message: str = WRONG, *, locked_until: datetime | None = None) -> None:
        super().__init__(message)
        self.locked_until = locked_until


def locked_message(minutes: int) -> str:
    return (
        f"too many failed sign-ins: this account is locked for {minutes} minute{'s' if minutes != 1 else ''}; "
        "try again later or ask an administrator"
    )


# --------------------------------------------------------------------------------------------------------
# Passwords
# --------------------------------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    if not password:
        raise ValidationError("the password is empty", field="password")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=HASH_BYTES
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def _digest(password: str, params: str | None) -> str:
    """The hex scrypt digest of `password` with stored parameters `scrypt$n$r$p$salt`; "" when they are not
    usable (the work is still done with dummy parameters, so timing does not tell an unknown account)."""
    usable = True
    try:
        scheme, n, r, p, salt_hex = (params or "").split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        n_, r_, p_, salt = int(n), int(r), int(p), bytes.fromhex(salt_hex)
    except (ValueError, TypeError):
        usable = False
        n_, r_, p_, salt = SCRYPT_N, SCRYPT_R, SCRYPT_P, b"\0" * SALT_BYTES
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n_, r=r_, p=p_, dklen=HASH_BYTES).hex()
    return digest if usable else ""


def verify_password(password: str, stored: str) -> bool:
    params, _, expected = stored.rpartition("$")
    digest = _digest(password, params)
    return bool(digest) and hmac.compare_digest(digest, expected)


def check_new_password(password: str, *, username: str = "") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(
            f"the password needs at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    if username and password.strip().lower() == username.strip().lower():
        raise ValidationError("the password must not be the user name", field="password")


def temporary_password() -> str:
    """A random password for a new account or a reset: 12 characters, shown once, changed at first use."""
    return secrets.token_urlsafe(9)


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _salt(session: Session, username: str) -> str | None:
    if _is_postgresql(session):
        value = session.scalar(select(func.watchkeeper_password_salt(username)))
        return None if value is None else str(value)
    stored = session.scalar(select(Operator.password_hash).where(Operator.username == username))
    if stored is None or stored.count("$") != 5:
        return None
    return stored.rpartition("$")[0]


# --------------------------------------------------------------------------------------------------------
# Accounts as records
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    display_name: str
    role: str
    active: bool
    person_id: int | None
    person: str | None  # the linked person's handle
    person_name: str | None
    created_at: datetime
    last_sign_in_at: datetime | None
    failed_sign_ins: int
    locked_until: datetime | None
    must_change_password: bool
    password_changed_at: datetime | None
    has_password: bool

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now

    def state(self, now: datetime) -> str:
        if not self.active:
            return "disabled"
        if self.locked(now):
            return "locked"
        if not self.has_password:
            return "no password yet"
        if self.must_change_password:
            return "must change password"
        return "active"

    def identity(self, via: str = "") -> Identity:
        return Identity(
            name=self.username,
            role=self.role,
            kind="account",
            account_id=self.id,
            display_name=self.display_name,
            person_id=self.person_id,
            via=via,
        )


_ACCOUNT_COLUMNS = (
    Operator.id,
    Operator.username,
    Operator.display_name,
    Operator.role,
    Operator.active,
    Operator.person_id,
    Operator.created_at,
    Operator.last_login_at,
    Operator.failed_sign_ins,
    Operator.locked_until,
    Operator.must_change_password,
    Operator.password_changed_at,
)


def _accounts(session: Session, *where: Any) -> list[Account]:
    # Column by column, never password_hash: the console's PostgreSQL role may not read it (engine.dbroles).
    rows = session.execute(
        select(*_ACCOUNT_COLUMNS, Person.handle, Person.name)
        .outerjoin(Person, Person.id == Operator.person_id)
        .where(*where)
        .order_by(Operator.username)
    ).all()
    has_password = _has_password(session, [r[0] for r in rows])
    return [
        Account(
            id=r[0],
            username=r[1],
            display_name=r[2],
            role=r[3],
            active=bool(r[4]),
            person_id=r[5],
            created_at=r[6],
            last_sign_in_at=r[7],
            failed_sign_ins=int(r[8] or 0),
            locked_until=r[9],
            must_change_password=bool(r[10]),
            password_changed_at=r[11],
            person=r[12],
            person_name=r[13],
            has_password=has_password.get(r[0], True),
        )
        for r in rows
    ]


def _has_password(session: Session, ids: list[int]) -> dict[int, bool]:
    """Which accounts have a password, where this database login may read hashes (SQLite, the service's
    PostgreSQL role); a console role may not (engine.dbroles), and then nothing is said (all read as set)."""
    if not ids:
        return {}
    if _is_postgresql(session) and not session.scalar(
        select(func.has_column_privilege("operator", "password_hash", "SELECT"))
    ):
        return {}
    rows = session.execute(select(Operator.id, Operator.password_hash).where(Operator.id.in_(ids))).all()
    return {r[0]: r[1] != NO_PASSWORD for r in rows}


def list_accounts(session: Session) -> list[Account]:
    return _accounts(session)


def get_account(session: Session, username: str) -> Account:
    found = _accounts(session, Operator.username == username.strip())
    if not found:
        raise NotFound(f"no account {username.strip()!r}")
    return found[0]


def operator_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Operator)) or 0)


def needs_first_admin(session: Session) -> bool:
    """True on a database with no operator accounts: the console then offers to create the first admin."""
    return operator_count(session) == 0


# --------------------------------------------------------------------------------------------------------
# Sign-in, sign-out, own password
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignIn:
    account: Account
    identity: Identity
    previous_sign_in_at: (
        datetime | None
    )  # before this one: what "new since you last signed in" is measured from

    @property
    def must_change_password(self) -> bool:
        return self.account.must_change_password


def _check_digest(session: Session, username: str, digest: str, now: datetime) -> str:
    """Compare and keep the books: ok, wrong, locked, locked_now, disabled or unknown. On PostgreSQL the
    database does it (engine.signin_sql); this is the same rule for SQLite, step by step."""
    if _is_postgresql(session):
        return str(session.scalar(select(func.watchkeeper_sign_in(username, digest, now))))
    op = session.scalars(select(Operator).where(Operator.username == username)).one_or_none()
    if op is None:
        return "unknown"
    if op.locked_until is not None and op.locked_until > now:
        return "locked"
    if not op.active:
        return "disabled"
    expected = op.password_hash.rpartition("$")[2] if op.password_hash.count("$") == 5 else ""
    if digest and expected and hmac.compare_digest(digest, expected):
        op.failed_sign_ins, op.locked_until, op.last_login_at = 0, None, now
        return "ok"
    failed = (0 if op.locked_until is not None else op.failed_sign_ins) + 1
    if failed >= MAX_FAILED_SIGN_INS:
        op.failed_sign_ins, op.locked_until = failed, now + LOCK
        return "locked_now"
    op.failed_sign_ins, op.locked_until = failed, None
    return "wrong"


def _unknown_name_locked(session: Session, username: str, now: datetime) -> bool:
    """A name with no account is locked out like a real one (five failures within the lock time), so the
    answer never tells whether an account exists."""
    recent = session.scalar(
        select(func.count())
        .select_from(AuditEntry)
        .where(
            AuditEntry.action == "sign_in_failed",
            AuditEntry.object_kind == "account",
            AuditEntry.object_name == username[:255],
            AuditEntry.at > now - LOCK,
        )
    )
    return int(recent or 0) + 1 >= MAX_FAILED_SIGN_INS


def sign_in(ctx: AppContext, username: str, password: str, *, via: str = "console") -> SignIn:
    """The account for these credentials, signed in (its last sign-in time recorded); SignInFailed otherwise.

    Every attempt is an audit entry: `sign_in`, or `sign_in_failed` with the reason only the trail knows
    (wrong password, unknown account, disabled, locked), plus `account_locked` when this failure locked it."""
    name = username.strip()
    now = ctx.clock.now()
    with read_session(ctx.sessions) as session:
        params = _salt(session, name) if name else None
    digest = _digest(password, params)
    who = Identity(name=name[:200] or "(no name)", role="", kind="account", via=via)
    failure: SignInFailed | None = None
    with write_session(ctx.sessions) as session:
        previous = session.scalar(select(Operator.last_login_at).where(Operator.username == name))
        outcome = _check_digest(session, name, digest, now) if name else "unknown"
        if outcome == "ok":
            account = get_account(session, name)
            identity = account.identity(via)
            audit.record(
                session,
                now,
                identity,
                "sign_in",
                object_kind="account",
                object_name=name,
                message=f"{account.display_name} signed in ({account.role}) via {via}",
            )
            return SignIn(account=account, identity=identity, previous_sign_in_at=previous)
        reason = {
            "wrong": "wrong password",
            "unknown": "no such account",
            "disabled": "account disabled",
            "locked": "account locked",
            "locked_now": "wrong password",
        }.get(outcome, outcome)
        if outcome == "unknown" and name and _unknown_name_locked(session, name, now):
            failure = SignInFailed(locked_message(LOCK_MINUTES), locked_until=now + LOCK)
        elif outcome in ("locked", "locked_now"):
            until = session.scalar(select(Operator.locked_until).where(Operator.username == name))
            minutes = max(1, int(((until or now + LOCK) - now).total_seconds() + 59) // 60)
            failure = SignInFailed(locked_message(minutes), locked_until=until)
        else:
            failure = SignInFailed(WRONG)
        audit.record(
            session,
            now,
            who,
            "sign_in_failed",
            object_kind="account",
            object_name=name,
            message=f"failed sign-in as {name!r} via {via}: {reason}",
            data={"reason": reason},
        )
        if outcome == "locked_now":
            audit.record(
                session,
                now,
                who,
                "account_locked",
                object_kind="account",
                object_name=name,
                message=f"account {name} locked for {LOCK_MINUTES} minutes after {MAX_FAILED_SIGN_INS} "
                "failed sign-ins",
            )
    raise failure


def sign_out(ctx: AppContext, identity: Identity, *, note_id: int | None = None) -> None:
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        audit.record(
            session,
            now,
            identity,
            "sign_out",
            object_kind="account",
            object_name=identity.name,
            message=f"{identity.label} signed out"
            + (" and left a handover note" if note_id is not None else ""),
            data={"handover_note_id": note_id} if note_id is not None else None,
        )


def change_password(ctx: AppContext, identity: Identity, old: str, new: str) -> None:
    """The signed-in person's own password (also how a temporary password is replaced at sign-in)."""
    identity.require(Action.CHANGE_OWN_PASSWORD)
    if identity.kind != "account":
        raise ValidationError("only an operator account has a password to change")
    username = identity.name
    check_new_password(new, username=username)
    if new == old:
        raise ValidationError("the new password must differ from the current one", field="password")
    now = ctx.clock.now()
    with read_session(ctx.sessions) as session:
        params = _salt(session, username)
    old_digest = _digest(old, params)
    new_hash = hash_password(new)
    with write_session(ctx.sessions) as session:
        if _is_postgresql(session):
            outcome = str(
                session.scalar(select(func.watchkeeper_change_password(username, old_digest, new_hash, now)))
            )
        else:
            outcome = _change_password_sqlite(session, username, old_digest, new_hash, now)
        if outcome == "ok":
            audit.record(
                session,
                now,
                identity,
                "password_changed",
                object_kind="account",
                object_name=username,
                message=f"{identity.label} changed their password",
            )
    if outcome == "locked":
        raise SignInFailed(locked_message(LOCK_MINUTES))
    if outcome != "ok":
        raise SignInFailed("the current password is wrong")


def _change_password_sqlite(
    session: Session, username: str, old_digest: str, new_hash: str, now: datetime
) -> str:
    op = session.scalars(select(Operator).where(Operator.username == username)).one_or_none()
    if op is None or not op.active:
        return "wrong"
    if op.locked_until is not None and op.locked_until > now:
        return "locked"
    expected = op.password_hash.rpartition("$")[2] if op.password_hash.count("$") == 5 else ""
    if not old_digest or not expected or not hmac.compare_digest(old_digest, expected):
        return "wrong"
    op.password_hash, op.must_change_password, op.password_changed_at = new_hash, False, now
    op.failed_sign_ins, op.locked_until = 0, None
    return "ok"


# --------------------------------------------------------------------------------------------------------
# The administrator's work
# --------------------------------------------------------------------------------------------------------


def _check_username(username: str) -> str:
    name = username.strip()
    if not name:
        raise ValidationError("a user name is needed", field="username")
    if not _USERNAME_RE.match(name):
        raise ValidationError(
            "a user name has no spaces or colons and at most 80 characters", field="username"
        )
    if name.lower() in RESERVED_NAMES:
        raise ValidationError(f"{name!r} is reserved; choose another user name", field="username")
    return name


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationError(f"unknown role {role!r}: use {', '.join(ROLES)}", field="role")
    return role


def _person_id(session: Session, handle: str | None, username: str) -> int | None:
    if not handle:
        return None
    person = session.scalars(select(Person).where(Person.handle == handle.strip())).one_or_none()
    if person is None:
        raise ValidationError(f"no person with handle {handle.strip()!r}", field="person")
    other = session.scalar(
        select(Operator.username).where(Operator.person_id == person.id, Operator.username != username)
    )
    if other is not None:
        raise ValidationError(f"{person.name} is already linked to the account {other!r}", field="person")
    return person.id


def create_operator(
    session: Session,
    now: datetime,
    *,
    username: str,
    password: str | None,
    display_name: str = "",
    role: str = Role.OPERATOR.value,
    person: str | None = None,
    must_change_password: bool = False,
    actor: Identity | str = "system",
) -> Operator:
    """A new account in `session`'s transaction. `password` None: no password yet (imported accounts);
    nobody can sign in to it until an administrator resets it."""
    username = _check_username(username)
    _check_role(role)
    if password is not None:
        check_new_password(password, username=username)
    if session.scalar(select(Operator.id).where(Operator.username == username)) is not None:
        raise ValidationError(f"the user name {username!r} is taken", field="username")
    operator = Operator(
        username=username,
        display_name=display_name.strip() or username,
        password_hash=hash_password(password) if password is not None else NO_PASSWORD,
        role=role,
        person_id=_person_id(session, person, username),
        active=True,
        created_at=now,
        failed_sign_ins=0,
        must_change_password=must_change_password or password is None,
        password_changed_at=now if password is not None else None,
    )
    session.add(operator)
    session.flush()
    spec = account_spec(operator)
    audit.record(
        session,
        now,
        actor,
        "account_created",
        object_kind="account",
        object_name=username,
        message=f"Account {username} ({role}) created",
        changes=audit.diff(None, spec),
    )
    timeline.record(
        session,
        "operator_created",
        now,
        actor=_name(actor),
        message=f"Operator account {username} ({role}) created",
        data={"operator_id": operator.id, "role": role},
    )
    return operator


def _name(actor: Identity | str) -> str:
    return actor.name if isinstance(actor, Identity) else actor


def account_spec(op: Operator) -> dict[str, Any]:
    """An account in document form (export/import, audit): never the password hash."""
    return {
        "username": op.username,
        "display_name": op.display_name,
        "role": op.role,
        "person": op.person.handle if op.person is not None else None,
        "active": bool(op.active),
    }


def ensure_first_admin(
    session: Session,
    now: datetime,
    *,
    username: str,
    password: str,
    display_name: str = "",
    via: str = "",
    person: str | None = None,
) -> Operator | None:
    """Create the first administrator when there is no operator at all; otherwise do nothing (None). Whoever
    reaches a database with no accounts may do this, in the console's first-run dialog or `users add`."""
    if not needs_first_admin(session):
        return None
    name = _check_username(username)
    return create_operator(
        session,
        now,
        username=name,
        password=password,
        display_name=display_name or "Administrator",
        role=Role.ADMIN.value,
        person=person,
        actor=Identity(name=name, role=Role.ADMIN.value, kind="account", via=via),
    )


@dataclass(frozen=True)
class NewPassword:
    """An account created or reset with a temporary password, shown this once."""

    account: Account
    password: str | None


def _find(session: Session, username: str) -> Operator:
    op = session.scalars(select(Operator).where(Operator.username == username.strip())).one_or_none()
    if op is None:
        raise NotFound(f"no account {username.strip()!r}")
    return op


def _active_admins(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Operator)
            .where(Operator.role == Role.ADMIN.value, Operator.active.is_(True))
        )
        or 0
    )


def ensure_an_admin_remains(session: Session, before: int) -> None:
    """Refuse a change that took away the last active administrator account (`before`: how many there were)."""
    session.flush()
    if before > 0 and _active_admins(session) == 0:
        raise ValidationError(
            "this would leave no active administrator; make another account an administrator first",
            field="role",
        )


def active_admins(session: Session) -> int:
    return _active_admins(session)


def add_account(
    ctx: AppContext,
    by: Identity,
    *,
    username: str,
    role: str,
    display_name: str = "",
    person: str | None = None,
    password: str | None = None,
) -> NewPassword:
    """A new account. Without `password`, a temporary one is made (returned once; it must be changed at the
    first sign-in); with one, that password is set as the person's own."""
    now = ctx.clock.now()
    temporary = password is None
    chosen = temporary_password() if temporary else password
    with write_session(ctx.sessions) as session:
        authorize(session, by, Action.MANAGE_ACCOUNTS)
        op = create_operator(
            session,
            now,
            username=username,
            password=chosen,
            display_name=display_name,
            role=role,
            person=person,
            must_change_password=temporary,
            actor=by,
        )
        account = get_account(session, op.username)
    return NewPassword(account, chosen if temporary else None)


_UNSET: Any = object()


def update_account(
    ctx: AppContext,
    by: Identity,
    username: str,
    *,
    role: str | None = None,
    display_name: str | None = None,
    person: str | None = _UNSET,
    active: bool | None = None,
) -> Account:
    """Change an account's role, name, person link or active flag; audited field by field. Enabling an
    account also lifts a lock-out."""
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        authorize(session, by, Action.MANAGE_ACCOUNTS)
        admins = _active_admins(session)
        op = _find(session, username)
        before = account_spec(op)
        if role is not None:
            op.role = _check_role(role)
        if display_name is not None:
            if not display_name.strip():
                raise ValidationError("a display name is needed", field="display_name")
            op.display_name = display_name.strip()[:200]
        if person is not _UNSET:
            person_id = _person_id(session, person, op.username)
            op.person = session.get(Person, person_id) if person_id is not None else None
        unlocked = False
        if active is not None:
            if not active and by.kind == "account" and by.account_id == op.id:
                raise ValidationError("you cannot disable your own account", field="active")
            if active and op.locked_until is not None:
                op.locked_until, op.failed_sign_ins, unlocked = None, 0, True
            op.active = active
        ensure_an_admin_remains(session, admins)
        after = account_spec(op)
        changes = audit.diff(before, after)
        if unlocked:
            changes.append(Change("locked", True, False))
        if changes:
            fields = {c.field for c in changes}
            action = "account_updated"
            if fields <= {"active", "locked"}:
                action = "account_enabled" if op.active else "account_disabled"
            audit.record(
                session,
                now,
                by,
                action,
                object_kind="account",
                object_name=op.username,
                message=f"Account {op.username}: " + ", ".join(_change_words(c) for c in changes),
                changes=changes,
            )
        return get_account(session, op.username)


def _change_words(change: Change) -> str:
    if change.field == "active":
        return "enabled" if change.after else "disabled"
    if change.field == "locked":
        return "lock-out lifted"
    return f"{change.field} {audit.show_value(change.before)} → {audit.show_value(change.after)}"


def set_role(ctx: AppContext, by: Identity, username: str, role: str) -> Account:
    return update_account(ctx, by, username, role=role)


def disable(ctx: AppContext, by: Identity, username: str) -> Account:
    return update_account(ctx, by, username, active=False)


def enable(ctx: AppContext, by: Identity, username: str) -> Account:
    return update_account(ctx, by, username, active=True)


def reset_password(ctx: AppContext, by: Identity, username: str) -> NewPassword:
    """A temporary password (returned once), to be changed at the next sign-in; lifts any lock-out."""
    now = ctx.clock.now()
    password = temporary_password()
    with write_session(ctx.sessions) as session:
        authorize(session, by, Action.MANAGE_ACCOUNTS)
        op = _find(session, username)
        op.password_hash = hash_password(password)
        op.must_change_password = True
        op.password_changed_at = now
        op.failed_sign_ins, op.locked_until = 0, None
        audit.record(
            session,
            now,
            by,
            "password_reset",
            object_kind="account",
            object_name=op.username,
            message=f"Password of {op.username} reset; it must be changed at the next sign-in",
        )
        account = get_account(session, op.username)
    return NewPassword(account, password)
