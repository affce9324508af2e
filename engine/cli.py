"""The `watchkeeper` command line: the console by default, subcommands for the service and administration.

    watchkeeper [--db URL] [--config FILE] [--version] [COMMAND]      (no command: the console)

Exit codes: 0 success; 1 an operational error (one line on stderr, `error: ...`, no traceback): a database
that does not answer, an unknown incident, a refused transition, a missing secret, an engine pass that failed
during `check` (one line per failed pass); 2 bad usage (argparse).

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

from engine.errors import WatchkeeperError
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
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print the result as JSON")

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Watchkeeper: escalation console for dispatch centres. Without a command it opens the console.",
        epilog="Exit codes: 0 ok, 1 operational error, 2 bad usage. `watchkeeper COMMAND --help` for details.",
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

    for verb, text in (
        ("ack", "acknowledge an incident"),
        ("resolve", "resolve an incident"),
        (
            "start-work",
            'mark an incident in progress ("I\'m on it"; acknowledges it first if it still pages)',
        ),
    ):
        p = add(verb, text, json_flag)
        p.add_argument("id", metavar="ID", help="incident id or key")
        p.add_argument("--by", metavar="WHO", help="who does it (default: your login name)")

    p = add("cancel", "cancel an incident and stop its escalation", json_flag)
    p.add_argument("id", metavar="ID", help="incident id or key")
    p.add_argument("--reason", required=True, metavar="TEXT")
    p.add_argument("--by", metavar="WHO", help="who does it (default: your login name)")

    p = add("escalate", "escalate an incident to the next level, or to --level N", json_flag)
    p.add_argument("id", metavar="ID", help="incident id or key")
    p.add_argument("--level", type=_positive_int, metavar="N")
    p.add_argument("--by", metavar="WHO", help="who does it (default: your login name)")

    p = add("list", "list incidents, newest first", json_flag)
    p.add_argument(
        "--state", metavar="STATE", help="open, acknowledged, in_progress, escalated, resolved, cancelled"
    )
    p.add_argument("--limit", type=_positive_int, default=50, metavar="N")

    p = add("show", "show one incident with its escalation, timeline and messages", json_flag)
    p.add_argument("id", metavar="ID", help="incident id or key")

    p = add("stats", "response and resolution statistics", json_flag)
    p.add_argument("--since", type=_iso_datetime, metavar="ISO", help="from (ISO 8601; no offset means UTC)")
    p.add_argument("--until", type=_iso_datetime, metavar="ISO", help="until (ISO 8601; no offset means UTC)")

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


def _whoami() -> str:
    for var in ("WATCHKEEPER_USER", "USER", "USERNAME", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except Exception:
        return "cli"


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


EVENT_COLUMNS = (("at", "AT"), ("kind", "EVENT"), ("actor", "BY"), ("message", "MESSAGE"))
MESSAGE_COLUMNS = (
    ("channel", "CHANNEL"),
    ("to", "TO"),
    ("level", "LEVEL"),
    ("status", "STATUS"),
    ("idempotency_key", "KEY"),
)


def format_incident(data: Mapping[str, Any]) -> str:
    """The `show` block: the incident's fields, its escalation, timeline and messages."""
    head = f"Incident {data.get('id', '?')}: {data.get('summary', '')}"
    rest = {
        k: v
        for k, v in data.items()
        if k not in {"escalation", "escalations", "events", "messages", "summary"}
    }
    parts = [head, "=" * min(len(head), 100), format_block(rest)]
    escalation = data.get("escalation")
    parts.append("\nEscalation")
    parts.append(
        format_block(escalation, 2) if isinstance(escalation, Mapping) and escalation else "  (none)"
    )
    events = data.get("events") or []
    parts.append(f"\nTimeline ({len(events)})")
    if events:
        parts.append(_indent(format_table(events, _columns_for(events, EVENT_COLUMNS), width=80)))
    messages = data.get("messages") or []
    parts.append(f"\nMessages ({len(messages)})")
    if messages:
        parts.append(_indent(format_table(messages, _columns_for(messages, MESSAGE_COLUMNS))))
    return "\n".join(parts)


