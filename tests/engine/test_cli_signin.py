"""The command line acts as a signed-in person: --user (a password), --token, or the SQLite file's owner.
Every write is that person's, never "cli"; the rule book refuses what the role may not do; `users`,
`audit`, `switches` and `handover` do what the README says."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select as sql_select

from engine import audit
from engine.cli import main
from engine.context import AppContext
from engine.db import make_engine, read_session, session_factory
from engine.models import Incident, Policy
from engine.service.keys import create_api_token
from engine.settings import Settings
from tests.engine.test_cli import _restore_logging  # noqa: F401 - the same autouse fixture
from tests.fakes.memory_keyring import MemoryKeyring, installed
from tests.signin import PASSWORDS, Typed, add_account, migrated

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
POLICY_FILE = """
people:
  - {handle: thandi, name: Thandi Nkosi, phone: "+27821234567"}
policies:
  - name: fire
    levels: [{delay: 0s, targets: [{type: person, identifier: thandi}]}]
"""


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[MemoryKeyring]:
    with installed() as backend:
        yield backend


@pytest.fixture
def centre(db_url: str, tmp_path: Path) -> str:
    """A migrated database with an operator, a supervisor and an administrator, and the policy "fire"."""
    migrated(db_url)
    add_account(db_url, "thandi", "operator", display_name="Thandi Nkosi")
    add_account(db_url, "naledi", "supervisor")
    add_account(db_url, "boss", "admin")
    policy = tmp_path / "centre.yaml"
    policy.write_text(POLICY_FILE, encoding="utf-8")
    assert run_as(db_url, "boss", "import", str(policy))[0] == 0
    return db_url


def run_as(url: str, user: str | None, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """`watchkeeper --db URL [--user USER] ARGS`, the password (or `stdin`) piped in; (code, out, err)."""
    old_stdin, old_out, old_err = sys.stdin, sys.stdout, sys.stderr
    lines = stdin.split("\n") if stdin is not None else ([PASSWORDS[_role(user)]] if user else [""])
    sys.stdin = Typed(*lines)
    sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
    try:
        code = main(["--db", url, *(["--user", user] if user else []), *args])
        return code, sys.stdout.getvalue(), sys.stderr.getvalue()
    finally:
        sys.stdin, sys.stdout, sys.stderr = old_stdin, old_out, old_err


def _role(user: str) -> str:
    return {"thandi": "operator", "naledi": "supervisor", "boss": "admin"}.get(user, "operator")


def on_postgresql(test: Any) -> Any:
    return pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)(test)


def on_sqlite(test: Any) -> Any:
    return pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)(test)


def _trail(url: str) -> list[tuple[str, str, str]]:
    engine = make_engine(url)
    try:
        with read_session(session_factory(engine)) as s:
            return [(e.actor, e.action, e.object_name) for e in audit.entries(s)]
    finally:
        engine.dispose()


@on_postgresql
def test_nothing_is_changed_without_signing_in(centre: str, tmp_path: Path) -> None:
    changed = tmp_path / "policy.yaml"
    changed.write_text(POLICY_FILE.replace("delay: 0s", "delay: 1h"), encoding="utf-8")
    for args in (["import", str(changed)], ["tokens", "create", "--label", "x", "--role", "admin"], ["list"]):
        code, out, err = run_as(centre, None, *args)
        assert code == 1 and out == ""
        assert err.startswith("error: sign in first: --user NAME")


@on_postgresql
def test_a_plain_operator_can_neither_mint_an_admin_token_nor_rewrite_a_policy(
    centre: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report that started this: WATCHKEEPER_USER=plain-operator made an admin token and rewrote a policy."""
    monkeypatch.setenv("WATCHKEEPER_USER", "thandi")
    changed = tmp_path / "policy.yaml"
    changed.write_text(POLICY_FILE.replace("delay: 0s", "delay: 1h"), encoding="utf-8")
    code, out, err = run_as(centre, None, "tokens", "create", "--label", "mine", "--role", "admin",
                            stdin=PASSWORDS["operator"])  # fmt: skip
    assert (code, out) == (1, "")
    assert (
        err.strip()
        == "error: Thandi Nkosi is signed in as operator; only an admin may create, list and revoke API tokens"
    )
    code, _out, err = run_as(centre, None, "import", str(changed), stdin=PASSWORDS["operator"])
    assert code == 1 and "only a supervisor or higher may save, delete and import configuration" in err
    engine = make_engine(centre)
    try:
        with read_session(session_factory(engine)) as s:
            policy = s.scalars(sql_select(Policy).where(Policy.name == "fire")).one()
            assert policy.levels[0].delay_seconds == 0 and policy.version == 1
    finally:
        engine.dispose()
    # With the supervisor's own password the same import goes through, in the supervisor's name.
    code, _out, _err = run_as(centre, "naledi", "import", str(changed))
    assert code == 0
    assert ("naledi", "config_updated", "fire") in _trail(centre)


