"""A fake Twilio REST API on 127.0.0.1 (http.server in a thread), for the real `twilio` client.

It speaks the 2010-04-01 Messages and Calls resources as JSON, as Twilio does: POST
/2010-04-01/Accounts/{sid}/Messages.json (form body) answers 201 with sid "SM…", status "queued",
num_segments, `price: null` and price_unit; GET …/Messages/{sid}.json; GET …/Messages.json?To=… lists;
Calls.json likewise. Errors use Twilio's body: {"code": 21211, "message": …, "more_info": …, "status": 400}.

Prices, as Twilio bills them: nothing at create; the price (a negative debit string, "-0.00750") is filled in
when the message or call reaches a final status — per segment for a delivered or undelivered message, the
$0.001 processing fee for a failed one, per started minute for a completed call, nothing for a call nobody
answered. Twilio often prices some minutes after the final status: with `price_later` set, a final status
leaves the price null until `price_now(sid)`.

Scriptable: `fail_next(status, code, count, retry_after)` for the next requests, `lose_next_answer(when)` (the
connection closes before an answer, after or before the message is created), `invalid_numbers` (21211),
`unsubscribed` (21610), `landlines` (21614), per-sender-type `delay` (slow responses), `set_status` for
delivery reports (which price the message, as above), `add_inbound` for replies people send, `lookups(sid)`
for the GETs of one message or call.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from tests.fakes.burst_server import BurstServer

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
FINAL_MESSAGE_STATUSES = {"delivered", "undelivered", "failed", "read"}
FINAL_CALL_STATUSES = {"completed", "busy", "no-answer", "failed", "canceled"}
SEGMENT_PRICE = Decimal("0.0075")  # USD per SMS segment
FAILED_MESSAGE_FEE = Decimal("0.001")  # Twilio's processing fee for a message that ends "failed"
CALL_MINUTE_PRICE = Decimal("0.014")  # USD per started minute of a call
PATH = re.compile(
    r"^/2010-04-01/Accounts/(?P<account>AC\w+)/(?P<kind>Messages|Calls)(?:/(?P<sid>\w+))?\.json$"
)


@dataclass
class ScriptedFailure:
    status: int
    code: int
    message: str
    retry_after: float | None = None
    kind: str | None = None  # "Messages", "Calls" or None for both


@dataclass
class FakeTwilio:
    account_sid: str = "AC" + "0" * 32
    auth_token: str = "fake-token-5e3c"
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    failures: list[ScriptedFailure] = field(default_factory=list)
    # Scripted lost answers for the next POSTs: "after" stores the new resource, then closes the connection
    # without answering (a crash after accepting); "before" closes it without storing anything.
    lost_answers: list[str] = field(default_factory=list)
    invalid_numbers: set[str] = field(default_factory=set)
    unsubscribed: set[str] = field(default_factory=set)
    landlines: set[str] = field(default_factory=set)
    delay: dict[str, float] = field(default_factory=dict)  # "sms" / "whatsapp" / "voice" -> seconds
    price_later: bool = False  # a final status leaves the price null until price_now(sid)
    unpriced: dict[str, str] = field(default_factory=dict)  # sid -> the price Twilio has yet to fill in
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    # -- scripting -----------------------------------------------------------------------------------

    def fail_next(
        self,
        status: int = 500,
        code: int = 20500,
        count: int = 1,
        retry_after: float | None = None,
        message: str = "scripted failure",
        kind: str | None = None,
    ) -> None:
        with self.lock:
            self.failures.extend(
                ScriptedFailure(status, code, message, retry_after, kind) for _ in range(count)
            )

    def lose_next_answer(self, when: str = "after", count: int = 1) -> None:
        """The next `count` POSTs get no answer: the connection closes after ("after") or without ("before")
        the message or call being created."""
        assert when in ("after", "before")
        with self.lock:
            self.lost_answers.extend([when] * count)

    def set_status(self, sid: str, status: str, error_code: int | None = None, *, duration: int = 42) -> None:
        """The message or call moves to `status`; a final status prices it (now, or with `price_later` when
        price_now is called). `duration` is a completed call's length in seconds."""
        with self.lock:
            is_call = not (sid.startswith("SM") or sid.startswith("MM"))
            store = self.calls if is_call else self.messages
            item = store[sid]
            item["status"] = status
            if error_code is not None:
                item["error_code"] = error_code
            if is_call and status == "completed":
                item["duration"] = str(duration)
            final = FINAL_CALL_STATUSES if is_call else FINAL_MESSAGE_STATUSES
            if status in final and item.get("price") is None:
                price = self._price(item, status, duration, is_call)
                if self.price_later:
                    self.unpriced[sid] = price
                else:
                    item["price"] = price

    def price_now(self, sid: str) -> None:
        """Twilio gets round to pricing a message or call that reached its final status earlier."""
        with self.lock:
            store = self.calls if sid.startswith("CA") else self.messages
            store[sid]["price"] = self.unpriced.pop(sid)

    def lookups(self, sid: str) -> int:
        """How many times the message or call `sid` was fetched (GET …/{sid}.json)."""
        with self.lock:
            return sum(
                1 for method, path, _ in self.requests if method == "GET" and path.endswith(f"/{sid}.json")
            )

    @staticmethod
    def _price(item: dict[str, Any], status: str, duration: int, is_call: bool) -> str:
        if is_call:
            amount = CALL_MINUTE_PRICE * math.ceil(duration / 60) if status == "completed" else Decimal(0)
        elif status == "failed":
            amount = FAILED_MESSAGE_FEE
        else:
            amount = SEGMENT_PRICE * int(item.get("num_segments") or 1)
        return f"-{amount:.5f}"

    def add_inbound(self, from_: str, to: str, body: str) -> str:
        sid = "SM" + uuid.uuid4().hex
        with self.lock:
            self.messages[sid] = self._message(
                sid, to=to, from_=from_, body=body, direction="inbound", status="received"
            )
        return sid

    def sent(self, kind: str = "Messages") -> list[dict[str, Any]]:
        with self.lock:
            store = self.messages if kind == "Messages" else self.calls
            return [m for m in store.values() if m.get("direction") != "inbound"]

    # -- serving -------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeTwilio:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = (
                True  # headers and body go in separate writes: no 40 ms delayed-ACK stall
            )

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        self.server = BurstServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-twilio", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # -- the API -------------------------------------------------------------------------------------

    def _message(
        self, sid: str, *, to: str, from_: str, body: str, direction: str, status: str
    ) -> dict[str, Any]:
        from engine.templates import sms_info  # the same counting a network does

        _enc, segments, _ = sms_info(body)
        now = format_datetime(datetime.now(UTC))
        return {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": from_,
            "body": body,
            "status": status,
            "direction": direction,
            "num_segments": str(segments),
            "num_media": "0",
            "price": None,  # Twilio prices a message after it reaches a final status (set_status)
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "date_created": now,
            "date_updated": now,
            "date_sent": now,
            "api_version": "2010-04-01",
            "messaging_service_sid": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {},
        }

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length).decode() if length else ""
        form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self.lock:
            self.requests.append((method, url.path, form))
        match = PATH.match(url.path)
        if not match or match["account"] != self.account_sid:
            return self._error(h, 404, 20404, "The requested resource was not found")
        if not self._authorised(h):
            return self._error(h, 401, 20003, "Authenticate")
        kind = match["kind"]
        channel = (
            "voice"
            if kind == "Calls"
            else ("whatsapp" if form.get("To", "").startswith("whatsapp:") else "sms")
        )
        if method == "POST" and self.delay.get(channel):
            time.sleep(self.delay[channel])
        with self.lock:
            failure = (
                next((f for f in self.failures if f.kind in (None, kind)), None) if method == "POST" else None
            )
            if failure is not None:
                self.failures.remove(failure)
        if failure is not None:
            headers = (
                {"Retry-After": str(int(failure.retry_after))} if failure.retry_after is not None else {}
            )
            return self._error(h, failure.status, failure.code, failure.message, headers)
        if method == "POST" and match["sid"] is None:
            with self.lock:
                lost = self.lost_answers.pop(0) if self.lost_answers else None
            if lost is not None:
                if lost == "after":
                    self._create(h, kind, form, answer=False)
                h.close_connection = True
                return None
            return self._create(h, kind, form)
        if method == "GET" and match["sid"]:
            store = self.messages if kind == "Messages" else self.calls
            with self.lock:
                found = dict(store.get(match["sid"]) or {})
            if not found:
                return self._error(h, 404, 20404, f"The requested resource {url.path} was not found")
            return self._json(h, 200, found)
        if method == "GET":
            return self._list(h, kind, url.path, query)
        return self._error(h, 405, 20004, "Method not allowed")

    def _authorised(self, h: BaseHTTPRequestHandler) -> bool:
        header = h.headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user == self.account_sid and password == self.auth_token

    def _create(
        self, h: BaseHTTPRequestHandler, kind: str, form: dict[str, str], *, answer: bool = True
    ) -> None:
        to = form.get("To", "")
        number = to.removeprefix("whatsapp:")
        if not E164.match(number) or number in self.invalid_numbers:
            return self._error(h, 400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if number in self.unsubscribed:
            return self._error(h, 400, 21610, "Attempt to send to unsubscribed recipient")
        if number in self.landlines:
            return self._error(h, 400, 21614, f"'To' number {to} is not a valid mobile number")
        if kind == "Messages":
            if not (form.get("Body") or form.get("ContentSid")):
                return self._error(h, 400, 21619, "A text message body or media urls must be specified.")
            if not (form.get("From") or form.get("MessagingServiceSid")):
                return self._error(h, 400, 21603, "The 'From' phone number is required.")
            sid = "SM" + uuid.uuid4().hex
            body = (
                form.get("Body") or f"[content {form.get('ContentSid')}] {form.get('ContentVariables', '')}"
            )
            message = self._message(
                sid, to=to, from_=form.get("From", ""), body=body, direction="outbound-api", status="queued"
            )
            message["content_sid"] = form.get("ContentSid")
            message["content_variables"] = form.get("ContentVariables")
            message["status_callback"] = form.get("StatusCallback")
            with self.lock:
                self.messages[sid] = message
            return self._json(h, 201, message) if answer else None
        if not (form.get("Twiml") or form.get("Url")):
            return self._error(h, 400, 21205, "Url or Twiml parameter is required.")
        sid = "CA" + uuid.uuid4().hex
        call = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": form.get("From", ""),
            "status": "queued",
            "direction": "outbound-api",
            "price": None,
            "price_unit": "USD",
            "duration": None,
            "twiml": form.get("Twiml"),
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{sid}.json",
        }
        with self.lock:
            self.calls[sid] = call
        return self._json(h, 201, call) if answer else None

    def _list(self, h: BaseHTTPRequestHandler, kind: str, path: str, query: dict[str, str]) -> None:
        store = self.messages if kind == "Messages" else self.calls
        to, from_ = query.get("To"), query.get("From")
        with self.lock:
            items = [
                m
                for m in reversed(store.values())  # newest first, like Twilio
                if (to is None or m["to"] == to) and (from_ is None or m["from"] == from_)
            ]
            size = int(query.get("PageSize", 50))
            page = int(query.get("Page", 0))
            chunk = [dict(m) for m in items[page * size : (page + 1) * size]]
        key = "messages" if kind == "Messages" else "calls"
        filters = urlencode({k: v for k, v in query.items() if k in ("To", "From")})
        base = f"{path}?{filters + '&' if filters else ''}PageSize={size}"
        more = (page + 1) * size < len(items)
        return self._json(
            h,
            200,
            {
                key: chunk,
                "first_page_uri": f"{base}&Page=0",
                "next_page_uri": f"{base}&Page={page + 1}&PageToken=PA{page + 1}" if more else None,
                "previous_page_uri": f"{base}&Page={page - 1}" if page else None,
                "page": page,
                "page_size": size,
                "start": page * size,
                "end": page * size + max(0, len(chunk) - 1),
                "uri": f"{base}&Page={page}",
            },
        )

    def _json(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(data)

    def _error(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        code: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._json(
            h,
            status,
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            headers,
        )
