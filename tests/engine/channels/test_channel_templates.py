"""Templates: sandboxed Jinja2, validation at save time, language fallback, shipped texts, SMS segments."""

from __future__ import annotations

import pytest

from engine import templates
from engine.context import AppContext
from engine.db import write_session
from engine.errors import ValidationError
from engine.models import Event, Template
from engine.templates import render, render_string, sample_context, sms_info, validate_template


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__ }}",
        "{{ summary.__class__.__base__.__subclasses__() }}",
        "{{ summary.format.__globals__ }}",
    ],
)
def test_sandbox_refuses_python_internals(source: str) -> None:
    with pytest.raises(ValidationError, match="not allowed"):
        render_string(source, {"summary": "x"})
    problems = validate_template("page", source)
    assert problems and ("not allowed" in problems[0] or "unknown variable" in problems[0])


def test_unknown_variable_is_an_error_at_save_time() -> None:
    problems = validate_template("page", "Incident {{ incident_id }}: {{ sumary }}")
    assert problems == [
        "body: unknown variable 'sumary' for page (known: "
        + ", ".join(sorted(templates.KIND_VARIABLES["page"]))
        + ")"
    ]


def test_syntax_error_names_the_line() -> None:
    problems = validate_template("page", "Line one\n{{ summary }\nthree", subject="ok")
    assert len(problems) == 1 and problems[0].startswith("body: line 2:")


def test_unknown_kind_is_reported() -> None:
    assert validate_template("bogus", "x")[0].startswith("unknown template kind 'bogus'")


def test_every_shipped_template_is_valid_in_every_language() -> None:
    for language in templates.SHIPPED_LANGUAGES:
        for kind in templates.KINDS:
            for channel in templates.CHANNELS:
                entry = templates._shipped_entry(kind, channel, language)
                assert entry is not None, (language, kind, channel)
                assert (
                    validate_template(kind, entry["body"], entry.get("subject", ""), entry.get("body_html"))
                    == []
                )


def test_shipped_page_sms_fits_one_segment_and_says_how_to_acknowledge() -> None:
    context = sample_context("page")
    for language, phrase in (
        ("en", "Reply 1 to acknowledge"),
        ("zu", "Phendula ngo-1"),
        ("af", "Antwoord 1"),
    ):
        body = render_string(templates._shipped_entry("page", "sms", language)["body"], context)  # type: ignore[index]
        assert phrase in body and '"K7Q2 ack"' in body
        assert sms_info(body)[1] == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("GSM-7", 1, 0)),
        ("a" * 160, ("GSM-7", 1, 160)),
        ("a" * 161, ("GSM-7", 2, 161)),
        ("a" * 306, ("GSM-7", 2, 306)),
        ("a" * 307, ("GSM-7", 3, 307)),
        ("€" * 80, ("GSM-7", 1, 160)),  # extension characters count two
        ("€" * 81, ("GSM-7", 2, 162)),
        ("a" * 152 + "{" + "a" * 152, ("GSM-7", 3, 306)),  # an escape pair never splits across parts
        ("Ngiyabonga ngosizo lwakho — sizofika maduze", ("UCS-2", 1, 43)),  # one em dash: UCS-2
        ("ŋ" * 70, ("UCS-2", 1, 70)),
        ("ŋ" * 71, ("UCS-2", 2, 71)),
        ("🚒" * 35, ("UCS-2", 1, 70)),  # an emoji is two UTF-16 units
        ("🚒" * 36, ("UCS-2", 2, 72)),  # 67-unit parts hold 33 emoji: a surrogate pair never splits
        ("a" + "🚒" * 67, ("UCS-2", 3, 135)),
        ("Ñandù ü à é Ø", ("GSM-7", 1, 13)),
        ("Ñandú", ("UCS-2", 1, 5)),  # ú is not in GSM-7 (ù is)
    ],
)
def test_sms_segments_are_counted_like_the_network(text: str, expected: tuple[str, int, int]) -> None:
    assert sms_info(text) == expected


def test_a_152_char_text_with_an_escape_at_the_end_still_fits_one_message() -> None:
    assert sms_info("a" * 158 + "€") == ("GSM-7", 1, 160)


