"""What the three Twilio channels share: one client pointed at the configured base URL, error classes.

`settings.twilio_base_url` (WATCHKEEPER_TWILIO_BASE_URL) replaces https://api.twilio.com and every
https://<product>.twilio.com prefix the official client builds, so a site can route through a gateway and the
test suite can talk to its fake Twilio server on loopback with the real `twilio` package.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import ssl
import threading
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode, urlsplit

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


class KeepAliveHttpClient(HttpClient):  # type: ignore[misc]
    """A lean HTTP client for the official Twilio client: one keep-alive connection per thread and host.

    The requests-based default spends about a millisecond of CPU per call (proxy environment lookups, hooks,
    adapters); at a thousand messages a second that is the whole core. This one does the same HTTP with
    http.client. It is used when no proxy applies to the base URL; behind a proxy the requests-based client
    (`RebasingHttpClient`) is used, which honours HTTPS_PROXY/NO_PROXY.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(logging.getLogger("twilio.http_client"), False, timeout)
        self.base_url = base_url.rstrip("/")
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []
        self._opened_lock = threading.Lock()

    def rewrite(self, url: str) -> str:
        if self.base_url and self.base_url.lower() != "https://api.twilio.com":
            return _TWILIO_PREFIX.sub(self.base_url, url, count=1)
        return url

    def close(self) -> None:
        """Close every kept-alive connection (worker threads end without closing theirs)."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()

    def _connection(self, scheme: str, netloc: str, timeout: float | None) -> http.client.HTTPConnection:
        pool: dict[tuple[str, str], http.client.HTTPConnection] = self._local.__dict__.setdefault("pool", {})
        conn = pool.get((scheme, netloc))
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(
                    netloc, timeout=timeout, context=ssl.create_default_context()
                )
            else:
                conn = http.client.HTTPConnection(netloc, timeout=timeout)
            pool[(scheme, netloc)] = conn
            with self._opened_lock:
                self._opened.append(conn)
        conn.timeout = timeout
        return conn

    def _drop(self, scheme: str, netloc: str) -> None:
        pool: dict[tuple[str, str], http.client.HTTPConnection] = self._local.__dict__.setdefault("pool", {})
        conn = pool.pop((scheme, netloc), None)
        if conn is not None:
            conn.close()
            with self._opened_lock:
                if conn in self._opened:
                    self._opened.remove(conn)

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
        path = parts.path or "/"
        query = urlencode(params, doseq=True) if params else ""
        if parts.query:
            query = parts.query + ("&" + query if query else "")
        if query:
            path += "?" + query
        send_headers = dict(headers or {})
        body: bytes | None = None
        if data and method.upper() in ("POST", "PUT"):
            if send_headers.get("Content-Type") == "application/json":
                body = json.dumps(data).encode()
            else:
                body = urlencode(data, doseq=True).encode()
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            send_headers["Authorization"] = "Basic " + token
        wait = timeout if timeout is not None else self.timeout
        for attempt in (1, 2):
            conn = self._connection(parts.scheme, parts.netloc, wait)
            reused = conn.sock is not None
            try:
                conn.request(method.upper(), path, body=body, headers=send_headers)
                answer = conn.getresponse()
                text = answer.read().decode("utf-8", "replace")
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop(parts.scheme, parts.netloc)
                # A kept-alive connection the server had already closed: the request never arrived; once more.
                if reused and attempt == 1:
                    continue
                raise
            except BaseException:
                self._drop(parts.scheme, parts.netloc)
                raise
            if answer.getheader("Connection", "").lower() == "close":
                self._drop(parts.scheme, parts.netloc)
            response_headers = dict(answer.getheaders())
            self._local.retry_after = parse_retry_after(answer.getheader("Retry-After"))
            return Response(answer.status, text, response_headers)
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
