"""REST routes for the shift's own work: notifications, who is on call, workflow items and the message log.

Registered on the ServiceApp's router by `register`; each handler checks the token's role against the rule
book (through the app's `_authorise`) before it reads or writes, and validates all its input first.
A token is no person: it sees and marks the notifications addressed to its role (engine.inbox).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.permissions import Action
from engine.service.http import HttpError, Request, Response, Router

if TYPE_CHECKING:
    from engine.service.app import ServiceApp


def _flag(query: dict[str, str], name: str) -> bool:
    raw = query.get(name, "").lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise HttpError(400, f"'{name}' must be true or false")


def _limit(query: dict[str, str], default: int = 100, most: int = 500) -> int:
    try:
        limit = int(query.get("limit", str(default)))
    except ValueError:
        raise HttpError(400, "limit must be a whole number") from None
    if not 1 <= limit <= most:
        raise HttpError(400, f"limit must be between 1 and {most}")
    return limit


def _id(request: Request, name: str = "id") -> int:
    raw = request.params[name]
    if not raw.isdigit():
        raise HttpError(404, f"no such id: {raw}")
    return int(raw)


class WorkRoutes:
    def __init__(self, app: ServiceApp) -> None:
        self.app = app

    def register(self, r: Router) -> None:
        r.add("GET", "/api/notifications", self.notifications)
        r.add("POST", "/api/notifications/read-all", self.read_all)
        r.add("POST", "/api/notifications/{id}/read", self.read_one)
        r.add("GET", "/api/oncall", self.on_call)
        r.add("GET", "/api/items", self.items)
        r.add("POST", "/api/items", self.add_item)
        r.add("POST", "/api/items/{id}/assign", self.assign_item)
        r.add("POST", "/api/items/{id}/complete", self.complete_item)
        r.add("GET", "/api/messages", self.messages)
        r.add("POST", "/api/messages/{id}/retry", self.retry_message)
        r.add("POST", "/api/messages/{id}/resend", self.resend_message)

    # -- notifications -------------------------------------------------------------------------------

    def notifications(self, request: Request) -> Response:
        from engine import inbox

        who = self.app._authorise(request, Action.NOTIFICATIONS)
        q = request.query
        data = inbox.inbox(
            self.app.ctx,
            who,
            unread_only=_flag(q, "unread"),
            unread_first=_flag(q, "unread_first"),
            limit=_limit(q),
        )
        return Response.json(data)

    def read_one(self, request: Request) -> Response:
        from engine import inbox

        who = self.app._authorise(request, Action.NOTIFICATIONS)
        self.app._optional_json(request)
        return Response.json(inbox.mark_read(self.app.ctx, who, _id(request)).as_dict())

    def read_all(self, request: Request) -> Response:
        from engine import inbox

        who = self.app._authorise(request, Action.NOTIFICATIONS)
        self.app._optional_json(request)
        return Response.json({"marked_read": inbox.mark_all_read(self.app.ctx, who)})

    # -- who is on call ------------------------------------------------------------------------------

    def on_call(self, request: Request) -> Response:
        from engine.cli_work import on_call_rows
        from engine.db import read_session
        from engine.oncall import on_call_now

        self.app._authorise(request, Action.VIEW_INCIDENTS)
        with read_session(self.app.ctx.sessions) as session:
            return Response.json(on_call_rows(on_call_now(session, self.app.ctx.clock.now())))

    # -- workflow items ------------------------------------------------------------------------------

    def items(self, request: Request) -> Response:
        from engine import items
        from engine.db import read_session

        self.app._authorise(request, Action.WORKFLOW_ITEMS)
        q = request.query
        status = q.get("status", "open")
        if status not in (*items.STATUSES, "all"):
            raise HttpError(400, "'status' must be open, done, expired or all")
        assignee = q.get("assignee", "").strip()
        with read_session(self.app.ctx.sessions) as session:
            assignee_id = items.person_id(session, assignee) if assignee else None
            rows = items.list_items(
                session,
                status=None if status == "all" else status,
                assignee_id=assignee_id,
                limit=_limit(q, most=1000),
            )
        return Response.json({"items": [r.as_dict() for r in rows], "count": len(rows)})

    def add_item(self, request: Request) -> Response:
        from engine import items

        who = self.app._authorise(request, Action.WORKFLOW_ITEMS)
        data = self.app._body(request)
        unknown = sorted(
            set(data) - {"title", "time_limit_seconds", "incident", "assignee", "escalate_to_role"}
        )
        if unknown:
            raise HttpError(400, "unknown fields: " + ", ".join(unknown))
        limit = data.get("time_limit_seconds")
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise HttpError(400, "'time_limit_seconds' must be a whole number")
        incident = data.get("incident")
        if incident is not None and (isinstance(incident, bool) or not isinstance(incident, int | str)):
            raise HttpError(400, "'incident' must be an incident id or key")
        done = items.create_item(
            self.app.ctx,
            who,
            title=self.app._text_field(data, "title", required=True),
            time_limit_seconds=limit,
            incident=incident,
            assignee=self.app._text_field(data, "assignee") or None,
            escalate_to_role=self.app._text_field(data, "escalate_to_role") or "supervisor",
        )
        return Response.json(done.as_dict(), status=201)

    def assign_item(self, request: Request) -> Response:
        from engine import items

        who = self.app._authorise(request, Action.WORKFLOW_ITEMS)
        assignee = self.app._text_field(self.app._body(request), "assignee", required=True)
        return Response.json(items.assign_item(self.app.ctx, who, _id(request), assignee).as_dict())

    def complete_item(self, request: Request) -> Response:
        from engine import items

        who = self.app._authorise(request, Action.WORKFLOW_ITEMS)
        self.app._optional_json(request)
        return Response.json(items.complete_item(self.app.ctx, who, _id(request)).as_dict())

    # -- the message log -----------------------------------------------------------------------------

    def messages(self, request: Request) -> Response:
        from engine import messages
        from engine.db import read_session

        self.app._authorise(request, Action.MESSAGE_LOG)
        q = request.query
        incident = q.get("incident", "")
        if incident and not incident.isdigit():
            raise HttpError(400, "'incident' must be an incident number")
        try:
            offset = int(q.get("offset", "0"))
        except ValueError:
            raise HttpError(400, "offset must be a whole number") from None
        with read_session(self.app.ctx.sessions) as session:
            rows = messages.search(
                session,
                status=q.get("status") or None,
                channel=q.get("channel") or None,
                person=q.get("person") or None,
                incident_id=int(incident) if incident else None,
                since=self.app._time(q, "since"),
                until=self.app._time(q, "until"),
                limit=_limit(q),
                offset=max(0, offset),
            )
        return Response.json({"messages": [r.as_dict() for r in rows], "count": len(rows)})

    def retry_message(self, request: Request) -> Response:
        from engine import messages

        who = self.app._authorise(request, Action.RESEND_MESSAGE)
        self.app._optional_json(request)
        return Response.json(messages.retry(self.app.ctx, who, _id(request)).as_dict(), status=201)

    def resend_message(self, request: Request) -> Response:
        from engine import messages

        who = self.app._authorise(request, Action.RESEND_MESSAGE)
        channel = self.app._text_field(self.app._body(request), "channel", required=True)
        return Response.json(messages.resend(self.app.ctx, who, _id(request), channel).as_dict(), status=201)
