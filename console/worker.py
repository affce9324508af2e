"""One serial worker for database work, so the GUI thread never waits on a query.

Jobs run one after another on a single background thread (like Anki's task manager): a job gets a fresh
Session and returns plain data; the result hops back to the GUI thread by a queued signal, where `on_done`
runs. Jobs never touch widgets. An exception reaches `on_error` (or the `failed` signal, which the main window
turns into a message the operator can act on) — never a traceback on stderr.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Signal, Slot
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
T = TypeVar("T")


class DbWorker(QObject):
    failed = Signal(str, object)  # (what was being done, the exception)
    _finished = Signal(int, object)

    def __init__(self, sessions: sessionmaker[Session], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._sessions = sessions
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watchkeeper-db")
        self._finished.connect(self._deliver)
        # Jobs and their callbacks stay here, owned by the GUI thread, until delivery. The worker thread only
        # ever holds a job number: a job or callback that is the last reference to a widget must be released
        # on the GUI thread, or Qt frees the widget on the wrong thread and crashes.
        self._jobs: dict[int, tuple[Callable[..., Any], Any, Any, str, bool]] = {}
        self._numbers = itertools.count(1)
        self._closed = False
        self.last_job_ms = 0.0

    @property
    def pending(self) -> int:
        return len(self._jobs)

    def submit(
        self,
        job: Callable[[Session], T],
        on_done: Callable[[T], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        what: str = "database work",
    ) -> Future[T]:
        """Run `job(session)` off the GUI thread; the session is committed when the job returns."""
        return self._start(job, on_done, on_error, what, with_session=True)

    def call(
        self,
        fn: Callable[[], T],
        on_done: Callable[[T], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        what: str = "engine call",
    ) -> Future[T]:
        """Run a callable that opens its own transactions (an engine.api call) on the same serial thread."""
        return self._start(fn, on_done, on_error, what, with_session=False)

    def _start(
        self, fn: Callable[..., Any], on_done: Any, on_error: Any, what: str, with_session: bool
    ) -> Future[Any]:
        if self._closed:
            return _cancelled()
        number = next(self._numbers)
        self._jobs[number] = (fn, on_done, on_error, what, with_session)
        future = self._pool.submit(self._run, number)
        future.add_done_callback(functools.partial(self._emit_finished, number))
        return future

    def _run(self, number: int) -> Any:
        """On the worker thread. Holds the job only in locals, all gone before the future completes."""
        fn, _done, _error, what, with_session = self._jobs[number]
        del _done, _error
        started = time.perf_counter()
        try:
            if not with_session:
                return fn()
            with self._sessions() as session:
                try:
                    result = fn(session)
                    session.commit()
                    return result
                except BaseException:
                    session.rollback()
                    raise
        except Exception as exc:
            log.debug("%s failed", what, exc_info=True)
            # The traceback's frames hold the job (and through it, widgets) alive: drop them here.
            raise exc.with_traceback(None) from None
        finally:
            del fn
            self.last_job_ms = (time.perf_counter() - started) * 1000

    def _emit_finished(self, number: int, future: Future[Any]) -> None:
        self._finished.emit(number, future)

    @Slot(int, object)
    def _deliver(self, number: int, future: Future[Any]) -> None:
        entry = self._jobs.pop(number, None)
        if entry is None or future.cancelled():
            return  # cancelled at shutdown
        _fn, on_done, on_error, what, _ = entry
        exc = future.exception()
        if exc is not None:
            if on_error is not None:
                on_error(exc)
            else:
                log.warning("%s failed: %s", what, exc)
                self.failed.emit(what, exc)
            return
        if on_done is not None:
            on_done(future.result())

    @property
    def closed(self) -> bool:
        return self._closed

    def shutdown(self) -> None:
        # Timers of windows still open may ask for work after this; they get a cancelled future, not an error.
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._jobs.clear()


def _cancelled() -> Future[Any]:
    future: Future[Any] = Future()
    future.cancel()
    return future
