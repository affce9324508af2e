"""The trust boundary of a shared PostgreSQL database, proven against the real server: `db roles` makes a
service role and a console role; an operator's workstation with the console role's login cannot rewrite a
policy, an account or the audit trail with plain SQL, nor read password hashes — and everything its console
and embedded engine normally do still works."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, make_url, text
from sqlalchemy.exc import ProgrammingError

from engine import accounts, api, audit, config_io, handover, switches
from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import make_engine, read_session, write_session
from engine.dbroles import grant_roles, remembered_roles
from engine.errors import ConfigurationError, DatabaseRefused
from engine.migrate import stamp
from engine.models import Base
from engine.runner import run_once
from engine.settings import Settings
from tests.conftest import CLOCK_START
from tests.signin import Typed

ON_POSTGRESQL = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

POLICY = {
    "name": "Fire and rescue",
    "levels": [{"delay": "0s", "targets": [{"type": "person", "identifier": "thandi"}]}],
}


@dataclass
class SharedDatabase:
    owner: Engine
    service_url: str
    console_url: str
    service_role: str
    console_role: str

    def context(self, url: str, clock: FakeClock) -> AppContext:
        return AppContext.create(Settings(db=url), clock=clock, mode="test", db=make_engine(url))


@pytest.fixture
def shared(db_url: str, clock: FakeClock) -> Iterator[SharedDatabase]:
    """A migrated database with a centre (an admin, a supervisor, an operator, Thandi, a policy) and the two
    roles granted by the owner's login; the roles are dropped afterwards (they are cluster-wide)."""
    owner = make_engine(db_url)
    Base.metadata.create_all(owner)
    stamp(owner)
    suffix = uuid.uuid4().hex[:8]
    service_role, console_role = f"wk_service_{suffix}", f"wk_console_{suffix}"
    owner_ctx = AppContext.create(Settings(db=db_url), clock=clock, mode="test", db=owner)
    with write_session(owner_ctx.sessions) as s:
        for name, role in (("boss", "admin"), ("naledi", "supervisor"), ("thandi", "operator")):
            accounts.create_operator(s, clock.now(), username=name, password=f"{name}-password-1", role=role)
    config_io.save_objects(
        owner_ctx, "people", [{"handle": "thandi", "name": "Thandi Nkosi", "phone": "+27821234567"}], "setup"
    )
    config_io.save_objects(owner_ctx, "policies", [POLICY], "setup")
    grant_roles(owner, service_role=service_role, console_role=console_role, now=clock.now())
    url = make_url(db_url)
    shared = SharedDatabase(
        owner,
        url.set(username=service_role).render_as_string(hide_password=False),
        url.set(username=console_role).render_as_string(hide_password=False),
        service_role,
        console_role,
    )
    yield shared
    with owner.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename IN (:a, :b)"),
            {"a": service_role, "b": console_role},
        )
        conn.commit()
    with owner.begin() as conn:
        for role in (service_role, console_role):
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
    owner.dispose()


def _refused(engine: Engine, statement: str) -> str:
    with pytest.raises(ProgrammingError) as caught, engine.begin() as conn:
        conn.execute(text(statement))
    assert getattr(caught.value.orig, "sqlstate", None) == "42501", statement
    return str(caught.value.orig)


@ON_POSTGRESQL
def test_the_console_role_cannot_rewrite_configuration_accounts_or_the_audit_trail(
    shared: SharedDatabase,
) -> None:
    console = make_engine(shared.console_url)
    try:
        assert "permission denied for table policy" in _refused(
            console, "UPDATE policy SET enabled = false WHERE name = 'Fire and rescue'"
        )
        _refused(console, "UPDATE policy_level SET delay_seconds = 86400")
        _refused(console, "DELETE FROM policy_target")
        _refused(console, "INSERT INTO policy (name, description, enabled, severity_filter, triggers, "
                 "max_escalations, cooldown_seconds, business_hours_only, business_days, business_start, "
                 "business_end, timezone, version, created_at, updated_at) VALUES ('rogue', '', true, '[]', "
                 "'[]', 1, 0, false, '[]', '08:00', '17:00', 'UTC', 1, now(), now())")  # fmt: skip
        _refused(console, "UPDATE person SET phone = '+27000000000' WHERE handle = 'thandi'")
        _refused(console, "UPDATE operator SET role = 'admin' WHERE username = 'thandi'")
        _refused(console, "UPDATE operator SET password_hash = 'x' WHERE username = 'boss'")
        _refused(console, "SELECT password_hash FROM operator")
        _refused(console, "UPDATE audit_entry SET actor = 'someone else'")
        _refused(console, "DELETE FROM audit_entry")
        _refused(console, "UPDATE system_setting SET value = '{\"enabled\": false}'")
        _refused(
            console,
            "INSERT INTO api_token (token_hash, label, role, created_at) VALUES ('h', 'l', 'admin', now())",
        )
        # Knowing only the salt, the console role cannot set someone else's password.
        with console.begin() as conn:
            answer = conn.execute(
                text("SELECT watchkeeper_change_password('boss', 'guess', :h, now())"),
                {"h": accounts.hash_password("taken-over-1")},
            ).scalar()
        assert answer == "wrong"
    finally:
        console.dispose()
    with shared.owner.connect() as conn:
        enabled = conn.execute(text("SELECT enabled FROM policy WHERE name = 'Fire and rescue'")).scalar()
        role = conn.execute(text("SELECT role FROM operator WHERE username = 'thandi'")).scalar()
    assert enabled is True and role == "operator"


