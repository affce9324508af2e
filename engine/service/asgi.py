"""The service's HTTP server: uvicorn (httptools parser, uvloop where available) in front of ServiceApp.

Why not a threaded WSGI server: an Events API request spends most of its life waiting for the intake writer's
group commit. Under waitress each request took a thread from the pool, which then slept on that commit; the
hand-offs between the server loop, the request thread and the writer cost more CPU than checking the event
did (0.6 ms of CPU per event). Here the event loop checks the event itself, hands the row to the writer and
answers when the writer calls back: no thread per request. Measured side by side on 2 cores beside the engine
(bench/bench_intake.py): at 1,100 events/s 0.42 ms of front-end CPU per event against 0.59 ms, the CPU left
going to the engine; at 1,250 events/s p99 46 ms against 105-238 ms.

Every other route (REST API, Twilio webhooks, /healthz, /metrics, a routing key not yet in the cache) runs the
same WSGI-style handler on a small thread pool, since it may wait for the database. Requests are turned into
the WSGI environ ServiceApp has always read; X-Forwarded-* headers are dropped (no proxy is trusted), as
before.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine.service.app import ServiceApp, StagedEvent, WouldBlock
from engine.service.http import Environ, Request, Response
from engine.service.queue import SUBMIT_TIMEOUT_SECONDS, IntakeRefused, IntakeUnavailable

log = logging.getLogger("watchkeeper.service.http")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HANDLER_THREADS = 16  # REST, webhooks, health: each may wait for the database
KEEP_ALIVE_SECONDS = 30
# A body declared too large is read and dropped up to this many times the limit before the 413 (see below).
DRAIN_FACTOR = 8
_UNTRUSTED = {
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-proto",
    b"x-forwarded-port",
    b"forwarded",
}


class AsgiFront:
    """ASGI callable around a ServiceApp."""

    def __init__(self, app: ServiceApp, threads: int = HANDLER_THREADS) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="watchkeeper-http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        environ = await self._environ(scope, receive)
        request = Request(environ, self.app.max_body)
        loop = asyncio.get_running_loop()
        answer: Response | StagedEvent
        if request.method == "POST" and request.path == "/v2/enqueue" and self.app.intake is not None:
            try:
                answer = self.app.respond(request, stage=True, inline=True)
            except WouldBlock:
                answer = await loop.run_in_executor(self.pool, lambda: self.app.respond(request, stage=True))
            if isinstance(answer, StagedEvent):
                answer = await self._queue(answer, loop)
        else:
            answer = await loop.run_in_executor(self.pool, self.app.respond, request)
        assert isinstance(answer, Response)
        await _send(send, answer, request.method)

    async def _queue(self, staged: StagedEvent, loop: asyncio.AbstractEventLoop) -> Response:
        done: asyncio.Future[BaseException | None] = loop.create_future()

        def committed(error: BaseException | None) -> None:  # the writer's thread
            loop.call_soon_threadsafe(_resolve, done, error)

        assert self.app.intake is not None
        self.app.intake.submit_nowait(staged.row, committed)
        # A timer rather than asyncio.wait_for, which costs two tasks per request.
        timer = loop.call_later(
            SUBMIT_TIMEOUT_SECONDS,
            _resolve,
            done,
            IntakeUnavailable("the database did not take the event in time"),
        )
        error = await done
        timer.cancel()
        if error is not None and not isinstance(error, IntakeUnavailable | IntakeRefused):
            error = IntakeUnavailable(type(error).__name__)
        return self.app.settle(staged, error)

    async def _environ(self, scope: Scope, receive: Receive) -> Environ:
        headers: dict[str, str] = {}
        declared: int | None = None
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.lower()
            if name in _UNTRUSTED:
                continue
            value = raw_value.decode("latin-1")
            if name == b"content-length":
                headers["CONTENT_LENGTH"] = value
                declared = int(value) if value.strip().isdigit() else None
            elif name == b"content-type":
                headers["CONTENT_TYPE"] = value
            else:
                key = "HTTP_" + raw_name.decode("latin-1").upper().replace("-", "_")
                headers[key] = f"{headers[key]},{value}" if key in headers else value
        # Read at most one byte past the limit, which is enough for the app to refuse a body too large. One
        # declared larger answers 413 from the header alone, but up to DRAIN_FACTOR times the limit it is
        # still read to its end (and dropped) first: a client that sends its whole body before it reads the
        # answer, as most do, would otherwise meet a connection reset instead of the 413 that says why.
        # A body declared larger still is not read.
        limit = self.app.max_body + 1
        drain = declared is not None and self.app.max_body < declared <= self.app.max_body * DRAIN_FACTOR
        body = b""
        if declared is None or declared <= self.app.max_body or drain:
            more = True
            while more and (drain or len(body) < limit):
                message = await receive()
                if len(body) < limit:
                    body += message.get("body", b"")
                more = message.get("more_body", False)
        server = scope.get("server") or ("127.0.0.1", 0)
        client = scope.get("client") or ("", 0)
        path = scope.get("path", "/")
        environ: Environ = {
            "REQUEST_METHOD": scope["method"],
            "SCRIPT_NAME": "",
            "PATH_INFO": path.encode("utf-8").decode("latin-1"),
            "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
            "SERVER_NAME": str(server[0]),
            "SERVER_PORT": str(server[1]),
            "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
            "REMOTE_ADDR": str(client[0]),
            "REMOTE_PORT": str(client[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": scope.get("scheme", "http"),
            "wsgi.input": io.BytesIO(body[:limit]),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        environ.update(headers)
        return environ


def _resolve(done: asyncio.Future[BaseException | None], error: BaseException | None) -> None:
    if not done.done():
        done.set_result(error)


async def _send(send: Send, response: Response, method: str) -> None:
    # Names in their usual capitals, as the WSGI server wrote them (clients should not care; some do).
    headers = [
        (b"Content-Type", response.content_type.encode("latin-1")),
        (b"Content-Length", str(len(response.body)).encode("latin-1")),
    ]
    headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else response.body})


class HttpServer:
    """uvicorn on a socket bound now (so port 0 has its real port); `run()` in a thread, `close()` from
    another: stop accepting, let the requests in hand finish, end."""

    def __init__(self, app: ServiceApp, host: str, port: int) -> None:
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host, port))
            self.socket.listen(2048)
        except OSError:
            self.socket.close()
            raise
        self.front = AsgiFront(app)
        config = uvicorn.Config(
            self.front,
            loop=_loop(),
            http="httptools",
            lifespan="off",
            log_config=None,  # the service's own logging; uvicorn's loggers propagate to it
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=10,
        )
        self.server = uvicorn.Server(config)
        self.started = False
        self.stopped = threading.Event()

    def address(self) -> tuple[str, int]:
        addr = self.socket.getsockname()
        return str(addr[0]), int(addr[1])

    def run(self) -> None:
        self.started = True
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.stopped.set()

    def close(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self.started and not self.stopped.wait(timeout + 2.0):
            self.server.force_exit = True
            self.stopped.wait(2.0)
        self.front.pool.shutdown(wait=False, cancel_futures=True)
        self.socket.close()


def _loop() -> str:
    try:
        import uvloop  # noqa: F401  # C event loop where it is installed (not on Windows)
    except ImportError:
        return "asyncio"
    return "uvloop"
