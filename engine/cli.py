"""The `watchkeeper` command line: the console by default, subcommands for the service and administration.

    watchkeeper [--db URL] [--config FILE] [--version] [COMMAND]      (no command: the console)

Exit codes: 0 success; 1 an operational error (one line on stderr, `error: ...`, no traceback): a database
that does not answer, an unknown incident, a refused transition, a missing secret, a refused sign-in or
permission, an engine pass that failed during `check` (one line per failed pass); 2 bad usage (argparse).

The command line acts as a signed-in person, and every write is recorded with that person's name:
`--user NAME` (the password is asked for; read from stdin's next line when stdin is not a terminal), `--token
TOKEN` (an API token, `api:<label>` in the audit trail), or, on a SQLite database only, the local
administrator rule: the operating-system user who owns the database file acts as an administrator named
`local:<login>` (whoever can write that file can change anything in it anyway). The engine's own verbs
(`serve`, `check`, `db upgrade`, `db current`) need no sign-in; every other verb does, with the role the rule
book (engine.permissions) asks for.

This module never imports the console or Qt: `main()` is handed a `start_console(settings) -> int` callback
by main.py. Verbs import the part of the engine they drive inside their handler, so `--help` is fast and a
build without, say, the HTTP service still runs every other command.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from sqlalchemy.exc import SQLAlchemyError

from engine import cli_text, cli_work
from engine.errors import WatchkeeperError
from engine.permissions import ADM, Action, Identity
from engine.settings import Settings, load_settings

PROG = "watchkeeper"
CHANNELS = ("sms", "whatsapp", "voice", "email", "webhook", "console")
SEVERITIES = ("critical", "high", "medium", "low", "info")

StartConsole = Callable[..., int]  # (settings, *, smoke=False) -> exit code


class VerbUnavailable(Exception):
    """The module a verb needs is not part of this build (yet)."""

    def __init__(self, verb: str) -> None:
        super().__init__(verb)
        self.verb = verb


def version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        return dist_version("watchkeeper")
    except PackageNotFoundError:
        from engine import __version__

        return __version__


def version_line() -> str:
    """`watchkeeper --version`: the version, and the build date of a packaged build (engine.buildinfo)."""
    from engine.buildinfo import version_line as line

    return line(version())


# --------------------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------------------


def _iso_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from None
    from engine.clock import as_utc

    return as_utc(value)  # no offset given: UTC


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return value


def _port(text: str) -> int:
    # 0 lets the operating system choose a free port (the service logs the one it got).
    if text.strip() == "0":
        return 0
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    # --db and --config are accepted before the command and after it (`watchkeeper list --db URL`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="database: a SQLite file path or postgresql:// URL",
    )
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="settings file (TOML)")
    common.add_argument(
        "--user",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="sign in as this account (asks the password)",
    )
    common.add_argument("--token", metavar="TOKEN", default=argparse.SUPPRESS, help="act with this API token")
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print the result as JSON")

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Watchkeeper: escalation console for dispatch centres. Without a command it opens the console.",
        epilog="Exit codes: 0 ok, 1 operational error, 2 bad usage. `watchkeeper COMMAND --help` for details. "
        "Sign-in: --user NAME (asks the password), --token TOKEN, or, on a SQLite database, the owner of "
        "the database file acts as local administrator.",
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        help="database: a SQLite file path or postgresql://user@host:port/name "
        "(default: WATCHKEEPER_DB, then the settings file, then a SQLite file in the user data directory)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="settings file (default: WATCHKEEPER_CONFIG, then the platform's config dir)",
    )
    parser.add_argument(
        "--user",
        metavar="NAME",
        help="sign in as this account; the password is asked for (default: WATCHKEEPER_USER)",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="act with this API token instead of an account ('-' reads it from stdin; default: "
        "WATCHKEEPER_TOKEN)",
    )
    parser.add_argument("--version", action="version", version=version_line())
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="check the console starts (database, first window, every part loads), then exit; nobody signs in",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def add(name: str, help_text: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[common, *parents])

    p = add("serve", "run the engine as a service with its HTTP API (no window)")
    p.add_argument("--host", help="address to listen on (default: settings http_host)")
    p.add_argument("--port", type=_port, help="port to listen on (default: settings http_port)")

    p = add(
        "engine",
        "run the engine's passes without a window or HTTP API, until stopped (the console starts one as its "
        "engine process)",
    )
    p.add_argument(
        "--control",
        action="store_true",
        help="take settings, wake-ups and stop from standard input and stop at its end (the console's link)",
    )
    add("check", "run every engine pass once and print what each did; exit 1 naming any pass that failed")
    add("demo", "load the demo data (people, teams, policies, incidents) into the database")

    p = add("db", "database schema: upgrade or show the current revision")
    db_sub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = db_sub.add_parser(
        "upgrade",
        help="bring the schema to this Watchkeeper's revision",
        description="Bring the schema to this Watchkeeper's revision (a shared PostgreSQL database is only "
        "ever upgraded this way; a SQLite file is also upgraded when it is opened).",
        parents=[common],
    )
    up.add_argument(
        "--backup-dir",
        metavar="DIR",
        help="SQLite: first copy the database and its intake spool into DIR (refused while an engine runs "
        "on the file); a failed upgrade leaves the database as it was and names the copy",
    )
    db_sub.add_parser(
        "current", help="print the schema revision and whether it is the head", parents=[common]
    )
    dp = db_sub.add_parser(
        "roles",
        help="PostgreSQL: create the service and console roles and their grants (administrator)",
        description="Create (if missing) a service role that may change everything and a console role for "
        "operators' workstations that may not change configuration or accounts, and grant each what it "
        "needs. Run with the database owner's login, signed in as a Watchkeeper administrator; run again "
        "after `db upgrade` (which re-applies them by itself when it can).",
        parents=[common],
    )
    dp.add_argument("--service-role", default="watchkeeper_service", metavar="NAME")
    dp.add_argument("--console-role", default="watchkeeper_console", metavar="NAME")

    p = add("import", "import policies, people, teams, schedules, templates from YAML/JSON files")
    p.add_argument("files", nargs="+", metavar="FILE")

    p = add("export", "export the configuration as YAML (or JSON when -o ends in .json)")
    p.add_argument("--kind", help="only this kind (e.g. policies, people, teams, schedules, templates)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")

    p = add(
        "secrets",
        "store secrets in the OS keyring (a service reads WATCHKEEPER_SECRET_<NAME> instead)",
    )
    p.epilog = (
        "Names: twilio_auth_token, smtp_password, webhook_signing_key, and webhook_signing_key:<target> for "
        "the webhooks to the policy target of that name (lower case, spaces as '-'). Environment: "
        "WATCHKEEPER_SECRET_<NAME> (upper case, ':' as '__') wins over the keyring. Values are never printed."
    )
    s_sub = p.add_subparsers(dest="secrets_command", metavar="ACTION", required=True)
    sp = s_sub.add_parser(
        "set",
        help="prompt for a secret (or read one line from stdin) and store it",
        description="Prompt for the value twice (not echoed), or read one line from stdin when it is not a "
        "terminal, and store it in the keyring.",
        parents=[common],
    )
    sp.add_argument("name", metavar="NAME")
    sp = s_sub.add_parser("delete", help="remove a secret from the keyring", parents=[common])
    sp.add_argument("name", metavar="NAME")
    s_sub.add_parser(
        "list", help="list the names of the secrets that are set (never values)", parents=[common]
    )

    p = add(
        "trigger",
        "open an incident (or add to the open one with the same key) and start escalating",
        json_flag,
    )
    p.add_argument(
        "--policy", metavar="NAME", help="escalation policy name (default: the centre's default policy)"
    )
    p.add_argument("--summary", required=True, metavar="TEXT")
    p.add_argument("--key", metavar="KEY", help="deduplication key (default: derived from the summary)")
    p.add_argument("--severity", choices=SEVERITIES, default="high")
    p.add_argument("--category", default="general", metavar="C")
    p.add_argument("--site", default="", metavar="S")
    p.add_argument("--details", default="", metavar="T")
    p.add_argument(
        "--sensitive", action="store_true", help="never SLA-monitored (no deadlines, warnings or breaches)"
    )

    p = add("ack", "acknowledge an incident", json_flag)
    p.add_argument("id", metavar="ID", help="incident id or key")

    p = add(
        "start-work",
        'mark an incident in progress ("I\'m on it"; acknowledges it first if it still pages)',
        json_flag,
    )
    p.add_argument("id", metavar="ID", help="incident id or key")

    p = add("resolve", "resolve an incident", json_flag)
    p.add_argument("id", metavar="ID", help="incident id or key")
    p.add_argument("--note", default="", metavar="TEXT")

    p = add("cancel", "cancel an incident and stop its escalation (supervisor)", json_flag)
    p.add_argument("id", metavar="ID", help="incident id or key")
    p.add_argument("--reason", required=True, metavar="TEXT")

    p = add("escalate", "escalate an incident to the next level, or to --level N", json_flag)
    p.add_argument("id", metavar="ID", help="incident id or key")
    p.add_argument("--level", type=_positive_int, metavar="N")

    p = add("note", "add a note to an incident's timeline", json_flag)
    p.add_argument("id", metavar="ID", help="incident id or key")
    p.add_argument("text", metavar="TEXT")

    p = add("assign", "re-assign an incident to a team, a person, or both", json_flag)
    p.add_argument("id", metavar="ID", help="incident id or key")
    p.add_argument("--team", metavar="HANDLE")
    p.add_argument("--person", metavar="HANDLE", help="a person's handle, or 'me' (your linked person)")
    p.add_argument("--reason", default="", metavar="TEXT")

    p = add(
        "classify",
        "change an open incident's category or sensitive flag (its SLA deadlines follow, from when it opened)",
        json_flag,
    )
    p.add_argument("id", metavar="ID", help="incident id or key")
    p.add_argument("--category", metavar="C", help="the new category (its SLA configuration applies)")
    flag = p.add_mutually_exclusive_group()
    flag.add_argument(
        "--sensitive",
        dest="sensitive",
        action="store_const",
        const=True,
        help="mark it sensitive: never SLA-monitored (no deadlines, warnings or breaches)",
    )
    flag.add_argument(
        "--not-sensitive",
        dest="sensitive",
        action="store_const",
        const=False,
        help="monitor its SLA again, with deadlines from when it opened",
    )

    p = add("reopen", "re-open a resolved or cancelled incident (a new escalation starts)", json_flag)
    p.add_argument("id", metavar="ID", help="incident id or key")
    p.add_argument("--reason", default="", metavar="TEXT")

    p = add("list", "list incidents, newest first", json_flag)
    p.add_argument(
        "--state", metavar="STATE", help="open, acknowledged, in_progress, escalated, resolved, cancelled"
    )
    p.add_argument("--limit", type=_positive_int, default=50, metavar="N")

    p = add("intake", "Events API events set aside because they could not be applied, with why", json_flag)
    p.add_argument("--limit", type=_positive_int, default=50, metavar="N")

    p = add("show", "show one incident with its escalation, timeline and messages", json_flag)
    p.add_argument("id", metavar="ID", help="incident id or key")

    p = add("stats", "response and resolution statistics, SLA compliance, messages and their cost", json_flag)
    p.add_argument("--since", type=_iso_datetime, metavar="ISO", help="from (ISO 8601; no offset means UTC)")
    p.add_argument("--until", type=_iso_datetime, metavar="ISO", help="until (ISO 8601; no offset means UTC)")
    p.add_argument("--policy", metavar="NAME", help="only incidents of this escalation policy")
    p.add_argument("--team", metavar="HANDLE", help="only incidents assigned to this team")
    p.add_argument("--site", metavar="S")
    p.add_argument("--category", metavar="C")
    p.add_argument("--severity", choices=SEVERITIES)

    p = add("test-send", "send one test message through a channel (simulated when it has no credentials)")
    p.add_argument("--channel", required=True, choices=CHANNELS)
    p.add_argument(
        "--to", required=True, metavar="ADDRESS", help="phone number (E.164), e-mail address or URL"
    )
    p.add_argument("--text", default="Watchkeeper test message", metavar="TEXT")

    p = add("keys", "Events API routing keys: each maps monitoring events to an escalation policy")
    k_sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    kp = k_sub.add_parser(
        "create",
        help="create a routing key for a policy (shown once, stored only as a hash)",
        parents=[common, json_flag],
    )
    kp.add_argument("--policy", required=True, metavar="NAME", help="escalation policy name")
    kp.add_argument("--label", required=True, metavar="TEXT", help="where it is used, e.g. alertmanager-prod")
    k_sub.add_parser(
        "list", help="list routing keys (never the keys themselves)", parents=[common, json_flag]
    )
    kp = k_sub.add_parser("revoke", help="revoke a routing key by id or label", parents=[common])
    kp.add_argument("id", metavar="ID")

    p = add("tokens", "REST API bearer tokens with a role")
    t_sub = p.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    tp = t_sub.add_parser(
        "create", help="create an API token (shown once, stored only as a hash)", parents=[common, json_flag]
    )
    tp.add_argument("--label", required=True, metavar="TEXT", help="who or what uses it")
    tp.add_argument("--role", choices=["operator", "supervisor", "admin"], default="operator")
    t_sub.add_parser(
        "list", help="list API tokens (never the tokens themselves)", parents=[common, json_flag]
    )
    tp = t_sub.add_parser("revoke", help="revoke an API token by id or label", parents=[common])
    tp.add_argument("id", metavar="ID")

    p = add(
        "backup",
        "copy the database and its intake spool while the site runs (SQLite; PostgreSQL sites use pg_dump)",
    )
    p.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="a new file, or a directory for a dated one (default: backups/ beside the database)",
    )
    p = add("restore", "put a backup in place of the database (refused while an engine runs on it)")
    p.add_argument(
        "path", metavar="PATH", help="a file made by `watchkeeper backup`, or by `pg_dump -Fc` for PostgreSQL"
    )

    p = add("users", "operator accounts: add, list, change role, disable, enable, reset a password")
    p.epilog = (
        "Administrators only, except `users passwd` (anyone, for their own account). On a database with no "
        "accounts, `users add NAME --role admin` creates the first administrator without signing in."
    )
    u_sub = p.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    up = u_sub.add_parser(
        "add",
        help="add an account; a temporary password is printed once (changed at the first sign-in)",
        parents=[common, json_flag],
    )
    up.add_argument("username", metavar="NAME")
    up.add_argument("--role", choices=["operator", "supervisor", "admin"], required=True)
    up.add_argument("--name", default="", metavar="TEXT", help="display name (default: the user name)")
    up.add_argument("--person", metavar="HANDLE", help="link the account to this person record")
    u_sub.add_parser(
        "list", help="accounts with role, person, state and last sign-in", parents=[common, json_flag]
    )
    up = u_sub.add_parser("set-role", help="give an account another role", parents=[common])
    up.add_argument("username", metavar="NAME")
    up.add_argument("role", choices=["operator", "supervisor", "admin"])
    up = u_sub.add_parser("edit", help="change an account's display name or linked person", parents=[common])
    up.add_argument("username", metavar="NAME")
    up.add_argument("--name", metavar="TEXT", help="display name")
    link = up.add_mutually_exclusive_group()
    link.add_argument("--person", metavar="HANDLE", help="link to this person record")
    link.add_argument("--no-person", action="store_true", help="remove the link to a person")
    for action, text in (
        ("disable", "disable an account (it can no longer sign in; nothing it did is removed)"),
        ("enable", "enable an account again (also lifts a lock-out after failed sign-ins)"),
        (
            "reset-password",
            "set a temporary password (printed once) that must be changed at the next sign-in",
        ),
    ):
        up = u_sub.add_parser(action, help=text, parents=[common])
        up.add_argument("username", metavar="NAME")
    u_sub.add_parser(
        "passwd",
        help="change your own password (sign in with --user NAME)",
        description="Asks for your current password (the sign-in) and the new one twice; when stdin is not a "
        "terminal, reads them from its next three lines.",
        parents=[common],
    )

    p = add("audit", "the audit trail: who changed what and when (supervisor)", json_flag)
    p.add_argument("--person", default="", metavar="TEXT", help="part of who acted")
    p.add_argument(
        "--kind", default="", metavar="KIND", help="e.g. config_updated, sign_in_failed (commas: several)"
    )
    p.add_argument("--object", default="", metavar="TEXT", help="part of the object's name, or KIND:NAME")
    p.add_argument("--since", type=_iso_datetime, metavar="ISO", help="from (ISO 8601; no offset means UTC)")
    p.add_argument("--until", type=_iso_datetime, metavar="ISO", help="until (ISO 8601; no offset means UTC)")
    p.add_argument("--limit", type=_positive_int, default=50, metavar="N")
    p.add_argument("--csv", metavar="FILE", help="write every matching entry as CSV to FILE ('-': stdout)")

    p = add("switches", "the centre-wide master switches (notifications, automatic escalations)")
    w_sub = p.add_subparsers(dest="switches_command", metavar="ACTION", required=True)
    w_sub.add_parser("list", help="show the switches", parents=[common, json_flag])
    wp = w_sub.add_parser("set", help="turn a switch on or off (supervisor)", parents=[common])
    wp.add_argument("name", choices=["notifications_enabled", "escalations_enabled"])
    wp.add_argument("state", choices=["on", "off"])

    p = add("handover", "the shift handover: show the latest note and the shift's incidents, or write one")
    h_sub = p.add_subparsers(dest="handover_command", metavar="ACTION", required=True)
    hp = h_sub.add_parser(
        "show",
        help="the latest note and the open, unacknowledged and breached incidents",
        parents=[common, json_flag],
    )
    hp.add_argument(
        "--hours", type=_positive_int, default=12, metavar="N", help="the shift's length (default 12)"
    )
    hp = h_sub.add_parser("write", help="leave a note for the next shift", parents=[common])
    hp.add_argument("text", metavar="TEXT")
    hp.add_argument(
        "--hours", type=_positive_int, default=12, metavar="N", help="the shift's length (default 12)"
    )
    cli_work.add_parsers(add, common, json_flag)
    return parser


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def _need(module: str, verb: str, *names: str) -> ModuleType:
    """Import the engine module a verb drives; VerbUnavailable when this build does not have it (yet)."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise VerbUnavailable(verb) from None
        raise
    if any(not hasattr(mod, name) for name in names):
        raise VerbUnavailable(verb)
    return mod


