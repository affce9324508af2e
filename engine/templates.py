"""Message templates: Jinja2 in a sandbox, per (kind, channel, language), versioned, one active version each.

Operators edit templates, so templates are untrusted: they render in a `SandboxedEnvironment` with
`StrictUndefined`, so `{{ ''.__class__.__mro__ }}` is refused (a ValidationError, never Python internals) and a
misspelt variable is an error at save time, not an empty gap in a page at 3 a.m. Each kind documents the
variables it gets (`KIND_VARIABLES`); `validate_template` checks syntax (with the line) and variables.

`render` looks for the active template in the person's language, then English, then the shipped template
(resources/templates/<lang>.yaml), then a built-in one-liner, so a message always goes out. A user template
that fails at send time is skipped for the next candidate and an event says so. Compiled templates are cached by
their text; the active rows for the languages tried come from one query, cached for ACTIVE_CACHE_SECONDS and
emptied whenever this process writes a Template (another process's edit applies within that time).

`sms_info` counts SMS segments the way networks do: GSM-7 (basic table 1 septet, extension table 2 septets,
160 per single message, 153 per part) or UCS-2 as soon as one character is outside GSM-7 (UTF-16 units, 70 /
67) — an isiZulu text with one curly quote or an emoji costs more than twice as much.
"""

from __future__ import annotations

import functools
import importlib.resources
import threading
import time
import weakref
from datetime import datetime
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import Engine, bindparam, event, select
from sqlalchemy.orm import Session, object_session

from engine.errors import ValidationError
from engine.models import Channel, Incident, Template
from engine.timeline import record

SHIPPED_LANGUAGES = ("en", "zu", "af")
CHANNELS = tuple(c.value for c in Channel)
STATUSES = ("open", "acknowledged", "in_progress", "escalated", "resolved")

_INCIDENT_VARS = {
    "incident_id",
    "incident_key",
    "summary",
    "details",
    "severity",
    "category",
    "site",
    "critical",
    "team",
    "person_name",
    "reply_code",
    "ack_url",
    "console_url",
}
KIND_VARIABLES: dict[str, set[str]] = {
    "page": _INCIDENT_VARS | {"level", "policy", "repeat_no", "created_at"},
    "ack_notice": _INCIDENT_VARS | {"by", "via", "at"},
    "resolve_notice": _INCIDENT_VARS | {"by", "via", "at", "note"},
    "status_update": {"tracking_number", "status", "status_text", "reporter_name", "summary", "incident_id"},
    "reminder": {"title", "due_at", "person_name", "incident_id", "summary", "item_id"},
    "overdue_escalation": {
        "title",
        "due_at",
        "overdue_by",
        "assignee_name",
        "person_name",
        "incident_id",
        "item_id",
    },
    "sla_warning": _INCIDENT_VARS | {"deadline_kind", "due_at", "percent"},
    "sla_breach": _INCIDENT_VARS | {"deadline_kind", "due_at", "overdue_by"},
    "test": {"text", "person_name", "sent_at"},
}
KINDS = tuple(KIND_VARIABLES)

# A message must always go out, even with no template anywhere: the last resort per kind.
BUILTIN_BODIES: dict[str, str] = {
    "page": "Watchkeeper {{ severity|upper }} #{{ incident_id }}: {{ summary }}."
    "{% if reply_code %} Reply 1 to acknowledge or {{ reply_code }} ack.{% endif %}",
    "ack_notice": "Watchkeeper #{{ incident_id }} acknowledged by {{ by }}: {{ summary }}",
    "resolve_notice": "Watchkeeper #{{ incident_id }} resolved by {{ by }}: {{ summary }}",
    "status_update": "Update for {{ tracking_number }}: your report is now {{ status_text }}.",
    "reminder": "Reminder: {{ title }} is due {{ due_at }}.",
    "overdue_escalation": "Overdue: {{ title }} (due {{ due_at }}).",
    "sla_warning": "SLA warning #{{ incident_id }}: {{ deadline_kind }} due {{ due_at }}.",
    "sla_breach": "SLA breached #{{ incident_id }}: {{ deadline_kind }} was due {{ due_at }}.",
    "test": "Watchkeeper test message: {{ text }}",
}

