"""Import and export of configuration: people, teams, on-call schedules, escalation policies, SLA configs,
business calendars and message templates, as YAML or JSON documents of one structure.

A document has up to eight top-level sections (`people`, `teams`, `schedules`, `policies`, `sla`,
`calendars`, `templates`, `accounts`), each a list of objects identified by a handle or name. The policy file format of
seed 002 (`escalation: {policies: [...]}` with `delay_minutes`, `type: user`, `type: channel` …) is read as
written and mapped onto the same model.

Import is all or nothing. Every file is parsed and every object validated first, collecting *all* problems,
each with its file, line and field path (`policies.yaml:23: policies[0].levels[1].targets[0].type: unknown
target type 'pager' …`); only a clean set of files is written, in one transaction, so a failure leaves the
database exactly as it was. Objects are upserted by handle: an object already in the database is updated, and
its children (levels and targets, members, rotations, overrides) are replaced by the ones in the file.

Export writes the same structure back; export → import into an empty database → export gives an identical
document.

Accounts travel without passwords: an export carries each account's user name, display name, role, person and
active flag (only when the person exporting may manage accounts), and an import creates a new account with no
password (nobody can sign in to it until an administrator resets its password) and never touches the password
of an existing one. Importing accounts needs an administrator; everything else a supervisor (engine.permissions).

Every object written is an audit entry with its before → after, field by field (engine.audit), and an import
is one more entry that lists what it changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import jinja2
import yaml
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from engine import audit, contacts
from engine.context import AppContext
from engine.db import read_session, write_session
from engine.errors import NotFound, ValidationError
from engine.models import (
    BusinessCalendar,
    Channel,
    Operator,
    Person,
    Policy,
    PolicyLevel,
    PolicyTarget,
    Role,
    Rotation,
    RotationMember,
    Schedule,
    ScheduleOverride,
    Severity,
    SlaConfig,
    SystemSetting,
    TargetType,
    Team,
    TeamMember,
    Template,
    Trigger,
)
from engine.permissions import Action, Identity, as_identity, authorize
from engine.timeline import record

KINDS: tuple[str, ...] = (
    "people",
    "teams",
    "schedules",
    "policies",
    "sla",
    "calendars",
    "templates",
    "accounts",
)
# The sections an export without accounts has (what a person who may not manage accounts gets).
CONFIG_KINDS: tuple[str, ...] = tuple(k for k in KINDS if k != "accounts")
# The order objects are written in: what others refer to comes first.
_APPLY_ORDER: tuple[str, ...] = (
    "people",
    "calendars",
    "policies",
    "schedules",  # before teams: a team names its on-call schedule
    "teams",
    "sla",
    "templates",
    "accounts",
)
# How the audit trail names each kind of object.
AUDIT_KIND: dict[str, str] = {
    "people": "person",
    "teams": "team",
    "schedules": "schedule",
    "policies": "policy",
    "sla": "sla",
    "calendars": "calendar",
    "templates": "template",
    "accounts": "account",
}
FORMAT_VERSION = 1
DEFAULT_POLICY_SETTING = "default_policy"
MAX_LISTED_PROBLEMS = 10

DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_ALIASES: dict[str, int] = {
    **{name: i for i, name in enumerate(DAY_NAMES)},
    **{
        name: i
        for i, name in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
}
_HANDLE_RE = re.compile(r"^[^\s]+$")
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,4})?$")
_URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)

# Target types of the seed-002 format that have another name here.
_TARGET_ALIASES: dict[str, str] = {"user": TargetType.PERSON.value, "channel": TargetType.CONSOLE.value}
_PERSON_LIKE_TARGETS = {TargetType.PERSON.value, TargetType.TEAM.value, TargetType.TEAM_MANAGER.value}
# Seed-002 triggers: the ones with a counterpart here, and the ones that have none (dropped with a warning).
_SEED_TRIGGER_MAP: dict[str, str] = {"threshold_breach": Trigger.SLA_BREACH.value}
_SEED_TRIGGERS_WITHOUT_COUNTERPART = {"severity_upgrade", "scheduled", "custom"}


# ==========================================================================================================
# Problems
# ==========================================================================================================


@dataclass(frozen=True)
class Issue:
    """One problem (or warning) in an import: where it is and what is wrong."""

    source: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        parts = [p for p in (where, self.path) if p]
        return ": ".join([*parts, self.message])


class ConfigValidationError(ValidationError):
    """The files (or editor objects) were refused as a whole; `issues` lists every problem found."""

    def __init__(self, issues: Sequence[Issue], *, verb: str = "imported") -> None:
        self.issues = list(issues)
        shown = [str(i) for i in self.issues[:MAX_LISTED_PROBLEMS]]
        count = len(self.issues)
        rest = count - len(shown)
        if rest > 0:
            shown.append(f"… and {rest} more problem{'s' if rest != 1 else ''}")
        summary = f"nothing was {verb} ({count} problem{'s' if count != 1 else ''})"
        super().__init__("\n".join([*shown, summary]))
        if self.issues:
            first = self.issues[0]
            self.where = f"{first.source}:{first.line}" if first.line is not None else first.source
            self.field = first.path


class _Collector:
    def __init__(self, source: str, region: str = contacts.DEFAULT_REGION) -> None:
        self.source = source
        self.region = region  # where phone numbers without a country code are read (settings.phone_region)
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []

    def error(self, line: int | None, path: str, message: str) -> None:
        self.errors.append(Issue(self.source, line, path, message))

    def warn(self, line: int | None, path: str, message: str) -> None:
        self.warnings.append(Issue(self.source, line, path, message))


# ==========================================================================================================
# Loading YAML and JSON with line numbers
# ==========================================================================================================


class LineDict(dict[str, Any]):
    """A mapping from a document, with the line it starts on and the line of each key (1-based)."""

    line: int | None = None

    def __init__(self, *args: Any, line: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line = line
        self.key_lines: dict[str, int] = {}


class LineList(list[Any]):
    """A list from a document, with the line it starts on and the line of each item (1-based)."""

    def __init__(self, *args: Any, line: int | None = None) -> None:
        super().__init__(*args)
        self.line = line
        self.item_lines: list[int | None] = []


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that keeps line numbers, keeps keys as written, and reads times and dates as text.

    YAML 1.1 would read `17:00` as the number 1020 (base 60) and `0217654321` as an octal number; here both
    stay text, as a person writing a policy file means them. Dates stay text too and are parsed where used.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.problems: list[tuple[int, str]] = []


_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$"), list("-+0123456789")
)
_LineLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> Iterator[LineDict]:
    data = LineDict(line=node.start_mark.line + 1)
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            loader.problems.append((line, "a field name must be plain text"))
            continue
        key = str(key_node.value)
        if key in data:
            loader.problems.append(
                (line, f"duplicate field {key!r} (it is also on line {data.key_lines[key]})")
            )
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = line


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> Iterator[LineList]:
    data = LineList(line=node.start_mark.line + 1)
    yield data
    for child in node.value:
        data.append(loader.construct_object(child, deep=True))
        data.item_lines.append(child.start_mark.line + 1)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _with_lines(value: Any) -> Any:
    """Plain JSON values as LineDict/LineList without line numbers (fallback when YAML cannot read JSON)."""
    if isinstance(value, dict):
        return LineDict({str(k): _with_lines(v) for k, v in value.items()})
    if isinstance(value, list):
        out = LineList(_with_lines(v) for v in value)
        out.item_lines = [None] * len(out)
        return out
    return value


def _is_json(source: str, text: str) -> bool:
    suffix = Path(source).suffix.lower()
    if suffix == ".json":
        return True
    if suffix in {".yaml", ".yml"}:
        return False
    return text.lstrip().startswith(("{", "["))


def parse_document(text: str, source: str, collector: _Collector | None = None) -> Any:
    """Parse YAML or JSON text into LineDict/LineList values; syntax problems go to the collector (or raise)."""
    ck = collector or _Collector(source)
    data: Any = None
    if _is_json(source, text):
        try:
            plain = json.loads(text)
        except json.JSONDecodeError as exc:
            ck.error(exc.lineno, "", f"not valid JSON: {exc.msg} (column {exc.colno})")
            plain = None
        else:
            try:
                # JSON is (nearly) YAML; reading it as YAML gives the line numbers. A valid JSON text has no
                # raw tab inside a string, so tabs can only be indentation, which YAML does not allow.
                data = _load_yaml(text.replace("\t", " "), ck, report=False)
            except yaml.YAMLError:
                data = None
            if data != plain:  # YAML read something differently (1e5, say): trust JSON, lose the lines
                data = _with_lines(plain)
    else:
        try:
            data = _load_yaml(text, ck, report=True)
        except yaml.YAMLError:
            data = None
    if collector is None and ck.errors:
        raise ConfigValidationError(ck.errors)
    return data


def _load_yaml(text: str, ck: _Collector, *, report: bool) -> Any:
    loader = _LineLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        if report:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or str(exc)
            context = getattr(exc, "context", None)
            message = f"not valid YAML: {problem}" + (f" ({context})" if context else "")
            ck.error(line, "", message)
        raise
    finally:
        loader.dispose()
    for line, message in loader.problems:
        ck.error(line, "", message)
    return data


# ==========================================================================================================
# Reading one mapping: typed fields with their lines
# ==========================================================================================================


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"true/false ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _line_of(container: Any, key: Any = None) -> int | None:
    if isinstance(container, LineDict):
        if key is not None and key in container.key_lines:
            return container.key_lines[key]
        return container.line
    if isinstance(container, LineList):
        if isinstance(key, int) and 0 <= key < len(container.item_lines):
            return container.item_lines[key] or container.line
        return container.line
    return None


class _Reader:
    """One mapping of a document; every accessor validates and reports at the field's own line."""

    def __init__(
        self,
        ck: _Collector,
        data: Any,
        path: str,
        fields: Iterable[str],
        *,
        line: int | None = None,
        ignored: Iterable[str] = (),
        lenient: bool = False,
    ) -> None:
        self.ck = ck
        self.path = path
        self.ok = isinstance(data, dict)
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        self.line = _line_of(data) or line
        if not self.ok:
            ck.error(self.line, path, f"expected a mapping of fields, got {_describe(data)}")
            return
        allowed = set(fields)
        skip = set(ignored)
        for key in self.data:
            if key in allowed or key in skip:
                continue
            message = f"unknown field {key!r} (expected one of {', '.join(sorted(allowed))})"
            if lenient:
                ck.warn(self.key_line(key), self.sub(key), message.replace("unknown field", "ignored field"))
            else:
                ck.error(self.key_line(key), self.sub(key), message)

    # -- locations -----------------------------------------------------------------------------------

    def sub(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def key_line(self, key: str) -> int | None:
        if isinstance(self.data, LineDict) and key in self.data.key_lines:
            return self.data.key_lines[key]
        return self.line

    def error(self, key: str, message: str) -> None:
        self.ck.error(self.key_line(key), self.sub(key), message)

    def warn(self, key: str, message: str) -> None:
        self.ck.warn(self.key_line(key), self.sub(key), message)

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key)
        return default if value is None else value

    # -- typed fields --------------------------------------------------------------------------------

    def text(
        self,
        key: str,
        default: str = "",
        *,
        required: bool = False,
        max_len: int = 200,
        multiline: bool = True,
    ) -> str:
        value = self.data.get(key)
        if value is None:
            if required:
                self.error(key, "is required")
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.error(key, f"expected text, got {_describe(value)}")
            return default
        if required and not value.strip():
            self.error(key, "must not be empty")
        if len(value) > max_len:
            self.error(key, f"is too long ({len(value)} characters, at most {max_len})")
        if not multiline and "\n" in value:
            self.error(key, "must be on one line")
        return value

    def optional_text(self, key: str, *, max_len: int = 200) -> str | None:
        if not self.has(key):
            return None
        value = self.text(key, max_len=max_len)
        return value if value != "" else None

    def handle(self, key: str, *, max_len: int = 80, required: bool = True) -> str:
        value = self.text(key, required=required, max_len=max_len, multiline=False)
        if value and not _HANDLE_RE.match(value):
            self.error(key, f"{value!r} must not contain spaces")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(key, f"expected true or false, got {_describe(value)}")
            return default
        return value

    def integer(
        self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(key, f"expected a whole number, got {_describe(value)}")
            return default
        if minimum is not None and value < minimum:
            self.error(key, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.error(key, f"must be at most {maximum}, got {value}")
        return value

    def duration(self, base: str, default: int, *, unit: int = 1, unit_name: str = "") -> int:
        """Seconds from `base` ("15m", or whole seconds) or one of base_seconds/_minutes/_hours (integers).

        `unit`: the result must be a whole multiple of it (60 for fields kept in minutes)."""
        variants = {base: 0, f"{base}_seconds": 1, f"{base}_minutes": 60, f"{base}_hours": 3600}
        given = [k for k in variants if self.has(k)]
        if not given:
            return default
        if len(given) > 1:
            self.error(given[1], f"give only one of {', '.join(given)}")
        key = given[0]
        value = self.data[key]
        multiplier = variants[key]
        seconds = default
        if multiplier == 0:
            try:
                seconds = contacts.parse_duration(value)
            except ValidationError as exc:
                self.error(key, str(exc))
                return default
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.error(key, f"expected a number, got {_describe(value)}")
                return default
            if value < 0:
                self.error(key, f"must not be negative, got {value}")
                return default
            total = value * multiplier
            if total != int(total):
                self.error(key, f"must be a whole number of seconds, got {value}")
                return default
            seconds = int(total)
        if unit > 1 and seconds % unit:
            self.error(key, f"must be a whole number of {unit_name or 'units'}")
        return seconds

    def hhmm(self, key: str, default: str | None, *, end_of_day: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            return default
        try:
            return contacts.parse_hhmm(value, allow_end_of_day=end_of_day)
        except ValidationError as exc:
            self.error(key, str(exc))
            return default

    def timezone(self, key: str, default: str = "Africa/Johannesburg") -> str:
        value = self.data.get(key)
        if value is None:
            return default
        try:
            return contacts.validate_timezone(value)
        except ValidationError as exc:
            self.error(key, str(exc))
            return default

    def seq(self, key: str, *, required: bool = False) -> LineList:
        value = self.data.get(key)
        if value is None:
            if required:
                self.error(key, "is required")
            return LineList(line=self.key_line(key))
        if not isinstance(value, list):
            self.error(key, f"expected a list, got {_describe(value)}")
            return LineList(line=self.key_line(key))
        if isinstance(value, LineList):
            return value
        out = LineList(value, line=self.key_line(key))
        out.item_lines = [None] * len(out)
        return out

    def item_error(self, key: str, items: LineList, index: int, message: str) -> None:
        self.ck.error(_line_of(items, index) or self.key_line(key), f"{self.sub(key)}[{index}]", message)

    def choices(self, key: str, allowed: Iterable[str], default: list[str], *, what: str) -> list[str]:
        if not self.has(key):
            return list(default)
        items = self.seq(key)
        options = list(allowed)
        out: list[str] = []
        for i, item in enumerate(items):
            if not isinstance(item, str) or item.strip().lower() not in options:
                self.item_error(
                    key, items, i, f"unknown {what} {item!r} (expected one of {', '.join(options)})"
                )
                continue
            value = item.strip().lower()
            if value in out:
                self.item_error(key, items, i, f"{what} {value!r} is listed twice")
                continue
            out.append(value)
        return out

    def handles(self, key: str, *, what: str) -> list[tuple[str, int | None]]:
        """A list of handles with the line of each."""
        items = self.seq(key)
        out: list[tuple[str, int | None]] = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            if isinstance(item, int) and not isinstance(item, bool):
                item = str(item)
            if not isinstance(item, str) or not item.strip():
                self.item_error(key, items, i, f"expected the handle of a {what}, got {_describe(item)}")
                continue
            if item in seen:
                self.item_error(key, items, i, f"{what} {item!r} is listed twice")
                continue
            seen.add(item)
            out.append((item, _line_of(items, i) or self.key_line(key)))
        return out


# ==========================================================================================================
# Validated objects ("specs": model fields with references by handle)
# ==========================================================================================================


@dataclass
class _Ref:
    """A reference by handle to another object, checked once the whole import and the database are known."""

    kind: str  # people, teams, schedules, policies, calendars
    handle: str
    line: int | None
    path: str
    soft: bool = False  # a warning, not an error, when it names nothing (policy targets)
    what: str = ""


@dataclass
class _Item:
    kind: str
    key: str
    spec: dict[str, Any]
    source: str
    line: int | None
    path: str
    refs: list[_Ref] = field(default_factory=list)
    collector: _Collector | None = None


_NAME_FIELD = {
    "people": "handle",
    "teams": "handle",
    "schedules": "handle",
    "policies": "name",
    "calendars": "name",
    "accounts": "username",
}
_SINGULAR = {
    "people": "person",
    "teams": "team",
    "schedules": "schedule",
    "policies": "policy",
    "sla": "SLA config",
    "calendars": "calendar",
    "templates": "template",
    "accounts": "account",
}

PERSON_FIELDS = (
    "handle",
    "name",
    "email",
    "phone",
    "whatsapp",
    "preferred_channel",
    "fallback_channels",
    "disabled_channels",
    "opted_out_channels",
    "confirm_wait",
    "fallback_wait",
    "language",
    "timezone",
    "quiet_hours",
    "quiet_start",
    "quiet_end",
    "active",
)
_DURATION_ALIASES = ("_seconds", "_minutes", "_hours")


def _with_aliases(fields: Iterable[str], durations: Iterable[str]) -> list[str]:
    out = list(fields)
    for d in durations:
        out.extend(d + suffix for suffix in _DURATION_ALIASES)
    return out


def _read_person(ck: _Collector, data: Any, path: str) -> _Item | None:
    r = _Reader(ck, data, path, _with_aliases(PERSON_FIELDS, ("confirm_wait", "fallback_wait")))
    if not r.ok:
        return None
    spec: dict[str, Any] = {"handle": r.handle("handle"), "name": r.text("name", required=True)}
    email = r.optional_text("email", max_len=320)
    if email is not None:
        try:
            email = contacts.normalise_email(email)
        except ValidationError as exc:
            r.error("email", str(exc))
    spec["email"] = email
    for key in ("phone", "whatsapp"):
        raw = r.data.get(key)
        number: str | None = None
        if raw is not None and raw != "":
            if isinstance(raw, int) and not isinstance(raw, bool):
                r.error(key, f"write the number as text in quotes, e.g. '+{raw}'")
            else:
                try:
                    number = contacts.normalise_phone(raw, ck.region)
                except ValidationError as exc:
                    r.error(key, str(exc))
        spec[key] = number
    channels = [c.value for c in Channel]
    preferred = r.text("preferred_channel", Channel.SMS.value, max_len=16).strip().lower()
    if preferred not in channels:
        r.error("preferred_channel", f"unknown channel {preferred!r} (expected one of {', '.join(channels)})")
    spec["preferred_channel"] = preferred
    spec["fallback_channels"] = r.choices("fallback_channels", channels, [], what="channel")
    spec["disabled_channels"] = r.choices("disabled_channels", channels, [], what="channel")
    spec["opted_out_channels"] = (
        r.choices("opted_out_channels", channels, [], what="channel") if r.has("opted_out_channels") else None
    )
    spec["confirm_wait_seconds"] = r.duration("confirm_wait", 900)
    spec["fallback_wait_seconds"] = r.duration("fallback_wait", 300)
    language = r.text("language", "en", max_len=8).strip()
    if not _LANGUAGE_RE.match(language):
        r.error("language", f"{language!r} is not a language code (e.g. en, zu, af)")
    spec["language"] = language
    spec["timezone"] = r.timezone("timezone")
    quiet_start: str | None = None
    quiet_end: str | None = None
    if r.has("quiet_hours"):
        if r.has("quiet_start") or r.has("quiet_end"):
            r.error("quiet_hours", "give quiet_hours or quiet_start/quiet_end, not both")
        q = _Reader(
            ck, r.data["quiet_hours"], r.sub("quiet_hours"), ("start", "end"), line=r.key_line("quiet_hours")
        )
        if q.ok:
            quiet_start = q.hhmm("start", None)
            quiet_end = q.hhmm("end", None, end_of_day=True)
            if quiet_start is None or quiet_end is None:
                q.error("start" if quiet_start is None else "end", "quiet hours need both a start and an end")
    else:
        quiet_start = r.hhmm("quiet_start", None)
        quiet_end = r.hhmm("quiet_end", None, end_of_day=True)
        if (quiet_start is None) != (quiet_end is None):
            r.error(
                "quiet_start" if quiet_start is None else "quiet_end",
                "quiet hours need both a start and an end",
            )
    spec["quiet_start"], spec["quiet_end"] = quiet_start, quiet_end
    spec["active"] = r.boolean("active", True)
    # A preferred channel with no address is not an error (the chain skips it), but it is worth saying.
    needs = {"sms": "phone", "voice": "phone", "email": "email"}
    if preferred in needs and not spec[needs[preferred]]:
        r.warn("preferred_channel", f"prefers {preferred} but has no {needs[preferred]}")
    if preferred == "whatsapp" and not (spec["whatsapp"] or spec["phone"]):
        r.warn("preferred_channel", "prefers whatsapp but has no whatsapp or phone number")
    return _Item("people", spec["handle"], spec, ck.source, r.line, path)


def _read_team(ck: _Collector, data: Any, path: str) -> _Item | None:
    r = _Reader(ck, data, path, ("handle", "name", "description", "manager", "members", "schedule"))
    if not r.ok:
        return None
    handle = r.handle("handle")
    item = _Item("teams", handle, {}, ck.source, r.line, path)
    manager = r.optional_text("manager", max_len=80)
    if manager is not None:
        item.refs.append(_Ref("people", manager, r.key_line("manager"), r.sub("manager"), what="manager"))
    # The team's on-call schedule: a team target pages whoever is on call on it (engine.targets).
    schedule = r.optional_text("schedule", max_len=80)
    if schedule is not None:
        item.refs.append(
            _Ref("schedules", schedule, r.key_line("schedule"), r.sub("schedule"), what="on-call schedule")
        )
    members = r.handles("members", what="person")
    for i, (member, line) in enumerate(members):
        item.refs.append(_Ref("people", member, line, f"{r.sub('members')}[{i}]", what="member"))
    item.spec = {
        "handle": handle,
        "name": r.text("name", handle) or handle,
        "description": r.text("description", "", max_len=10_000),
        "manager": manager,
        "members": [m for m, _ in members],
        "schedule": schedule,
    }
    return item


def _parse_date(r: _Reader, key: str, value: Any) -> str | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if not isinstance(value, str):
        r.error(key, f"expected a date (YYYY-MM-DD), got {_describe(value)}")
        return None
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        r.error(key, f"{value!r} is not a date (use YYYY-MM-DD)")
        return None


def _parse_datetime(r: _Reader, key: str) -> datetime | None:
    value = r.data.get(key)
    if value is None:
        r.error(key, "is required")
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            r.error(key, f"{value!r} is not a date and time (use ISO 8601, e.g. 2026-03-06T18:00:00+02:00)")
            return None
    else:
        r.error(key, f"expected a date and time, got {_describe(value)}")
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        r.error(key, f"{value!r} has no UTC offset (write e.g. 2026-03-06T18:00:00+02:00)")
        return None
    return parsed.astimezone(UTC)


def _read_schedule(ck: _Collector, data: Any, path: str) -> _Item | None:
    r = _Reader(ck, data, path, ("handle", "name", "timezone", "description", "rotations", "overrides"))
    if not r.ok:
        return None
    handle = r.handle("handle")
    item = _Item("schedules", handle, {}, ck.source, r.line, path)
    rotations: list[dict[str, Any]] = []
    rot_items = r.seq("rotations")
    for i, raw in enumerate(rot_items):
        rp = r.sub("rotations") + f"[{i}]"
        rr = _Reader(
            ck,
            raw,
            rp,
            _with_aliases(("name", "start_date", "handoff_time", "shift", "members"), ("shift",)),
            line=_line_of(rot_items, i),
        )
        if not rr.ok:
            continue
        start = rr.data.get("start_date")
        start_date = _parse_date(rr, "start_date", start) if start is not None else None
        if start is None:
            rr.error("start_date", "is required")
        shift = rr.duration("shift", 24 * 3600, unit=3600, unit_name="hours")
        if shift <= 0:
            rr.error("shift", "must be at least 1h")
        members = rr.handles("members", what="person")
        if not members and rr.ok:
            rr.error("members", "a rotation needs at least one member")
        for j, (member, line) in enumerate(members):
            item.refs.append(_Ref("people", member, line, f"{rp}.members[{j}]", what="rotation member"))
        rotations.append(
            {
                "name": rr.text("name", "Primary") or "Primary",
                "start_date": start_date,
                "handoff_time": rr.hhmm("handoff_time", "08:00"),
                "shift_hours": shift // 3600,
                "members": [m for m, _ in members],
            }
        )
    overrides: list[dict[str, Any]] = []
    ov_items = r.seq("overrides")
    for i, raw in enumerate(ov_items):
        op = r.sub("overrides") + f"[{i}]"
        orr = _Reader(ck, raw, op, ("person", "start", "end", "note"), line=_line_of(ov_items, i))
        if not orr.ok:
            continue
        person = orr.handle("person")
        if person:
            item.refs.append(_Ref("people", person, orr.key_line("person"), f"{op}.person", what="person"))
        start_at = _parse_datetime(orr, "start")
        end_at = _parse_datetime(orr, "end")
        if start_at and end_at and end_at <= start_at:
            orr.error("end", "must be after start")
        overrides.append(
            {
                "person": person,
                "start_at": start_at,
                "end_at": end_at,
                "note": orr.text("note", "", max_len=10_000),
            }
        )
    overrides.sort(key=lambda o: (o["start_at"] or datetime.min.replace(tzinfo=UTC), o["person"]))
    item.spec = {
        "handle": handle,
        "name": r.text("name", handle) or handle,
        "timezone": r.timezone("timezone"),
        "description": r.text("description", "", max_len=10_000),
        "rotations": rotations,
        "overrides": overrides,
    }
    return item


_POLICY_FIELDS = (
    "name",
    "description",
    "enabled",
    "severity_filter",
    "triggers",
    "max_escalations",
    "cooldown",
    "business_hours_only",
    "business_days",
    "business_start",
    "business_end",
    "timezone",
    "version",
    "levels",
)
_SEED_POLICY_EXTRA = ("business_hours_start", "business_hours_end")
_LEVEL_FIELDS = (
    "level",
    "delay",
    "repeat_count",
    "repeat_interval",
    "require_ack",
    "auto_resolve",
    "targets",
)
_TARGET_FIELDS = ("type", "identifier", "name")


def _read_days(r: _Reader, key: str) -> list[int]:
    if not r.has(key):
        return [0, 1, 2, 3, 4]
    items = r.seq(key)
    days: list[int] = []
    for i, raw in enumerate(items):
        day: int | None = None
        if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 6:
            day = raw
        elif isinstance(raw, str) and raw.strip().lower() in _DAY_ALIASES:
            day = _DAY_ALIASES[raw.strip().lower()]
        if day is None:
            r.item_error(key, items, i, f"{raw!r} is not a day (0 = Monday … 6 = Sunday, or mon … sun)")
        elif day in days:
            r.item_error(key, items, i, f"day {raw!r} is listed twice")
        else:
            days.append(day)
    return sorted(days)


def _read_target(
    ck: _Collector, raw: Any, path: str, line: int | None, *, seed: bool, item: _Item
) -> dict[str, Any] | None:
    extra = ("priority", "metadata") if seed else ()
    t = _Reader(ck, raw, path, _TARGET_FIELDS, line=line, ignored=extra)
    if not t.ok:
        return None
    if t.has("metadata") and t.data["metadata"]:
        t.warn("metadata", "target metadata is not used by Watchkeeper and was not imported")
    type_raw = t.text("type", required=True, max_len=20).strip().lower()
    kind = _TARGET_ALIASES.get(type_raw, type_raw)
    known = [tt.value for tt in TargetType]
    if type_raw == "custom" and seed:
        t.warn("type", "custom targets have no counterpart in Watchkeeper; this target was not imported")
        return None
    if type_raw and kind not in known:
        t.error(
            "type", f"unknown target type {type_raw!r} (expected one of {', '.join(known)}, user, channel)"
        )
        return None
    identifier = t.text("identifier", "", max_len=500, multiline=False).strip()
    name = t.text("name", "", max_len=200)
    if kind in _PERSON_LIKE_TARGETS or kind == TargetType.SCHEDULE.value:
        if not identifier:
            t.error("identifier", f"a {kind} target needs the handle of a {kind.replace('_manager', '')}")
        else:
            ref_kind = {
                "person": "people",
                "team": "teams",
                "team_manager": "teams",
                "schedule": "schedules",
            }[kind]
            item.refs.append(
                _Ref(
                    ref_kind, identifier, t.key_line("identifier"), f"{path}.identifier", soft=True, what=kind
                )
            )
    elif kind == TargetType.EMAIL.value:
        try:
            identifier = contacts.normalise_email(identifier)
        except ValidationError as exc:
            t.error("identifier", str(exc))
    elif kind == TargetType.PHONE.value:
        # "voice:+27…" asks for a call instead of an SMS (engine.targets); keep that, normalise the number.
        voice = identifier.lower().startswith("voice:")
        try:
            identifier = contacts.normalise_phone(identifier[6:] if voice else identifier, ck.region)
        except ValidationError as exc:
            t.error("identifier", str(exc))
        else:
            identifier = f"voice:{identifier}" if voice else identifier
    elif kind == TargetType.WEBHOOK.value and not _URL_RE.match(identifier):
        t.error("identifier", f"{identifier!r} is not an http(s) URL")
    return {"type": kind, "identifier": identifier, "name": name}


def _read_policy(ck: _Collector, data: Any, path: str, *, seed: bool = False) -> _Item | None:
    fields = _with_aliases(_POLICY_FIELDS, ("cooldown",))
    if seed:
        fields.extend(_SEED_POLICY_EXTRA)
    r = _Reader(ck, data, path, fields, ignored=("metadata",) if seed else ())
    if not r.ok:
        return None
    name = r.text("name", required=True, max_len=120, multiline=False).strip()
    item = _Item("policies", name, {}, ck.source, r.line, path)
    severities = [s.value for s in Severity]
    triggers_known = [t.value for t in Trigger]
    if seed and r.has("triggers"):
        items = r.seq("triggers")
        triggers: list[str] = []
        for i, raw in enumerate(items):
            value = raw.strip().lower() if isinstance(raw, str) else raw
            if isinstance(value, str) and value in _SEED_TRIGGERS_WITHOUT_COUNTERPART:
                ck.warn(
                    _line_of(items, i),
                    f"{r.sub('triggers')}[{i}]",
                    f"trigger {value!r} is not supported; ignored",
                )
                continue
            value = _SEED_TRIGGER_MAP.get(value, value) if isinstance(value, str) else value
            if value not in triggers_known:
                r.item_error(
                    "triggers",
                    items,
                    i,
                    f"unknown trigger {raw!r} (expected one of {', '.join(triggers_known)})",
                )
            elif value not in triggers:
                triggers.append(value)
    else:
        triggers = r.choices("triggers", triggers_known, [Trigger.UNACKNOWLEDGED.value], what="trigger")
    start_key = "business_hours_start" if seed and r.has("business_hours_start") else "business_start"
    end_key = "business_hours_end" if seed and r.has("business_hours_end") else "business_end"
    spec: dict[str, Any] = {
        "name": name,
        "description": r.text("description", "", max_len=10_000),
        "enabled": r.boolean("enabled", True),
        "severity_filter": r.choices("severity_filter", severities, [], what="severity"),
        "triggers": triggers,
        "max_escalations": r.integer("max_escalations", 10, minimum=1),
        "cooldown_seconds": r.duration("cooldown", 0),
        "business_hours_only": r.boolean("business_hours_only", False),
        "business_days": _read_days(r, "business_days"),
        "business_start": r.hhmm(start_key, "08:00"),
        "business_end": r.hhmm(end_key, "17:00", end_of_day=True),
        "timezone": r.timezone("timezone"),
        "version": r.integer("version", 1, minimum=1),
    }
    if spec["business_hours_only"] and not spec["business_days"]:
        r.error("business_days", "business hours need at least one day")
    levels: list[dict[str, Any]] = []
    level_items = r.seq("levels", required=True)
    if r.has("levels") and not level_items:
        r.error("levels", "a policy needs at least one level")
    seen_levels: dict[int, int | None] = {}
    for i, raw in enumerate(level_items):
        lp = f"{r.sub('levels')}[{i}]"
        lr = _Reader(
            ck,
            raw,
            lp,
            _with_aliases(_LEVEL_FIELDS, ("delay", "repeat_interval", "auto_resolve")),
            line=_line_of(level_items, i),
            ignored=("conditions",) if seed else (),
        )
        if not lr.ok:
            continue
        if lr.has("conditions") and lr.data["conditions"]:
            lr.warn("conditions", "level conditions are not used by Watchkeeper and were not imported")
        number = lr.integer("level", i + 1, minimum=1)
        if number in seen_levels:
            lr.error("level", f"level {number} is defined twice (also on line {seen_levels[number]})")
        seen_levels[number] = lr.key_line("level")
        targets: list[dict[str, Any]] = []
        target_items = lr.seq("targets", required=True)
        dropped = 0
        for j, traw in enumerate(target_items):
            target = _read_target(
                ck, traw, f"{lp}.targets[{j}]", _line_of(target_items, j), seed=seed, item=item
            )
            if target is None:
                dropped += 1
            else:
                targets.append(target)
        if lr.has("targets") and not target_items:
            lr.error("targets", "a level needs at least one target")
        elif target_items and not targets and seed and dropped == len(target_items):
            lr.warn("targets", "no target of this level could be imported; it will page nobody")
        levels.append(
            {
                "level": number,
                "delay_seconds": lr.duration("delay", 0),
                "repeat_count": lr.integer("repeat_count", 0, minimum=0),
                "repeat_interval_seconds": lr.duration("repeat_interval", 300),
                "require_ack": lr.boolean("require_ack", True),
                "auto_resolve_seconds": lr.duration("auto_resolve", 0),
                "targets": targets,
            }
        )
    levels.sort(key=lambda lv: lv["level"])
    spec["levels"] = levels
    item.spec = spec
    return item


def _parse_interval(value: Any) -> tuple[str, str] | None:
    if isinstance(value, str) and "-" in value:
        start, _, end = value.partition("-")
    elif isinstance(value, list) and len(value) == 2:
        start, end = value
    else:
        return None
    try:
        return contacts.parse_hhmm(start), contacts.parse_hhmm(end, allow_end_of_day=True)
    except ValidationError:
        return None


def _read_calendar(ck: _Collector, data: Any, path: str) -> _Item | None:
    r = _Reader(
        ck,
        data,
        path,
        ("name", "timezone", "hours", "holiday_country", "holiday_subdivision", "extra_holidays"),
    )
    if not r.ok:
        return None
    name = r.text("name", required=True, max_len=120, multiline=False).strip()
    hours: dict[str, list[list[str]]] = {day: [] for day in DAY_NAMES}
    if r.has("hours"):
        h = _Reader(ck, r.data["hours"], r.sub("hours"), list(_DAY_ALIASES), line=r.key_line("hours"))
        for key in h.data if h.ok else ():
            if key not in _DAY_ALIASES:
                continue
            day = DAY_NAMES[_DAY_ALIASES[key]]
            items = h.seq(key)
            for i, raw in enumerate(items):
                interval = _parse_interval(raw)
                if interval is None:
                    h.item_error(key, items, i, f'{raw!r} is not a time range (use "08:00-17:00")')
                elif interval[0] >= interval[1]:
                    h.item_error(key, items, i, f"{raw!r} ends before it starts")
                else:
                    hours[day].append(list(interval))
            hours[day].sort()
            for (_s1, e1), (s2, _e2) in zip(hours[day], hours[day][1:], strict=False):
                if s2 < e1:
                    h.error(key, "working intervals overlap")
    country = r.optional_text("holiday_country", max_len=8)
    subdivision = r.optional_text("holiday_subdivision", max_len=16)
    if country is not None:
        country = country.strip().upper()
        supported = holidays.list_supported_countries()
        if country not in supported:
            r.error("holiday_country", f"no public holidays are known for country {country!r}")
        elif subdivision is not None and subdivision not in supported[country]:
            known = ", ".join(supported[country]) or "none"
            r.error(
                "holiday_subdivision", f"unknown subdivision {subdivision!r} of {country} (known: {known})"
            )
    elif subdivision is not None:
        r.error("holiday_subdivision", "a subdivision needs a holiday_country")
    extra: list[str] = []
    items = r.seq("extra_holidays")
    for i, raw in enumerate(items):
        parsed: str | None = None
        if isinstance(raw, str):
            try:
                parsed = date.fromisoformat(raw.strip()).isoformat()
            except ValueError:
                parsed = None
        if parsed is None:
            r.item_error("extra_holidays", items, i, f"{raw!r} is not a date (use YYYY-MM-DD)")
        elif parsed not in extra:
            extra.append(parsed)
    spec = {
        "name": name,
        "timezone": r.timezone("timezone"),
        "hours": hours,
        "holiday_country": country,
        "holiday_subdivision": subdivision,
        "extra_holidays": sorted(extra),
    }
    return _Item("calendars", name, spec, ck.source, r.line, path)


def sla_key(site: str, category: str) -> str:
    return f"{site or '*'}/{category or '*'}"


def _read_sla(ck: _Collector, data: Any, path: str) -> _Item | None:
    r = _Reader(
        ck,
        data,
        path,
        _with_aliases(
            ("site", "category", "response", "resolution", "warning_percent", "calendar", "breach_policy"),
            ("response", "resolution"),
        ),
    )
    if not r.ok:
        return None
    site = r.text("site", "", max_len=80, multiline=False).strip()
    category = r.text("category", "", max_len=80, multiline=False).strip()
    item = _Item("sla", sla_key(site, category), {}, ck.source, r.line, path)
    response = r.duration("response", 24 * 3600, unit=60, unit_name="minutes")
    resolution = r.duration("resolution", 168 * 3600, unit=60, unit_name="minutes")
    if response <= 0:
        r.error("response", "must be longer than zero")
    if resolution <= 0:
        r.error("resolution", "must be longer than zero")
    if 0 < resolution < response:
        r.warn("resolution", "is shorter than the response time")
    calendar = r.optional_text("calendar", max_len=120)
    if calendar is not None:
        item.refs.append(
            _Ref("calendars", calendar, r.key_line("calendar"), r.sub("calendar"), what="calendar")
        )
    breach = r.optional_text("breach_policy", max_len=120)
    if breach is not None:
        item.refs.append(
            _Ref("policies", breach, r.key_line("breach_policy"), r.sub("breach_policy"), what="policy")
        )
    item.spec = {
        "site": site,
        "category": category,
        "response_minutes": response // 60,
        "resolution_minutes": resolution // 60,
        "warning_percent": r.integer("warning_percent", 80, minimum=0, maximum=100),
        "calendar": calendar,
        "breach_policy": breach,
    }
    return item


def template_key(kind: str, channel: str, language: str, version: int) -> str:
    return f"{kind}/{channel}/{language}/v{version}"


_JINJA = jinja2.Environment(autoescape=False)


def _template_problems(kind: str, spec: dict[str, Any]) -> list[str]:
    """Syntax, variables and sandbox checks of engine.templates (the renderer's own rules)."""
    try:
        from engine.templates import validate_template
    except ImportError:  # pragma: no cover - the templates module ships with the engine
        problems: list[str] = []
        for key in ("subject", "body", "body_html"):
            if spec[key]:
                try:
                    _JINJA.parse(spec[key])
                except jinja2.TemplateSyntaxError as exc:
                    problems.append(f"{key}: line {exc.lineno}: {exc.message}")
        return problems
    from engine.templates import voice_language_problem

    unspoken = voice_language_problem(spec["channel"], spec["language"])
    return validate_template(kind, spec["body"], spec["subject"], spec["body_html"]) + (
        [f"language: {unspoken}"] if unspoken else []
    )


def _read_template(ck: _Collector, data: Any, path: str) -> _Item | None:
    r = _Reader(
        ck,
        data,
        path,
        (
            "kind",
            "channel",
            "language",
            "version",
            "active",
            "subject",
            "body",
            "body_html",
            "whatsapp_content_sid",
            "created_by",
        ),
    )
    if not r.ok:
        return None
    kind = r.text("kind", required=True, max_len=48, multiline=False).strip()
    channels = [c.value for c in Channel]
    channel = r.text("channel", required=True, max_len=16).strip().lower()
    if channel and channel not in channels:
        r.error("channel", f"unknown channel {channel!r} (expected one of {', '.join(channels)})")
    language = r.text("language", "en", max_len=8).strip()
    if not _LANGUAGE_RE.match(language):
        r.error("language", f"{language!r} is not a language code (e.g. en, zu, af)")
    version = r.integer("version", 1, minimum=1)
    spec: dict[str, Any] = {
        "kind": kind,
        "channel": channel,
        "language": language,
        "version": version,
        "active": r.boolean("active", True),
        "subject": r.text("subject", "", max_len=500),
        "body": r.text("body", required=True, max_len=100_000),
        "body_html": r.optional_text("body_html", max_len=1_000_000),
        "whatsapp_content_sid": r.optional_text("whatsapp_content_sid", max_len=64),
        "created_by": r.text("created_by", "", max_len=200) or None,
    }
    if kind and spec["body"].strip():
        for problem in _template_problems(kind, spec):
            key, sep, message = problem.partition(": ")
            if sep and key in ("subject", "body", "body_html", "language"):
                r.error(key, message)
            else:
                r.error("kind" if "kind" in problem else "body", problem)
    return _Item("templates", template_key(kind, channel, language, version), spec, ck.source, r.line, path)


_ACCOUNT_FIELDS = ("username", "display_name", "role", "person", "active")


def _read_account(ck: _Collector, data: Any, path: str) -> _Item | None:
    if isinstance(data, dict):
        for secret in ("password", "password_hash"):
            if secret in data:
                line = data.key_lines.get(secret) if isinstance(data, LineDict) else None
                ck.error(
                    line,
                    f"{path}.{secret}",
                    "passwords are never imported: import the account, then reset its password "
                    "(`watchkeeper users reset-password`)",
                )
                data = {k: v for k, v in data.items() if k != secret}
    r = _Reader(ck, data, path, _ACCOUNT_FIELDS)
    if not r.ok:
        return None
    username = r.handle("username")
    if username and (":" in username or username.lower() in {"system", "engine", "cli", "api", "local"}):
        r.error("username", f"{username!r} cannot be a user name (reserved, or contains a colon)")
    role = r.text("role", Role.OPERATOR.value, max_len=16).strip()
    if role not in {x.value for x in Role}:
        r.error("role", f"unknown role {role!r} (expected one of {', '.join(x.value for x in Role)})")
    item = _Item("accounts", username, {}, ck.source, r.line, path)
    person = r.optional_text("person", max_len=80)
    if person is not None:
        item.refs.append(
            _Ref("people", person, r.key_line("person"), r.sub("person"), what="account's person")
        )
    item.spec = {
        "username": username,
        "display_name": r.text("display_name", username, max_len=200).strip() or username,
        "role": role,
        "person": person,
        "active": r.boolean("active", True),
    }
    return item


_READERS = {
    "accounts": _read_account,
    "people": _read_person,
    "teams": _read_team,
    "schedules": _read_schedule,
    "sla": _read_sla,
    "calendars": _read_calendar,
    "templates": _read_template,
}


def _read_object(ck: _Collector, kind: str, data: Any, path: str) -> _Item | None:
    if kind == "policies":
        return _read_policy(ck, data, path)
    return _READERS[kind](ck, data, path)


# ==========================================================================================================
# Documents
# ==========================================================================================================


@dataclass
class _Bundle:
    items: dict[str, list[_Item]] = field(default_factory=lambda: {k: [] for k in KINDS})
    default_policy: tuple[str, _Collector, int | None, str] | None = None
    collectors: list[_Collector] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [e for c in self.collectors for e in c.errors]

    @property
    def warnings(self) -> list[Issue]:
        return [w for c in self.collectors for w in c.warnings]


def _section_items(r: _Reader, kind: str) -> list[tuple[Any, str, int | None]]:
    """The objects of a section: a list, or a mapping keyed by handle/name (the key fills that field)."""
    raw = r.data.get(kind)
    if raw is None:
        return []
    if isinstance(raw, dict) and kind in _NAME_FIELD:
        out: list[tuple[Any, str, int | None]] = []
        for key, value in raw.items():
            line = _line_of(raw, key)
            body = value if value is not None else LineDict(line=line)
            if isinstance(body, dict):
                if _NAME_FIELD[kind] in body and str(body[_NAME_FIELD[kind]]) != key:
                    r.ck.error(line, f"{kind}.{key}", f"the key {key!r} and the {_NAME_FIELD[kind]} disagree")
                merged = LineDict(body, line=_line_of(body) or line)
                merged.key_lines = dict(getattr(body, "key_lines", {}))
                merged[_NAME_FIELD[kind]] = key
                if line is not None:
                    merged.key_lines.setdefault(_NAME_FIELD[kind], line)
                body = merged
            out.append((body, f"{kind}.{key}", line))
        return out
    items = r.seq(kind)
    return [(obj, f"{kind}[{i}]", _line_of(items, i)) for i, obj in enumerate(items)]


def _read_document(data: Any, ck: _Collector, bundle: _Bundle) -> None:
    if data is None:
        ck.warn(1, "", "the file is empty")
        return
    r = _Reader(ck, data, "", (*KINDS, "version", "escalation", "default_policy"))
    if not r.ok:
        return
    if r.has("version") and r.data["version"] != FORMAT_VERSION:
        r.error(
            "version",
            f"unsupported format version {r.data['version']!r} (this release reads {FORMAT_VERSION})",
        )
    for kind in KINDS:
        for obj, path, _line in _section_items(r, kind):
            item = _read_object(ck, kind, obj, path)
            if item is not None:
                item.collector = ck
                bundle.items[kind].append(item)
    if r.has("default_policy"):
        name = r.text("default_policy", max_len=120)
        bundle.default_policy = (name, ck, r.key_line("default_policy"), "default_policy")
    if r.has("escalation"):
        _read_seed_escalation(r, ck, bundle)


def _read_seed_escalation(r: _Reader, ck: _Collector, bundle: _Bundle) -> None:
    """The seed-002 form: `escalation: {enabled, default_policy, store, policies: [...]}`."""
    e = _Reader(
        ck,
        r.data["escalation"],
        "escalation",
        ("policies", "default_policy", "enabled"),
        line=r.key_line("escalation"),
        ignored=("store",),
        lenient=True,
    )
    if not e.ok:
        return
    if e.has("store"):
        e.warn("store", "ignored: Watchkeeper keeps escalations in its own database")
    if e.has("enabled") and e.data["enabled"] is False:
        e.warn("enabled", "a global switch is not imported; turn escalations off in the console or CLI")
    if e.has("default_policy"):
        name = e.text("default_policy", max_len=120)
        bundle.default_policy = (name, ck, e.key_line("default_policy"), "escalation.default_policy")
    items = e.seq("policies")
    for i, obj in enumerate(items):
        item = _read_policy(ck, obj, f"escalation.policies[{i}]", seed=True)
        if item is not None:
            item.collector = ck
            bundle.items["policies"].append(item)


def _check_duplicates(bundle: _Bundle) -> None:
    for kind, items in bundle.items.items():
        seen: dict[str, _Item] = {}
        for item in items:
            if not item.key or not item.collector:
                continue
            first = seen.get(item.key)
            if first is None:
                seen[item.key] = item
                continue
            where = f"{first.source}:{first.line}" if first.line is not None else first.source
            item.collector.error(
                item.line, item.path, f"{_SINGULAR[kind]} {item.key!r} is defined twice (first at {where})"
            )


def _existing_keys(session: Session) -> dict[str, set[str]]:
    return {
        "people": set(session.scalars(select(Person.handle))),
        "teams": set(session.scalars(select(Team.handle))),
        "schedules": set(session.scalars(select(Schedule.handle))),
        "policies": set(session.scalars(select(Policy.name))),
        "calendars": set(session.scalars(select(BusinessCalendar.name))),
    }


def _check_references(session: Session, bundle: _Bundle) -> None:
    known = _existing_keys(session)
    for kind in known:
        known[kind] |= {item.key for item in bundle.items[kind]}
    for items in bundle.items.values():
        for item in items:
            assert item.collector is not None
            for ref in item.refs:
                if ref.handle in known[ref.kind]:
                    continue
                noun = _SINGULAR[ref.kind]
                if ref.soft:
                    item.collector.warn(
                        ref.line,
                        ref.path,
                        f"no {noun} {ref.handle!r} yet; this target reaches nobody until one is added",
                    )
                else:
                    item.collector.error(ref.line, ref.path, f"unknown {noun} {ref.handle!r} ({ref.what})")
    if bundle.default_policy is not None:
        name, ck, line, path = bundle.default_policy
        if name not in known["policies"]:
            ck.error(line, path, f"unknown policy {name!r}")


# ==========================================================================================================
# Models <-> specs <-> documents
# ==========================================================================================================


def _person_spec(p: Person) -> dict[str, Any]:
    return {
        "handle": p.handle,
        "name": p.name,
        "email": p.email,
        "phone": p.phone,
        "whatsapp": p.whatsapp,
        "preferred_channel": p.preferred_channel,
        "fallback_channels": list(p.fallback_channels or []),
        "disabled_channels": list(p.disabled_channels or []),
        "opted_out_channels": list(p.opted_out_channels or []),
        "confirm_wait_seconds": p.confirm_wait_seconds,
        "fallback_wait_seconds": p.fallback_wait_seconds,
        "language": p.language,
        "timezone": p.timezone,
        "quiet_start": p.quiet_start,
        "quiet_end": p.quiet_end,
        "active": p.active,
    }


def _person_doc(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "handle": s["handle"],
        "name": s["name"],
        "email": s["email"],
        "phone": s["phone"],
        "whatsapp": s["whatsapp"],
        "preferred_channel": s["preferred_channel"],
        "fallback_channels": s["fallback_channels"],
        "disabled_channels": s["disabled_channels"],
        "opted_out_channels": s["opted_out_channels"] or [],
        "confirm_wait": contacts.format_duration(s["confirm_wait_seconds"]),
        "fallback_wait": contacts.format_duration(s["fallback_wait_seconds"]),
        "language": s["language"],
        "timezone": s["timezone"],
        "quiet_hours": {"start": s["quiet_start"], "end": s["quiet_end"]} if s["quiet_start"] else None,
        "active": s["active"],
    }


def _team_spec(t: Team) -> dict[str, Any]:
    return {
        "handle": t.handle,
        "name": t.name,
        "description": t.description,
        "manager": t.manager.handle if t.manager else None,
        "members": [m.person.handle for m in t.members],
        "schedule": t.schedule.handle if t.schedule else None,
    }


def _team_doc(s: dict[str, Any]) -> dict[str, Any]:
    doc = dict(s)
    if doc.get("schedule") is None:
        doc.pop("schedule", None)  # most teams have none: the document stays as it was
    return doc


def _schedule_spec(sc: Schedule) -> dict[str, Any]:
    return {
        "handle": sc.handle,
        "name": sc.name,
        "timezone": sc.timezone,
        "description": sc.description,
        "rotations": [
            {
                "name": r.name,
                "start_date": r.start_date,
                "handoff_time": r.handoff_time,
                "shift_hours": r.shift_hours,
                "members": [m.person.handle for m in r.members],
            }
            for r in sc.rotations
        ],
        "overrides": sorted(
            (
                {"person": o.person.handle, "start_at": o.start_at, "end_at": o.end_at, "note": o.note}
                for o in sc.overrides
            ),
            key=lambda o: (o["start_at"], o["person"]),
        ),
    }


def _schedule_doc(s: dict[str, Any]) -> dict[str, Any]:
    tz = ZoneInfo(s["timezone"])
    return {
        "handle": s["handle"],
        "name": s["name"],
        "timezone": s["timezone"],
        "description": s["description"],
        "rotations": [
            {
                "name": r["name"],
                "start_date": r["start_date"],
                "handoff_time": r["handoff_time"],
                "shift": contacts.format_duration(r["shift_hours"] * 3600),
                "members": list(r["members"]),
            }
            for r in s["rotations"]
        ],
        "overrides": [
            {
                "person": o["person"],
                "start": o["start_at"].astimezone(tz).isoformat(),
                "end": o["end_at"].astimezone(tz).isoformat(),
                "note": o["note"],
            }
            for o in s["overrides"]
        ],
    }


def _policy_spec(p: Policy) -> dict[str, Any]:
    return {
        "name": p.name,
        "description": p.description,
        "enabled": p.enabled,
        "severity_filter": list(p.severity_filter or []),
        "triggers": list(p.triggers or []),
        "max_escalations": p.max_escalations,
        "cooldown_seconds": p.cooldown_seconds,
        "business_hours_only": p.business_hours_only,
        "business_days": sorted(p.business_days or []),
        "business_start": p.business_start,
        "business_end": p.business_end,
        "timezone": p.timezone,
        "version": p.version,
        "levels": [
            {
                "level": lv.level,
                "delay_seconds": lv.delay_seconds,
                "repeat_count": lv.repeat_count,
                "repeat_interval_seconds": lv.repeat_interval_seconds,
                "require_ack": lv.require_ack,
                "auto_resolve_seconds": lv.auto_resolve_seconds,
                "targets": [{"type": t.type, "identifier": t.identifier, "name": t.name} for t in lv.targets],
            }
            for lv in p.levels
        ],
    }


def _policy_doc(s: dict[str, Any]) -> dict[str, Any]:
    fd = contacts.format_duration
    return {
        "name": s["name"],
        "description": s["description"],
        "enabled": s["enabled"],
        "severity_filter": list(s["severity_filter"]),
        "triggers": list(s["triggers"]),
        "max_escalations": s["max_escalations"],
        "cooldown": fd(s["cooldown_seconds"]),
        "business_hours_only": s["business_hours_only"],
        "business_days": list(s["business_days"]),
        "business_start": s["business_start"],
        "business_end": s["business_end"],
        "timezone": s["timezone"],
        "version": s["version"],
        "levels": [
            {
                "level": lv["level"],
                "delay": fd(lv["delay_seconds"]),
                "repeat_count": lv["repeat_count"],
                "repeat_interval": fd(lv["repeat_interval_seconds"]),
                "require_ack": lv["require_ack"],
                "auto_resolve": fd(lv["auto_resolve_seconds"]),
                "targets": [dict(t) for t in lv["targets"]],
            }
            for lv in s["levels"]
        ],
    }


def _calendar_spec(c: BusinessCalendar) -> dict[str, Any]:
    hours = c.hours or {}
    return {
        "name": c.name,
        "timezone": c.timezone,
        "hours": {day: [list(iv) for iv in hours.get(day, [])] for day in DAY_NAMES},
        "holiday_country": c.holiday_country,
        "holiday_subdivision": c.holiday_subdivision,
        "extra_holidays": list(c.extra_holidays or []),
    }


def _calendar_doc(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": s["name"],
        "timezone": s["timezone"],
        "hours": {day: [f"{a}-{b}" for a, b in s["hours"].get(day, [])] for day in DAY_NAMES},
        "holiday_country": s["holiday_country"],
        "holiday_subdivision": s["holiday_subdivision"],
        "extra_holidays": list(s["extra_holidays"]),
    }


def _sla_spec(c: SlaConfig) -> dict[str, Any]:
    return {
        "site": c.site,
        "category": c.category,
        "response_minutes": c.response_minutes,
        "resolution_minutes": c.resolution_minutes,
        "warning_percent": c.warning_percent,
        "calendar": c.calendar.name if c.calendar else None,
        "breach_policy": c.breach_policy.name if c.breach_policy else None,
    }


def _sla_doc(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "site": s["site"],
        "category": s["category"],
        "response": contacts.format_duration(s["response_minutes"] * 60),
        "resolution": contacts.format_duration(s["resolution_minutes"] * 60),
        "warning_percent": s["warning_percent"],
        "calendar": s["calendar"],
        "breach_policy": s["breach_policy"],
    }


def _template_spec(t: Template) -> dict[str, Any]:
    return {
        "kind": t.kind,
        "channel": t.channel,
        "language": t.language,
        "version": t.version,
        "active": t.active,
        "subject": t.subject,
        "body": t.body,
        "body_html": t.body_html,
        "whatsapp_content_sid": t.whatsapp_content_sid,
        "created_by": t.created_by,
    }


def _template_doc(s: dict[str, Any]) -> dict[str, Any]:
    return dict(s)


def _account_spec(o: Operator) -> dict[str, Any]:
    from engine.accounts import account_spec

    return account_spec(o)


def _account_doc(s: dict[str, Any]) -> dict[str, Any]:
    return dict(s)


def _all_models(session: Session, kind: str) -> list[Any]:
    if kind == "people":
        return list(session.scalars(select(Person).order_by(Person.handle)))
    if kind == "teams":
        return list(session.scalars(select(Team).order_by(Team.handle)))
    if kind == "schedules":
        return list(session.scalars(select(Schedule).order_by(Schedule.handle)))
    if kind == "policies":
        return list(session.scalars(select(Policy).order_by(Policy.name)))
    if kind == "calendars":
        return list(session.scalars(select(BusinessCalendar).order_by(BusinessCalendar.name)))
    if kind == "sla":
        return list(session.scalars(select(SlaConfig).order_by(SlaConfig.site, SlaConfig.category)))
    if kind == "templates":
        return list(
            session.scalars(
                select(Template).order_by(
                    Template.kind, Template.channel, Template.language, Template.version
                )
            )
        )
    if kind == "accounts":
        # Never the password hash (the console's PostgreSQL role may not even read that column).
        return list(
            session.scalars(
                select(Operator).options(defer(Operator.password_hash)).order_by(Operator.username)
            )
        )
    raise ValidationError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")


_SPEC: dict[str, Callable[[Any], dict[str, Any]]] = {
    "people": _person_spec,
    "teams": _team_spec,
    "schedules": _schedule_spec,
    "policies": _policy_spec,
    "calendars": _calendar_spec,
    "sla": _sla_spec,
    "templates": _template_spec,
    "accounts": _account_spec,
}
_DOC: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "people": _person_doc,
    "teams": _team_doc,
    "schedules": _schedule_doc,
    "policies": _policy_doc,
    "calendars": _calendar_doc,
    "sla": _sla_doc,
    "templates": _template_doc,
    "accounts": _account_doc,
}


_SORT_KEY: dict[str, Callable[[dict[str, Any]], Any]] = {
    "people": lambda s: s["handle"],
    "teams": lambda s: s["handle"],
    "schedules": lambda s: s["handle"],
    "policies": lambda s: s["name"],
    "calendars": lambda s: s["name"],
    "sla": lambda s: (s["site"], s["category"]),
    "templates": lambda s: (s["kind"], s["channel"], s["language"], s["version"]),
    "accounts": lambda s: s["username"],
}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValidationError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")


def export_objects(session: Session, kind: str) -> list[dict[str, Any]]:
    """Every object of one kind, in document form (what the console's editors show and hand back)."""
    _check_kind(kind)
    specs = [_SPEC[kind](m) for m in _all_models(session, kind)]
    # Sorted here, not by the database: PostgreSQL's collation and SQLite's byte order disagree.
    specs.sort(key=_SORT_KEY[kind])
    return [_DOC[kind](spec) for spec in specs]


def export_document(
    session: Session, kinds: Iterable[str] | None = None, *, accounts: bool = False
) -> dict[str, Any]:
    """A whole document (or the given sections), ready for yaml/json. The `accounts` section (never with
    passwords) is in a whole document only with `accounts=True`."""
    wanted = (
        ([*CONFIG_KINDS, "accounts"] if accounts else list(CONFIG_KINDS)) if kinds is None else list(kinds)
    )
    for kind in wanted:
        _check_kind(kind)
    document: dict[str, Any] = {"version": FORMAT_VERSION}
    if kinds is None:
        setting = session.get(SystemSetting, DEFAULT_POLICY_SETTING)
        if setting is not None and setting.value.get("policy"):
            document["default_policy"] = setting.value["policy"]
    for kind in KINDS:
        if kind in wanted:
            document[kind] = export_objects(session, kind)
    return document


class _Dumper(yaml.SafeDumper):
    """Block style, text with line breaks as literal blocks, lists of plain values inline."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    flow = all(
        isinstance(v, str | int) and not isinstance(v, bool) and "\n" not in str(v) for v in value
    ) or (all(isinstance(v, list) for v in value) and len(value) <= 4)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)


def dump_text(document: Mapping[str, Any], fmt: str = "yaml") -> str:
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if fmt != "yaml":
        raise ValidationError(f"unknown format {fmt!r} (expected yaml or json)")
    return yaml.dump(
        dict(document),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=110,
    )


def export_text(
    ctx: AppContext, kind: str | None = None, fmt: str = "yaml", *, by: Identity | None = None
) -> str:
    """The configuration (or one section of it) as YAML or JSON text. With `by`, what that person may see:
    accounts only for someone who may manage them (engine.permissions)."""
    with read_session(ctx.sessions) as session:
        with_accounts = False
        if by is not None:
            by = authorize(session, by, Action.VIEW_CONFIGURATION)
            with_accounts = by.can(Action.MANAGE_ACCOUNTS)
            if kind == "accounts" and not with_accounts:
                by.require(Action.MANAGE_ACCOUNTS)
        document = export_document(session, None if kind is None else [kind], accounts=with_accounts)
    return dump_text(document, fmt)


# ==========================================================================================================
# Writing
# ==========================================================================================================


@dataclass
class _Writer:
    session: Session
    now: datetime
    actor: str
    who: Identity
    sources: list[str] = field(default_factory=list)
    people: dict[str, Person] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)  # "kind:key" of every object created or changed
    created: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    updated: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    unchanged: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    def person(self, handle: str) -> Person:
        found = (
            self.people.get(handle)
            or self.session.scalars(select(Person).where(Person.handle == handle)).one()
        )
        self.people[handle] = found
        return found

    def count(self, kind: str, existed: bool, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
        if not existed:
            self.created[kind] += 1
        elif before == after:
            self.unchanged[kind] += 1
            return
        else:
            self.updated[kind] += 1
        self.audit(kind, before if existed else None, after)

    def audit(self, kind: str, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
        """One audit entry per object created or changed, with its fields before → after (document form)."""
        doc_before = _DOC[kind](before) if before is not None else None
        doc_after = _DOC[kind](after)
        key = object_key(kind, doc_after)
        self.changed.append(f"{AUDIT_KIND[kind]}:{key}")
        prefix = "account" if kind == "accounts" else "config"
        verb = "created" if before is None else "updated"
        via = f" (import of {', '.join(self.sources)})" if self.sources else ""
        audit.record(
            self.session,
            self.now,
            self.who,
            f"{prefix}_{verb}",
            object_kind=AUDIT_KIND[kind],
            object_name=key,
            message=f"{_SINGULAR[kind].capitalize()} {key} {verb}{via}",
            changes=audit.diff(doc_before, doc_after),
            data={"import": self.sources} if self.sources else None,
        )

    def apply(self, item: _Item) -> None:
        getattr(self, f"_apply_{item.kind}")(item.spec)

    def _apply_people(self, s: dict[str, Any]) -> None:
        p = self.session.scalars(select(Person).where(Person.handle == s["handle"])).one_or_none()
        before = _person_spec(p) if p else None
        if p is None:
            p = Person(handle=s["handle"], created_at=self.now, updated_at=self.now, opted_out_channels=[])
            self.session.add(p)
        for key, value in s.items():
            if key == "opted_out_channels" and value is None:
                continue  # kept: the person's own STOP/START replies are not overwritten by a file
            setattr(p, key, value)
        after = _person_spec(p)
        if before != after:
            p.updated_at = self.now
        self.count("people", before is not None, before, after)
        self.people[p.handle] = p

    def _apply_calendars(self, s: dict[str, Any]) -> None:
        c = self.session.scalars(
            select(BusinessCalendar).where(BusinessCalendar.name == s["name"])
        ).one_or_none()
        before = _calendar_spec(c) if c else None
        if c is None:
            c = BusinessCalendar(name=s["name"])
            self.session.add(c)
        for key, value in s.items():
            setattr(c, key, value)
        self.count("calendars", before is not None, before, _calendar_spec(c))

    def _apply_policies(self, s: dict[str, Any]) -> None:
        p = self.session.scalars(select(Policy).where(Policy.name == s["name"])).one_or_none()
        before = _policy_spec(p) if p else None
        if p is None:
            p = Policy(name=s["name"], version=s["version"], created_at=self.now, updated_at=self.now)
            self.session.add(p)
        else:
            compare = {**s, "version": p.version}
            if compare == before:
                self.count("policies", True, before, before)
                return
            p.version = p.version + 1  # an edited policy is a new version; running escalations keep theirs
            p.updated_at = self.now
            p.levels.clear()
            self.session.flush()
        for key, value in s.items():
            if key not in ("levels", "version", "name"):
                setattr(p, key, value)
        for lv in s["levels"]:
            level = PolicyLevel(**{k: v for k, v in lv.items() if k != "targets"})
            level.targets = [PolicyTarget(position=i, **t) for i, t in enumerate(lv["targets"])]
            p.levels.append(level)
        self.count("policies", before is not None, before, _policy_spec(p))

    def _apply_teams(self, s: dict[str, Any]) -> None:
        t = self.session.scalars(select(Team).where(Team.handle == s["handle"])).one_or_none()
        before = _team_spec(t) if t else None
        if before == s:
            self.count("teams", True, before, s)
            return
        if t is None:
            t = Team(handle=s["handle"], created_at=self.now)
            self.session.add(t)
        else:
            t.members.clear()
            self.session.flush()
        t.name, t.description = s["name"], s["description"]
        t.manager = self.person(s["manager"]) if s["manager"] else None
        t.schedule = (
            self.session.scalars(select(Schedule).where(Schedule.handle == s["schedule"])).one()
            if s["schedule"]
            else None
        )
        t.members = [TeamMember(person=self.person(h), position=i) for i, h in enumerate(s["members"])]
        self.count("teams", before is not None, before, s)

    def _apply_schedules(self, s: dict[str, Any]) -> None:
        sc = self.session.scalars(select(Schedule).where(Schedule.handle == s["handle"])).one_or_none()
        before = _schedule_spec(sc) if sc else None
        if before == s:
            self.count("schedules", True, before, s)
            return
        if sc is None:
            sc = Schedule(handle=s["handle"])
            self.session.add(sc)
        else:
            sc.rotations.clear()
            sc.overrides.clear()
            self.session.flush()
        sc.name, sc.timezone, sc.description = s["name"], s["timezone"], s["description"]
        for i, r in enumerate(s["rotations"]):
            rotation = Rotation(
                name=r["name"],
                position=i,
                start_date=r["start_date"],
                handoff_time=r["handoff_time"],
                shift_hours=r["shift_hours"],
            )
            rotation.members = [
                RotationMember(person=self.person(h), position=j) for j, h in enumerate(r["members"])
            ]
            sc.rotations.append(rotation)
        for o in s["overrides"]:
            sc.overrides.append(
                ScheduleOverride(
                    person=self.person(o["person"]),
                    start_at=o["start_at"],
                    end_at=o["end_at"],
                    note=o["note"],
                )
            )
        self.count("schedules", before is not None, before, s)

    def _apply_sla(self, s: dict[str, Any]) -> None:
        c = self.session.scalars(
            select(SlaConfig).where(SlaConfig.site == s["site"], SlaConfig.category == s["category"])
        ).one_or_none()
        before = _sla_spec(c) if c else None
        if c is None:
            c = SlaConfig(site=s["site"], category=s["category"])
            self.session.add(c)
        c.response_minutes = s["response_minutes"]
        c.resolution_minutes = s["resolution_minutes"]
        c.warning_percent = s["warning_percent"]
        c.calendar = (
            self.session.scalars(select(BusinessCalendar).where(BusinessCalendar.name == s["calendar"])).one()
            if s["calendar"]
            else None
        )
        c.breach_policy = (
            self.session.scalars(select(Policy).where(Policy.name == s["breach_policy"])).one()
            if s["breach_policy"]
            else None
        )
        self.count("sla", before is not None, before, s)

    def _apply_templates(self, s: dict[str, Any]) -> None:
        t = self.session.scalars(
            select(Template).where(
                Template.kind == s["kind"],
                Template.channel == s["channel"],
                Template.language == s["language"],
                Template.version == s["version"],
            )
        ).one_or_none()
        before = _template_spec(t) if t else None
        if t is None:
            t = Template(created_at=self.now)
            self.session.add(t)
        for key, value in s.items():
            if key == "created_by" and value is None:
                value = t.created_by or self.actor
            setattr(t, key, value)
        self.count("templates", before is not None, before, _template_spec(t))

    def _apply_accounts(self, s: dict[str, Any]) -> None:
        o = self.session.scalars(select(Operator).where(Operator.username == s["username"])).one_or_none()
        before = _account_spec(o) if o else None
        if before == s:
            self.count("accounts", True, before, s)
            return
        person = self.person(s["person"]) if s["person"] else None
        if person is not None:
            other = self.session.scalar(
                select(Operator.username).where(
                    Operator.person_id == person.id, Operator.username != s["username"]
                )
            )
            if other is not None:
                raise ValidationError(
                    f"{person.name} is already linked to the account {other!r}",
                    field=f"accounts.{s['username']}.person",
                )
        if o is None:
            # No password: nobody can sign in to it until an administrator resets it (must change then).
            o = Operator(
                username=s["username"],
                password_hash="!",
                created_at=self.now,
                failed_sign_ins=0,
                must_change_password=True,
            )
            self.session.add(o)
        o.display_name, o.role, o.active = s["display_name"], s["role"], s["active"]
        o.person = person
        self.count("accounts", before is not None, before, s)


class _DryRun(Exception):
    """Raised inside the transaction of a dry run so that it rolls back."""


def _authorize_bundle(session: Session, who: Identity, bundle: _Bundle) -> Identity:
    """Configuration needs EDIT_CONFIGURATION, accounts MANAGE_ACCOUNTS (checked as the account is now); a
    document with nothing in it is still an import of configuration."""
    config = any(bundle.items[k] for k in CONFIG_KINDS) or bundle.default_policy is not None
    if config or not bundle.items["accounts"]:
        who = authorize(session, who, Action.EDIT_CONFIGURATION)
    if bundle.items["accounts"]:
        who = authorize(session, who, Action.MANAGE_ACCOUNTS)
    return who


def _write(
    ctx: AppContext,
    bundle: _Bundle,
    event_kind: str,
    actor: Identity | str,
    sources: list[str],
    *,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Check references against the database, then write everything in one transaction, or nothing.

    A dry run does all of it, including the writes (so the counts are real), and then rolls back."""
    from engine.accounts import active_admins, ensure_an_admin_remains

    now = ctx.clock.now()
    who = as_identity(actor)
    actor = who.name
    result: dict[str, Any] = {}
    try:
        with write_session(ctx.sessions) as session:
            who = _authorize_bundle(session, who, bundle)
            _check_references(session, bundle)
            if bundle.errors:
                raise ConfigValidationError(
                    bundle.errors, verb="imported" if event_kind == "config_imported" else "saved"
                )
            writer = _Writer(session, now, actor, who, sources)
            admins = active_admins(session) if bundle.items["accounts"] else 0
            for kind in _APPLY_ORDER:
                for item in bundle.items[kind]:
                    writer.apply(item)
                session.flush()
            if bundle.items["accounts"]:
                ensure_an_admin_remains(session, admins)
            if bundle.default_policy is not None:
                name = bundle.default_policy[0]
                setting = session.get(SystemSetting, DEFAULT_POLICY_SETTING)
                if setting is None:
                    setting = SystemSetting(name=DEFAULT_POLICY_SETTING)
                    session.add(setting)
                old_default = (setting.value or {}).get("policy")
                if old_default != name:
                    writer.changed.append(f"setting:{DEFAULT_POLICY_SETTING}")
                    audit.record(
                        session,
                        now,
                        who,
                        "config_updated",
                        object_kind="setting",
                        object_name=DEFAULT_POLICY_SETTING,
                        message=f"Default policy {old_default or '(none)'} → {name}",
                        changes=[audit.Change("policy", old_default, name)],
                    )
                setting.value = {"policy": name}
                setting.updated_at = now
                setting.updated_by = actor
            counts = {
                kind: len(bundle.items[kind]) for kind in KINDS if kind != "accounts" or bundle.items[kind]
            }
            warnings = [str(w) for w in bundle.warnings]
            result = {
                **counts,
                "created": {k: n for k, n in writer.created.items() if n},
                "updated": {k: n for k, n in writer.updated.items() if n},
                "unchanged": {k: n for k, n in writer.unchanged.items() if n},
                "warnings": warnings,
            }
            if bundle.default_policy is not None:
                result["default_policy"] = bundle.default_policy[0]
            if dry_run:
                result["dry_run"] = True
                raise _DryRun
            summary = ", ".join(_count_text(n, kind) for kind, n in counts.items() if n) or "nothing"
            if event_kind == "config_imported":
                created = sum(writer.created.values())
                changed = sum(writer.updated.values())
                audit.record(
                    session,
                    now,
                    who,
                    "config_imported",
                    object_kind="import",
                    object_name=", ".join(sources)[:255],
                    message=f"Imported {summary} from {', '.join(sources)}: {created} created, {changed} "
                    f"changed, {sum(writer.unchanged.values())} unchanged",
                    data={
                        "sources": sources,
                        "created": result["created"],
                        "updated": result["updated"],
                        "unchanged": result["unchanged"],
                        "changed_objects": writer.changed[:500],
                        "warnings": warnings[:50],
                    },
                )
            record(
                session,
                event_kind,
                now,
                actor=actor,
                message=f"{'Imported' if event_kind == 'config_imported' else 'Saved'} {summary}"
                + (f" from {', '.join(sources)}" if sources else ""),
                data={
                    "sources": sources,
                    "counts": counts,
                    "created": result["created"],
                    "updated": result["updated"],
                    "warnings": warnings[:50],
                },
            )
    except _DryRun:
        pass
    except IntegrityError as exc:
        raise ValidationError(
            f"nothing was imported: the database refused the change ({exc.orig})", where=", ".join(sources)
        ) from exc
    return result


def _bundle_from_texts(texts: Sequence[tuple[str, str]], region: str) -> _Bundle:
    bundle = _Bundle()
    for source, text in texts:
        ck = _Collector(source, region)
        bundle.collectors.append(ck)
        data = parse_document(text, source, ck)
        if not ck.errors:
            _read_document(data, ck, bundle)
    _check_duplicates(bundle)
    return bundle


def import_text(
    ctx: AppContext, text: str, source_name: str, actor: Identity | str, *, dry_run: bool = False
) -> dict[str, Any]:
    """Import one document given as text; `source_name` names it in messages (and its suffix picks JSON).

    With dry_run, everything is checked and counted but nothing is kept."""
    bundle = _bundle_from_texts([(source_name, text)], ctx.settings.phone_region)
    return _write(ctx, bundle, "config_imported", actor, [source_name], dry_run=dry_run)


def import_files(
    ctx: AppContext, paths: Sequence[str | Path], actor: Identity | str, *, dry_run: bool = False
) -> dict[str, Any]:
    """Import several files as one: validated together (references may cross files), written together.

    Returns the number of objects per kind, created/updated/unchanged counts and the warnings."""
    texts: list[tuple[str, str]] = []
    missing: list[Issue] = []
    for p in paths:
        path = Path(p)
        try:
            texts.append((path.name if len(paths) == 1 else str(path), path.read_text(encoding="utf-8")))
        except OSError as exc:
            missing.append(Issue(str(path), None, "", f"cannot be read: {exc.strerror or exc}"))
        except UnicodeDecodeError:
            missing.append(Issue(str(path), None, "", "is not UTF-8 text"))
    if missing:
        raise ConfigValidationError(missing)
    bundle = _bundle_from_texts(texts, ctx.settings.phone_region)
    return _write(ctx, bundle, "config_imported", actor, [s for s, _ in texts], dry_run=dry_run)


def _count_text(n: int, kind: str) -> str:
    return f"{n} {_SINGULAR[kind]}" if n == 1 else f"{n} {kind if kind != 'sla' else 'SLA configs'}"


def object_key(kind: str, obj: Mapping[str, Any]) -> str:
    """The handle an editor passes to delete_object for an object in document form."""
    _check_kind(kind)
    if kind in _NAME_FIELD:
        return str(obj.get(_NAME_FIELD[kind], ""))
    if kind == "sla":
        return sla_key(str(obj.get("site") or ""), str(obj.get("category") or ""))
    return template_key(
        str(obj.get("kind", "")),
        str(obj.get("channel", "")),
        str(obj.get("language", "en")),
        int(obj.get("version", 1)),
    )


def save_objects(
    ctx: AppContext,
    kind: str,
    objects: list[dict[str, Any]],
    actor: Identity | str,
    *,
    dry_run: bool = False,
) -> None:
    """Create or update objects of one kind from the console's editors (document form), all or nothing.

    Raises ConfigValidationError (its `issues` list every problem, with the object's path); with dry_run
    the objects are only checked, which an editor can do before it enables its Save button."""
    _check_kind(kind)
    ck = _Collector("", ctx.settings.phone_region)
    bundle = _Bundle(collectors=[ck])
    if not isinstance(objects, list):
        raise ValidationError(f"expected a list of {kind}")
    for i, obj in enumerate(objects):
        item = _read_object(ck, kind, obj, f"{kind}[{i}]")
        if item is not None:
            item.collector = ck
            bundle.items[kind].append(item)
    _check_duplicates(bundle)
    _write(ctx, bundle, "config_changed", actor, [], dry_run=dry_run)


def delete_object(ctx: AppContext, kind: str, handle: str, actor: Identity | str) -> None:
    """Delete one object by its handle (see object_key); memberships and rotations that name a deleted
    person go with it, policy targets naming it stay and reach nobody (reported when an escalation runs); a
    team whose on-call schedule is deleted has none (its team target pages every member again).
    Accounts are never deleted (the audit trail names them): they are disabled."""
    _check_kind(kind)
    if kind == "accounts":
        raise ValidationError("accounts are not deleted: disable the account instead", field="accounts")
    now = ctx.clock.now()
    who = as_identity(actor)
    actor = who.name
    with write_session(ctx.sessions) as session:
        who = authorize(session, who, Action.EDIT_CONFIGURATION)
        target = _find(session, kind, handle)
        if target is None:
            raise NotFound(f"no {_SINGULAR[kind]} {handle!r}")
        snapshot = _DOC[kind](_SPEC[kind](target))
        session.delete(target)
        if kind == "policies":
            setting = session.get(SystemSetting, DEFAULT_POLICY_SETTING)
            if setting is not None and setting.value.get("policy") == handle:
                session.delete(setting)
        audit.record(
            session,
            now,
            who,
            "config_deleted",
            object_kind=AUDIT_KIND[kind],
            object_name=handle,
            message=f"{_SINGULAR[kind].capitalize()} {handle} deleted",
            changes=audit.diff(snapshot, None),
        )
        record(
            session,
            "config_changed",
            now,
            actor=actor,
            message=f"Deleted {_SINGULAR[kind]} {handle}",
            data={
                "kind": kind,
                "action": "deleted",
                "key": handle,
                "object": json.loads(json.dumps(snapshot)),
            },
        )


def _find(session: Session, kind: str, handle: str) -> Any:
    if kind == "people":
        return session.scalars(select(Person).where(Person.handle == handle)).one_or_none()
    if kind == "teams":
        return session.scalars(select(Team).where(Team.handle == handle)).one_or_none()
    if kind == "schedules":
        return session.scalars(select(Schedule).where(Schedule.handle == handle)).one_or_none()
    if kind == "policies":
        return session.scalars(select(Policy).where(Policy.name == handle)).one_or_none()
    if kind == "calendars":
        return session.scalars(select(BusinessCalendar).where(BusinessCalendar.name == handle)).one_or_none()
    if kind == "sla":
        site, _, category = handle.partition("/")
        site = "" if site == "*" else site
        category = "" if category == "*" else category
        return session.scalars(
            select(SlaConfig).where(SlaConfig.site == site, SlaConfig.category == category)
        ).one_or_none()
    parts = handle.split("/")
    if len(parts) != 4 or not parts[3].lstrip("v").isdigit():
        raise ValidationError(f"{handle!r} is not a template key (kind/channel/language/vN)")
    return session.scalars(
        select(Template).where(
            Template.kind == parts[0],
            Template.channel == parts[1],
            Template.language == parts[2],
            Template.version == int(parts[3].lstrip("v")),
        )
    ).one_or_none()


def count_rows(session: Session) -> dict[str, int]:
    """Rows per configuration table (for tests and `config check`)."""
    models: dict[str, Any] = {
        "people": Person,
        "teams": Team,
        "team_members": TeamMember,
        "schedules": Schedule,
        "rotations": Rotation,
        "overrides": ScheduleOverride,
        "policies": Policy,
        "levels": PolicyLevel,
        "targets": PolicyTarget,
        "sla": SlaConfig,
        "calendars": BusinessCalendar,
        "templates": Template,
    }
    return {
        name: session.scalar(select(func.count()).select_from(model)) or 0 for name, model in models.items()
    }