def _missing_engine_part(exc: ImportError) -> bool:
    """True when `exc` is an engine module that does not exist (not a broken import inside one that does)."""
    name = exc.name or ""
    if not (name == "engine" or name.startswith("engine.")):
        return False
    if isinstance(exc, ModuleNotFoundError):
        return True
    # `from engine import stats` without engine/stats.py: ImportError(name="engine", "cannot import name ...")
    return "cannot import name" in str(exc)


def _login_name() -> str:
    """The operating-system user running this command (for the local administrator rule)."""
    try:
        return getpass.getuser()
    except Exception:
        for var in ("USER", "USERNAME", "LOGNAME"):
            if os.environ.get(var):
                return os.environ[var]
    return f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _owns_database_file(url: Any) -> bool:
    """True when this process's user owns the SQLite database file (POSIX), or may write it (elsewhere,
    where files have no simple owner)."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return False
    path = Path(url.database)
    if not path.exists():
        return False
    if hasattr(os, "geteuid"):
        return path.stat().st_uid == os.geteuid()
    return os.access(path, os.W_OK)


def read_secret_line(prompt: str, stdin: TextIO | None = None) -> str:
    """A password or secret: asked without echo on a terminal, else the next line of stdin."""
    stream = sys.stdin if stdin is None else stdin
    if stream is not None and stream.isatty():
        return getpass.getpass(prompt)
    line = stream.readline() if stream is not None else ""
    return line.rstrip("\r\n")


class SignInRequired(WatchkeeperError):
    """The command changes or reads the centre's data and nobody has signed in."""


