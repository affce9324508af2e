"""What the three Twilio channels share: one client pointed at the configured base URL, error classes.

`settings.twilio_base_url` (WATCHKEEPER_TWILIO_BASE_URL) replaces https://api.twilio.com and every
https://<product>.twilio.com prefix the official client builds, so a site can route through a gateway and the
test suite can talk to its fake Twilio server on loopback with the real `twilio` package.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import re
import select
import socket
import ssl
import threading
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from engine.channels.base import SendError, parse_retry_after, scrub

_TWILIO_PREFIX = re.compile(r"^https://[a-z0-9.-]*twilio\.com", re.IGNORECASE)

# Twilio error codes that will fail again however often we try: the number, the opt-out, the account.
PERMANENT_TWILIO_CODES = {
    20003,  # authentication failed
    20404,  # resource not found
    21211,  # invalid 'To' number
    21408,  # no permission to send to this region
    21610,  # recipient replied STOP (unsubscribed)
    21612,  # 'To' number not reachable by this route
    21614,  # 'To' is not a mobile number
    21617,  # body too long
    63016,  # WhatsApp: outside the 24-hour window without a template
}
RETRYABLE_TWILIO_CODES = {20429, 20500, 20503, 30001, 30008}

MESSAGE_STATUS_MAP = {
    "accepted": "sent",
    "scheduled": "sent",
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "undelivered",
    "canceled": "failed",
    "received": "delivered",
}
CALL_STATUS_MAP = {
    "queued": "sent",
    "initiated": "sent",
    "ringing": "sent",
    "in-progress": "delivered",
    "completed": "delivered",
    "busy": "undelivered",
    "no-answer": "undelivered",
    "failed": "failed",
    "canceled": "failed",
}


class RebasingHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The official HTTP client with every Twilio URL rewritten to the configured base URL.

    It also remembers, per thread, the Retry-After header of the last answer, which TwilioRestException does not
    carry, so a 429 can be retried when the provider asks and not sooner.
    """

    def __init__(self, base_url: str, timeout: float, pool_size: int = 16) -> None:
        super().__init__(pool_connections=True, timeout=timeout)
        self.base_url = base_url.rstrip("/")
        self._local = threading.local()
        if self.session is not None:
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)

    def rewrite(self, url: str) -> str:
        if self.base_url and self.base_url.lower() != "https://api.twilio.com":
            return _TWILIO_PREFIX.sub(self.base_url, url, count=1)
        return url

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        response = super().request(
            method, self.rewrite(url), params, data, headers, auth, timeout, allow_redirects
        )
        self._local.retry_after = parse_retry_after((response.headers or {}).get("Retry-After"))
        return response

    @property
    def last_retry_after(self) -> float | None:
        return getattr(self._local, "retry_after", None)


# quote_plus(…, safe="") as one C-level str.translate: each byte of the UTF-8 text (seen as Latin-1) maps to
# itself, "+" for a space, or its %XX escape. urllib's quote walks the bytes in Python, which at a thousand
# messages a second is a noticeable share of a core.
_FORM_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_FORM_TABLE = [("+" if i == 32 else chr(i) if i in _FORM_SAFE else f"%{i:02X}") for i in range(256)]


def _form_quote(value: object) -> str:
    raw = value.decode("latin-1") if isinstance(value, bytes) else str(value).encode().decode("latin-1")
    return raw.translate(_FORM_TABLE)


def form_encode(data: dict[str, object]) -> str:
    """application/x-www-form-urlencoded, as urllib.parse.urlencode(data, doseq=True) writes it."""
    parts: list[str] = []
    for key, value in data.items():
        name = _form_quote(key)
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple | set | frozenset):
            parts.append(f"{name}={_form_quote(value)}")
        else:
            parts.extend(f"{name}={_form_quote(item)}" for item in value)
    return "&".join(parts)


class AnswerLost(http.client.HTTPException):
    """The request went out whole but no answer came back (the connection dropped, or the wait ran out): the
    provider may have acted on it. A message is not simply sent again: the sender first asks the provider."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"no answer to the request: {type(cause).__name__}")
        self.timed_out = isinstance(cause, TimeoutError)


class _NotSent(Exception):
    """The connection failed while the request was being written: the provider cannot have acted on it."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


# What a connection that dropped after the request went out raises while its answer is read.
_LOST_ANSWER = (
    http.client.RemoteDisconnected,
    http.client.IncompleteRead,
    http.client.BadStatusLine,
    ConnectionResetError,
    TimeoutError,
)


def answer_lost(exc: BaseException) -> bool:
    """True when a request may have reached the provider although no answer came (either transport)."""
    if isinstance(exc, AnswerLost):
        return True
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ReadTimeout | requests.exceptions.ChunkedEncodingError):
        return True
    if isinstance(exc, requests.ConnectionError):
        return "RemoteDisconnected" in repr(exc) or "Connection aborted" in str(exc)
    return False


