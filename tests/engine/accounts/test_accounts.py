"""Accounts on SQLite and PostgreSQL: signing in, failed sign-ins and the lock-out, passwords that must be
changed, and what an administrator does with accounts — every step in the audit trail with the real person."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from engine import accounts, audit
from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import read_session
from engine.errors import NotFound, ValidationError
from engine.models import Operator
from engine.permissions import Action, PermissionDenied, authorize

from .conftest import PASSWORD, Centre


def trail(ctx: AppContext, action: str | None = None) -> list[tuple[str, str, str]]:
    with read_session(ctx.sessions) as s:
        return [(e.actor, e.action, e.object_name) for e in audit.entries(s, action)]


def test_several_accounts_of_each_role_sign_in_with_their_own_role(centre: Centre) -> None:
    for role in ("operator", "supervisor", "admin"):
        for n in (1, 2):
            result = accounts.sign_in(centre.ctx, f"{role}{n}", PASSWORD[role], via="test")
            assert (result.identity.name, result.identity.role) == (f"{role}{n}", role)
            assert result.previous_sign_in_at is None  # first sign-in ever
    assert len(trail(centre.ctx, "sign_in")) == 6
    with read_session(centre.ctx.sessions) as s:
        listed = {a.username: a for a in accounts.list_accounts(s)}
    assert listed["operator1"].person == "thandi" and listed["operator1"].person_name == "Thandi Nkosi"
    assert listed["admin2"].last_sign_in_at == centre.ctx.clock.now()


def test_the_previous_sign_in_is_remembered_for_the_handover(centre: Centre, clock: FakeClock) -> None:
    first = clock.now()
    accounts.sign_in(centre.ctx, "operator1", PASSWORD["operator"])
    clock.advance(timedelta(hours=12))
    again = accounts.sign_in(centre.ctx, "operator1", PASSWORD["operator"])
    assert again.previous_sign_in_at == first
    assert again.account.last_sign_in_at == clock.now()


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(centre: Centre) -> None:
    with pytest.raises(accounts.SignInFailed) as wrong:
        accounts.sign_in(centre.ctx, "operator1", "not-the-password")
    with pytest.raises(accounts.SignInFailed) as unknown:
        accounts.sign_in(centre.ctx, "nobody", "not-the-password")
    assert str(wrong.value) == str(unknown.value) == "wrong user name or password"
    failed = trail(centre.ctx, "sign_in_failed")
    assert [(actor, name) for actor, _a, name in failed] == [("operator1", "operator1"), ("nobody", "nobody")]
    with read_session(centre.ctx.sessions) as s:
        reasons = [e.data["reason"] for e in audit.entries(s, "sign_in_failed")]
    assert reasons == ["wrong password", "no such account"]  # only the trail knows which


def test_five_failures_lock_the_account_for_fifteen_minutes(centre: Centre, clock: FakeClock) -> None:
    for _ in range(4):
        with pytest.raises(accounts.SignInFailed, match="wrong user name or password"):
            accounts.sign_in(centre.ctx, "supervisor1", "guess")
    with pytest.raises(accounts.SignInFailed, match="locked for 15 minutes") as fifth:
        accounts.sign_in(centre.ctx, "supervisor1", "guess")
    assert "password" not in str(fifth.value) and "user name" not in str(fifth.value)
    # Locked: even the right password is refused, and the message says for how long.
    clock.advance(timedelta(minutes=10))
    with pytest.raises(accounts.SignInFailed, match="locked for 5 minutes"):
        accounts.sign_in(centre.ctx, "supervisor1", PASSWORD["supervisor"])
    assert [a for _who, a, _n in trail(centre.ctx) if a == "account_locked"] == ["account_locked"]
    clock.advance(timedelta(minutes=5, seconds=1))
    assert accounts.sign_in(centre.ctx, "supervisor1", PASSWORD["supervisor"]).identity.role == "supervisor"
    with read_session(centre.ctx.sessions) as s:
        account = accounts.get_account(s, "supervisor1")
    assert account.failed_sign_ins == 0 and not account.locked(clock.now())


def test_a_good_sign_in_starts_the_count_again(centre: Centre) -> None:
    for _ in range(4):
        with pytest.raises(accounts.SignInFailed):
            accounts.sign_in(centre.ctx, "operator2", "guess")
    accounts.sign_in(centre.ctx, "operator2", PASSWORD["operator"])
    for _ in range(4):
        with pytest.raises(accounts.SignInFailed, match="wrong"):
            accounts.sign_in(centre.ctx, "operator2", "guess")


def test_an_unknown_name_is_locked_out_like_a_real_account(centre: Centre, clock: FakeClock) -> None:
    for _ in range(4):
        with pytest.raises(accounts.SignInFailed, match="wrong"):
            accounts.sign_in(centre.ctx, "ghost", "guess")
    with pytest.raises(accounts.SignInFailed, match="locked"):
        accounts.sign_in(centre.ctx, "ghost", "guess")
    clock.advance(timedelta(minutes=16))
    with pytest.raises(accounts.SignInFailed, match="wrong"):
        accounts.sign_in(centre.ctx, "ghost", "guess")


def test_a_disabled_account_cannot_sign_in_until_enabled(centre: Centre) -> None:
    admin = centre.signed_in("admin1")
    accounts.disable(centre.ctx, admin, "operator2")
    with pytest.raises(accounts.SignInFailed, match="wrong user name or password"):
        accounts.sign_in(centre.ctx, "operator2", PASSWORD["operator"])
    accounts.enable(centre.ctx, admin, "operator2")
    assert accounts.sign_in(centre.ctx, "operator2", PASSWORD["operator"]).identity.name == "operator2"
    kinds = [(who, a, name) for who, a, name in trail(centre.ctx) if a.startswith("account_")]
    assert ("admin1", "account_disabled", "operator2") in kinds and (
        "admin1",
        "account_enabled",
        "operator2",
    ) in kinds


def test_a_reset_password_must_be_changed_at_the_next_sign_in(centre: Centre) -> None:
    admin = centre.signed_in("admin1")
    made = accounts.reset_password(centre.ctx, admin, "operator1")
    assert made.password and len(made.password) >= 12 and made.account.must_change_password
    with pytest.raises(accounts.SignInFailed):
        accounts.sign_in(centre.ctx, "operator1", PASSWORD["operator"])  # the old one is gone
    temporary = accounts.sign_in(centre.ctx, "operator1", made.password)
    assert temporary.must_change_password
    with pytest.raises(ValidationError, match="at least 8"):
        accounts.change_password(centre.ctx, temporary.identity, made.password, "short")
    with pytest.raises(accounts.SignInFailed, match="current password is wrong"):
        accounts.change_password(centre.ctx, temporary.identity, "not-it", "a-new-password-1")
    accounts.change_password(centre.ctx, temporary.identity, made.password, "a-new-password-1")
    again = accounts.sign_in(centre.ctx, "operator1", "a-new-password-1")
    assert not again.must_change_password
    with pytest.raises(accounts.SignInFailed):
        accounts.sign_in(centre.ctx, "operator1", made.password)
    assert ("admin1", "password_reset", "operator1") in trail(centre.ctx)
    assert ("operator1", "password_changed", "operator1") in trail(centre.ctx)


def test_a_password_reset_lifts_a_lock_out(centre: Centre) -> None:
    for _ in range(5):
        with pytest.raises(accounts.SignInFailed):
            accounts.sign_in(centre.ctx, "operator2", "guess")
    made = accounts.reset_password(centre.ctx, centre.signed_in("admin2"), "operator2")
    assert made.password is not None
    assert accounts.sign_in(centre.ctx, "operator2", made.password).must_change_password


def test_role_and_name_changes_are_audited_field_by_field(centre: Centre) -> None:
    admin = centre.signed_in("admin1")
    accounts.update_account(
        centre.ctx, admin, "operator2", role="supervisor", display_name="Naledi Khumalo", person="sipho"
    )
    with read_session(centre.ctx.sessions) as s:
        (entry,) = audit.entries(s, "account_updated")
    assert (entry.actor, entry.actor_role, entry.object_kind, entry.object_name) == (
        "admin1",
        "admin",
        "account",
        "operator2",
    )
    changes = {c["field"]: (c["before"], c["after"]) for c in entry.changes}
    assert changes == {
        "display_name": ("Operator 2", "Naledi Khumalo"),
        "role": ("operator", "supervisor"),
        "person": (None, "sipho"),
    }


def test_a_new_account_gets_a_temporary_password_shown_once(centre: Centre) -> None:
    admin = centre.signed_in("admin2")
    made = accounts.add_account(centre.ctx, admin, username="zanele", role="operator", display_name="Zanele")
    assert made.password and made.account.must_change_password
    assert accounts.sign_in(centre.ctx, "zanele", made.password).must_change_password
    with read_session(centre.ctx.sessions) as s:
        stored = s.scalar(select(Operator.password_hash).where(Operator.username == "zanele"))
    assert stored is not None and made.password not in stored and stored.startswith("scrypt$")
    with read_session(centre.ctx.sessions) as s:
        (entry,) = audit.entries(s, "account_created", "zanele")
    assert entry.actor == "admin2" and {"field": "role", "before": None, "after": "operator"} in entry.changes


def test_only_an_administrator_manages_accounts(centre: Centre) -> None:
    for who in ("operator1", "supervisor1"):
        identity = centre.signed_in(who)
        with pytest.raises(PermissionDenied, match="only an admin may"):
            accounts.add_account(centre.ctx, identity, username="x1", role="admin")
        with pytest.raises(PermissionDenied):
            accounts.set_role(centre.ctx, identity, who, "admin")
        with pytest.raises(PermissionDenied):
            accounts.reset_password(centre.ctx, identity, "admin1")
    with read_session(centre.ctx.sessions) as s:
        assert accounts.get_account(s, "supervisor1").role == "supervisor"


def test_the_last_active_administrator_stays(centre: Centre) -> None:
    admin1, admin2 = centre.signed_in("admin1"), centre.signed_in("admin2")
    with pytest.raises(ValidationError, match="your own account"):
        accounts.disable(centre.ctx, admin1, "admin1")
    accounts.disable(centre.ctx, admin1, "admin2")
    with pytest.raises(ValidationError, match="no active administrator"):
        accounts.set_role(centre.ctx, admin1, "admin1", "supervisor")
    with read_session(centre.ctx.sessions) as s:
        assert accounts.get_account(s, "admin1").role == "admin"
    # A disabled administrator's next action is refused, even from a session signed in before.
    with pytest.raises(PermissionDenied, match="disabled"), read_session(centre.ctx.sessions) as s:
        authorize(s, admin2, Action.MANAGE_ACCOUNTS)


def test_a_changed_role_counts_from_the_next_action(centre: Centre) -> None:
    supervisor = centre.signed_in("supervisor2")  # signed in as supervisor
    accounts.set_role(centre.ctx, centre.signed_in("admin1"), "supervisor2", "operator")
    with (
        pytest.raises(PermissionDenied, match="signed in as operator"),
        read_session(centre.ctx.sessions) as s,
    ):
        authorize(s, supervisor, Action.CANCEL)


def test_a_person_is_linked_to_one_account_at_most(centre: Centre) -> None:
    admin = centre.signed_in("admin1")
    with pytest.raises(ValidationError, match="already linked to the account 'operator1'"):
        accounts.update_account(centre.ctx, admin, "operator2", person="thandi")
    with pytest.raises(ValidationError, match="no person with handle 'nobody'"):
        accounts.update_account(centre.ctx, admin, "operator2", person="nobody")
    accounts.update_account(centre.ctx, admin, "operator1", person=None)
    accounts.update_account(centre.ctx, admin, "operator2", person="thandi")
    with read_session(centre.ctx.sessions) as s:
        assert accounts.get_account(s, "operator2").person == "thandi"
    with pytest.raises(NotFound):
        accounts.update_account(centre.ctx, admin, "nobody", role="operator")


def test_user_names_are_checked(centre: Centre) -> None:
    admin = centre.signed_in("admin1")
    for bad, why in (("two words", "no spaces"), ("api:x", "colons"), ("system", "reserved"), ("", "needed")):
        with pytest.raises(ValidationError, match=why):
            accounts.add_account(centre.ctx, admin, username=bad, role="operator")
    with pytest.raises(ValidationError, match="taken"):
        accounts.add_account(centre.ctx, admin, username="operator1", role="operator")
    with pytest.raises(ValidationError, match="unknown role"):
        accounts.add_account(centre.ctx, admin, username="x2", role="dispatcher")


def test_sign_out_is_recorded_with_the_person(centre: Centre) -> None:
    accounts.sign_out(centre.ctx, centre.signed_in("operator1"))
    assert ("operator1", "sign_out", "operator1") in trail(centre.ctx)
