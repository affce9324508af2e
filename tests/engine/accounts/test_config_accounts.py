"""Accounts in configuration files, on SQLite and PostgreSQL: exported and imported without passwords, only
by an administrator, and never leaving the centre without one."""

from __future__ import annotations

import pytest
import yaml

from engine import accounts, config_io
from engine.config_io import ConfigValidationError
from engine.db import read_session
from engine.errors import ValidationError
from engine.permissions import PermissionDenied

from .conftest import PASSWORD, Centre


def test_an_administrators_export_carries_accounts_without_passwords(centre: Centre) -> None:
    text = config_io.export_text(centre.ctx, by=centre.signed_in("admin1"))
    document = yaml.safe_load(text)
    assert [a["username"] for a in document["accounts"]] == [
        "admin1",
        "admin2",
        "operator1",
        "operator2",
        "supervisor1",
        "supervisor2",
    ]
    assert document["accounts"][2] == {
        "username": "operator1",
        "display_name": "Operator 1",
        "role": "operator",
        "person": "thandi",
        "active": True,
    }
    assert "scrypt" not in text and "password" not in text


def test_others_export_the_configuration_without_accounts(centre: Centre) -> None:
    for who in ("operator1", "supervisor1"):
        document = yaml.safe_load(config_io.export_text(centre.ctx, by=centre.signed_in(who)))
        assert "accounts" not in document and [p["handle"] for p in document["people"]] == ["sipho", "thandi"]
        with pytest.raises(PermissionDenied, match="only an admin may"):
            config_io.export_text(centre.ctx, "accounts", by=centre.signed_in(who))


def test_imported_accounts_have_no_password_until_one_is_reset(centre: Centre) -> None:
    admin = centre.signed_in("admin1")
    document = """
accounts:
  - {username: naledi, display_name: Naledi Khumalo, role: supervisor, person: sipho}
  - {username: operator2, display_name: Operator Two, role: operator, active: false}
"""
    summary = config_io.import_text(centre.ctx, document, "accounts.yaml", admin)
    assert summary["created"] == {"accounts": 1} and summary["updated"] == {"accounts": 1}
    with read_session(centre.ctx.sessions) as s:
        naledi = accounts.get_account(s, "naledi")
        operator2 = accounts.get_account(s, "operator2")
    assert (naledi.role, naledi.person, naledi.has_password) == ("supervisor", "sipho", False)
    assert naledi.state(centre.ctx.clock.now()) == "no password yet"
    assert not operator2.active and operator2.display_name == "Operator Two"
    with pytest.raises(accounts.SignInFailed):
        accounts.sign_in(centre.ctx, "naledi", "")
    # An existing account's password is untouched by an import; a reset gives a new one a password.
    with pytest.raises(accounts.SignInFailed):
        accounts.sign_in(centre.ctx, "operator2", PASSWORD["operator"])  # disabled by the file
    made = accounts.reset_password(centre.ctx, admin, "naledi")
    assert made.password is not None
    assert accounts.sign_in(centre.ctx, "naledi", made.password).must_change_password


def test_passwords_in_a_file_are_refused(centre: Centre) -> None:
    with pytest.raises(ConfigValidationError, match="passwords are never imported"):
        config_io.import_text(
            centre.ctx,
            "accounts:\n  - {username: x9, role: operator, password: hunter22}\n",
            "a.yaml",
            centre.signed_in("admin1"),
        )


def test_only_an_administrator_imports_accounts(centre: Centre) -> None:
    document = "accounts:\n  - {username: supervisor1, role: admin}\n"
    with pytest.raises(PermissionDenied, match="only an admin may"):
        config_io.import_text(centre.ctx, document, "a.yaml", centre.signed_in("supervisor1"))
    with read_session(centre.ctx.sessions) as s:
        assert accounts.get_account(s, "supervisor1").role == "supervisor"


def test_an_import_cannot_leave_the_centre_without_an_administrator(centre: Centre) -> None:
    document = """
accounts:
  - {username: admin1, role: admin, active: false}
  - {username: admin2, role: supervisor}
"""
    with pytest.raises(ValidationError, match="no active administrator"):
        config_io.import_text(centre.ctx, document, "a.yaml", centre.signed_in("admin1"))
    with read_session(centre.ctx.sessions) as s:
        assert accounts.get_account(s, "admin2").role == "admin"


def test_export_import_export_with_accounts_is_identical(centre: Centre) -> None:
    admin = centre.signed_in("admin1")
    first = config_io.export_text(centre.ctx, by=admin)
    config_io.import_text(centre.ctx, first, "round.yaml", admin)
    assert config_io.export_text(centre.ctx, by=admin) == first