_SAMPLE: dict[str, Any] = {
    "incident_id": 1042,
    "incident_key": "pump-station-7",
    "summary": "Pump station 7 offline",
    "details": "Telemetry lost at 02:14; backup pump not started.",
    "severity": "high",
    "category": "water",
    "site": "Durban North",
    "critical": False,
    "team": "Water operations",
    "person_name": "Thandi Nkosi",
    "reply_code": "K7Q2",
    "ack_url": "https://watchkeeper.example.org/ack?incident=1042&code=K7Q2",
    "console_url": "https://watchkeeper.example.org/incidents/1042",
    "level": 1,
    "policy": "Water standby",
    "repeat_no": 0,
    "created_at": "2026-03-02 10:00",
    "by": "Sipho Dlamini",
    "via": "sms",
    "at": "2026-03-02 10:05",
    "note": "Pump restarted",
    "tracking_number": "WK-1042",
    "status": "in_progress",
    "status_text": "being worked on",
    "reporter_name": "Mrs Naidoo",
    "title": "Confirm water quality sample",
    "due_at": "2026-03-02 12:00",
    "overdue_by": "2 hours",
    "assignee_name": "Sipho Dlamini",
    "item_id": 77,
    "deadline_kind": "response",
    "percent": 80,
    "text": "Hello from Watchkeeper",
    "sent_at": "2026-03-02 10:00",
}

# Operators write templates, so a template may try to make a huge message or loop for ever. Every render has a
# budget: at most MAX_OUTPUT_CHARS of output, MAX_LOOP_ITEMS items produced by range() (nested loops included)
# and no arithmetic producing huge strings or numbers. Past it the render stops with an error (at save time:
# refused; at send time: the next template in line is used, down to the built-in text).
MAX_OUTPUT_CHARS = 20_000
MAX_LOOP_ITEMS = 10_000
_budget = threading.local()


class _Budgeted(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > 64:
            raise SecurityError("an exponent that large is not allowed in a template")
        if operator == "*":
            seq, times = (left, right) if isinstance(left, str | list | tuple) else (right, left)
            if (
                isinstance(seq, str | list | tuple)
                and isinstance(times, int)
                and len(seq) * times > MAX_OUTPUT_CHARS
            ):
                raise SecurityError(f"a text longer than {MAX_OUTPUT_CHARS} characters is not allowed")
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, int) and result.bit_length() > 256:
            raise SecurityError("a number that large is not allowed in a template")
        if isinstance(result, str | list | tuple) and len(result) > MAX_OUTPUT_CHARS:
            raise SecurityError(f"a text longer than {MAX_OUTPUT_CHARS} characters is not allowed")
        return result


def _budgeted_range(*args: int) -> range:
    """range() for templates, counted against the render's budget (nested loops multiply)."""
    items = range(*args)
    left = getattr(_budget, "loop_items", MAX_LOOP_ITEMS) - len(items)
    if left < 0:
        raise SecurityError(f"loops of more than {MAX_LOOP_ITEMS} items in all are not allowed in a template")
    _budget.loop_items = left
    return items


def _with_budget(render: Any) -> str:
    """Run one render under a fresh budget; its output may be at most MAX_OUTPUT_CHARS long."""
    _budget.loop_items = MAX_LOOP_ITEMS
    out = str(render())
    if len(out) > MAX_OUTPUT_CHARS:
        raise SecurityError(f"the message would be {len(out)} characters long (at most {MAX_OUTPUT_CHARS})")
    return out


