"""Wake-ups between processes that share one SQLite file: "work for the escalate pass", at once.

On PostgreSQL a commit that creates due work sends NOTIFY "watchkeeper_work" and every engine's listener
wakes the pass. SQLite has no such thing: an engine in another process — the console's engine process, a
`serve` node, an engine beside a `watchkeeper trigger` from the command line — saw the work only at its next
tick or due time. Here the engine of a SQLite file listens on a datagram socket named after the file (a
Linux abstract socket: no file to leave behind, gone with the process), and every other process on that
file sends it the pass's name after its commit. A send is one system call that never blocks and never
fails loudly: with nobody listening, or a full queue, the pass still runs at its tick.

One engine per file listens (the first to start); another engine on the same file runs on its ticks and
due times as before. Elsewhere than Linux, or for a database in memory, nothing is sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import sys
import threading
from collections.abc import Callable

from engine.checkpoint import database_path

log = logging.getLogger(__name__)

# A pass name is a short word; anything longer on the socket is not ours.
_MAX_MESSAGE = 64


def address(db_url: str) -> bytes | None:
    """The abstract socket address of a SQLite file's engine, or None (another database, not Linux)."""
    path = database_path(db_url) if sys.platform.startswith("linux") else None
    if path is None:
        return None
    return b"\0watchkeeper-wake-" + hashlib.sha256(path.encode()).hexdigest()[:32].encode()


class Sender:
    """`ctx.wake` for a process with no engine of its own: tells the file's engine, if one listens."""

    def __init__(self, addr: bytes) -> None:
        self.addr = addr
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def __call__(self, pass_name: str) -> None:
        with self._lock:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            with contextlib.suppress(OSError):  # nobody listening, or a full queue: the tick catches up
                self._sock.sendto(pass_name.encode()[:_MAX_MESSAGE], self.addr)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __del__(self) -> None:  # a context dropped, or its wake-up replaced by an engine's own
        with contextlib.suppress(Exception):
            self.close()


def sender_for(db_url: str) -> Callable[[str], None] | None:
    addr = address(db_url)
    return Sender(addr) if addr is not None else None


class Listener:
    """The engine's end: every pass name received is handed to `wake` (on a thread of its own)."""

    def __init__(self, addr: bytes, wake: Callable[[str], None]) -> None:
        self.addr = addr
        self.wake = wake
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(addr)  # OSError (address in use) when another engine on this file listens already
        self._sock.settimeout(0.5)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchkeeper-wake", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                data = self._sock.recv(_MAX_MESSAGE)
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                log.debug("wake-up socket error", exc_info=True)
                continue
            try:
                self.wake(data.decode("ascii", "replace"))
            except Exception:
                log.exception("wake-up of %r failed", data)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=2.0)
        self._sock.close()


def listen(db_url: str, wake: Callable[[str], None]) -> Listener | None:
    """Listen for wake-ups of a SQLite file's engine; None where there is none to have, or another engine
    listens already (this one then runs on its ticks and due times)."""
    addr = address(db_url)
    if addr is None:
        return None
    try:
        return Listener(addr, wake)
    except OSError:
        log.info("another engine on this database takes the wake-ups; this one runs on its ticks")
        return None