def _columns_for(
    rows: Sequence[Mapping[str, Any]], preferred: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    present = {k for row in rows for k in row}
    chosen = [c for c in preferred if c[0] in present]
    return chosen or [(k, k.upper()) for k in rows[0]]


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

    def context(self, mode: str = "cli") -> Any:
        from engine.bootstrap import open_context

        return open_context(self.settings, mode)

    def with_context(self, verb: str, module: str, func: str, call: Callable[[Any, Any], int]) -> int:
        mod = _need(module, verb, func)
        ctx = self.context("service" if verb == "serve" else "cli")
        try:
            return call(getattr(mod, func), ctx)
        except ImportError as exc:
            # The verb's module is here but a part it imports lazily is not in this build yet.
            if _missing_engine_part(exc):
                raise VerbUnavailable(verb) from None
            raise
        finally:
            ctx.db.dispose()

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
            return 0
        finally:
            engine.dispose()

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
            names = store.list_names()
            problem = store.keyring_problem()
            if problem:
                self.err.write(f"note: {problem}\n")
            unused = unused_environment_secrets()
            for var in unused:
                self.err.write(f"note: {var} is not a secret Watchkeeper reads; it is ignored\n")
            if not names:
                self.out.write("no secrets are set\n")
                return 0
            rows = [{"name": n, "source": self._secret_source(store, n)} for n in names]
            self.out.write(format_table(rows, (("name", "NAME"), ("source", "FROM"))) + "\n")
            return 0
        if action == "delete":
            name = normalise_name(self.args.name, retired_ok=True)
            store.delete(name)
            self.out.write(f"deleted {name} from the keyring\n")
            return 0
        name = normalise_name(self.args.name)
        # set: check the keyring first, so nobody types a token twice for nothing.
        problem = store.keyring_problem()
        if problem:
            from engine.errors import ConfigurationError

            raise ConfigurationError(problem)
        value = self._read_secret(name)
        store.set(name, value)
        self.out.write(f"stored {name} in the keyring ({store.backend_name()})\n")
        if os.environ.get(env_var_name(name)):
            self.err.write(f"note: {env_var_name(name)} is set in this environment and takes precedence\n")
        return 0

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
            result = fn(ctx)
            self.out.write("demo data loaded\n")
            if result:
                _counts(result, self.out)
            return 0

        return self.with_context("demo", "engine.demo", "load_demo", run)

    def cmd_import(self) -> int:
        from engine.errors import ValidationError

        paths = [Path(p) for p in self.args.files]
        _need("engine.config_io", "import", "import_files")
        for path in paths:
            if not path.is_file():
                raise ValidationError("no such file", where=str(path))

        def run(fn: Any, ctx: Any) -> int:
            _counts(fn(ctx, paths, actor="cli"), self.out)
            return 0

        return self.with_context("import", "engine.config_io", "import_files", run)

    def cmd_export(self) -> int:
        output = Path(self.args.output) if self.args.output else None
        fmt = "json" if output is not None and output.suffix.lower() == ".json" else "yaml"

        def run(fn: Any, ctx: Any) -> int:
            text = str(fn(ctx, kind=self.args.kind, fmt=fmt))
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
            result = fn(ctx, self.args.channel, self.args.to, self.args.text)
            _counts(result, self.out)
            # The provider refused: the report above says why; scripts see a failure.
            return 1 if isinstance(result, Mapping) and result.get("ok") is False else 0

        return self.with_context("test-send", "engine.channels", "test_send", run)

    # -- incidents ---------------------------------------------------------------------------------------

    def _api(self, verb: str, func: str, call: Callable[[Any, Any], Any], show: Callable[[Any], str]) -> int:
        def run(fn: Any, ctx: Any) -> int:
            result = call(fn, ctx)
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

        return self._api(
            "trigger",
            "trigger",
            lambda fn, ctx: fn(
                ctx,
                policy=a.policy,
                summary=a.summary,
                key=a.key,
                severity=a.severity,
                category=a.category,
                site=a.site,
                details=a.details,
                source="cli",
                actor=_whoami(),
            ),
            show,
        )

    def _done(self, verb: str) -> Callable[[Any], str]:
        def show(result: Any) -> str:
            data = result if isinstance(result, Mapping) else {}
            ident = data.get("id", data.get("incident_id", self.args.id))
            state = data.get("status")
            return f"incident {ident} {verb}" + (f" (status: {state})" if state else "")

        return show

    def cmd_ack(self) -> int:
        by = self.args.by or _whoami()
        return self._api(
            "ack",
            "acknowledge",
            lambda fn, ctx: fn(ctx, _ref(self.args.id), by=by, via="cli"),
            self._done("acknowledged"),
        )

    def cmd_resolve(self) -> int:
        by = self.args.by or _whoami()
        return self._api(
            "resolve",
            "resolve",
            lambda fn, ctx: fn(ctx, _ref(self.args.id), by=by, via="cli"),
            self._done("resolved"),
        )

    def cmd_start_work(self) -> int:
        by = self.args.by or _whoami()
        return self._api(
            "start-work",
            "start_work",
            lambda fn, ctx: fn(ctx, _ref(self.args.id), by=by, via="cli"),
            self._done("in progress"),
        )

    def cmd_cancel(self) -> int:
        by = self.args.by or _whoami()
        return self._api(
            "cancel",
            "cancel",
            lambda fn, ctx: fn(ctx, _ref(self.args.id), reason=self.args.reason, by=by),
            self._done("cancelled"),
        )

    def cmd_escalate(self) -> int:
        by = self.args.by or _whoami()
        return self._api(
            "escalate",
            "escalate",
            lambda fn, ctx: fn(ctx, _ref(self.args.id), by=by, level=self.args.level),
            self._done("escalated"),
        )

    def cmd_list(self) -> int:
        def show(rows: Any) -> str:
            if not rows:
                return "no incidents"
            return format_table(rows, INCIDENT_COLUMNS)

        return self._api(
            "list",
            "list_incidents",
            lambda fn, ctx: fn(ctx, state=self.args.state, limit=self.args.limit),
            show,
        )

    def cmd_show(self) -> int:
        return self._api(
            "show", "show_incident", lambda fn, ctx: fn(ctx, _ref(self.args.id)), format_incident
        )

    def cmd_stats(self) -> int:
        def show(data: Any) -> str:
            return format_block(data) if data else "no incidents in this period"

        return self._api(
            "stats",
            "stats",
            lambda fn, ctx: fn(ctx, since=self.args.since, until=self.args.until),
            show,
        )

    # -- service credentials -------------------------------------------------------------------------------

    def _credentials(self, verb: str, kind: str) -> int:
        action = getattr(self.args, f"{verb}_command")
        by = _whoami()

        def run(ctx: Any) -> int:
            from engine.service import keys as mod

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
                rows = mod.list_routing_keys(ctx) if kind == "routing key" else mod.list_api_tokens(ctx)
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


COMMANDS: dict[str, Callable[[Runner], int]] = {
    "serve": Runner.cmd_serve,
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
    "list": Runner.cmd_list,
    "show": Runner.cmd_show,
    "stats": Runner.cmd_stats,
    "test-send": Runner.cmd_test_send,
    "keys": Runner.cmd_keys,
    "tokens": Runner.cmd_tokens,
    "backup": Runner.cmd_backup,
    "restore": Runner.cmd_restore,
}


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