@on_postgresql
def test_every_write_is_the_signed_in_persons(centre: str) -> None:
    code, out, _ = run_as(centre, "thandi", "trigger", "--policy", "fire", "--summary", "Smoke", "--json")
    assert code == 0
    incident = json.loads(out)["incident_id"]
    assert run_as(centre, "thandi", "ack", str(incident))[0] == 0
    assert run_as(centre, "thandi", "note", str(incident), "crew on site")[0] == 0
    assert run_as(centre, "naledi", "cancel", str(incident), "--reason", "duplicate call")[0] == 0
    _code, out, _ = run_as(centre, "thandi", "show", str(incident), "--json")
    shown = json.loads(out)
    assert shown["acknowledged_by"] == "thandi"
    actors = {(e["kind"], e["actor"]) for e in shown["events"]}
    assert ("note", "thandi") in actors and ("cancelled", "naledi") in actors
    assert all(e["actor"] != "cli" for e in shown["events"])
    signed_in = [(who, name) for who, action, name in _trail(centre) if action == "sign_in"]
    assert ("thandi", "thandi") in signed_in and ("naledi", "naledi") in signed_in


@on_postgresql
def test_an_operator_may_not_cancel_on_the_command_line_either(centre: str) -> None:
    code, out, _ = run_as(centre, "thandi", "trigger", "--policy", "fire", "--summary", "Smoke", "--json")
    incident = json.loads(out)["incident_id"]
    code, out, err = run_as(centre, "thandi", "cancel", str(incident), "--reason", "test")
    assert code == 1 and "only a supervisor or higher may cancel an incident" in err


@on_postgresql
def test_a_token_acts_in_its_own_name_with_its_own_role(centre: str) -> None:
    engine = make_engine(centre)
    try:
        ctx = AppContext.create(Settings(db=centre), mode="test", db=engine)
        token = create_api_token(ctx, label="wallboard", role="operator").secret
    finally:
        engine.dispose()
    code, out, _ = run_as(
        centre, None, "--token", token, "trigger", "--policy", "fire", "--summary", "Alarm", "--json"
    )
    assert code == 0
    incident = json.loads(out)["incident_id"]
    assert run_as(centre, None, "--token", "-", "ack", str(incident), stdin=token)[0] == 0
    code, _out, err = run_as(centre, None, "--token", token, "cancel", str(incident), "--reason", "x")
    assert code == 1 and "token 'wallboard' has role operator" in err
    code, out, _ = run_as(centre, None, "--token", token, "show", str(incident), "--json")
    assert json.loads(out)["acknowledged_by"] == "api:wallboard"
    code, _out, err = run_as(centre, None, "--token", "wkt_not-a-token", "list")
    assert code == 1 and err.strip() == "error: unknown or revoked API token"