def test_render_prefers_the_language_then_english_then_built_in(ctx: AppContext) -> None:
    now = ctx.clock.now()
    context = sample_context("page")
    with write_session(ctx.sessions) as session:
        # Nothing installed: the shipped isiZulu text.
        _, body, _ = render(session, "page", "sms", "zu", context)
        assert "Phendula ngo-1" in body
        # A language nobody shipped: English.
        _, body, _ = render(session, "page", "sms", "xh", context)
        assert "Reply 1 to acknowledge" in body
        session.add(
            Template(
                kind="page",
                channel="sms",
                language="en",
                version=1,
                body="EN v1 {{ summary }}",
                created_at=now,
            )
        )
        session.add(
            Template(
                kind="page",
                channel="sms",
                language="en",
                version=2,
                body="EN v2 {{ summary }}",
                created_at=now,
            )
        )
        session.add(
            Template(
                kind="page",
                channel="sms",
                language="af",
                version=1,
                body="AF old {{ summary }}",
                active=False,
                created_at=now,
            )
        )
        session.flush()
        # The active, newest English version wins over the shipped Afrikaans when af has no active one.
        _, body, _ = render(session, "page", "sms", "af", context)
        assert body == "EN v2 Pump station 7 offline"


def test_a_broken_user_template_falls_back_and_is_reported(ctx: AppContext) -> None:
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        session.add(
            Template(kind="page", channel="sms", language="en", body="{{ ''.__class__ }}", created_at=now)
        )
        session.flush()
        _, body, _, template_id = templates.render_template(
            session, "page", "sms", "en", sample_context("page"), now=now
        )
        assert "Reply 1 to acknowledge" in body and template_id is None
        assert session.query(Event).filter_by(kind="template_error").count() == 1


def test_status_update_speaks_the_reporters_language(ctx: AppContext) -> None:
    with ctx.sessions() as session:
        for language, expected in (
            ("en", "Update for WK-7: your report is now being worked on."),
            ("zu", "Isibuyekezo se-WK-7: Umbiko wakho manje kuyasebenzelwa."),
            ("af", "Opdatering vir WK-7: U verslag is nou word aan gewerk."),
        ):
            _, body, _ = render(
                session,
                "status_update",
                "whatsapp",
                language,
                {"tracking_number": "WK-7", "status": "in_progress"},
            )
            assert body == expected


def test_email_templates_render_html_with_escaping(ctx: AppContext) -> None:
    context = sample_context("page") | {"summary": "Valve <b>7</b> & pump"}
    with ctx.sessions() as session:
        subject, body, html = render(session, "page", "email", "en", context)
    assert subject.startswith("[HIGH] #1042 Valve <b>7</b>")
    assert html is not None and "Valve &lt;b&gt;7&lt;/b&gt; &amp; pump" in html
    assert "Valve <b>7</b> & pump" in body


def test_install_default_templates_installs_all_three_languages_once(ctx: AppContext) -> None:
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        written = templates.install_default_templates(session, now)
    # Every kind × channel × language, less isiZulu voice: no voice speaks it, calls use English.
    every = len(templates.SHIPPED_LANGUAGES) * len(templates.KINDS) * len(templates.CHANNELS)
    assert written == every - len(templates.KINDS)
    with ctx.sessions() as session:
        assert session.query(Template).filter_by(channel="voice", language="zu").count() == 0
    with write_session(ctx.sessions) as session:
        row = session.query(Template).filter_by(kind="page", channel="sms", language="zu").one()
        row.body = "Edited {{ summary }}"
        assert templates.install_default_templates(session, now) == 0
    with ctx.sessions() as session:
        assert (
            session.query(Template).filter_by(kind="page", channel="sms", language="zu").one().body
            == "Edited {{ summary }}"
        )
        assert (
            render(session, "page", "sms", "zu", sample_context("page"))[1] == "Edited Pump station 7 offline"
        )


def test_a_template_that_would_make_a_huge_message_or_loop_for_ever_is_refused_at_save() -> None:
    from engine.templates import validate_template

    huge = validate_template("page", "{{ summary * 500000 }}")
    assert huge and "longer than 20000 characters" in huge[0]
    loops = validate_template(
        "page", "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}"
    )
    assert loops and "loops of more than 10000 items" in loops[0]
    padded = validate_template("page", "{% for a in range(5000) %}{{ summary }}{% endfor %}")
    assert padded and "would be" in padded[0] and "at most 20000" in padded[0]
    power = validate_template("page", "{{ 9 ** 999999 }}")
    assert power and "exponent" in power[0]
    broken = validate_template("page", "{{ 1 // 0 }}")
    assert broken and "ZeroDivisionError" in broken[0]
    assert validate_template("page", "{% for a in range(3) %}{{ summary }} {% endfor %}") == []