def _ref(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def _print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(_jsonable(value), indent=2, ensure_ascii=False, default=str) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _short_time(value: Any) -> str:
    text = _cell(value)
    # "2026-03-02T08:00:00+00:00" -> "2026-03-02 08:00"
    if len(text) >= 16 and text[10] == "T":
        return text[:10] + " " + text[11:16]
    return text


def format_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]], width: int = 60
) -> str:
    """A plain-text table: header, then one line per row; long cells are cut with an ellipsis."""
    cells = []
    for row in rows:
        line = []
        for key, _title in columns:
            text = _short_time(row.get(key)) if key.endswith("_at") else _cell(row.get(key))
            text = " ".join(text.split())
            if len(text) > width:
                text = text[: width - 1] + "…"
            line.append(text)
        cells.append(line)
    titles = [title for _key, title in columns]
    widths = [max([len(t)] + [len(r[i]) for r in cells]) for i, t in enumerate(titles)]
    lines = ["  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)).rstrip()]
    for r in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


INCIDENT_COLUMNS = (
    ("id", "ID"),
    ("status", "STATUS"),
    ("severity", "SEVERITY"),
    ("site", "SITE"),
    ("category", "CATEGORY"),
    ("created_at", "OPENED"),
    ("summary", "SUMMARY"),
)


def format_block(data: Mapping[str, Any], indent: int = 0) -> str:
    """key: value lines; nested mappings indented; lists of mappings as small tables."""
    pad = " " * indent
    scalars = {k: v for k, v in data.items() if not isinstance(v, Mapping | list)}
    key_width = max((len(k) for k in scalars), default=0)
    lines = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            lines.append(f"{pad}{key}:")
            lines.append(format_block(value, indent + 2) if value else f"{pad}  (none)")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}:")
            if not value:
                lines.append(f"{pad}  (none)")
            elif all(isinstance(v, Mapping) for v in value):
                columns = []
                for item in value:
                    for k, v in item.items():
                        if (k, k.upper()) not in columns and not isinstance(v, Mapping | list):
                            columns.append((k, k.upper()))
                table = format_table(value, columns)
                lines.extend(f"{pad}  {line}" for line in table.splitlines())
            else:
                lines.extend(f"{pad}  - {_cell(v)}" for v in value)
        else:
            lines.append(f"{pad}{key.ljust(key_width)}  {_cell(value)}")
    return "\n".join(lines)


def _indent(text: str, n: int = 2) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


def _counts(data: Mapping[str, Any], out: TextIO) -> None:
    if not data:
        out.write("nothing to do\n")
        return
    out.write(format_block(data) + "\n")


# --------------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------------


