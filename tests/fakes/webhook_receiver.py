"""A webhook receiver on loopback that checks Watchkeeper's HMAC signature like a careful integrator would."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.burst_server import BurstServer


@dataclass
class WebhookReceiver:
    key: str
    received: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (status, headers) for next calls
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/watchkeeper"

    def verify(self, timestamp: str, body: bytes, header: str) -> bool:
        expected = (
            "v1=" + hmac.new(self.key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        )
        return any(hmac.compare_digest(expected, part.strip()) for part in header.split(","))

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = (
                True  # headers and body go in separate writes: no 40 ms delayed-ACK stall
            )

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver.lock:
                    scripted = receiver.script.pop(0) if receiver.script else None
                if scripted is not None:
                    return self._answer(scripted[0], scripted[1])
                ts = self.headers.get("X-Watchkeeper-Timestamp") or ""
                sig = self.headers.get("X-Watchkeeper-Signature") or ""
                if not receiver.verify(ts, body, sig):
                    with receiver.lock:
                        receiver.refused += 1
                    return self._answer(401, {})
                with receiver.lock:
                    receiver.received.append({"timestamp": ts, "signature": sig, "json": json.loads(body)})
                return self._answer(202, {"X-Request-Id": f"req-{len(receiver.received)}"})

            def _answer(self, status: int, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = BurstServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
