"""The `watchkeeper` command line: its shape, exit codes, database commands, secrets, and the incident verbs.

Most tests run `engine.cli.main([...])` in-process and read what it printed; a few run `python main.py` as a
real subprocess, as scripts and service units do.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest

from engine.cli import VerbUnavailable, _need, main
from engine.db import make_engine
from engine.migrate import head_revision
from engine.models import Base
from engine.settings import Settings
from tests.fakes.memory_keyring import MemoryKeyring
from tests.signin import Typed, add_account, migrated

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/x"

# Every command path, for the "--help everywhere" test.
COMMAND_PATHS = [
    [],
    ["serve"],
    ["check"],
    ["demo"],
    ["db"],
    ["db", "upgrade"],
    ["db", "current"],
    ["import"],
    ["export"],
    ["secrets"],
    ["secrets", "set"],
    ["secrets", "delete"],
    ["secrets", "list"],
    ["trigger"],
    ["ack"],
    ["resolve"],
    ["cancel"],
    ["escalate"],
    ["list"],
    ["show"],
    ["stats"],
    ["test-send"],
    ["note"],
    ["assign"],
    ["classify"],
    ["reopen"],
    ["db", "roles"],
    ["users"],
    ["users", "add"],
    ["users", "list"],
    ["users", "set-role"],
    ["users", "edit"],
    ["users", "disable"],
    ["users", "enable"],
    ["users", "reset-password"],
    ["users", "passwd"],
    ["audit"],
    ["switches"],
    ["switches", "list"],
    ["switches", "set"],
    ["handover"],
    ["handover", "show"],
    ["handover", "write"],
]


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[MemoryKeyring]:
    """No CLI test touches the machine's own keyring."""
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() configures the root logger; put it back so later tests see logging as they expect."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def schema_url(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database with the models' schema, recorded as at head (the incident verbs' tests are about the CLI,
    not the migrations, which test_migrations.py covers), and an administrator "boss" every command of the
    test signs in as (WATCHKEEPER_USER, the password piped on stdin)."""
    migrated(db_url)
    password = add_account(db_url, "boss", "admin")
    monkeypatch.setenv("WATCHKEEPER_USER", "boss")
    monkeypatch.setattr(sys, "stdin", Typed(password, again=True))
    return db_url


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env.update(extra)
    return env


# -- shape, help, usage ------------------------------------------------------------------------------------


def test_version_prints_name_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert (code, out) == (0, "watchkeeper 0.1.0 (from source, not a packaged build)\n")


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "top")
def test_every_command_has_help(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([*path, "--help"], capsys)
    assert code == 0
    assert out.startswith("usage: watchkeeper")


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(["--help"], capsys)
    for command in {p[0] for p in COMMAND_PATHS if p}:
        assert command in out
    assert "Exit codes: 0 ok, 1 operational error, 2 bad usage" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["frobnicate"],
        ["cancel", "5"],  # --reason is required
        ["trigger", "--policy", "water"],  # --summary is required
        ["list", "--limit", "0"],
        ["stats", "--since", "last tuesday"],
        ["escalate", "5", "--level", "two"],
        ["test-send", "--channel", "pigeon", "--to", "x"],
        ["db"],
        ["secrets", "set"],
        ["serve", "--port", "70000"],
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_usage_exits_2_with_usage_on_stderr(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert "usage: watchkeeper" in err


def test_every_incident_verb_takes_json(capsys: pytest.CaptureFixture[str]) -> None:
    for verb in ("trigger", "ack", "resolve", "cancel", "escalate", "classify", "list", "show", "stats"):
        _, out, _ = run([verb, "--help"], capsys)
        assert "--json" in out, verb


# -- database commands, on both databases -----------------------------------------------------------------


def test_db_upgrade_then_current_on_both_databases(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    head = head_revision()
    code, out, _ = run(["--db", db_url, "db", "current"], capsys)
    assert code == 0
    assert out.startswith("none")

    code, out, err = run(["--db", db_url, "db", "upgrade"], capsys)
    assert (code, err) == (0, "")
    assert out.rstrip().endswith(f"upgraded from empty to {head} (head)")

    code, out, _ = run(["--db", db_url, "db", "upgrade"], capsys)
    assert code == 0
    assert out.rstrip().endswith(f"already at {head} (head)")

    code, out, _ = run(["db", "current", "--db", db_url], capsys)
    assert (code, out) == (0, f"{head} (head)\n")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_an_empty_postgresql_database_is_refused_until_upgraded(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["--db", db_url, "db", "current"], capsys)
    assert code == 0
    assert "none (empty database)" in out and "run `watchkeeper db upgrade`" in out
    code, out, err = run(["--db", db_url, "trigger", "--policy", "p", "--summary", "s"], capsys)
    assert code == 1
    assert out == ""
    assert err.startswith(f"error: database at revision none, this Watchkeeper needs {head_revision()}")


def test_an_unreachable_database_is_one_error_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--db", "postgresql://wk:pw-Do-Not-Show@127.0.0.1:1/x", "db", "upgrade"], capsys)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: cannot reach the PostgreSQL database 'x' on 127.0.0.1:1")
    assert "pw-Do-Not-Show" not in err


def test_db_flag_beats_environment_and_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(f'db = "{tmp_path}/file.db"\n', encoding="utf-8")
    monkeypatch.setenv("WATCHKEEPER_CONFIG", str(config))
    _, out, _ = run(["db", "current"], capsys)
    assert f"{tmp_path}/file.db" in out
    monkeypatch.setenv("WATCHKEEPER_DB", f"{tmp_path}/env.db")
    _, out, _ = run(["db", "current"], capsys)
    assert f"{tmp_path}/env.db" in out
    _, out, _ = run(["--db", f"{tmp_path}/flag.db", "db", "current"], capsys)
    assert f"{tmp_path}/flag.db" in out


def test_a_broken_settings_file_is_exit_1_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("db = \n", encoding="utf-8")
    code, _, err = run(["--config", str(config), "db", "current"], capsys)
    assert code == 1
    assert err.startswith(f"error: {config}: not valid TOML")
    code, _, err = run(["--config", str(tmp_path / "missing.toml"), "db", "current"], capsys)
    assert code == 1
    assert "missing.toml: settings file not found" in err


# -- the console and verbs not in this build ----------------------------------------------------------------


def test_no_command_starts_the_console_with_the_resolved_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Settings] = []

    def start_console(settings: Settings) -> int:
        seen.append(settings)
        return 3

    assert main(["--db", f"{tmp_path}/console.db"], start_console=start_console) == 3
    assert seen[0].db == f"{tmp_path}/console.db"
    assert main([]) == 1
    assert "console is not available" in capsys.readouterr().err


def test_a_verb_whose_module_is_missing_says_so_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A build without engine.api (None in sys.modules makes `import engine.api` fail as a missing module does).
    monkeypatch.setitem(sys.modules, "engine.api", None)
    monkeypatch.delattr("engine.api", raising=False)
    code, out, err = run(["--db", UNREACHABLE_PG, "list"], capsys)
    assert code == 1
    assert out == ""
    assert err == "watchkeeper: `list` is not available in this build yet\n"


def test_need_only_hides_the_verbs_own_module() -> None:
    with pytest.raises(VerbUnavailable):
        _need("engine.no_such_part", "check")
    with pytest.raises(VerbUnavailable):
        _need("engine.errors", "check", "run_once")  # present, without the function the verb calls
    assert _need("engine.errors", "check", "WatchkeeperError").__name__ == "engine.errors"


# -- secrets -------------------------------------------------------------------------------------------------


def test_secrets_set_reads_one_line_from_stdin_and_never_prints_it(
    memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("AC-token-0123456789\n"))
    code, out, err = run(["secrets", "set", "twilio_auth_token"], capsys)
    assert code == 0
    assert out.startswith("stored twilio_auth_token in the keyring")
    assert "AC-token-0123456789" not in out + err
    assert memory_keyring.store[("watchkeeper", "twilio_auth_token")] == "AC-token-0123456789"

    code, out, _ = run(["secrets", "list"], capsys)
    assert code == 0
    assert "twilio_auth_token  keyring" in out
    assert "AC-token" not in out

    code, out, _ = run(["secrets", "delete", "twilio_auth_token"], capsys)
    assert (code, out) == (0, "deleted twilio_auth_token from the keyring\n")
    code, _, err = run(["secrets", "delete", "twilio_auth_token"], capsys)
    assert code == 1
    assert err == "error: the secret 'twilio_auth_token' is not stored in the keyring\n"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_secrets_set_on_a_terminal_asks_twice_and_refuses_a_mismatch(
    memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["smtp-pass-one", "smtp-pass-two", "smtp-pass-ok", "smtp-pass-ok"])
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr(sys, "stdin", FakeTerminal())
    monkeypatch.setattr("getpass.getpass", fake_getpass)
    code, _, err = run(["secrets", "set", "smtp_password"], capsys)
    assert code == 1
    assert err == "error: secret: the two entries differ; nothing stored\n"
    assert memory_keyring.store == {}
    code, _, _ = run(["secrets", "set", "smtp_password"], capsys)
    assert code == 0
    assert memory_keyring.store[("watchkeeper", "smtp_password")] == "smtp-pass-ok"
    assert prompts == ["smtp_password: ", "smtp_password (again): "] * 2


def test_secrets_list_shows_environment_secrets_by_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHKEEPER_SECRET_WEBHOOK_SIGNING_KEY__OPS", "whsec-ops-123456")
    code, out, _ = run(["secrets", "list"], capsys)
    assert code == 0
    assert "webhook_signing_key:ops  environment" in out
    assert "whsec-ops" not in out


def test_an_unknown_secret_name_is_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["secrets", "delete", "password"], capsys)
    assert code == 1
    assert err.startswith("error: secret: unknown secret 'password'")


def test_api_signing_key_is_refused_by_name_and_a_service_will_not_start_with_it(
    memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing reads api_signing_key: storing it, or handing it to a service, would do nothing."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("api-key-0123456789\n"))
    code, out, err = run(["secrets", "set", "api_signing_key"], capsys)
    assert (code, out) == (1, "")
    assert err.startswith(
        "error: secret: the secret 'api_signing_key' is not used: Watchkeeper signs nothing"
    )
    assert memory_keyring.store == {}

    monkeypatch.setenv("WATCHKEEPER_SECRET_API_SIGNING_KEY", "api-key-0123456789")
    code, out, err = run(["secrets", "list"], capsys)
    assert code == 0
    assert "api_signing_key  environment (not used)" in out
    assert "note: WATCHKEEPER_SECRET_API_SIGNING_KEY is not a secret Watchkeeper reads" in err
    code, out, err = run(["serve", "--port", "0"], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("error: WATCHKEEPER_SECRET_API_SIGNING_KEY: not a secret Watchkeeper reads")
    assert "api-key-0123456789" not in out + err


# -- incident verbs against the engine API ------------------------------------------------------------------


def _add_policy(url: str) -> None:
    from engine.db import make_engine, session_factory, write_session
    from engine.models import Policy, PolicyLevel, PolicyTarget

    engine = make_engine(url)
    try:
        with write_session(session_factory(engine)) as s:
            s.add(
                Policy(
                    name="fire",
                    cooldown_seconds=3600,  # a second trigger with the same key joins the open incident
                    levels=[
                        PolicyLevel(
                            level=1,
                            targets=[PolicyTarget(type="email", identifier="ops@example.org", name="Ops")],
                        )
                    ],
                )
            )
    finally:
        engine.dispose()


def test_trigger_ack_list_show_resolve_through_the_cli(
    schema_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("engine.api", reason="engine.api is not in this build yet")
    _add_policy(schema_url)
    db = ["--db", schema_url]

    code, out, err = run([*db, "trigger", "--policy", "fire", "--summary", "Smoke in block C", "--key", "fire-c",
                          "--severity", "critical", "--site", "HQ", "--json"], capsys)  # fmt: skip
    assert code == 0 and err.startswith("note: no engine is running")  # stdout stays the JSON
    triggered: dict[str, Any] = json.loads(out)
    incident = triggered["incident_id"]
    assert triggered["deduplicated"] is False

    code, out, _ = run(
        [*db, "trigger", "--policy", "fire", "--summary", "Smoke again", "--key", "fire-c"], capsys
    )
    assert code == 0
    assert f"incident {incident}" in out and "already open" in out

    code, out, _ = run([*db, "list"], capsys)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["ID", "STATUS", "SEVERITY"]
    assert any(row.split()[0] == str(incident) and "Smoke in block C" in row for row in rows)

    code, out, _ = run([*db, "list", "--json"], capsys)
    assert [row["id"] for row in json.loads(out)] == [incident]

    code, out, _ = run([*db, "ack", str(incident)], capsys)
    assert code == 0
    assert out.startswith(f"incident {incident} acknowledged")

    code, out, _ = run([*db, "show", "fire-c", "--json"], capsys)
    shown = json.loads(out)
    assert shown["id"] == incident and shown["status"] == "acknowledged"
    assert shown["acknowledged_by"] == "boss"  # the person signed in, never "cli"
    code, out, _ = run([*db, "show", str(incident)], capsys)
    assert out.startswith(f"#{incident}  Smoke in block C")
    assert "Timeline" in out and "Messages" in out

    code, out, _ = run([*db, "resolve", str(incident), "--note", "out", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["status"] == "resolved"
    code, _, err = run([*db, "ack", str(incident)], capsys)
    assert code == 1  # resolved incidents cannot be acknowledged: InvalidTransition
    assert err.startswith("error: ")


def test_classify_changes_category_and_sensitive_flag_and_says_what_the_sla_is_now(
    schema_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", schema_url]
    code, out, _ = run([*db, "trigger", "--summary", "Burst pipe", "--category", "water", "--json"], capsys)
    incident = str(json.loads(out)["incident_id"])

    code, out, err = run([*db, "classify", incident, "--category", "roads"], capsys)
    assert (code, err) == (0, "")
    assert out.startswith(f"incident {incident} classified: category roads, not sensitive; response due ")

    code, out, _ = run([*db, "classify", incident, "--sensitive", "--json"], capsys)
    answer = json.loads(out)
    assert answer["changed"] == ["sensitive"] and answer["response_due_at"] is None
    code, out, _ = run([*db, "classify", incident, "--sensitive"], capsys)
    assert out == f"incident {incident} unchanged: already category roads, sensitive\n"
    code, out, _ = run([*db, "show", incident], capsys)
    assert "SLA\n  not monitored (sensitive)\n" in out

    code, out, err = run([*db, "classify", incident], capsys)
    assert code == 1 and "give --category, --sensitive or --not-sensitive" in err
    code, _, err = run([*db, "classify", incident, "--sensitive", "--not-sensitive"], capsys)
    assert code == 2 and "not allowed with argument" in err
    code, out, _ = run(
        [*db, "trigger", "--summary", "Assault", "--key", "a", "--sensitive", "--json"], capsys
    )
    code, out, _ = run([*db, "classify", str(json.loads(out)["incident_id"]), "--not-sensitive"], capsys)
    assert "classified: category general, not sensitive; response due " in out
    run([*db, "resolve", incident], capsys)
    code, out, err = run([*db, "classify", incident, "--not-sensitive"], capsys)
    assert code == 1 and out == "" and "closed incident" in err


def test_stats_prints_the_apis_figures_or_says_it_is_not_in_this_build(
    schema_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("engine.api", reason="engine.api is not in this build yet")
    code, out, err = run(
        ["--db", schema_url, "stats", "--json", "--since", "2026-01-01", "--until", "2026-12-31"], capsys
    )
    if importlib.util.find_spec("engine.stats") is None:
        assert (code, out, err) == (1, "", "watchkeeper: `stats` is not available in this build yet\n")
        return
    assert (code, err) == (0, "")
    assert isinstance(json.loads(out), dict)
    code, out, _ = run(["--db", schema_url, "stats"], capsys)
    assert code == 0 and out.strip()


def test_an_unknown_incident_is_exit_1_with_one_line(
    schema_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("engine.api", reason="engine.api is not in this build yet")
    code, out, err = run(["--db", schema_url, "show", "4242"], capsys)
    assert code == 1
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1


def test_check_exits_1_naming_the_pass_that_failed_while_the_others_still_run(
    schema_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cron job or a monitor runs `check`; a pass that cannot run must show in the exit code."""
    for module in ("engine.api", "engine.runner", "engine.overdue"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not in this build yet")
    _add_policy(schema_url)
    db = ["--db", schema_url]
    code, out, err = run([*db, "check"], capsys)
    assert (code, err) == (0, "")  # a healthy database: every pass ran

    code, _, _ = run([*db, "trigger", "--policy", "fire", "--summary", "Smoke in block C"], capsys)
    assert code == 0
    # The overdue pass's table is gone (a half-restored backup): that pass fails for real, the rest run.
    from sqlalchemy import text

    engine = make_engine(schema_url)
    try:
        with engine.begin() as conn:
            cascade = " CASCADE" if engine.dialect.name == "postgresql" else ""
            conn.execute(text(f"DROP TABLE workflow_item{cascade}"))
    finally:
        engine.dispose()

    code, out, err = run([*db, "check"], capsys)
    assert code == 1
    # Housekeeping also deletes old workflow items, so it fails for the same reason, and says so.
    overdue_line, housekeeping_line = err.splitlines()
    assert overdue_line == f"error: the overdue pass failed: {_no_table('workflow_item', schema_url)}"
    assert housekeeping_line.startswith("error: the housekeeping pass failed: ")
    assert "workflow_item" in housekeeping_line
    assert "Traceback" not in err
    # What the other passes did is still printed: the escalation was started and its e-mail queued.
    assert "escalate:\n  done  1" in out
    assert "overdue:\n  failed  True\n  error   " in out
    assert "housekeeping:\n  failed  True" in out


def _no_table(name: str, url: str) -> str:
    """The database's own words for a missing table."""
    if url.startswith("postgresql"):
        return f'relation "{name}" does not exist'
    return f"no such table: {name}"


# -- real subprocess runs -------------------------------------------------------------------------------------


def run_main(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, str(ROOT / "main.py"), *args],
        cwd=ROOT,
        env=subprocess_env(**env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_subprocess_db_upgrade_creates_a_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sub.db"
    done = run_main("--db", url, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert f"upgraded from empty to {head_revision()} (head)" in done.stdout
    assert (tmp_path / "sub.db").exists()
    done = run_main("--db", url, "db", "current")
    assert (done.returncode, done.stdout) == (0, f"{head_revision()} (head)\n")


def test_subprocess_help_and_bad_usage() -> None:
    done = run_main("--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: watchkeeper")
    done = run_main("ack")
    assert done.returncode == 2
    assert "the following arguments are required: ID" in done.stderr


def test_subprocess_unreachable_postgresql_is_exit_1_with_one_clear_line() -> None:
    done = run_main("--db", UNREACHABLE_PG, "db", "upgrade")
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: cannot reach the PostgreSQL database 'x' on 127.0.0.1:1")
    assert "Traceback" not in done.stderr


def test_subprocess_secrets_set_without_a_keyring_explains_the_alternatives() -> None:
    done = run_main(
        "secrets",
        "set",
        "twilio_auth_token",
        stdin="tok-1234567\n",
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: no usable keyring backend")
    assert "keyrings.alt" in done.stderr and "WATCHKEEPER_SECRET_" in done.stderr
    assert "tok-1234567" not in done.stdout + done.stderr


def test_import_of_a_missing_file_and_export_to_an_unwritable_place_are_exit_1(
    schema_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "policies.yaml"
    code, out, err = run(["--db", schema_url, "import", str(missing)], capsys)
    assert (code, out) == (1, "")
    assert err == f"error: {missing}: no such file\n"

    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out, err = run(["--db", schema_url, "export", "-o", str(blocker / "out.yaml")], capsys)
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1


def test_secrets_reach_neither_the_database_nor_the_log_file(
    schema_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A service with real credentials whose providers fail: every error is recorded, no secret with it."""
    for module in ("engine.demo", "engine.runner"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not in this build yet")
    secrets = {
        "WATCHKEEPER_SECRET_TWILIO_AUTH_TOKEN": "tok-LEAKCHECK-123456",
        "WATCHKEEPER_SECRET_SMTP_PASSWORD": "smtp-LEAKCHECK-654321",
        "WATCHKEEPER_SECRET_WEBHOOK_SIGNING_KEY": "whk-LEAKCHECK-777777",
    }
    settings = {
        "WATCHKEEPER_TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000000",
        "WATCHKEEPER_TWILIO_SMS_FROM": "+27215550100",
        "WATCHKEEPER_TWILIO_WHATSAPP_FROM": "+27215550100",
        "WATCHKEEPER_TWILIO_VOICE_FROM": "+27215550100",
        "WATCHKEEPER_TWILIO_BASE_URL": "http://127.0.0.1:1",  # refused at once
        "WATCHKEEPER_SMTP_HOST": "127.0.0.1",
        "WATCHKEEPER_SMTP_PORT": "1",
        "WATCHKEEPER_SMTP_USERNAME": "watchkeeper",
        "WATCHKEEPER_SMTP_FROM": "watchkeeper@example.org",
        "WATCHKEEPER_LOG_FILE": str(tmp_path / "watchkeeper.log"),
        "WATCHKEEPER_LOG_LEVEL": "DEBUG",
    }
    for name, value in {**secrets, **settings}.items():
        monkeypatch.setenv(name, value)

    assert main(["--db", schema_url, "demo"]) == 0
    assert main(["--db", schema_url, "check"]) == 0
    printed = "".join(capsys.readouterr())

    from sqlalchemy import select

    engine = make_engine(schema_url)
    try:
        with engine.connect() as conn:
            stored = "\n".join(
                repr(tuple(row))
                for table in Base.metadata.sorted_tables
                for row in conn.execute(select(table))
            )
    finally:
        engine.dispose()
    logged = (tmp_path / "watchkeeper.log").read_text(encoding="utf-8")
    assert "incident" in stored  # the database really holds the demo's rows
    for value in secrets.values():
        assert value not in stored
        assert value not in logged
        assert value not in printed