@on_sqlite
def test_the_owner_of_a_sqlite_file_is_its_local_administrator(centre: str) -> None:
    code, out, _ = run_as(centre, None, "trigger", "--policy", "fire", "--summary", "Smoke", "--json")
    assert code == 0
    incident = json.loads(out)["incident_id"]
    assert run_as(centre, None, "tokens", "create", "--label", "x", "--role", "admin")[0] == 0
    import getpass

    login = getpass.getuser()
    engine = make_engine(centre)
    try:
        with read_session(session_factory(engine)) as s:
            incident_row = s.get(Incident, incident)
            assert incident_row is not None
    finally:
        engine.dispose()
    assert (f"local:{login}", "token_created", "x") in _trail(centre)
    # An explicit --user is still a sign-in as that person, with that person's role.
    code, _out, err = run_as(centre, "thandi", "tokens", "create", "--label", "y", "--role", "admin")
    assert code == 1 and "only an admin may" in err


@on_sqlite
@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="changing a file's owner needs root"
)
def test_someone_who_does_not_own_the_sqlite_file_must_sign_in(centre: str) -> None:
    path = make_engine(centre).url.database
    assert path is not None
    os.chown(path, 65534, 65534)  # nobody
    code, _out, err = run_as(centre, None, "list")
    assert code == 1 and "sign in first" in err
    assert run_as(centre, "thandi", "list")[0] == 0


@on_sqlite
def test_by_is_not_accepted_any_more(centre: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--db", centre, "ack", "1", "--by", "someone-else"])
    assert code == 2
    assert "unrecognized arguments: --by someone-else" in capsys.readouterr().err


@on_postgresql
def test_an_administrator_manages_accounts_on_the_command_line(centre: str) -> None:
    code, out, err = run_as(
        centre, "boss", "users", "add", "sipho", "--role", "operator", "--name", "Sipho D"
    )
    assert code == 0, err
    temporary = out.strip().splitlines()[-1].strip()
    assert "shown only this once" in out and len(temporary) >= 12
    # The temporary password works once, for choosing a new one.
    code, _out, err = run_as(centre, "sipho", "list", stdin=temporary)
    assert code == 1 and "must be changed first" in err and "users passwd" in err
    code, out, err = run_as(
        centre, "sipho", "users", "passwd", stdin=f"{temporary}\nsipho-own-pass\nsipho-own-pass"
    )
    assert (code, out.strip()) == (0, "password of sipho changed")
    assert run_as(centre, "sipho", "list", stdin="sipho-own-pass")[0] == 0

    assert run_as(centre, "boss", "users", "set-role", "sipho", "supervisor")[0] == 0
    assert run_as(centre, "boss", "users", "edit", "sipho", "--name", "Sipho Dlamini")[0] == 0
    assert run_as(centre, "boss", "users", "disable", "sipho")[0] == 0
    assert run_as(centre, "sipho", "list", stdin="sipho-own-pass")[0] == 1
    assert run_as(centre, "boss", "users", "enable", "sipho")[0] == 0
    code, out, _ = run_as(centre, "boss", "users", "list", "--json")
    listed = {u["username"]: u for u in json.loads(out)}
    assert listed["sipho"]["role"] == "supervisor" and listed["sipho"]["name"] == "Sipho Dlamini"
    assert listed["sipho"]["last_sign_in_at"] is not None and listed["sipho"]["state"] == "active"
    code, out, _ = run_as(centre, "boss", "users", "list")
    assert out.splitlines()[0].split()[:3] == ["USER", "NAME", "ROLE"] and "LAST SIGN-IN" in out

    code, out, _ = run_as(centre, "boss", "users", "reset-password", "sipho")
    assert code == 0 and "shown only this once" in out
    code, _out, err = run_as(centre, "naledi", "users", "reset-password", "boss")
    assert code == 1 and "only an admin may" in err
    actions = [(who, action, name) for who, action, name in _trail(centre) if name == "sipho"]
    for expected in (
        "account_created",
        "account_updated",
        "account_disabled",
        "account_enabled",
        "password_reset",
    ):
        assert ("boss", expected, "sipho") in actions
    assert ("sipho", "password_changed", "sipho") in actions


@on_postgresql
def test_the_first_administrator_is_made_on_an_empty_database(db_url: str) -> None:
    migrated(db_url)
    code, _out, err = run_as(
        db_url, None, "users", "add", "chief", "--role", "operator", stdin="pw-chief-12\npw-chief-12"
    )
    assert code == 1 and "the first account must be an administrator" in err
    code, out, _ = run_as(
        db_url, None, "users", "add", "chief", "--role", "admin", stdin="pw-chief-12\npw-chief-12"
    )
    assert code == 0 and "first administrator chief created" in out
    # From then on, nobody adds accounts without signing in.
    code, _out, err = run_as(db_url, None, "users", "add", "other", "--role", "admin", stdin="x\nx")
    assert code == 1 and "sign in first" in err
    assert run_as(db_url, "chief", "users", "list", stdin="pw-chief-12")[0] == 0


@on_postgresql
def test_audit_switches_and_handover_on_the_command_line(centre: str, tmp_path: Path) -> None:
    assert run_as(centre, "naledi", "switches", "set", "escalations_enabled", "off")[0] == 0
    code, _out, err = run_as(centre, "thandi", "switches", "set", "escalations_enabled", "on")
    assert code == 1 and "only a supervisor or higher may turn the master switches" in err
    assert (
        run_as(centre, "thandi", "switches", "list")[1]
        == "notifications_enabled: on\nescalations_enabled: off\n"
    )
    assert run_as(centre, "thandi", "handover", "write", "Gas board on the way to Pinetown")[0] == 0
    code, out, _ = run_as(centre, "naledi", "handover", "show")
    assert "Handover note by Thandi Nkosi" in out and "Gas board on the way" in out

    code, _out, err = run_as(centre, "thandi", "audit")
    assert code == 1 and "only a supervisor or higher may see and export the audit trail" in err
    code, out, _ = run_as(centre, "naledi", "audit", "--kind", "switch_changed")
    assert "naledi" in out and "escalations_enabled" in out and out.splitlines()[0].startswith("WHEN (UTC)")
    target = tmp_path / "audit.csv"
    code, _out, err = run_as(centre, "naledi", "audit", "--person", "thandi", "--csv", str(target))
    assert code == 0 and "entries to" in err
    with target.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:2] == ["time (UTC)", "person"] and {r[1] for r in rows[1:]} == {"thandi"}
    assert {r[4] for r in rows[1:]} == {"sign_in", "handover_note"}


