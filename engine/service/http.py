"""A small WSGI toolkit for the service: request parsing with a body limit, JSON answers, a tiny router.

No web framework: the routes are few. The application is a plain WSGI callable, called in-process by the
tests and through engine.service.asgi (uvicorn) in production.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

MAX_BODY_BYTES = 512 * 1024

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


class HttpError(Exception):
    """Raised by handlers to answer with a status and a JSON (or given) body."""

    def __init__(
        self, status: int, message: str, *, body: Any = None, headers: list[tuple[str, str]] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body
        self.headers = headers or []


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
        return cls(
            status=status,
            body=json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
            headers=headers or [],
        )

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
        return cls(status=status, body=text.encode("utf-8"), content_type=content_type)


class Request:
    def __init__(self, environ: Environ, max_body: int = MAX_BODY_BYTES) -> None:
        self.environ = environ
        self.method: str = environ.get("REQUEST_METHOD", "GET").upper()
        self.path: str = environ.get("PATH_INFO", "") or "/"
        self.query_string: str = environ.get("QUERY_STRING", "")
        self.max_body = max_body
        self.params: dict[str, str] = {}
        self._body: bytes | None = None

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.query_string, keep_blank_values=True).items()}

    def header(self, name: str) -> str:
        key = "HTTP_" + name.upper().replace("-", "_")
        if name.lower() == "content-type":
            key = "CONTENT_TYPE"
        elif name.lower() == "content-length":
            key = "CONTENT_LENGTH"
        return str(self.environ.get(key, "") or "")

    @property
    def media_type(self) -> str:
        return self.header("Content-Type").split(";", 1)[0].strip().lower()

    def body(self) -> bytes:
        """The request body; 413 when it is larger than the limit (checked before reading when declared)."""
        if self._body is not None:
            return self._body
        declared = self.header("Content-Length")
        length: int | None = None
        if declared:
            try:
                length = int(declared)
            except ValueError:
                raise HttpError(400, "Content-Length is not a number") from None
            if length < 0:
                raise HttpError(400, "Content-Length is negative")
            if length > self.max_body:
                raise HttpError(413, f"request body too large (limit {self.max_body} bytes)")
        stream = self.environ.get("wsgi.input")
        if stream is None:
            self._body = b""
            return self._body
        if length is not None:
            data = stream.read(length) if length else b""
        else:
            data = stream.read(self.max_body + 1)
        if len(data) > self.max_body:
            raise HttpError(413, f"request body too large (limit {self.max_body} bytes)")
        self._body = bytes(data)
        return self._body

    def require_media_type(self, *accepted: str) -> None:
        if self.media_type not in accepted:
            raise HttpError(415, f"Content-Type must be {' or '.join(accepted)}")

    def json(self) -> Any:
        """The body as JSON that can be stored as it is, or 400 naming what is wrong: malformed JSON, NaN or
        Infinity (not JSON, and no database stores them), nesting deeper than MAX_JSON_DEPTH, an integer too
        long to read, a NUL character or a lone surrogate in any text (PostgreSQL refuses both, so such an
        event could never be applied)."""
        self.require_media_type("application/json")
        raw = self.body()
        try:
            value = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(400, f"malformed JSON: {exc}") from None
        except RecursionError:
            raise HttpError(400, f"JSON nested too deeply (limit {MAX_JSON_DEPTH} levels)") from None
        except ValueError as exc:  # an integer of thousands of digits, NaN, Infinity
            raise HttpError(400, f"JSON not accepted: {exc}") from None
        problem = storable_problem(value)
        if problem:
            raise HttpError(400, problem)
        return value

    def form(self) -> dict[str, str]:
        self.require_media_type("application/x-www-form-urlencoded")
        try:
            text = self.body().decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(400, "form body is not UTF-8") from None
        return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


# Deeper than this, a JSON body is refused: no event or request of ours nests so deep, and walking it costs.
MAX_JSON_DEPTH = 64


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def storable_problem(value: Any, where: str = "", depth: int = 0) -> str | None:
    """Why `value` (decoded JSON) cannot be stored as it is, naming where; None when it can."""
    if depth > MAX_JSON_DEPTH:
        return f"JSON nested too deeply (limit {MAX_JSON_DEPTH} levels)"
    if isinstance(value, str):
        return _text_problem(value, where or "the body")
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            found = _text_problem(str(key), f"a key in {where or 'the body'}") or storable_problem(
                item, path, depth + 1
            )
            if found:
                return found
    elif isinstance(value, list):
        for n, item in enumerate(value):
            found = storable_problem(item, f"{where}[{n}]", depth + 1)
            if found:
                return found
    return None


def _text_problem(text: str, where: str) -> str | None:
    if "\x00" in text:
        return f"'{where}' contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"'{where}' contains a lone surrogate (not valid Unicode text)"
    return None


Handler = Callable[[Request], Response]


class Router:
    """Routes like "/api/incidents/{id}"; a `{name}` matches one path segment."""

    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], str, dict[str, Handler]]] = []

    def add(self, method: str, pattern: str, handler: Handler, name: str | None = None) -> None:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        for existing, _, methods in self._routes:
            if existing.pattern == regex.pattern:
                methods[method.upper()] = handler
                return
        self._routes.append((regex, name or pattern, {method.upper(): handler}))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str], str]:
        for regex, name, methods in self._routes:
            m = regex.match(path)
            if m is None:
                continue
            handler = methods.get(method) or (methods.get("GET") if method == "HEAD" else None)
            if handler is None:
                allowed = ", ".join(sorted(methods))
                raise HttpError(405, f"method {method} not allowed here", headers=[("Allow", allowed)])
            return handler, m.groupdict(), name
        raise HttpError(404, f"no such endpoint: {path}")


class Counters:
    """Thread-safe counters for /metrics (requests by route and status, events by action and outcome)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def snapshot(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with self._lock:
            return dict(self._values)


def reason(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def finish(response: Response, start_response: StartResponse, method: str) -> Iterable[bytes]:
    headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body)))]
    headers.extend(response.headers)
    start_response(reason(response.status), headers)
    return [b""] if method == "HEAD" else [response.body]