class Runner:
    """Runs one parsed command; holds the settings and opens the database only for commands that need it."""

    def __init__(self, args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.settings = settings
        self.out = out
        self.err = err
        self._identity: Identity | None = None
        self.sign_in_result: Any = None

    def context(self, mode: str = "cli") -> Any:
        from engine.bootstrap import open_context

        return open_context(self.settings, mode)

    def with_context(
        self,
        verb: str,
        module: str,
        func: str,
        call: Callable[[Any, Any], int],
        action: Action | None = None,
    ) -> int:
        """Open the database, sign in and check `action` (when given), then run `call(fn, ctx)`."""
        mod = _need(module, verb, func)
        ctx = self.context("service" if verb == "serve" else "cli")
        try:
            if action is not None:
                self.authorized(ctx, action)
            return call(getattr(mod, func), ctx)
        except ImportError as exc:
            # The verb's module is here but a part it imports lazily is not in this build yet.
            if _missing_engine_part(exc):
                raise VerbUnavailable(verb) from None
            raise
        finally:
            ctx.db.dispose()

    # -- who is acting ---------------------------------------------------------------------------------

    def signed_in(self, ctx: Any, *, allow_password_change: bool = False) -> Identity:
        """The person this command acts as: --token, --user (password asked), or the SQLite file's owner."""
        if self._identity is not None:
            return self._identity
        from engine import accounts
        from engine.db import read_session
        from engine.service.keys import authenticate_token, token_identity

        token = self.args.token or os.environ.get("WATCHKEEPER_TOKEN") or ""
        user = self.args.user or os.environ.get("WATCHKEEPER_USER") or ""
        if token:
            if token == "-":
                token = read_secret_line("API token: ").strip()
            with read_session(ctx.sessions) as session:
                found = authenticate_token(session, token.strip())
            if found is None:
                raise accounts.SignInFailed("unknown or revoked API token")
            identity = token_identity(found, via="cli")
        elif user:
            password = read_secret_line(f"password for {user}: ")
            result = accounts.sign_in(ctx, user, password, via="cli")
            self.sign_in_result = (result, password)
            if result.must_change_password and not allow_password_change:
                raise accounts.SignInFailed(
                    f"the password of {result.account.username} was reset and must be changed first: "
                    f"`{PROG} --user {result.account.username} users passwd`"
                )
            identity = result.identity
        elif _owns_database_file(ctx.db.url):
            login = _login_name()
            identity = Identity(
                name=f"local:{login}",
                role=ADM,
                kind="local",
                display_name=f"{login} (owner of the database file)",
                via="cli",
            )
        else:
            raise SignInRequired(
                "sign in first: --user NAME (asks the password) or --token TOKEN "
                "(or WATCHKEEPER_USER / WATCHKEEPER_TOKEN); on a SQLite database the owner of the file may "
                "act without signing in"
            )
        self._identity = identity
        return identity

    def authorized(self, ctx: Any, action: Action) -> Identity:
        from engine.db import read_session
        from engine.permissions import authorize

        identity = self.signed_in(ctx)
        with read_session(ctx.sessions) as session:
            return authorize(session, identity, action)

    # -- administration --------------------------------------------------------------------------------

    def cmd_db(self) -> int:
        from engine.bootstrap import connect, describe_database
        from engine.db import normalise_url
        from engine.migrate import status, upgrade

        if self.args.db_command == "upgrade" and getattr(self.args, "backup_dir", None):
            return self.cmd_upgrade_with_backup()
        parsed = None
        with contextlib.suppress(ValueError):  # connect() reports a bad URL
            parsed = normalise_url(self.settings.db)
        if (
            self.args.db_command == "current"
            and parsed is not None
            and parsed.get_backend_name() == "sqlite"
            and parsed.database
            and parsed.database != ":memory:"
            and not Path(parsed.database).exists()
        ):
            self.out.write(
                f"none (no database file yet at {parsed.database}; it is created when first opened)\n"
            )
            return 0
        if self.args.db_command == "roles":
            return self._db_roles()
        engine = connect(self.settings)
        try:
            label = describe_database(engine.url)
            if self.args.db_command == "current":
                self.out.write(status(engine).describe() + "\n")
                return 0
            before = status(engine)
            if before.at_head:
                self.out.write(f"{label}: already at {before.head} (head)\n")
                return 0
            after = upgrade(engine)
            self.out.write(f"{label}: upgraded from {before.current or 'empty'} to {after} (head)\n")
            self._regrant(engine)
            return 0
        finally:
            engine.dispose()

    def _regrant(self, engine: Any) -> None:
        """After an upgrade, the roles `db roles` made get their grants again (new tables included)."""
        from engine import dbroles
        from engine.clock import SystemClock

        roles = dbroles.remembered_roles(engine)
        if roles is None:
            return
        try:
            dbroles.grant_roles(engine, service_role=roles[0], console_role=roles[1], now=SystemClock().now())
        except WatchkeeperError as exc:
            self.err.write(f"warning: the grants of {roles[0]} and {roles[1]} were not renewed: {exc}\n")
            return
        self.out.write(f"grants of {roles[0]} and {roles[1]} renewed\n")

    def _db_roles(self) -> int:
        from engine import dbroles

        def run(_fn: Any, ctx: Any) -> int:
            who = self.authorized(ctx, Action.DATABASE_ROLES)
            report = dbroles.grant_roles(
                ctx.db,
                service_role=self.args.service_role,
                console_role=self.args.console_role,
                by=who,
                now=ctx.clock.now(),
            )
            for line in report.lines():
                self.out.write(line + "\n")
            self.out.write(
                "Give each role a password (psql: \\password NAME) or use certificate or peer "
                "authentication, then give operators' workstations the console role's login.\n"
            )
            return 0

        return self.with_context("db roles", "engine.dbroles", "grant_roles", run)

    # -- backup, restore ----------------------------------------------------------------------------------

    def cmd_backup(self) -> int:
        from engine.backup import backup
        from engine.clock import SystemClock

        for line in backup(self.settings.db, self.args.path or None, SystemClock().now()).lines():
            self.out.write(line + "\n")
        return 0

    def cmd_restore(self) -> int:
        from engine.backup import restore
        from engine.clock import SystemClock

        for line in restore(self.settings.db, Path(self.args.path), SystemClock().now()).lines():
            self.out.write(line + "\n")
        return 0

    def cmd_upgrade_with_backup(self) -> int:
        from engine.backup import upgrade_with_backup
        from engine.clock import SystemClock

        for line in upgrade_with_backup(self.settings.db, Path(self.args.backup_dir), SystemClock().now()):
            self.out.write(line + "\n")
        return 0

    def cmd_secrets(self) -> int:
        from engine.secrets import SecretStore, env_var_name, normalise_name, unused_environment_secrets

        store = SecretStore()
        action = self.args.secrets_command
        if action == "list":

            def listing(_fn: Any, _ctx: Any) -> int:
                names = store.list_names()
                problem = store.keyring_problem()
                if problem:
                    self.err.write(f"note: {problem}\n")
                for var in unused_environment_secrets():
                    self.err.write(f"note: {var} is not a secret Watchkeeper reads; it is ignored\n")
                if not names:
                    self.out.write("no secrets are set\n")
                    return 0
                rows = [{"name": n, "source": self._secret_source(store, n)} for n in names]
                self.out.write(format_table(rows, (("name", "NAME"), ("source", "FROM"))) + "\n")
                return 0

            return self.with_context(
                "secrets", "engine.secrets", "SecretStore", listing, Action.VIEW_CONFIGURATION
            )
        name = normalise_name(self.args.name, retired_ok=action == "delete")
        if action == "set":
            # The keyring first, so nobody signs in and types a token for nothing.
            problem = store.keyring_problem()
            if problem:
                from engine.errors import ConfigurationError

                raise ConfigurationError(problem)

        def change(_fn: Any, ctx: Any) -> int:
            from engine import audit

            who = self.authorized(ctx, Action.MANAGE_SECRETS)
            where = f"the keyring of {_host()}"
            if action == "delete":
                store.delete(name)
                audit.record_now(
                    ctx,
                    who,
                    "secret_removed",
                    object_kind="secret",
                    object_name=name,
                    message=f"Secret {name} removed from {where}",
                )
                self.out.write(f"deleted {name} from the keyring\n")
                return 0
            value = self._read_secret(name)
            store.set(name, value)
            # That it changed, where, and by whom: never the value.
            audit.record_now(
                ctx,
                who,
                "secret_set",
                object_kind="secret",
                object_name=name,
                message=f"Secret {name} set in {where}",
            )
            self.out.write(f"stored {name} in the keyring ({store.backend_name()})\n")
            if os.environ.get(env_var_name(name)):
                self.err.write(
                    f"note: {env_var_name(name)} is set in this environment and takes precedence\n"
                )
            return 0

        return self.with_context("secrets", "engine.secrets", "SecretStore", change)

    @staticmethod
    def _secret_source(store: Any, name: str) -> str:
        from engine.errors import ValidationError
        from engine.secrets import RETIRED_SECRETS

        try:
            found = str(store.source(name) or "")
        except ValidationError:  # a name in the environment that is no secret of ours
            return "environment (not used)"
        return f"{found} (not used)" if name in RETIRED_SECRETS else found

    def _read_secret(self, name: str) -> str:
        from engine.errors import ValidationError

        stdin = sys.stdin
        if stdin is not None and stdin.isatty():
            first = getpass.getpass(f"{name}: ")
            second = getpass.getpass(f"{name} (again): ")
            if first != second:
                raise ValidationError("the two entries differ; nothing stored", field="secret")
            value = first
        else:
            line = stdin.readline() if stdin is not None else ""
            value = line.rstrip("\r\n")
        if not value:
            raise ValidationError(f"empty value for {name}; nothing stored", field="secret")
        return value

    def cmd_serve(self) -> int:
        from engine.errors import ConfigurationError
        from engine.secrets import unused_environment_secrets

        # A mistyped or retired secret variable would leave the service running without it, unnoticed.
        unused = unused_environment_secrets()
        if unused:
            raise ConfigurationError(
                f"{', '.join(unused)}: not a secret Watchkeeper reads (see `watchkeeper secrets --help`); "
                "correct or remove it in the service's environment"
            )
        host = self.args.host or self.settings.http_host
        port = self.settings.http_port if self.args.port is None else self.args.port
        return self.with_context("serve", "engine.service", "serve", lambda fn, ctx: int(fn(ctx, host, port)))

    def cmd_engine(self) -> int:
        from engine import engine_process

        control = sys.stdin if self.args.control else None
        node_id = None
        if control is not None:  # the console's settings and node, as the console sent them
            self.settings, node_id = engine_process.read_start(control, self.settings)
        return self.with_context(
            "engine", "engine.engine_process", "run_engine", lambda fn, ctx: int(fn(ctx, control, node_id))
        )

    def cmd_check(self) -> int:
        def run(fn: Any, ctx: Any) -> int:
            from engine.runner import failed_passes

            result = fn(ctx)
            _counts(result, self.out)
            failed = failed_passes(result)
            # Every pass ran; a cron job or a monitor still has to see that one of them could not.
            for name, reason in failed.items():
                self.err.write(f"error: the {name} pass failed: {reason}\n")
            return 1 if failed else 0

        return self.with_context("check", "engine.runner", "run_once", run)

    def cmd_demo(self) -> int:
        def run(fn: Any, ctx: Any) -> int:
            result = fn(ctx, by=self.signed_in(ctx))
            self.out.write("demo data loaded\n")
            if result:
                _counts(result, self.out)
            return 0

        return self.with_context("demo", "engine.demo", "load_demo", run, Action.EDIT_CONFIGURATION)

    def cmd_import(self) -> int:
        from engine.errors import ValidationError

        paths = [Path(p) for p in self.args.files]
        _need("engine.config_io", "import", "import_files")
        for path in paths:
            if not path.is_file():
                raise ValidationError("no such file", where=str(path))

        def run(fn: Any, ctx: Any) -> int:
            # config_io checks the permission itself: configuration needs a supervisor, accounts an admin.
            _counts(fn(ctx, paths, actor=self.signed_in(ctx)), self.out)
            return 0

        return self.with_context("import", "engine.config_io", "import_files", run)

    def cmd_export(self) -> int:
        output = Path(self.args.output) if self.args.output else None
        fmt = "json" if output is not None and output.suffix.lower() == ".json" else "yaml"

        def run(fn: Any, ctx: Any) -> int:
            text = str(fn(ctx, kind=self.args.kind, fmt=fmt, by=self.signed_in(ctx)))
            if not text.endswith("\n"):
                text += "\n"
            if output is None:
                self.out.write(text)
            else:
                output.parent.mkdir(parents=True, exist_ok=True)
                tmp = output.with_name(output.name + ".tmp")
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(output)
                self.err.write(f"wrote {output}\n")
            return 0

        return self.with_context("export", "engine.config_io", "export_text", run)

    def cmd_test_send(self) -> int:
        def run(fn: Any, ctx: Any) -> int:
            from engine import audit

            who = self.signed_in(ctx)
            result = fn(ctx, self.args.channel, self.args.to, self.args.text)
            audit.record_now(
                ctx,
                who,
                "test_send",
                object_kind="channel",
                object_name=self.args.channel,
                message=f"Test message on {self.args.channel} to {self.args.to}: "
                + ("sent" if not isinstance(result, Mapping) or result.get("ok") is not False else "refused"),
            )
            _counts(result, self.out)
            # The provider refused: the report above says why; scripts see a failure.
            return 1 if isinstance(result, Mapping) and result.get("ok") is False else 0

        return self.with_context("test-send", "engine.channels", "test_send", run, Action.TEST_SEND)

    # -- incidents ---------------------------------------------------------------------------------------

    def _api(
        self,
        verb: str,
        func: str,
        action: Action,
        call: Callable[[Any, Any, Identity], Any],
        show: Callable[[Any], str],
    ) -> int:
        def run(fn: Any, ctx: Any) -> int:
            result = call(fn, ctx, self.authorized(ctx, action))
            if self.args.json:
                _print_json(result, self.out)
            else:
                self.out.write(show(result) + "\n")
            return 0

        return self.with_context(verb, "engine.api", func, run)

    def cmd_trigger(self) -> int:
        a = self.args

        def show(result: Any) -> str:
            data = _jsonable(result)
            if data.get("deduplicated"):
                return f"incident {data.get('incident_id')}: already open with this key; added to it"
            esc = data.get("escalation_id")
            tail = f", escalation {esc} started" if esc is not None else ", no escalation started"
            return f"incident {data.get('incident_id')} opened{tail}"

        def call(fn: Any, ctx: Any, who: Identity) -> Any:
            result = fn(
                ctx,
                policy=a.policy,
                summary=a.summary,
                key=a.key,
                severity=a.severity,
                category=a.category,
                site=a.site,
                details=a.details,
                sensitive=a.sensitive,
                source="cli",
                actor=who.name,
            )
            self._no_engine_note(ctx)
            return result

        return self._api("trigger", "trigger", Action.OPEN_INCIDENT, call, show)

    def _no_engine_note(self, ctx: Any) -> None:
        """The command line only writes the incident: say so when no engine is running to page anyone."""
        from engine.db import read_session
        from engine.history import engine_nodes

        with read_session(ctx.sessions) as session:
            alive = [n for n in engine_nodes(session, ctx.clock.now()) if n.alive]
        if not alive:
            self.err.write(
                "note: no engine is running on this database (none has reported in the last 30 s), so nobody "
                f"is paged yet: open the console, run `{PROG} serve`, or run `{PROG} check` once\n"
            )

    def _done(self, verb: str) -> Callable[[Any], str]:
        def show(result: Any) -> str:
            data = result if isinstance(result, Mapping) else {}
            ident = data.get("id", data.get("incident_id", self.args.id))
            state = data.get("status")
            return f"incident {ident} {verb}" + (f" (status: {state})" if state else "")

        return show

    def cmd_ack(self) -> int:
        return self._api(
            "ack",
            "acknowledge",
            Action.ACKNOWLEDGE,
            lambda fn, ctx, who: fn(ctx, _ref(self.args.id), by=who.name, via="cli"),
            self._done("acknowledged"),
        )

    def cmd_resolve(self) -> int:
        return self._api(
            "resolve",
            "resolve",
            Action.RESOLVE,
            lambda fn, ctx, who: fn(ctx, _ref(self.args.id), by=who.name, via="cli", note=self.args.note),
            self._done("resolved"),
        )

    def cmd_start_work(self) -> int:
        return self._api(
            "start-work",
            "start_work",
            Action.START_WORK,
            lambda fn, ctx, who: fn(ctx, _ref(self.args.id), by=who.name, via="cli"),
            self._done("in progress"),
        )

    def cmd_cancel(self) -> int:
        return self._api(
            "cancel",
            "cancel",
            Action.CANCEL,
            lambda fn, ctx, who: fn(ctx, _ref(self.args.id), reason=self.args.reason, by=who.name),
            self._done("cancelled"),
        )

    def cmd_escalate(self) -> int:
        return self._api(
            "escalate",
            "escalate",
            Action.ESCALATE,
            lambda fn, ctx, who: fn(ctx, _ref(self.args.id), by=who.name, level=self.args.level),
            self._done("escalated"),
        )

    def cmd_note(self) -> int:
        return self._api(
            "note",
            "add_note",
            Action.ADD_NOTE,
            lambda fn, ctx, who: fn(ctx, _ref(self.args.id), by=who.name, text=self.args.text),
            lambda r: f"note added to incident {r.get('incident_id')}",
        )

    def cmd_assign(self) -> int:
        from engine.errors import ValidationError

        if not self.args.team and not self.args.person:
            raise ValidationError("name a team (--team), a person (--person), or both", field="assign")

        def call(fn: Any, ctx: Any, who: Identity) -> Any:
            person = self.args.person
            if person == "me":
                person = _my_person(ctx, who)
            return fn(
                ctx,
                _ref(self.args.id),
                by=who.name,
                team=self.args.team,
                person=person,
                reason=self.args.reason,
            )

        return self._api(
            "assign",
            "assign",
            Action.ASSIGN,
            call,
            lambda r: (
                f"incident {r.get('incident_id')} assigned to "
                + " / ".join(x for x in (r.get("team"), r.get("person")) if x)
            ),
        )

    def cmd_classify(self) -> int:
        from engine.errors import ValidationError

        a = self.args
        if a.category is None and a.sensitive is None:
            raise ValidationError("give --category, --sensitive or --not-sensitive", field="classify")

        def show(r: Any) -> str:
            flag = "sensitive" if r.get("sensitive") else "not sensitive"
            what = f"category {r.get('category')}, {flag}"
            if r.get("sensitive"):
                sla = "SLA not monitored"
            else:
                due = (r.get("response_due_at"), r.get("resolution_due_at"))
                sla = f"response due {_short_time(due[0])}, resolution due {_short_time(due[1])}"
            if not r.get("changed"):
                return f"incident {r.get('incident_id')} unchanged: already {what}"
            return f"incident {r.get('incident_id')} classified: {what}; {sla}"

        return self._api(
            "classify",
            "classify",
            Action.CLASSIFY,
            lambda fn, ctx, who: fn(ctx, _ref(a.id), by=who.name, category=a.category, sensitive=a.sensitive),
            show,
        )

    def cmd_reopen(self) -> int:
        return self._api(
            "reopen",
            "reopen",
            Action.REOPEN,
            lambda fn, ctx, who: fn(ctx, _ref(self.args.id), by=who.name, reason=self.args.reason),
            self._done("re-opened"),
        )

    def cmd_list(self) -> int:
        def show(rows: Any) -> str:
            if not rows:
                return "no incidents"
            return format_table(rows, INCIDENT_COLUMNS)

        return self._api(
            "list",
            "list_incidents",
            Action.VIEW_INCIDENTS,
            lambda fn, ctx, _who: fn(ctx, state=self.args.state, limit=self.args.limit),
            show,
        )

    def cmd_intake(self) -> int:
        def show(data: Any) -> str:
            if not data["total"]:
                return "no Events API event is set aside"
            table = format_table(
                data["events"],
                (
                    ("id", "ID"),
                    ("received_at", "RECEIVED"),
                    ("action", "ACTION"),
                    ("dedup_key", "KEY"),
                    ("error", "WHY"),
                ),
            )
            return f"{data['total']} event(s) set aside (could not be applied):\n{table}"

        return self._api(
            "intake",
            "intake_set_aside",
            Action.VIEW_INCIDENTS,
            lambda fn, ctx, _who: fn(ctx, limit=self.args.limit),
            show,
        )

    def cmd_show(self) -> int:
        return self._api(
            "show",
            "show_incident",
            Action.VIEW_INCIDENTS,
            lambda fn, ctx, _who: fn(ctx, _ref(self.args.id)),
            cli_text.format_incident,
        )

    def cmd_stats(self) -> int:
        a = self.args
        return self._api(
            "stats",
            "stats",
            Action.VIEW_REPORTS,
            lambda fn, ctx, _who: fn(
                ctx,
                since=a.since,
                until=a.until,
                policy=a.policy,
                team=a.team,
                site=a.site,
                category=a.category,
                severity=a.severity,
            ),
            cli_text.format_stats,
        )

    # -- service credentials -------------------------------------------------------------------------------

    def _credentials(self, verb: str, kind: str) -> int:
        action = getattr(self.args, f"{verb}_command")

        def run(ctx: Any) -> int:
            from engine.service import keys as mod

            by = self.signed_in(ctx)  # engine.service.keys checks the administrator's permission itself
            if action == "create":
                if kind == "routing key":
                    created = mod.create_routing_key(
                        ctx, policy=self.args.policy, label=self.args.label, by=by
                    )
                else:
                    created = mod.create_api_token(ctx, label=self.args.label, role=self.args.role, by=by)
                if self.args.json:
                    _print_json(created, self.out)
                else:
                    self.out.write(
                        f"{kind} {created.id} ({created.label}) created. It is shown only this once:\n"
                        f"  {created.secret}\n"
                    )
                return 0
            if action == "list":
                rows = (
                    mod.list_routing_keys(ctx, by=by)
                    if kind == "routing key"
                    else mod.list_api_tokens(ctx, by=by)
                )
                if self.args.json:
                    _print_json(rows, self.out)
                elif not rows:
                    self.out.write(f"no {kind}s\n")
                else:
                    self.out.write(format_table(rows, [(k, k.upper()) for k in rows[0]]) + "\n")
                return 0
            revoke = mod.revoke_routing_key if kind == "routing key" else mod.revoke_api_token
            revoke(ctx, _ref(self.args.id), by=by)
            self.out.write(f"{kind} {self.args.id} revoked\n")
            return 0

        return self.with_context(verb, "engine.service.keys", "create_api_token", lambda _fn, ctx: run(ctx))

    def cmd_keys(self) -> int:
        return self._credentials("keys", "routing key")

    def cmd_tokens(self) -> int:
        return self._credentials("tokens", "API token")

    # -- accounts ---------------------------------------------------------------------------------------

    def cmd_users(self) -> int:
        action = self.args.users_command

        def run(mod: Any, ctx: Any) -> int:
            if action == "add" and self._first_account(mod, ctx):
                return 0
            if action == "passwd":
                return self._passwd(mod, ctx)
            by = self.signed_in(ctx)  # engine.accounts checks the administrator's permission itself
            name = getattr(self.args, "username", "")
            if action == "list":
                from engine.db import read_session
                from engine.permissions import authorize

                with read_session(ctx.sessions) as session:
                    authorize(session, by, Action.MANAGE_ACCOUNTS)
                    found = mod.list_accounts(session)
                self._show_accounts(found, ctx.clock.now())
                return 0
            if action == "add":
                made = mod.add_account(
                    ctx,
                    by,
                    username=name,
                    role=self.args.role,
                    display_name=self.args.name,
                    person=self.args.person,
                )
                self._new_password(made, "created")
                return 0
            if action == "reset-password":
                self._new_password(mod.reset_password(ctx, by, name), "reset")
                return 0
            if action == "set-role":
                account = mod.set_role(ctx, by, name, self.args.role)
                self.out.write(f"{account.username} is now {account.role}\n")
                return 0
            if action == "edit":
                changes: dict[str, Any] = {}
                if self.args.name is not None:
                    changes["display_name"] = self.args.name
                if self.args.person is not None or self.args.no_person:
                    changes["person"] = None if self.args.no_person else self.args.person
                account = mod.update_account(ctx, by, name, **changes)
                person = f", person {account.person}" if account.person else ", no person"
                self.out.write(f"{account.username}: {account.display_name}{person}\n")
                return 0
            account = (mod.disable if action == "disable" else mod.enable)(ctx, by, name)
            self.out.write(f"{account.username} {'enabled' if account.active else 'disabled'}\n")
            return 0

        return self.with_context(
            "users", "engine.accounts", "sign_in", lambda _fn, ctx: run(_module("accounts"), ctx)
        )

    def _first_account(self, mod: Any, ctx: Any) -> bool:
        """`users add` on a database with no accounts: the first administrator, with a password typed twice."""
        from engine.db import read_session, write_session
        from engine.errors import ValidationError

        with read_session(ctx.sessions) as session:
            if not mod.needs_first_admin(session):
                return False
        if self.args.role != ADM:
            raise ValidationError("the first account must be an administrator: --role admin", field="role")
        first = read_secret_line(f"password for {self.args.username}: ")
        second = read_secret_line(f"password for {self.args.username} (again): ")
        if first != second:
            raise ValidationError("the two passwords differ; no account was created", field="password")
        with write_session(ctx.sessions) as session:
            op = mod.ensure_first_admin(
                session,
                ctx.clock.now(),
                username=self.args.username,
                password=first,
                display_name=self.args.name,
                via="cli",
                person=self.args.person,
            )
            if op is None:  # someone else made one meanwhile
                return False
        self.out.write(
            f"first administrator {self.args.username} created; sign in with --user {self.args.username}\n"
        )
        return True

    def _passwd(self, mod: Any, ctx: Any) -> int:
        from engine.errors import ValidationError

        if not (self.args.user or os.environ.get("WATCHKEEPER_USER")):
            raise ValidationError("sign in with --user NAME to change your password", field="user")
        who = self.signed_in(ctx, allow_password_change=True)
        _result, current = self.sign_in_result
        first = read_secret_line("new password: ")
        second = read_secret_line("new password (again): ")
        if first != second:
            raise ValidationError("the two new passwords differ; nothing changed", field="password")
        mod.change_password(ctx, who, current, first)
        self.out.write(f"password of {who.name} changed\n")
        return 0

    def _new_password(self, made: Any, verb: str) -> None:
        account = made.account
        if getattr(self.args, "json", False):
            _print_json(
                {"username": account.username, "role": account.role, "temporary_password": made.password},
                self.out,
            )
            return
        self.out.write(
            f"account {account.username} ({account.role}) {verb}. Temporary password, shown only this once "
            f"(it must be changed at the first sign-in):\n  {made.password}\n"
        )

    def _show_accounts(self, found: Sequence[Any], now: datetime) -> None:
        rows = [
            {
                "username": a.username,
                "name": a.display_name,
                "role": a.role,
                "person": a.person or "",
                "state": a.state(now),
                "last_sign_in_at": a.last_sign_in_at,
                "failed": a.failed_sign_ins,
            }
            for a in found
        ]
        if self.args.json:
            _print_json(rows, self.out)
        elif not rows:
            self.out.write("no accounts\n")
        else:
            self.out.write(
                format_table(
                    rows,
                    (
                        ("username", "USER"),
                        ("name", "NAME"),
                        ("role", "ROLE"),
                        ("person", "PERSON"),
                        ("state", "STATE"),
                        ("last_sign_in_at", "LAST SIGN-IN"),
                        ("failed", "FAILED"),
                    ),
                )
                + "\n"
            )

    # -- audit, switches, handover ------------------------------------------------------------------------

    def cmd_audit(self) -> int:
        a = self.args

        def run(mod: Any, ctx: Any) -> int:
            from engine.db import read_session

            filters = {
                "person": a.person,
                "kind": a.kind,
                "obj": a.object,
                "since": a.since,
                "until": a.until,
            }
            with read_session(ctx.sessions) as session:
                if a.csv:
                    if a.csv == "-":
                        mod.write_csv(session, self.out, **filters)
                        return 0
                    path = Path(a.csv)
                    tmp = path.with_name(path.name + ".tmp")
                    with tmp.open("w", encoding="utf-8", newline="") as handle:
                        count = mod.write_csv(session, handle, **filters)
                    tmp.replace(path)
                    self.err.write(f"wrote {count} entries to {path}\n")
                    return 0
                page = mod.search(session, limit=a.limit, **filters)
            if a.json:
                _print_json([{**asdict(r), "at": r.at.isoformat()} for r in page.rows], self.out)
                return 0
            if not page.rows:
                self.out.write("no audit entries match\n")
                return 0
            rows = [
                {
                    "at": r.at.strftime("%Y-%m-%d %H:%M:%S"),
                    "actor": r.actor,
                    "action": r.action,
                    "object": f"{r.object_kind}:{r.object_name}" if r.object_kind else r.object_name,
                    "message": r.message,
                }
                for r in page.rows
            ]
            self.out.write(
                format_table(
                    rows,
                    (
                        ("at", "WHEN (UTC)"),
                        ("actor", "WHO"),
                        ("action", "KIND"),
                        ("object", "OBJECT"),
                        ("message", "WHAT"),
                    ),
                    width=70,
                )
                + "\n"
            )
            if page.has_more:
                self.err.write(f"(more: --limit {a.limit * 2}, or --csv FILE for all)\n")
            return 0

        return self.with_context(
            "audit", "engine.audit", "search", lambda _fn, ctx: run(_module("audit"), ctx), Action.VIEW_AUDIT
        )

    def cmd_switches(self) -> int:
        def run(mod: Any, ctx: Any) -> int:
            from engine.db import read_session, write_session

            if self.args.switches_command == "list":
                self.authorized(ctx, Action.VIEW_CONFIGURATION)
                with read_session(ctx.sessions) as session:
                    values = mod.all_switches(session)
                if getattr(self.args, "json", False):
                    _print_json(values, self.out)
                else:
                    for name, on in values.items():
                        self.out.write(f"{name}: {'on' if on else 'off'}\n")
                return 0
            who = self.signed_in(ctx)  # engine.switches checks the supervisor's permission itself
            on = self.args.state == "on"
            with write_session(ctx.sessions) as session:
                mod.set_switch(session, self.args.name, on, now=ctx.clock.now(), by=who)
            self.out.write(f"{self.args.name}: {self.args.state}\n")
            return 0

        return self.with_context(
            "switches", "engine.switches", "set_switch", lambda _fn, ctx: run(_module("switches"), ctx)
        )

    def cmd_handover(self) -> int:
        def run(mod: Any, ctx: Any) -> int:
            from datetime import timedelta

            from engine.db import read_session

            who = self.authorized(ctx, Action.HANDOVER)
            now = ctx.clock.now()
            since = now - timedelta(hours=self.args.hours)
            if self.args.handover_command == "write":
                note = mod.write_note(ctx, who, self.args.text, shift_started_at=since)
                self.out.write(
                    f"handover note {note.id} written: {note.open_count} open, "
                    f"{note.unacknowledged_count} unacknowledged, {note.breached_count} breached\n"
                )
                return 0
            with read_session(ctx.sessions) as session:
                note = mod.latest_note(session)
                summary = mod.shift_summary(session, now, since)
            if self.args.json:
                _print_json({"note": note, "summary": summary}, self.out)
                return 0
            self.out.write(format_handover(note, summary) + "\n")
            return 0

        return self.with_context(
            "handover", "engine.handover", "write_note", lambda _fn, ctx: run(_module("handover"), ctx)
        )


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"engine.{name}")