class _Wire:
    """One kept-alive HTTP/1.1 connection: a socket and a buffered reader, nothing else.

    http.client parses every answer's headers with the e-mail package, which costs more CPU than the rest of a
    send; a provider's answer needs a status line, a few headers and a body of known length (or chunked).
    """

    def __init__(self, scheme: str, host: str, port: int | None, timeout: float | None) -> None:
        https = scheme == "https"
        port = port or (443 if https else 80)
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if https:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.used = False
        self.closed = False

    def idle_but_readable(self) -> bool:
        """A kept-alive connection with something to read between requests: the server has closed it (or sent
        what nobody asked for). Checked before reuse, so a request is never written into a closed connection."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.reader.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    def exchange(
        self, method: str, head: bytes, body: bytes | None, timeout: float | None
    ) -> tuple[int, dict[str, str], bytes, bool]:
        """Send one request; (status, headers, body, keep the connection)."""
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(head + body if body else head)
        except OSError as exc:
            raise _NotSent(exc) from exc
        self.used = True
        while True:
            line = self.reader.readline(_MAX_LINE)
            if not line:
                raise http.client.RemoteDisconnected("the provider closed the connection without an answer")
            version, _, rest = line.decode("latin-1").partition(" ")
            code, _, _reason = rest.strip().partition(" ")
            if not version.startswith("HTTP/") or not code.isdigit():
                raise http.client.BadStatusLine(line.decode("latin-1", "replace").strip())
            status = int(code)
            headers = self._headers()
            if status >= 200 or status == 101:
                break  # 100 Continue and other interim answers are skipped
        lower = {k.lower(): v for k, v in headers.items()}
        keep = version != "HTTP/1.0" and lower.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304) or status < 200:
            return status, headers, b"", keep
        if "chunked" in lower.get("transfer-encoding", "").lower():
            return status, headers, self._chunked(), keep
        length = lower.get("content-length")
        if length is not None and length.strip().isdigit():
            data = self.reader.read(int(length))
            if len(data) < int(length):
                raise http.client.IncompleteRead(data, int(length) - len(data))
            return status, headers, data, keep
        return status, headers, self.reader.read(), False  # delimited by the connection closing

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            line = self.reader.readline(_MAX_LINE)
            if line in (b"\r\n", b"\n", b""):
                return headers
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                headers[name.strip()] = value.strip()
        raise http.client.HTTPException("too many headers in the answer")

    def _chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_line = self.reader.readline(_MAX_LINE)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise http.client.HTTPException("bad chunk size in the answer") from None
            if size == 0:
                self._headers()  # trailers, then the blank line
                return b"".join(chunks)
            data = self.reader.read(size + 2)
            if len(data) < size + 2:
                raise http.client.IncompleteRead(data)
            chunks.append(data[:size])


_MAX_LINE = 65537
_MAX_HEADERS = 100


class KeepAliveHttpClient(HttpClient):  # type: ignore[misc]
    """A lean HTTP client for the official Twilio client: one keep-alive connection per thread and host.

    The requests-based default spends about a millisecond of CPU per call (proxy environment lookups, hooks,
    adapters); at a thousand messages a second that is the whole core. This one writes the request in one send
    and reads the answer itself (`_Wire`). It is used when no proxy applies to the base URL; behind a proxy the
    requests-based client (`RebasingHttpClient`) is used, which honours HTTPS_PROXY/NO_PROXY.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(logging.getLogger("twilio.http_client"), False, timeout)
        self.base_url = base_url.rstrip("/")
        self._local = threading.local()
        self._opened: list[_Wire] = []
        self._opened_lock = threading.Lock()

    def rewrite(self, url: str) -> str:
        if self.base_url and self.base_url.lower() != "https://api.twilio.com":
            return _TWILIO_PREFIX.sub(self.base_url, url, count=1)
        return url

    def close(self) -> None:
        """Close every kept-alive connection (worker threads end without closing theirs)."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for wire in opened:
            wire.close()

    def _wire(self, scheme: str, host: str, port: int | None, timeout: float | None) -> _Wire:
        pool: dict[tuple[str, str, int | None], _Wire] = self._local.__dict__.setdefault("pool", {})
        wire = pool.get((scheme, host, port))
        if wire is not None and not wire.closed and wire.idle_but_readable():
            self._drop(wire)
        if wire is None or wire.closed:
            wire = _Wire(scheme, host, port, timeout)
            pool[(scheme, host, port)] = wire
            with self._opened_lock:
                self._opened.append(wire)
        return wire

    def _drop(self, wire: _Wire) -> None:
        wire.close()
        with self._opened_lock:
            if wire in self._opened:
                self._opened.remove(wire)

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        parts = urlsplit(self.rewrite(url))
        host = parts.hostname or ""
        path = parts.path or "/"
        query = form_encode(params) if params else ""
        if parts.query:
            query = parts.query + ("&" + query if query else "")
        if query:
            path += "?" + query
        method = method.upper()
        send_headers = dict(headers or {})
        body: bytes | None = None
        if method in ("POST", "PUT"):
            if not data:
                body = b""
            elif send_headers.get("Content-Type") == "application/json":
                body = json.dumps(data).encode()
            else:
                body = form_encode(data).encode("ascii")
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            send_headers["Authorization"] = "Basic " + token
        host_header = parts.netloc.rpartition("@")[2]
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header}", "Accept-Encoding: identity"]
        lines.extend(f"{name}: {value}" for name, value in send_headers.items())
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        wait = timeout if timeout is not None else self.timeout
        for attempt in (1, 2):
            wire = self._wire(parts.scheme, host, parts.port, wait)
            reused = wire.used
            try:
                status, answer_headers, raw, keep = wire.exchange(method, head, body, wait)
            except _NotSent as exc:
                self._drop(wire)
                # A kept-alive connection the server had closed meanwhile: the request never arrived; once more.
                if reused and attempt == 1:
                    continue
                raise exc.cause from None
            except _LOST_ANSWER as exc:
                self._drop(wire)
                # A read (GET) is asked again at once; a POST may have created a message or a call, so it is
                # not written twice here: the caller decides, after asking the provider (AnswerLost).
                idempotent = method in ("GET", "HEAD")
                if idempotent and reused and attempt == 1 and not isinstance(exc, TimeoutError):
                    continue
                if idempotent:
                    raise
                raise AnswerLost(exc) from exc
            except BaseException:
                self._drop(wire)
                raise
            if not keep:
                self._drop(wire)
            retry_after = next((v for k, v in answer_headers.items() if k.lower() == "retry-after"), None)
            self._local.retry_after = parse_retry_after(retry_after)
            return Response(status, raw.decode("utf-8", "replace"), answer_headers)
        raise http.client.HTTPException("unreachable")  # pragma: no cover

    @property
    def last_retry_after(self) -> float | None:
        return getattr(self._local, "retry_after", None)


TwilioTransport = KeepAliveHttpClient | RebasingHttpClient


def make_client(
    account_sid: str, auth_token: str, base_url: str, timeout: float, pool_size: int = 16
) -> tuple[Client, TwilioTransport]:
    """The official client, on the lean keep-alive transport unless a proxy applies to the base URL."""
    transport: TwilioTransport
    if requests.utils.get_environ_proxies(base_url or "https://api.twilio.com"):
        transport = RebasingHttpClient(base_url, timeout, pool_size)
    else:
        transport = KeepAliveHttpClient(base_url, timeout)
    return Client(account_sid, auth_token, http_client=transport), transport


def send_error_from(
    exc: BaseException, transport: TwilioTransport | None, secrets: list[str | None]
) -> SendError:
    """Classify whatever the Twilio client raised: retryable (timeouts, 5xx, 429) or permanent."""
    if isinstance(exc, TwilioRestException):
        code = int(exc.code) if isinstance(exc.code, int) else None
        text = scrub(f"Twilio {exc.status}: {exc.msg}", secrets)
        if code in PERMANENT_TWILIO_CODES:
            return SendError(text, retryable=False, code=str(code))
        retry_after = transport.last_retry_after if transport else None
        if code in RETRYABLE_TWILIO_CODES or exc.status == 429 or exc.status >= 500:
            return SendError(text, retryable=True, code=str(code or exc.status), retry_after=retry_after)
        return SendError(text, retryable=False, code=str(code or exc.status))
    if isinstance(exc, AnswerLost):
        if exc.timed_out:
            return SendError("Twilio did not answer in time", retryable=True, code="timeout")
        return SendError(
            "the connection to Twilio dropped before its answer", retryable=True, code="connection"
        )
    if isinstance(exc, requests.Timeout | TimeoutError):
        return SendError("Twilio did not answer in time", retryable=True, code="timeout")
    if isinstance(exc, requests.ConnectionError | OSError | http.client.HTTPException):
        return SendError(
            scrub(f"cannot reach Twilio: {type(exc).__name__}", secrets), retryable=True, code="connection"
        )
    if isinstance(exc, TwilioException):
        return SendError(scrub(f"Twilio: {exc}", secrets), retryable=False, code="twilio")
    return SendError(scrub(f"{type(exc).__name__}: {exc}", secrets), retryable=True, code="error")


def price_of(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return abs(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


def int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
