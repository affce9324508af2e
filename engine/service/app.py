"""The service's application: Events API v2 intake, REST API, Twilio webhooks, /healthz, /metrics.

Every REST route names the action it performs; the bearer token's role is checked against the rule book
(engine.permissions), the same one the console and the command line use, and what it writes is recorded as
`api:<token label>`.

A WSGI callable (the tests call it in-process); the service's HTTP server (engine.service.asgi) calls
`respond` and, for the Events API, `settle` once the intake queue has the event.

Every handler validates all of its input before it writes anything: a malformed, oversized, mistyped or
unauthorised request leaves the database exactly as it was.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.context import AppContext
from engine.db import ping, read_session
from engine.errors import (
    ConfigurationError,
    DatabaseRefused,
    DatabaseUnavailable,
    InvalidTransition,
    NotFound,
    ValidationError,
)
from engine.permissions import Action, Identity, PermissionDenied, authorize
from engine.service import ack_link, integration
from engine.service.health import ServiceState, health, metrics
from engine.service.http import (
    MAX_BODY_BYTES,
    Environ,
    HttpError,
    Request,
    Response,
    Router,
    StartResponse,
    finish,
)
from engine.service.intake import INVALID_ROUTING_KEY, lookup_routing_key, parse_event, process_event
from engine.service.keys import RoutingTarget, authenticate_token, hash_secret, token_identity
from engine.service.queue import IntakeRefused, IntakeUnavailable, IntakeWriter, queue_row
from engine.service.work_routes import WorkRoutes

log = logging.getLogger("watchkeeper.service.http")

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TWIML_CONTENT_TYPE = "application/xml; charset=utf-8"
ROUTING_KEY_CACHE_SECONDS = 5.0
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class WouldBlock(Exception):
    """Raised by `respond(inline=True)` where answering would wait for the database."""


@dataclass
class StagedEvent:
    """A valid Events API event with a known routing key, ready for the intake queue."""

    row: dict[str, Any]
    dedup_key: str
    action: str
    route: str = "/v2/enqueue"


def _accepted(dedup_key: str) -> Response:
    return Response.json(
        {"status": "success", "message": "Event processed", "dedup_key": dedup_key}, status=202
    )


def _invalid_event(errors: list[str]) -> Response:
    return Response.json(
        {"status": "invalid event", "message": "Event object is invalid", "errors": errors}, status=400
    )


def _is_db_error(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    return isinstance(exc, DatabaseUnavailable | OperationalError) or (
        isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
    )


def _is_lock_timeout(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "lock timeout" in text or "deadlock detected" in text


class ServiceApp:
    """A WSGI callable. `ServiceApp(ctx)` in tests; `serve` passes the shared ServiceState."""

    def __init__(
        self,
        ctx: AppContext,
        state: ServiceState | None = None,
        *,
        max_body: int = MAX_BODY_BYTES,
        intake: IntakeWriter | None = None,
    ) -> None:
        """`intake`: queue events durably and answer at once (service mode); None applies each event before
        answering (simpler, slower; what the in-process tests use)."""
        self.ctx = ctx
        self.state = state or ServiceState(started_at=ctx.clock.now())
        self.max_body = max_body
        self.intake = intake
        self._keys: dict[str, tuple[float, RoutingTarget]] = {}
        self._keys_lock = threading.Lock()
        self.router = Router()
        r = self.router
        r.add("POST", "/v2/enqueue", self.enqueue)
        r.add("GET", "/healthz", self.healthz)
        r.add("GET", "/metrics", self.metrics)
        r.add("GET", "/api/incidents", self.list_incidents)
        r.add("POST", "/api/incidents", self.create_incident)
        r.add("GET", "/api/incidents/{ref}", self.show_incident)
        r.add("POST", "/api/incidents/{ref}/acknowledge", self.acknowledge)
        r.add("POST", "/api/incidents/{ref}/resolve", self.resolve)
        r.add("POST", "/api/incidents/{ref}/start-work", self.start_work)
        r.add("POST", "/api/incidents/{ref}/escalate", self.escalate)
        r.add("POST", "/api/incidents/{ref}/cancel", self.cancel)
        r.add("POST", "/api/incidents/{ref}/notes", self.add_note)
        r.add("POST", "/api/incidents/{ref}/assign", self.assign)
        r.add("POST", "/api/incidents/{ref}/classify", self.classify)
        r.add("POST", "/api/incidents/{ref}/reopen", self.reopen)
        r.add("GET", "/api/stats", self.stats)
        r.add("GET", "/api/handover", self.handover)
        r.add("POST", "/api/handover", self.write_handover)
        WorkRoutes(self).register(r)
        r.add("GET", "/api/config", self.export_config)
        r.add("POST", "/api/config", self.import_config)
        r.add("GET", "/api/switches", self.switches)
        r.add("PUT", "/api/switches/{name}", self.set_switch)
        r.add("GET", "/api/audit", self.audit)
        r.add("GET", "/api/routing-keys", self.routing_keys)
        r.add("POST", "/api/routing-keys", self.create_routing_key)
        r.add("DELETE", "/api/routing-keys/{ref}", self.revoke_routing_key)
        r.add("GET", "/api/tokens", self.tokens)
        r.add("POST", "/api/tokens", self.create_token)
        r.add("DELETE", "/api/tokens/{ref}", self.revoke_token)
        r.add("GET", "/api/users", self.users)
        r.add("POST", "/api/users", self.add_user)
        r.add("PATCH", "/api/users/{name}", self.update_user)
        r.add("POST", "/api/users/{name}/reset-password", self.reset_password)
        r.add("POST", "/twilio/status", self.twilio_status)
        r.add("POST", "/twilio/inbound", self.twilio_inbound)
        r.add("POST", "/twilio/voice/gather", self.twilio_voice_gather)
        r.add("POST", "/twilio/voice/{message_id}", self.twilio_voice)
        r.add("GET", "/ack", self.ack_link_form)
        r.add("POST", "/ack", self.ack_link_submit)
        self._ack_failures = ack_link.FailureLimiter()

    # -- WSGI --------------------------------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ, self.max_body)
        response = self.respond(request)
        assert isinstance(response, Response)
        return finish(response, start_response, request.method)

    def respond(
        self, request: Request, *, stage: bool = False, inline: bool = False
    ) -> Response | StagedEvent:
        """The answer to a request, errors mapped to their status codes and counted.

        `stage`: an Events API event that is valid and known is returned as a StagedEvent instead of being
        queued here; the server submits it to the intake writer without holding a thread, then answers with
        `settle`. `inline`: the caller is an event loop that must not wait for the database; a routing key
        that is not in the cache raises WouldBlock (ask again from a thread)."""
        route = "unmatched"
        try:
            handler, params, route = self.router.match(request.method, request.path)
            request.params = params
            if stage and route == "/v2/enqueue" and self.intake is not None:
                staged = self._stage_event(request, inline=inline)
                if isinstance(staged, StagedEvent):
                    staged.route = route
                    return staged
                response = staged
            else:
                response = handler(request)
        except WouldBlock:
            raise
        except HttpError as exc:
            response = self._error_response(request, exc)
        except (PermissionDenied, DatabaseRefused) as exc:
            response = Response.json({"error": "forbidden", "message": str(exc)}, status=403)
        except NotFound as exc:
            response = Response.json({"error": "not_found", "message": str(exc)}, status=404)
        except InvalidTransition as exc:
            response = Response.json({"error": "conflict", "message": str(exc)}, status=409)
        except ValidationError as exc:
            response = Response.json(
                {"error": "invalid", "message": str(exc), "field": exc.field}, status=422
            )
        except ConfigurationError as exc:
            log.error("configuration problem answering %s %s: %s", request.method, request.path, exc)
            response = Response.json({"error": "unavailable", "message": str(exc)}, status=503)
        except Exception as exc:
            if _is_db_error(exc) and not self._database_answers():
                log.warning(
                    "database unavailable answering %s %s: %s",
                    request.method,
                    request.path,
                    type(exc).__name__,
                )
                self.state.set_database(False, type(exc).__name__)
                response = Response.json(
                    {
                        "error": "unavailable",
                        "message": "database unavailable; nothing was stored, try again",
                    },
                    status=503,
                    headers=[("Retry-After", "5")],
                )
            elif _is_db_error(exc) and _is_lock_timeout(exc):
                log.warning(
                    "database busy answering %s %s; asked the client to retry", request.method, request.path
                )
                response = Response.json(
                    {"error": "busy", "message": "database busy; nothing was stored, try again"},
                    status=503,
                    headers=[("Retry-After", "1")],
                )
            else:
                log.exception("unexpected error answering %s %s", request.method, request.path)
                response = Response.json(
                    {"error": "internal", "message": "internal error; nothing was stored"}, status=500
                )
        self.state.counters.inc("watchkeeper_http_requests_total", route=route, code=str(response.status))
        return response

    def settle(self, staged: StagedEvent, error: BaseException | None) -> Response:
        """The answer to a staged event once the intake writer has committed it (or could not)."""
        response = self._not_stored(error) if error is not None else self._queued(staged)
        self.state.counters.inc(
            "watchkeeper_http_requests_total", route=staged.route, code=str(response.status)
        )
        return response

    def _database_answers(self) -> bool:
        try:
            ping(self.ctx.db)
            return True
        except Exception:
            return False

    def _error_response(self, request: Request, exc: HttpError) -> Response:
        if exc.body is not None:
            return Response.json(exc.body, status=exc.status, headers=exc.headers)
        if request.path == "/v2/enqueue" and exc.status in (400, 413, 415):
            # PagerDuty's shape, so monitoring tools show the reason.
            return Response.json(
                {"status": "invalid event", "message": "Event object is invalid", "errors": [exc.message]},
                status=exc.status,
                headers=exc.headers,
            )
        if request.path.startswith("/twilio/"):
            return Response.text(exc.message + "\n", status=exc.status)
        code = {
            400: "bad_request",
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            413: "too_large",
            415: "unsupported_media_type",
        }.get(exc.status, "error")
        return Response.json({"error": code, "message": exc.message}, status=exc.status, headers=exc.headers)

    # -- Events API v2 ------------------------------------------------------------------------------------

    def enqueue(self, request: Request) -> Response:
        staged = self._stage_event(request)
        if isinstance(staged, Response):
            return staged
        assert self.intake is not None
        try:
            self.intake.submit(staged.row)
        except (IntakeUnavailable, IntakeRefused) as exc:
            return self._not_stored(exc)
        return self._queued(staged)

    def _stage_event(self, request: Request, *, inline: bool = False) -> Response | StagedEvent:
        """Check the event and its routing key: an answer (invalid, or applied at once without an intake
        queue), or the row to queue."""
        body = request.json()
        event, errors = parse_event(body)
        if event is None:
            return _invalid_event(errors)
        target = self._routing_target(event.routing_key, inline=inline)
        if target is None:
            log.info("event refused: unknown routing key")
            return _invalid_event([INVALID_ROUTING_KEY])
        if self.intake is not None:
            dedup_key = event.dedup_key or uuid.uuid4().hex
            return StagedEvent(queue_row(self.ctx, event, target, dedup_key), dedup_key, event.event_action)
        result = process_event(self.ctx, event, target)
        self.state.counters.inc("watchkeeper_events_total", action=event.event_action, outcome=result.outcome)
        return _accepted(result.dedup_key)

    def _not_stored(self, exc: BaseException) -> Response:
        if isinstance(exc, IntakeRefused):
            return _invalid_event([str(exc)])
        log.warning("event not queued: %s", exc)
        return Response.json(
            {"status": "unavailable", "message": "event not stored; try again"},
            status=503,
            headers=[("Retry-After", "2")],
        )

    def _queued(self, staged: StagedEvent) -> Response:
        self.state.counters.inc("watchkeeper_events_total", action=staged.action, outcome="queued")
        return _accepted(staged.dedup_key)

    def _routing_target(self, plain: str, *, inline: bool = False) -> RoutingTarget | None:
        """The routing key's policy; known keys are remembered for ROUTING_KEY_CACHE_SECONDS (a revoked key
        stops working within that time)."""
        digest = hash_secret(plain)
        now = time.monotonic()
        with self._keys_lock:
            cached = self._keys.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        if inline:
            raise WouldBlock("the routing key must be looked up in the database")
        target = lookup_routing_key(self.ctx, plain)
        with self._keys_lock:
            if target is None:
                self._keys.pop(digest, None)
            else:
                if len(self._keys) > 1000:
                    self._keys.clear()
                self._keys[digest] = (now + ROUTING_KEY_CACHE_SECONDS, target)
        return target

    # -- health and metrics -------------------------------------------------------------------------------

    def healthz(self, request: Request) -> Response:
        status, report = health(self.ctx, self.state)
        return Response.json(report, status=status, headers=[("Cache-Control", "no-store")])

    def metrics(self, request: Request) -> Response:
        return Response.text(metrics(self.ctx, self.state), content_type=PROMETHEUS_CONTENT_TYPE)

    # -- REST API -----------------------------------------------------------------------------------------

    def _authorise(self, request: Request, action: Action | None) -> Identity:
        """The token's identity, allowed `action` by the rule book (403 otherwise); None: any valid token, the
        engine function called checks the permission itself."""
        header = request.header("Authorization")
        scheme, _, token = header.partition(" ")
        challenge = [("WWW-Authenticate", 'Bearer realm="watchkeeper"')]
        if scheme.lower() != "bearer" or not token.strip():
            raise HttpError(401, "an API token is needed: Authorization: Bearer <token>", headers=challenge)
        with read_session(self.ctx.sessions) as session:
            found = authenticate_token(session, token.strip())
            if found is None:
                log.info(
                    "REST request refused: unknown or revoked API token on %s %s",
                    request.method,
                    request.path,
                )
                raise HttpError(401, "unknown or revoked API token", headers=challenge)
            identity = token_identity(found)
            if action is not None:
                identity = authorize(session, identity, action)
        return identity

    @staticmethod
    def _ref(request: Request) -> int | str:
        ref = request.params["ref"]
        return int(ref) if ref.isdigit() else ref

    @staticmethod
    def _optional_json(request: Request) -> dict[str, Any]:
        if not request.header("Content-Length") and not request.media_type:
            return {}
        if request.header("Content-Length") == "0":
            return {}
        data = request.json()
        if not isinstance(data, dict):
            raise HttpError(400, "the body must be a JSON object")
        return data

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        data = request.json()
        if not isinstance(data, dict):
            raise HttpError(400, "the body must be a JSON object")
        return data

    @staticmethod
    def _text_field(data: dict[str, Any], name: str, *, required: bool = False) -> str:
        value = data.get(name, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise HttpError(400, f"'{name}' must be a string")
        if required and not value.strip():
            raise HttpError(400, f"'{name}' is missing or blank")
        return value

    def list_incidents(self, request: Request) -> Response:
        self._authorise(request, Action.VIEW_INCIDENTS)
        query = request.query
        state = query.get("state") or None
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            raise HttpError(400, "limit must be a whole number") from None
        if not 1 <= limit <= 1000:
            raise HttpError(400, "limit must be between 1 and 1000")
        items = integration.api().list_incidents(self.ctx, state=state, limit=limit)
        return Response.json({"incidents": items, "count": len(items)})

    def show_incident(self, request: Request) -> Response:
        self._authorise(request, Action.VIEW_INCIDENTS)
        return Response.json(integration.api().show_incident(self.ctx, self._ref(request)))

    def create_incident(self, request: Request) -> Response:
        identity = self._authorise(request, Action.OPEN_INCIDENT)
        data = request.json()
        if not isinstance(data, dict):
            raise HttpError(400, "the body must be a JSON object")
        errors: list[str] = []
        summary = data.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors.append("'summary' is missing or blank")
        strings = (
            "policy",
            "key",
            "severity",
            "category",
            "site",
            "details",
            "team",
            "reporter_name",
            "reporter_contact",
            "reporter_language",
        )
        for name in strings:
            if data.get(name) is not None and not isinstance(data.get(name), str):
                errors.append(f"'{name}' must be a string")
        if data.get("severity") is not None and data.get("severity") not in {
            "critical",
            "high",
            "medium",
            "low",
            "info",
        }:
            errors.append("'severity' must be one of critical, high, medium, low, info")
        if data.get("custom") is not None and not isinstance(data.get("custom"), dict):
            errors.append("'custom' must be an object")
        if data.get("sensitive") is not None and not isinstance(data.get("sensitive"), bool):
            errors.append("'sensitive' must be true or false")
        unknown = sorted(set(data) - {*strings, "summary", "custom", "sensitive"})
        if unknown:
            errors.append("unknown fields: " + ", ".join(unknown))
        if errors:
            return Response.json(
                {"error": "invalid", "message": "; ".join(errors), "errors": errors}, status=400
            )
        kwargs: dict[str, Any] = {k: data[k] for k in strings if data.get(k) is not None and k != "policy"}
        for name in ("custom", "sensitive"):
            if data.get(name) is not None:
                kwargs[name] = data[name]
        result = integration.api().trigger(
            self.ctx,
            policy=data.get("policy"),
            summary=str(summary).strip(),
            source="api",
            actor=identity.name,
            **kwargs,
        )
        return Response.json(
            {
                "incident_id": result.incident_id,
                "escalation_id": result.escalation_id,
                "deduplicated": result.deduplicated,
            },
            status=200 if result.deduplicated else 201,
        )

    def acknowledge(self, request: Request) -> Response:
        identity = self._authorise(request, Action.ACKNOWLEDGE)
        self._optional_json(request)
        done = integration.api().acknowledge(self.ctx, self._ref(request), by=identity.name, via="api")
        return Response.json(done)

    def start_work(self, request: Request) -> Response:
        identity = self._authorise(request, Action.START_WORK)
        self._optional_json(request)
        done = integration.api().start_work(self.ctx, self._ref(request), by=identity.name, via="api")
        return Response.json(done)

    def resolve(self, request: Request) -> Response:
        identity = self._authorise(request, Action.RESOLVE)
        data = self._optional_json(request)
        note = data.get("note", "")
        if not isinstance(note, str):
            raise HttpError(400, "'note' must be a string")
        done = integration.api().resolve(self.ctx, self._ref(request), by=identity.name, via="api", note=note)
        return Response.json(done)

    def escalate(self, request: Request) -> Response:
        identity = self._authorise(request, Action.ESCALATE)
        data = self._optional_json(request)
        level = data.get("level")
        if level is not None and (not isinstance(level, int) or isinstance(level, bool) or level < 1):
            raise HttpError(400, "'level' must be a positive whole number")
        done = integration.api().escalate(self.ctx, self._ref(request), by=identity.name, level=level)
        return Response.json(done)

    def cancel(self, request: Request) -> Response:
        identity = self._authorise(request, Action.CANCEL)
        data = self._optional_json(request)
        reason = data.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise HttpError(400, "'reason' is missing or blank")
        done = integration.api().cancel(self.ctx, self._ref(request), reason=reason, by=identity.name)
        return Response.json(done)

    def add_note(self, request: Request) -> Response:
        identity = self._authorise(request, Action.ADD_NOTE)
        text = self._text_field(self._body(request), "text", required=True)
        done = integration.api().add_note(self.ctx, self._ref(request), by=identity.name, text=text)
        return Response.json(done, status=201)

    def assign(self, request: Request) -> Response:
        identity = self._authorise(request, Action.ASSIGN)
        data = self._body(request)
        team = self._text_field(data, "team") or None
        person = self._text_field(data, "person") or None
        reason = self._text_field(data, "reason")
        if team is None and person is None:
            raise HttpError(400, "name a 'team', a 'person', or both")
        done = integration.api().assign(
            self.ctx, self._ref(request), by=identity.name, team=team, person=person, reason=reason
        )
        return Response.json(done)

    def classify(self, request: Request) -> Response:
        identity = self._authorise(request, Action.CLASSIFY)
        data = self._body(request)
        unknown = sorted(set(data) - {"category", "sensitive"})
        if unknown:
            raise HttpError(400, "unknown fields: " + ", ".join(unknown))
        category = data.get("category")
        if category is not None and not isinstance(category, str):
            raise HttpError(400, "'category' must be a string")
        sensitive = data.get("sensitive")
        if sensitive is not None and not isinstance(sensitive, bool):
            raise HttpError(400, "'sensitive' must be true or false")
        if category is None and sensitive is None:
            raise HttpError(400, "give a 'category', 'sensitive', or both")
        done = integration.api().classify(
            self.ctx, self._ref(request), by=identity.name, category=category, sensitive=sensitive
        )
        return Response.json(done)

    def reopen(self, request: Request) -> Response:
        identity = self._authorise(request, Action.REOPEN)
        reason = self._text_field(self._optional_json(request), "reason")
        done = integration.api().reopen(self.ctx, self._ref(request), by=identity.name, reason=reason)
        return Response.json(done)

    @staticmethod
    def _time(query: dict[str, str], name: str) -> Any:
        raw = query.get(name)
        if not raw:
            return None
        from datetime import datetime

        from engine.clock import as_utc

        try:
            return as_utc(datetime.fromisoformat(raw))
        except ValueError:
            raise HttpError(400, f"'{name}' is not an ISO 8601 date or time") from None

    def stats(self, request: Request) -> Response:
        self._authorise(request, Action.VIEW_REPORTS)
        q = request.query
        filters = {name: q.get(name) or None for name in ("policy", "team", "site", "category", "severity")}
        unknown = sorted(set(q) - {"since", "until", *filters})
        if unknown:
            raise HttpError(400, "unknown filters: " + ", ".join(unknown))
        data = integration.api().stats(
            self.ctx, since=self._time(q, "since"), until=self._time(q, "until"), **filters
        )
        return Response.json(_plain(data))

    # -- handover, configuration, switches, audit ----------------------------------------------------------

    def _shift_start(self, value: Any) -> Any:
        from datetime import timedelta

        hours = 12 if value in (None, "") else value
        try:
            hours = int(hours)
        except (TypeError, ValueError):
            raise HttpError(400, "'hours' must be a whole number") from None
        if not 1 <= hours <= 24 * 7:
            raise HttpError(400, "'hours' must be between 1 and 168")
        return self.ctx.clock.now() - timedelta(hours=hours)

    def handover(self, request: Request) -> Response:
        from engine import handover

        self._authorise(request, Action.HANDOVER)
        since = self._shift_start(request.query.get("hours"))
        with read_session(self.ctx.sessions) as session:
            note = handover.latest_note(session)
            summary = handover.shift_summary(session, self.ctx.clock.now(), since)
        return Response.json(_plain({"note": note, "summary": summary}))

    def write_handover(self, request: Request) -> Response:
        from engine import handover

        identity = self._authorise(request, Action.HANDOVER)
        data = self._body(request)
        text = self._text_field(data, "text", required=True)
        note = handover.write_note(
            self.ctx, identity, text, shift_started_at=self._shift_start(data.get("hours"))
        )
        return Response.json(_plain(note), status=201)

    def export_config(self, request: Request) -> Response:
        from engine import config_io

        identity = self._authorise(request, None)
        fmt = request.query.get("format", "yaml")
        if fmt not in ("yaml", "json"):
            raise HttpError(400, "'format' must be yaml or json")
        kind = request.query.get("kind") or None
        text = config_io.export_text(self.ctx, kind, fmt, by=identity)
        content_type = "application/json" if fmt == "json" else "application/yaml; charset=utf-8"
        return Response.text(text, content_type=content_type)

    def import_config(self, request: Request) -> Response:
        from engine import config_io

        identity = self._authorise(request, None)  # config_io checks: supervisor; accounts need an admin
        request.require_media_type("application/json", "application/yaml", "text/yaml", "application/x-yaml")
        try:
            text = request.body().decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(400, "the document is not UTF-8") from None
        source = "http.json" if request.media_type == "application/json" else "http.yaml"
        dry_run = request.query.get("dry_run") in ("1", "true", "yes")
        summary = config_io.import_text(self.ctx, text, source, identity, dry_run=dry_run)
        return Response.json(summary)

    def switches(self, request: Request) -> Response:
        from engine import switches

        self._authorise(request, Action.VIEW_CONFIGURATION)
        with read_session(self.ctx.sessions) as session:
            return Response.json(switches.all_switches(session))

    def set_switch(self, request: Request) -> Response:
        from engine import switches
        from engine.db import write_session

        identity = self._authorise(request, Action.MASTER_SWITCHES)
        enabled = self._body(request).get("enabled")
        if not isinstance(enabled, bool):
            raise HttpError(400, "'enabled' must be true or false")
        with write_session(self.ctx.sessions) as session:
            switches.set_switch(
                session, request.params["name"], enabled, now=self.ctx.clock.now(), by=identity
            )
            values = switches.all_switches(session)
        return Response.json(values)

    def audit(self, request: Request) -> Response:
        import io

        from engine import audit

        self._authorise(request, Action.VIEW_AUDIT)
        q = request.query
        filters = {
            "person": q.get("person", ""),
            "kind": q.get("kind", ""),
            "obj": q.get("object", ""),
            "since": self._time(q, "since"),
            "until": self._time(q, "until"),
        }
        if q.get("format") == "csv":
            out = io.StringIO()
            with read_session(self.ctx.sessions) as session:
                audit.write_csv(session, out, **filters)
            return Response.text(out.getvalue(), content_type="text/csv; charset=utf-8")
        try:
            limit = int(q.get("limit", "100"))
            offset = int(q.get("offset", "0"))
        except ValueError:
            raise HttpError(400, "limit and offset must be whole numbers") from None
        if not 1 <= limit <= 500 or offset < 0:
            raise HttpError(400, "limit must be between 1 and 500, offset 0 or more")
        with read_session(self.ctx.sessions) as session:
            page = audit.search(session, offset=offset, limit=limit, **filters)
        return Response.json({"entries": _plain(page.rows), "offset": page.offset, "has_more": page.has_more})

    # -- routing keys, tokens, accounts (administrators; the engine checks) ----------------------------

    def routing_keys(self, request: Request) -> Response:
        from engine.service import keys

        identity = self._authorise(request, None)
        return Response.json({"routing_keys": keys.list_routing_keys(self.ctx, by=identity)})

    def create_routing_key(self, request: Request) -> Response:
        from engine.service import keys

        identity = self._authorise(request, None)
        data = self._body(request)
        created = keys.create_routing_key(
            self.ctx,
            policy=self._text_field(data, "policy", required=True),
            label=self._text_field(data, "label", required=True),
            by=identity,
        )
        return Response.json(_plain(created), status=201)

    def revoke_routing_key(self, request: Request) -> Response:
        from engine.service import keys

        identity = self._authorise(request, None)
        keys.revoke_routing_key(self.ctx, self._ref_param(request, "ref"), by=identity)
        return Response(status=204, content_type="text/plain")

    def tokens(self, request: Request) -> Response:
        from engine.service import keys

        identity = self._authorise(request, None)
        return Response.json({"tokens": keys.list_api_tokens(self.ctx, by=identity)})

    def create_token(self, request: Request) -> Response:
        from engine.service import keys

        identity = self._authorise(request, None)
        data = self._body(request)
        created = keys.create_api_token(
            self.ctx,
            label=self._text_field(data, "label", required=True),
            role=self._text_field(data, "role") or "operator",
            by=identity,
        )
        return Response.json(_plain(created), status=201)

    def revoke_token(self, request: Request) -> Response:
        from engine.service import keys

        identity = self._authorise(request, None)
        keys.revoke_api_token(self.ctx, self._ref_param(request, "ref"), by=identity)
        return Response(status=204, content_type="text/plain")

    @staticmethod
    def _ref_param(request: Request, name: str) -> int | str:
        from urllib.parse import unquote

        ref = unquote(request.params[name])
        return int(ref) if ref.isdigit() else ref

    def users(self, request: Request) -> Response:
        from engine import accounts

        self._authorise(request, Action.MANAGE_ACCOUNTS)
        with read_session(self.ctx.sessions) as session:
            found = accounts.list_accounts(session)
        now = self.ctx.clock.now()
        return Response.json({"users": [{**_plain(a), "state": a.state(now)} for a in found]})

    def add_user(self, request: Request) -> Response:
        from engine import accounts

        identity = self._authorise(request, None)
        data = self._body(request)
        made = accounts.add_account(
            self.ctx,
            identity,
            username=self._text_field(data, "username", required=True),
            role=self._text_field(data, "role") or "operator",
            display_name=self._text_field(data, "display_name"),
            person=self._text_field(data, "person") or None,
        )
        return Response.json({"user": _plain(made.account), "temporary_password": made.password}, status=201)

    def update_user(self, request: Request) -> Response:
        from engine import accounts

        identity = self._authorise(request, None)
        data = self._body(request)
        unknown = sorted(set(data) - {"role", "display_name", "person", "active"})
        if unknown:
            raise HttpError(400, "unknown fields: " + ", ".join(unknown))
        changes: dict[str, Any] = {}
        for name in ("role", "display_name"):
            if name in data:
                changes[name] = self._text_field(data, name, required=True)
        if "person" in data:
            if data["person"] is not None and not isinstance(data["person"], str):
                raise HttpError(400, "'person' must be a handle or null")
            changes["person"] = data["person"] or None
        if "active" in data:
            if not isinstance(data["active"], bool):
                raise HttpError(400, "'active' must be true or false")
            changes["active"] = data["active"]
        account = accounts.update_account(self.ctx, identity, self._name_param(request), **changes)
        return Response.json({"user": _plain(account)})

    def reset_password(self, request: Request) -> Response:
        from engine import accounts

        identity = self._authorise(request, None)
        made = accounts.reset_password(self.ctx, identity, self._name_param(request))
        return Response.json({"user": _plain(made.account), "temporary_password": made.password})

    @staticmethod
    def _name_param(request: Request) -> str:
        from urllib.parse import unquote

        return unquote(request.params["name"])

    # -- Twilio webhooks ----------------------------------------------------------------------------------

    def _public_url(self, request: Request) -> str:
        """The URL Twilio requested (and signed): public_base_url when set (behind a proxy), else the Host."""
        env = request.environ
        path = str(env.get("SCRIPT_NAME", "")) + request.path
        qs = ("?" + request.query_string) if request.query_string else ""
        base = (self.ctx.settings.public_base_url or "").rstrip("/")
        if not base:
            scheme = env.get("wsgi.url_scheme", "http")
            host = str(
                env.get("HTTP_HOST")
                or f"{env.get('SERVER_NAME', 'localhost')}:{env.get('SERVER_PORT', '80')}"
            )
            base = f"{scheme}://{host}"
        return base + path + qs

    def _twilio_params(self, request: Request) -> dict[str, str]:
        """Form parameters of a Twilio webhook whose X-Twilio-Signature is valid; 403 otherwise."""
        params = request.form()
        signature = request.header("X-Twilio-Signature")
        token = integration.get_secret("twilio_auth_token")
        url = self._public_url(request)
        if not token:
            log.warning("Twilio webhook %s refused: no Twilio auth token is configured", request.path)
            self.state.counters.inc("watchkeeper_twilio_signature_rejected_total", reason="no_token")
            raise HttpError(403, "Twilio webhooks are not configured on this node")
        if not signature or not _validate_signature(url, params, signature, token):
            # Never the token, never the signature: the URL and the sender are enough to investigate.
            log.warning(
                "Twilio webhook refused: bad X-Twilio-Signature for %s from %s",
                url,
                request.environ.get("REMOTE_ADDR", "?"),
            )
            self.state.counters.inc("watchkeeper_twilio_signature_rejected_total", reason="bad_signature")
            raise HttpError(403, "invalid Twilio signature")
        return params

    def twilio_status(self, request: Request) -> Response:
        params = self._twilio_params(request)
        integration.replies().handle_status_callback(self.ctx, params)
        return Response(status=204, content_type="text/plain")

    def twilio_inbound(self, request: Request) -> Response:
        params = self._twilio_params(request)
        answer = integration.replies().handle_inbound_webhook(self.ctx, params)
        # The reply ("Watchkeeper: acknowledged #42. Thank you.") goes back to the sender as TwiML.
        twiml = answer.get("twiml") if isinstance(answer, dict) else answer
        return Response.text(_twiml(twiml), content_type=TWIML_CONTENT_TYPE)

    def twilio_voice(self, request: Request) -> Response:
        self._twilio_params(request)
        message_id = request.params["message_id"]
        if not message_id.isdigit():
            raise HttpError(404, "no such message")
        answer = integration.replies().voice_twiml(self.ctx, int(message_id))
        return Response.text(_twiml(answer), content_type=TWIML_CONTENT_TYPE)

    def twilio_voice_gather(self, request: Request) -> Response:
        params = self._twilio_params(request)
        # The call's TwiML names its message in the gather URL's query (signed with the rest of the URL).
        message_id = request.query.get("message_id")
        if message_id and "message_id" not in params:
            params = {**params, "message_id": message_id}
        answer = integration.replies().handle_voice_gather(self.ctx, params)
        return Response.text(_twiml(answer), content_type=TWIML_CONTENT_TYPE)

    # -- The acknowledge link in page e-mails ------------------------------------------------------------

    def _ack_link(self, request: Request, values: dict[str, str], *, act: bool) -> Response:
        client = str(request.environ.get("REMOTE_ADDR", "?"))
        incident, code = values.get("incident", "").strip(), values.get("code", "").strip()
        valid = incident.isdigit() and len(incident) < 19 and bool(code)
        # Guesses are counted per incident (a guesser may use many addresses), malformed links per address.
        subject = f"incident {incident}" if valid else f"address {client}"
        if self._ack_failures.blocked(subject):
            return _html(ack_link.TOO_MANY, 429, [("Retry-After", "600")])
        info = integration.replies().ack_link(self.ctx, int(incident), code, act=act) if valid else None
        if info is None:
            self._ack_failures.failed(subject)
            log.info("acknowledge link refused: no page matches (%s, from %s)", subject, client)
            return _html(ack_link.INVALID, 404)
        if not act:
            return _html(ack_link.confirm_form(info, code), 200)
        if info.get("done"):
            log.info("incident %s acknowledged by e-mail link (%s)", info["incident_id"], info["person"])
        return _html(ack_link.outcome(info), 200 if info.get("done") else 409)

    def ack_link_form(self, request: Request) -> Response:
        return self._ack_link(request, request.query, act=False)

    def ack_link_submit(self, request: Request) -> Response:
        return self._ack_link(request, request.form(), act=True)


def _plain(value: Any) -> Any:
    """Dataclasses, datetimes and lists of them as JSON-ready values."""
    from dataclasses import asdict, is_dataclass
    from datetime import datetime

    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _html(text: str, status: int, headers: list[tuple[str, str]] | None = None) -> Response:
    response = Response.text(text, status=status, content_type=ack_link.HTML_CONTENT_TYPE)
    response.headers = [*ack_link.HEADERS, *(headers or [])]
    return response


def _twiml(answer: Any) -> str:
    if isinstance(answer, str) and answer.strip():
        return answer
    if isinstance(answer, bytes) and answer.strip():
        return answer.decode("utf-8")
    return EMPTY_TWIML


def _validate_signature(url: str, params: dict[str, str], signature: str, token: str) -> bool:
    try:
        replies = integration.replies()
        validate = getattr(replies, "validate_twilio_signature", None)
    except ConfigurationError:
        validate = None
    if validate is not None:
        return bool(validate(url, params, signature, token))
    from twilio.request_validator import RequestValidator

    return bool(RequestValidator(token).validate(url, params, signature))