def _host() -> str:
    import socket

    return socket.gethostname()


def _my_person(ctx: Any, who: Identity) -> str:
    """`--person me`: the handle of the person linked to the signed-in account."""
    from engine.db import read_session
    from engine.errors import ValidationError
    from engine.models import Person

    if who.person_id is None:
        raise ValidationError(
            f"{who.label} is not linked to a person record; ask an administrator", field="person"
        )
    with read_session(ctx.sessions) as session:
        person = session.get(Person, who.person_id)
        if person is None:
            raise ValidationError("the linked person record no longer exists", field="person")
        return person.handle


def format_handover(note: Any, summary: Any) -> str:
    lines = []
    if note is None:
        lines.append("No handover note has been written.")
    else:
        lines.append(f"Handover note by {note.author_name or note.author}, {_short_time(note.written_at)}:")
        lines.extend("  " + line for line in note.text.splitlines())
    lines.append(
        f"\nSince {_short_time(summary.since)}: {summary.open_count} open, "
        f"{summary.unacknowledged_count} unacknowledged, {summary.breached_count} breached"
    )
    for title, items in (
        ("Unacknowledged", summary.unacknowledged),
        ("Breached", summary.breached),
        ("Open", summary.open),
    ):
        if items:
            lines.append(f"\n{title}")
            rows = [
                {
                    "id": i.id,
                    "severity": i.severity,
                    "status": i.status,
                    "site": i.site,
                    "breach": i.breach,
                    "summary": i.summary,
                }
                for i in items
            ]
            lines.append(_indent(format_table(rows, [(k, k.upper()) for k in rows[0]])))
    return "\n".join(lines)


