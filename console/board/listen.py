"""PostgreSQL LISTEN for the board: a commit that sends NOTIFY wakes the change feed at once.

Engines send NOTIFY "watchkeeper_work" in the transaction that triggers, acknowledges, resolves, escalates or
reopens an incident (engine.escalation.notify_work), and PostgreSQL delivers it when that transaction commits.
A listener thread holds one autocommit connection with LISTEN on that channel and turns each notification
into the `notified` signal, which reaches the GUI thread queued; the feed then polls the event table straight
away instead of at its next tick. The poll stays the source of truth: a change that sends no NOTIFY (a note, a
delivery receipt) still shows at the next tick, and so does everything on SQLite, which has no LISTEN.
A lost connection is reopened after a short wait; until then the poll carries on alone.
"""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, Signal

from engine.context import AppContext

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "watchkeeper_work"  # the channel engine.escalation.notify_work sends on
WAIT_S = 0.25  # how long one wait for notifications lasts: bounds how long stop() waits for the thread
RECONNECT_S = 2.0


def can_listen(ctx: AppContext) -> bool:
    return ctx.db.dialect.name == "postgresql"


class ChangeListener(QObject):
    notified = Signal()  # emitted from the listener thread; connections to GUI objects are queued
    state_changed = Signal(bool)  # (listening)

    def __init__(self, ctx: AppContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._url = ctx.db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="watchkeeper-board-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=WAIT_S * 4)

    def _wake(self) -> bool:
        """Emit from the listener thread; False once the Qt side is gone (the window closed)."""
        try:
            self.notified.emit()
        except RuntimeError:
            return False
        return True

    def _set_listening(self, listening: bool) -> bool:
        self.listening = listening
        try:
            self.state_changed.emit(listening)
        except RuntimeError:
            return False
        return True

    def _run(self) -> None:
        import psycopg

        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    if not self._set_listening(True):
                        return
                    while not self._stopping.is_set():
                        # Several notifications in one wait (a burst of commits) make one wake-up.
                        for _note in conn.notifies(timeout=WAIT_S):
                            if not self._wake():
                                return
                            break  # wake at once; the rest of a burst is one more poll at most
            except Exception as exc:
                if self._stopping.is_set():
                    break
                log.warning("board LISTEN connection lost (%s); polling until it is back", exc)
                if not self._set_listening(False):
                    return
                self._stopping.wait(RECONNECT_S)
        self.listening = False
