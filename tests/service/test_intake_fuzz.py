"""`POST /v2/enqueue` fuzzed (hypothesis), against the intake described in docs/events-api.openapi.yaml: any
body is answered 202 or 400 — never a 5xx — and every event answered 202 is then applied (none set aside, none
left waiting), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from engine.context import AppContext
from engine.models import IntakeEvent
from engine.service.app import ServiceApp
from engine.service.health import ServiceState
from engine.service.intake import ACTIONS, SEVERITY_MAP
from engine.service.keys import CreatedSecret
from engine.service.queue import IntakeWriter, drain, intake_store
from tests.service.conftest import WsgiClient

SPEC = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "events-api.openapi.yaml").read_text())
SCHEMAS = SPEC["components"]["schemas"]

# Text as monitoring tools send it, and as they should not: control characters, NUL, lone surrogates.
text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "é🚒", "x" * 300, "disk-full"]),
)
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), text
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=20,
)


def _events(routing_key: str) -> Any:
    """Events that are mostly right, with some fields replaced by anything at all: the shapes a door sees."""
    good_payload = st.fixed_dictionaries(
        {
            "summary": st.text(min_size=1, max_size=60).filter(str.strip),
            "source": st.text(min_size=1, max_size=30).filter(str.strip),
            "severity": st.sampled_from(list(SEVERITY_MAP)),
        },
        optional={
            "component": text,
            "group": text,
            "class": text,
            "timestamp": text,
            "custom_details": json_value,
        },
    )
    good = st.fixed_dictionaries(
        {
            "routing_key": st.just(routing_key),
            "event_action": st.sampled_from(list(ACTIONS)),
            "dedup_key": st.one_of(st.sampled_from(["k1", "k2", "k3"]), st.text(min_size=1, max_size=40)),
            "payload": good_payload,
        },
        optional={"client": text, "client_url": text, "links": st.lists(json_value, max_size=3)},
    )
    fields = ["routing_key", "event_action", "dedup_key", "payload", "client", "links", "images"]
    mutation = st.dictionaries(st.sampled_from(fields), st.one_of(text, json_value), max_size=2)
    payload_mutation = st.dictionaries(
        st.sampled_from(["summary", "source", "severity", "component", "custom_details"]),
        st.one_of(text, json_value),
        max_size=2,
    )

    @st.composite
    def event(draw: Any) -> dict[str, Any]:
        body = draw(good)
        if draw(st.booleans()):
            body["payload"] = {**body["payload"], **draw(payload_mutation)}
        if draw(st.booleans()):
            body.update(draw(mutation))
        return body

    return event()


RAW = st.sampled_from(
    [
        '{"routing_key": "x", "event_action": "trigger", "payload": {"summary": NaN}}',
        '{"a": Infinity}',
        '{"a": ' + "1" * 5000 + "}",
        "[" * 50_000 + "]" * 50_000,
        '{"a": "\\ud800"}',
        '{"a": "\\u0000"}',
        "{",
        "",
        "null",
    ]
)


def test_the_published_description_matches_the_intake() -> None:
    assert set(SCHEMAS["Event"]["properties"]["event_action"]["enum"]) == set(ACTIONS)
    assert set(SCHEMAS["Payload"]["properties"]["severity"]["enum"]) == set(SEVERITY_MAP)
    assert set(SPEC["paths"]["/v2/enqueue"]["post"]["responses"]) >= {"202", "400", "503"}


@pytest.fixture
def fuzz_client(ctx: AppContext) -> Any:
    writer = IntakeWriter(ctx)
    writer.start()
    yield WsgiClient(ServiceApp(ctx, ServiceState(started_at=ctx.clock.now()), intake=writer))
    writer.stop()


def test_any_body_is_answered_202_or_400_and_every_event_accepted_is_applied(
    ctx: AppContext, routing_key: CreatedSecret, fuzz_client: WsgiClient
) -> None:
    accepted = {"n": 0}

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(body=st.one_of(_events(routing_key.secret), json_value))
    def post_events(body: Any) -> None:
        raw = json.dumps(body, ensure_ascii=True)
        reply = fuzz_client.post("/v2/enqueue", body=raw.encode(), content_type="application/json")
        assert reply.status in (202, 400), f"{reply.status} for {raw[:300]}: {reply.text[:300]}"
        accepted["n"] += reply.status == 202

    @settings(max_examples=len(RAW.elements), deadline=None, derandomize=True)  # type: ignore[attr-defined]
    @given(raw=RAW)
    def post_raw(raw: str) -> None:
        reply = fuzz_client.post(
            "/v2/enqueue", body=raw.encode("utf-8", "surrogatepass"), content_type="application/json"
        )
        assert reply.status == 400, f"{reply.status} for {raw[:100]}: {reply.text[:200]}"

    post_events()
    post_raw()
    drain(ctx)
    with intake_store(ctx).sessions() as session:
        by_status = dict(
            session.execute(select(IntakeEvent.status, func.count()).group_by(IntakeEvent.status)).all()
        )
    assert by_status.get("failed", 0) == 0, "an event accepted at the door could not be applied"
    assert by_status.get("pending", 0) == 0
    assert sum(by_status.values()) == accepted["n"] > 30, accepted