COMMANDS: dict[str, Callable[[Runner], int]] = {
    "serve": Runner.cmd_serve,
    "engine": Runner.cmd_engine,
    "check": Runner.cmd_check,
    "demo": Runner.cmd_demo,
    "db": Runner.cmd_db,
    "import": Runner.cmd_import,
    "export": Runner.cmd_export,
    "secrets": Runner.cmd_secrets,
    "trigger": Runner.cmd_trigger,
    "ack": Runner.cmd_ack,
    "resolve": Runner.cmd_resolve,
    "start-work": Runner.cmd_start_work,
    "cancel": Runner.cmd_cancel,
    "escalate": Runner.cmd_escalate,
    "note": Runner.cmd_note,
    "assign": Runner.cmd_assign,
    "classify": Runner.cmd_classify,
    "reopen": Runner.cmd_reopen,
    "list": Runner.cmd_list,
    "show": Runner.cmd_show,
    "intake": Runner.cmd_intake,
    "stats": Runner.cmd_stats,
    "test-send": Runner.cmd_test_send,
    "keys": Runner.cmd_keys,
    "tokens": Runner.cmd_tokens,
    "backup": Runner.cmd_backup,
    "restore": Runner.cmd_restore,
    "users": Runner.cmd_users,
    "audit": Runner.cmd_audit,
    "switches": Runner.cmd_switches,
    "handover": Runner.cmd_handover,
    **cli_work.COMMANDS,
}