@ON_POSTGRESQL
def test_an_operators_workstation_still_does_everything_it_should(
    shared: SharedDatabase, clock: FakeClock
) -> None:
    ctx = shared.context(shared.console_url, clock)
    try:
        signed = accounts.sign_in(ctx, "thandi", "thandi-password-1", via="console")
        thandi = signed.identity
        # Sign-in bookkeeping happens in the database's own functions: failures count and lock out.
        for _ in range(4):
            with pytest.raises(accounts.SignInFailed, match="wrong"):
                accounts.sign_in(ctx, "naledi", "guess")
        accounts.change_password(ctx, thandi, "thandi-password-1", "thandi-password-2")
        assert accounts.sign_in(ctx, "thandi", "thandi-password-2").identity.name == "thandi"

        incident = api.trigger(ctx, policy="Fire and rescue", summary="Smoke, Block C", actor=thandi.name)
        result = run_once(ctx)  # the embedded engine's passes, housekeeping included
        assert result["escalate"]["done"] == 1
        api.add_note(ctx, incident.incident_id, by=thandi.name, text="Caller rang back")
        api.assign(ctx, incident.incident_id, by=thandi.name, person="thandi")
        api.acknowledge(ctx, incident.incident_id, by=thandi.name)
        api.resolve(ctx, incident.incident_id, by=thandi.name)
        note = handover.write_note(ctx, thandi, "All quiet after the fire.", shift_started_at=None)
        accounts.sign_out(ctx, thandi, note_id=note.id)
        # Reading configuration and accounts (without their hashes) is allowed.
        assert "Fire and rescue" in config_io.export_text(ctx, by=thandi)
        with read_session(ctx.sessions) as s:
            listed = {a.username: a for a in accounts.list_accounts(s)}
            assert (
                set(listed) == {"boss", "naledi", "thandi"} and listed["thandi"].last_sign_in_at is not None
            )
            trail = [(e.actor, e.action) for e in audit.entries(s)]
        assert ("thandi", "sign_in") in trail and ("thandi", "handover_note") in trail
        assert ("thandi", "password_changed") in trail and ("naledi", "sign_in_failed") in trail
    finally:
        ctx.db.dispose()


@ON_POSTGRESQL
def test_configuration_from_an_operators_workstation_is_refused_with_a_clear_error(
    shared: SharedDatabase, clock: FakeClock
) -> None:
    ctx = shared.context(shared.console_url, clock)
    try:
        # Even a supervisor or an administrator signed in at an operator's workstation: the login decides.
        boss = accounts.sign_in(ctx, "boss", "boss-password-1").identity
        naledi = accounts.sign_in(ctx, "naledi", "naledi-password-1").identity
        with pytest.raises(
            DatabaseRefused, match=f"login '{shared.console_role}' may not change configuration"
        ):
            config_io.save_objects(ctx, "policies", [{**POLICY, "description": "changed"}], naledi)
        with pytest.raises(DatabaseRefused, match="trust boundary"):
            accounts.set_role(ctx, boss, "thandi", "admin")
        with pytest.raises(DatabaseRefused), write_session(ctx.sessions) as s:
            switches.set_switch(s, switches.ESCALATIONS_ENABLED, False, now=clock.now(), by=naledi)
    finally:
        ctx.db.dispose()


@ON_POSTGRESQL
def test_the_service_role_changes_configuration_but_not_the_audit_trail(
    shared: SharedDatabase, clock: FakeClock
) -> None:
    ctx = shared.context(shared.service_url, clock)
    try:
        naledi = accounts.sign_in(ctx, "naledi", "naledi-password-1").identity
        config_io.save_objects(ctx, "policies", [{**POLICY, "description": "from the supervisor"}], naledi)
        boss = accounts.sign_in(ctx, "boss", "boss-password-1").identity
        accounts.add_account(ctx, boss, username="sipho", role="operator")
    finally:
        ctx.db.dispose()
    service = make_engine(shared.service_url)
    try:
        _refused(service, "DELETE FROM audit_entry")
        _refused(service, "UPDATE audit_entry SET message = ''")
    finally:
        service.dispose()


@ON_POSTGRESQL
def test_db_roles_on_the_command_line_needs_an_administrator_and_can_be_run_again(
    shared: SharedDatabase, db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.cli import main

    def cli(user: str, password: str, *args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", Typed(password))
        code = main(["--db", db_url, "--user", user, "db", "roles", *args])
        out, err = capsys.readouterr()
        return code, out, err

    code, _out, err = cli("naledi", "naledi-password-1",
                          "--service-role", shared.service_role, "--console-role", shared.console_role)  # fmt: skip
    assert code == 1 and "only an admin may" in err
    with shared.owner.begin() as conn:
        conn.execute(text(f'REVOKE SELECT ON policy FROM "{shared.console_role}"'))
    code, out, err = cli("boss", "boss-password-1",
                         "--service-role", shared.service_role, "--console-role", shared.console_role)  # fmt: skip
    assert (code, err) == (0, "")
    assert f"{shared.console_role}: reads only" in out and "policy" in out
    assert remembered_roles(shared.owner) == (shared.service_role, shared.console_role)
    console = make_engine(shared.console_url)
    try:
        with console.connect() as conn:  # the grants are back
            assert conn.execute(text("SELECT count(*) FROM policy")).scalar() == 1
    finally:
        console.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_has_no_database_roles(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with pytest.raises(ConfigurationError, match="whoever can write the file can do anything"):
            grant_roles(engine, now=CLOCK_START)
    finally:
        engine.dispose()
