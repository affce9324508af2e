"""REST routes for the shift's own work: notifications (and workflow items and the message log below).

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