@on_sqlite
def test_secrets_are_audited_by_name_never_by_value(centre: str) -> None:
    code, _out, _err = run_as(centre, None, "secrets", "set", "smtp_password", stdin="s3cret-SMTP-value")
    assert code == 0
    assert run_as(centre, None, "secrets", "delete", "smtp_password")[0] == 0
    trail = _trail(centre)
    import getpass

    assert (f"local:{getpass.getuser()}", "secret_set", "smtp_password") in trail
    assert (f"local:{getpass.getuser()}", "secret_removed", "smtp_password") in trail
    engine = make_engine(centre)
    try:
        with read_session(session_factory(engine)) as s:
            assert "s3cret-SMTP-value" not in repr(audit.entries(s))
    finally:
        engine.dispose()
    code, _out, err = run_as(
        centre, "thandi", "secrets", "set", "smtp_password", stdin=f"{PASSWORDS['operator']}\nx"
    )
    assert code == 1 and "only a supervisor or higher may set or remove secrets" in err


@on_postgresql
def test_the_password_is_asked_on_a_real_terminal_without_echo(centre: str) -> None:
    """`--user` on a terminal: the prompt appears, what is typed is not echoed, the sign-in works."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(
        [PYTHON, str(ROOT / "main.py"), "--db", centre, "--user", "thandi", "list"],
        stdin=child_fd, stdout=child_fd, stderr=child_fd, cwd=str(ROOT), env=env, close_fds=True,
    )  # fmt: skip
    os.close(child_fd)
    seen = b""
    deadline = time.monotonic() + 30
    typed = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main_fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main_fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if not typed and b"password for thandi: " in seen:
            os.write(main_fd, (PASSWORDS["operator"] + "\n").encode())
            typed = True
        if proc.poll() is not None and not ready:
            break
    proc.wait(timeout=30)
    os.close(main_fd)
    text = seen.decode(errors="replace")
    assert typed and proc.returncode == 0, text
    assert PASSWORDS["operator"] not in text  # not echoed
    assert "no incidents" in text