def _refuse_missing_sqlite_file(args: argparse.Namespace) -> None:
    """A mistyped `--db` path must not quietly become a new, empty database: only `db upgrade` (and `restore`,
    which puts a backup there) create one; `db current` says there is none."""
    from engine.db import normalise_url
    from engine.errors import ConfigurationError

    creates = args.command == "restore" or (
        args.command == "db" and args.db_command in ("upgrade", "current")
    )
    if not getattr(args, "db", None) or creates:
        return
    try:
        url = normalise_url(args.db)
    except ValueError:
        return  # connecting reports a bad URL in its own words
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:" or Path(path).exists():
        return
    raise ConfigurationError(
        f"no database at {path}: check the path, or create one there with `{PROG} --db {path} db upgrade`"
    )


def resolve_settings(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """The settings file (--config, WATCHKEEPER_CONFIG, or the default), then WATCHKEEPER_*, then --db."""
    config = getattr(args, "config", None)
    settings = load_settings(config, env, required=bool(config))
    db = getattr(args, "db", None)
    if db:
        settings = settings.replace(db=db)
    return settings


def _error_line(exc: BaseException) -> str:
    from engine.logs import redact

    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact(text)


def main(argv: Sequence[str] | None = None, start_console: StartConsole | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 operational error, 2 bad usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)

    out, err = sys.stdout, sys.stderr
    command = args.command
    try:
        settings = resolve_settings(args)
        from engine.logs import configure_logging

        mode = "console" if command is None else ("service" if command == "serve" else "cli")
        configure_logging(settings, mode)
        if command is None:
            if start_console is None:
                err.write(f"{PROG}: the console is not available in this build; see `{PROG} --help`\n")
                return 1
            if args.smoke_test:
                return int(start_console(settings, smoke=True))
            return int(start_console(settings))
        _refuse_missing_sqlite_file(args)
        return COMMANDS[command](Runner(args, settings, out, err))
    except VerbUnavailable as exc:
        err.write(f"{PROG}: `{exc.verb}` is not available in this build yet\n")
        return 1
    except WatchkeeperError as exc:
        err.write(f"error: {_error_line(exc)}\n")
        return 1
    except SQLAlchemyError as exc:
        # The database went away part-way through a command, or refused a statement.
        from engine.bootstrap import error_reason

        err.write(f"error: database error: {error_reason(exc, None)}\n")
        return 1
    except BrokenPipeError:  # `watchkeeper list | head`
        return 0
    except OSError as exc:  # a file to import, export or log to that cannot be read or written
        where = f"{exc.filename}: " if exc.filename else ""
        err.write(f"error: {where}{exc.strerror or _error_line(exc)}\n")
        return 1
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130