_text_env = _Budgeted(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
_html_env = _Budgeted(undefined=StrictUndefined, autoescape=True)
for _env in (_text_env, _html_env):
    _env.globals["range"] = _budgeted_range


# --------------------------------------------------------------------------------------------------------
# SMS segments
# --------------------------------------------------------------------------------------------------------

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")
GSM7_ALL = frozenset(GSM7_BASIC | GSM7_EXTENSION)


def _pack(units: list[int], single: int, part: int) -> int:
    """Segments for a list of per-character unit costs; a character never splits across two parts."""
    total = sum(units)
    if total <= single:
        return 1
    segments, used = 1, 0
    for cost in units:
        if used + cost > part:
            segments += 1
            used = 0
        used += cost
    return segments


def sms_info(text: str) -> tuple[str, int, int]:
    """(encoding, segments, chars): "GSM-7" or "UCS-2", SMS parts, and length in septets / UTF-16 units."""
    chars = set(text)  # set operations run in C: this is on the path of every message sent
    if chars <= GSM7_ALL:
        if chars.isdisjoint(GSM7_EXTENSION):
            return "GSM-7", (1 if len(text) <= 160 else -(-len(text) // 153)), len(text)
        units = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return "GSM-7", _pack(units, 160, 153), sum(units)
    if text.isascii() or all(ord(ch) < 0x10000 for ch in chars):
        # One UTF-16 unit per character: no pair to keep together across parts.
        return "UCS-2", (1 if len(text) <= 70 else -(-len(text) // 67)), len(text)
    units = [len(ch.encode("utf-16-le")) // 2 for ch in text]
    return "UCS-2", _pack(units, 70, 67), sum(units)


# --------------------------------------------------------------------------------------------------------
# Shipped templates
# --------------------------------------------------------------------------------------------------------


@functools.cache
def shipped(language: str) -> dict[str, Any]:
    """The shipped template file for a language ({} when there is none)."""
    if language not in SHIPPED_LANGUAGES:
        return {}
    resource = importlib.resources.files("resources").joinpath("templates", f"{language}.yaml")
    data = yaml.safe_load(resource.read_text(encoding="utf-8")) or {}
    return data if isinstance(data, dict) else {}


def _shipped_entry(kind: str, channel: str, language: str) -> dict[str, Any] | None:
    per_kind = (shipped(language).get("templates") or {}).get(kind) or {}
    entry = per_kind.get(channel) or per_kind.get("default")
    return entry if isinstance(entry, dict) else None


# Calls are spoken by Twilio's <Say>, which has voices for English and Afrikaans but none for isiZulu. A language
# file's `voice` section says how its calls are spoken (the <Say> language code and voice, and the words around
# the message); a call to someone whose language has none is spoken in English, text and voice alike.
def spoken_language(language: str) -> str:
    """The language a call to a person of `language` is spoken in: theirs when it has a voice, else English."""
    return language if shipped(language).get("voice") else "en"


def voice_words(language: str) -> dict[str, str]:
    """The `voice` section (say_language, say_voice and the prompts) for calls to a person of `language`."""
    section = shipped(spoken_language(language)).get("voice") or {}
    return {str(k): str(v) for k, v in section.items()}


def voice_prompt(language: str, name: str, **context: Any) -> str:
    """One prompt of a call (press_a_key, reply_by_text, no_key, …) in the language the call is spoken in."""
    words = voice_words(language)
    source = words.get(name) or voice_words("en").get(name) or ""
    return render_string(source, context, where=f"voice prompt {name}")


def voice_language_problem(channel: str, language: str) -> str | None:
    """Why a template for (channel, language) would never be used: a voice template in a language no voice
    speaks (calls to those people are spoken in English). None when it is fine."""
    if channel == "voice" and spoken_language(language) != language:
        return (
            f"a voice template in {language!r} is never spoken: Twilio has no voice for it, so calls to "
            "people with that language use the English voice template"
        )
    return None


def status_text(status: str, language: str) -> str:
    for lang in (language, "en"):
        words = shipped(lang).get("status_words") or {}
        if status in words:
            return str(words[status])
    return status.replace("_", " ")


def install_default_templates(session: Session, now: datetime, *, by: str = "system") -> int:
    """Install the shipped templates (every kind × channel × shipped language) that are not there yet.

    An existing (kind, channel, language) is left alone, whatever its version: an operator's edit wins.
    Returns the number of rows written.
    """
    existing = {
        (t.kind, t.channel, t.language)
        for t in session.execute(select(Template.kind, Template.channel, Template.language)).all()
    }
    written = 0
    for language in SHIPPED_LANGUAGES:
        for kind in KINDS:
            for channel in CHANNELS:
                if (kind, channel, language) in existing or voice_language_problem(channel, language):
                    continue
                entry = _shipped_entry(kind, channel, language)
                if entry is None:
                    continue
                session.add(
                    Template(
                        kind=kind,
                        channel=channel,
                        language=language,
                        version=1,
                        active=True,
                        subject=str(entry.get("subject") or ""),
                        body=str(entry.get("body") or ""),
                        body_html=entry.get("body_html") if channel == "email" else None,
                        created_at=now,
                        created_by=by,
                    )
                )
                written += 1
    if written:
        record(session, "templates_installed", now, actor=by, data={"count": written})
    return written


# --------------------------------------------------------------------------------------------------------
# Validation and rendering
# --------------------------------------------------------------------------------------------------------


def validate_template(kind: str, body: str, subject: str = "", body_html: str | None = None) -> list[str]:
    """Problems with a template, for the editor at save time: syntax (with line), unknown variables, sandbox."""
    if kind not in KIND_VARIABLES:
        return [f"unknown template kind {kind!r}: use one of {', '.join(KINDS)}"]
    problems: list[str] = []
    known = KIND_VARIABLES[kind]
    parts = [("subject", subject, _text_env), ("body", body, _text_env)]
    if body_html is not None:
        parts.append(("body_html", body_html, _html_env))
    if not body.strip():
        problems.append("body: the body is empty")
    for name, source, env in parts:
        if not source:
            continue
        try:
            parsed = env.parse(source)
        except TemplateSyntaxError as exc:
            problems.append(f"{name}: line {exc.lineno}: {exc.message}")
            continue
        unknown = sorted(meta.find_undeclared_variables(parsed) - known)
        for var in unknown:
            problems.append(
                f"{name}: unknown variable {var!r} for {kind} (known: {', '.join(sorted(known))})"
            )
        if unknown:
            continue
        template = env.from_string(source)
        try:
            _with_budget(lambda t=template: t.render(sample_context(kind)))
        except SecurityError as exc:
            problems.append(f"{name}: not allowed in a template: {exc}")
        except TemplateError as exc:
            problems.append(f"{name}: {exc}")
        except Exception as exc:  # {{ 1/0 }}, an overflow: Python's own errors, raised while rendering
            problems.append(f"{name}: fails when rendered: {type(exc).__name__}: {exc}")
    return problems


def sample_context(kind: str) -> dict[str, Any]:
    """Realistic values for every variable of a kind, for previews and validation."""
    return {name: _SAMPLE.get(name, f"<{name}>") for name in sorted(KIND_VARIABLES.get(kind, set()))}


@functools.lru_cache(maxsize=1024)
def _compiled(source: str, html: bool) -> Any:
    """A template text compiled once (in the sandbox) and reused: compiling costs far more than rendering.

    Keyed by the text itself, so an edited template (a new text) is simply a new entry."""
    return (_html_env if html else _text_env).from_string(source)


def render_string(
    source: str, context: dict[str, Any], *, html: bool = False, where: str = "template"
) -> str:
    """Render one template text in the sandbox, within its budget; anything wrong — Jinja's own errors and
    Python's (a division by zero, an overflow) — is a ValidationError naming it."""
    try:
        compiled = _compiled(source, html)
        return _with_budget(lambda: compiled.render(context)).strip()
    except SecurityError as exc:
        raise ValidationError(f"not allowed in a template: {exc}", where=where) from None
    except TemplateSyntaxError as exc:
        raise ValidationError(f"line {exc.lineno}: {exc.message}", where=where) from None
    except UndefinedError as exc:
        raise ValidationError(f"missing value: {exc.message}", where=where) from None
    except TemplateError as exc:
        raise ValidationError(str(exc), where=where) from None
    except Exception as exc:
        raise ValidationError(f"fails when rendered: {type(exc).__name__}: {exc}", where=where) from None


# The active template rows per (kind, channel, language), cached per database for ACTIVE_CACHE_SECONDS.
# In this process every ORM write to a Template (insert, update, delete: the editor, config import,
# install_default_templates) empties the cache when it is flushed and again when its transaction ends, so an
# edit applies to the very next message; an edit made by another process applies within ACTIVE_CACHE_SECONDS.
ACTIVE_CACHE_SECONDS = 2.0
_Row = tuple[int, int, str, str, str | None]  # id, version, subject, body, body_html
_active_cache: weakref.WeakKeyDictionary[Engine, dict[tuple[str, str, str], tuple[float, _Row | None]]] = (
    weakref.WeakKeyDictionary()
)
_cache_lock = threading.Lock()
_ACTIVE_QUERY = (
    select(
        Template.id, Template.language, Template.version, Template.subject, Template.body, Template.body_html
    )
    .where(
        Template.kind == bindparam("kind"),
        Template.channel == bindparam("channel"),
        Template.language.in_(bindparam("languages", expanding=True)),
        Template.active.is_(True),
    )
    .order_by(Template.version.desc())
)


def invalidate_template_cache() -> None:
    """Forget every cached active template (called on any template write in this process)."""
    with _cache_lock:
        _active_cache.clear()


@event.listens_for(Template, "after_insert")
@event.listens_for(Template, "after_update")
@event.listens_for(Template, "after_delete")
def _template_written(_mapper: Any, _connection: Any, target: Any) -> None:
    invalidate_template_cache()
    # Again when the transaction ends: a render in another session may have re-read the old rows meanwhile.
    session = object_session(target)
    if session is not None:
        session.info["watchkeeper_templates_written"] = True


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _transaction_ended(session: Session) -> None:
    if session.info.pop("watchkeeper_templates_written", False):
        invalidate_template_cache()


def _active_rows(session: Session, kind: str, channel: str, languages: tuple[str, ...]) -> list[_Row | None]:
    """The active template (highest version) for each language, in one query, cached briefly."""
    bind: Any = session.get_bind()
    engine: Engine | None = getattr(bind, "engine", None)
    # Uncommitted template changes of this session must be seen by it alone: no cache then.
    use_cache = engine is not None and not any(
        isinstance(o, Template) for o in (*session.new, *session.dirty, *session.deleted)
    )
    now = time.monotonic()
    out: dict[str, _Row | None] = {}
    if use_cache and engine is not None:
        with _cache_lock:
            per_db = _active_cache.get(engine)
            if per_db is not None:
                for lang in languages:
                    hit = per_db.get((kind, channel, lang))
                    if hit is not None and now - hit[0] <= ACTIVE_CACHE_SECONDS:
                        out[lang] = hit[1]
    missing = [lang for lang in languages if lang not in out]
    if missing:
        found: dict[str, _Row] = {}
        for r in session.execute(
            _ACTIVE_QUERY, {"kind": kind, "channel": channel, "languages": missing}
        ).all():
            if r.language not in found:  # highest version first
                found[r.language] = (r.id, r.version, r.subject, r.body, r.body_html)
        for lang in missing:
            out[lang] = found.get(lang)
        if use_cache and engine is not None:
            with _cache_lock:
                per_db = _active_cache.setdefault(engine, {})
                for lang in missing:
                    per_db[(kind, channel, lang)] = (now, out[lang])
    return [out[lang] for lang in languages]


def _candidates(
    session: Session, kind: str, channel: str, language: str
) -> list[tuple[str, int | None, dict[str, Any]]]:
    found: list[tuple[str, int | None, dict[str, Any]]] = []
    languages = tuple(dict.fromkeys((language, "en")))
    for lang, row in zip(languages, _active_rows(session, kind, channel, languages), strict=True):
        if row is not None:
            template_id, version, subject, body, body_html = row
            found.append(
                (
                    f"template {kind}/{channel}/{lang} v{version}",
                    template_id,
                    {"subject": subject, "body": body, "body_html": body_html},
                )
            )
    for lang in languages:
        entry = _shipped_entry(kind, channel, lang)
        if entry is not None:
            found.append((f"shipped {kind}/{channel}/{lang}", None, entry))
    found.append(("built-in", None, {"subject": "", "body": BUILTIN_BODIES.get(kind, "{{ summary }}")}))
    return found


def render_template(
    session: Session,
    kind: str,
    channel: str,
    language: str,
    context: dict[str, Any],
    *,
    now: datetime | None = None,
) -> tuple[str, str, str | None, int | None]:
    """Like `render`, and also the id of the Template row used (None for shipped/built-in texts)."""
    ctx = dict(context)
    if kind == "status_update" and "status_text" not in ctx and "status" in ctx:
        ctx["status_text"] = status_text(str(ctx["status"]), language)
    # A documented variable the caller did not give is empty, so `{% if site %}` works; an undocumented name
    # is still an error (StrictUndefined), caught at save time by validate_template.
    full: dict[str, Any] = {name: "" for name in KIND_VARIABLES.get(kind, set())}
    full.update(ctx)
    last_error: ValidationError | None = None
    if channel == "voice":  # what a call says must be in a language it can be spoken in
        language = spoken_language(language or "en")
    for where, template_id, entry in _candidates(session, kind, channel, language or "en"):
        try:
            subject = render_string(str(entry.get("subject") or ""), full, where=where)
            body = render_string(str(entry.get("body") or ""), full, where=where)
            html_source = entry.get("body_html")
            body_html = (
                render_string(str(html_source), full, html=True, where=where)
                if html_source and channel == "email"
                else None
            )
        except ValidationError as exc:
            last_error = exc
            if now is not None:
                incident_id = ctx.get("incident_id")
                known = isinstance(incident_id, int) and session.get(Incident, incident_id) is not None
                record(
                    session,
                    "template_error",
                    now,
                    incident_id=incident_id if known else None,
                    message=f"{exc}; the next template in line was used instead (check the template editor)",
                    data={"kind": kind, "channel": channel, "template": where},
                )
            continue
        return subject, body, body_html, template_id
    raise last_error or ValidationError(f"no template for {kind}")


def render(
    session: Session, kind: str, channel: str, language: str, context: dict[str, Any]
) -> tuple[str, str, str | None]:
    """(subject, body, body_html) for one message: the person's language, then English, then built in."""
    subject, body, body_html, _ = render_template(session, kind, channel, language, context)
    return subject, body, body_html
