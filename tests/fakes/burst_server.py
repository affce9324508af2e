"""A threading HTTP server for the fakes that takes a burst of connections without resetting any."""

from __future__ import annotations

from http.server import ThreadingHTTPServer


class BurstServer(ThreadingHTTPServer):
    # listen() runs inside the constructor, so the backlog must be a class attribute: the default of 5
    # resets connections when a dispatch pass sends a burst at once.
    request_queue_size = 256
    daemon_threads = True
