"""Keeps a BoardModel in step with the database: first load, change feed, older pages, health.

Every query runs on the services' DbWorker; results come back on the GUI thread and go into the model as
targeted changes. The change feed asks for Event rows with an id above the last one seen about every 300 ms
(one request in flight at a time, so a slow database never piles up requests); the events name the incidents
that changed, and their fresh rows come back in the same worker job. On PostgreSQL a LISTEN (listen.py) also
wakes the feed the moment an engine's NOTIFY commits, so those changes show within a worker round trip; the
poll stays as the fallback for changes that send no NOTIFY and for SQLite.

The first load shows the top of the board first: one query names the working set with the facts the default
sort orders on, the rows that sort first (FIRST_PAGE of them) are fetched and shown at once — the window is
usable from then on — and the rest follow in batches, applied in time-sliced slices below them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from sqlalchemy.orm import Session

from console.board import format as fmt
from console.board.listen import ChangeListener, can_listen
from console.board.model import BoardModel
from console.services import ConsoleServices
from engine import board

log = logging.getLogger(__name__)

FEED_INTERVAL_MS = 300
HEALTH_INTERVAL_MS = 5_000
LOAD_BATCH = 2_000
FIRST_PAGE = 150  # rows fetched and shown before the rest of the working set: more than a screenful
PAGE_SIZE = 500
# Rows reach the model in slices, one slice or more per event-loop turn until a turn has used its budget, so
# a page of 500 older incidents or a burst of changes never holds the GUI thread for long.
SLICE_ROWS = 50
TURN_BUDGET_S = 0.008


class BoardFeed(QObject):
    first_rows = Signal()  # the top of the board is showing (the rest of the first load is on its way)
    loaded = Signal()  # the first load is complete
    page_loaded = Signal()  # a page of older incidents is in the model
    database_state = Signal(bool, str)  # (reachable, message)
    health = Signal(dict)

    def __init__(self, services: ConsoleServices, model: BoardModel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.model = model
        self.closed_within = timedelta(hours=24)
        self.last_event_id: int | None = None
        self.is_loaded = False
        self._polling = False
        self._poll_again = False  # a wake-up came while a poll was in flight: poll again when it returns
        self._db_ok = True
        self._timer = QTimer(self)
        self._timer.setInterval(FEED_INTERVAL_MS)
        self._timer.timeout.connect(self.poll)
        self._health_timer = QTimer(self)
        self._health_timer.setInterval(HEALTH_INTERVAL_MS)
        self._health_timer.timeout.connect(self.check_health)
        model.fetch_more_requested.connect(self._fetch_older)
        self.listener: ChangeListener | None = None
        if can_listen(services.ctx):
            self.listener = ChangeListener(services.ctx, self)
            self.listener.notified.connect(self.wake)
            services.at_shutdown(self.listener.stop)
        # Slices of rows (rows, from_feed) and follow-ups (callables) waiting for the GUI thread, in order.
        self._queue: deque[tuple[list[dict[str, Any]], bool] | Callable[[], None]] = deque()
        self._drain_scheduled = False
        self._draining = False
        self._load_order = model.order_for_rows()
        # Bumped by stop(): a load still on its way when the board is reloaded belongs to the old board.
        self._generation = 0

    # -- first load -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the top of the board, then the rest of the working set in batches (the GUI inserts each as it
        arrives), then follow the feed."""
        now = self.services.ctx.clock.now()
        filters = board.BoardFilter(closed_within=self.closed_within)
        top_order = self.model.order_for_facts()
        self._load_order = self.model.order_for_rows()

        def first(session: Session) -> tuple[int, list[int], list[dict[str, Any]], bool]:
            # The event id is read first, so nothing committed during the load is missed (rows seen twice
            # are simply updated).
            last = board.latest_event_id(session)
            facts = board.working_set(session, filters, now)
            ids = [int(f["id"]) for f in facts]
            more = bool(board.closed_ids_before(session, min(ids) if ids else None, limit=1))
            if top_order is not None and len(facts) > FIRST_PAGE:
                key, descending = top_order
                facts.sort(key=key, reverse=descending)
                ids = [int(f["id"]) for f in facts]
            return last, ids, _board_rows(session, ids[:FIRST_PAGE]), more

        generation = self._generation
        self.services.worker.submit(
            first,
            lambda result: self._on_first(result) if generation == self._generation else None,
            self._on_error,
            what="loading the board",
        )

    def _on_first(self, result: tuple[int, list[int], list[dict[str, Any]], bool]) -> None:
        last, ids, rows, more = result
        generation = self._generation  # before first_rows: a slot of it may reload the board
        self.last_event_id = last
        self.model.more_available = more
        self._apply(rows, from_feed=False)
        self.first_rows.emit()
        # The rest is asked for once the top has been painted (the paint is already posted, the timer runs
        # after it): the worker building rows in Python while the GUI thread paints would make each wait for
        # the other's interpreter lock and double the time the first paint takes.
        QTimer.singleShot(0, self, lambda: self._load_rest(ids[FIRST_PAGE:], generation))

    def _load_rest(self, rest: list[int], generation: int) -> None:
        if generation != self._generation:
            return

        def current(apply: Callable[[Any], None]) -> Callable[[Any], None]:
            return lambda result: apply(result) if generation == self._generation else None

        key, descending = self._load_order
        for start in range(0, len(rest), LOAD_BATCH):
            batch = rest[start : start + LOAD_BATCH]

            def job(session: Session, batch: list[int] = batch) -> list[dict[str, Any]]:
                # In the board's order, so each slice goes in as one run of rows, not one per row.
                return sorted(_board_rows(session, batch), key=key, reverse=descending)

            self.services.worker.submit(
                job,
                current(lambda r: self._apply(r, from_feed=False, ordered=True)),
                self._on_error,
                what="loading the board",
            )
        # Runs after the batches on the serial worker, and after their slices reached the model.
        self.services.worker.submit(
            lambda _s: None, current(lambda _r: self._after(self._finish_load)), self._on_error
        )

    def _finish_load(self) -> None:
        self.is_loaded = True
        self._timer.start()
        self._health_timer.start()
        if self.listener is not None:
            self.listener.start()
        self.loaded.emit()
        self.check_health()

    def _apply(self, rows: list[dict[str, Any]], *, from_feed: bool, ordered: bool = False) -> None:
        if not ordered:  # order by id so a batch of new incidents lands in a stable order
            rows.sort(key=lambda r: r["id"], reverse=True)
        if not self._queue and self.model.total_count() == 0:
            # An empty board (first load, reload): the rows go in as one block and one repaint; slicing pays
            # for a repaint per slice and made the first load several times slower.
            self.model.apply_rows(rows, from_feed=from_feed)
            return
        for start in range(0, len(rows), SLICE_ROWS):
            self._queue.append((rows[start : start + SLICE_ROWS], from_feed))
        self._kick()

    def _after(self, follow_up: Callable[[], None]) -> None:
        """Run `follow_up` once every slice queued before it has reached the model."""
        self._queue.append(follow_up)
        self._kick()

    def _kick(self) -> None:
        """A single item (a small change, a follow-up) is applied at once, so a commit shows without waiting
        a turn; more waits for the drain's own turns. Slices never run inside a worker's delivery, which
        may share its turn with a paint and the previous drain."""
        if len(self._queue) == 1:
            self._drain()
        elif self._queue and not self._drain_scheduled:
            self._drain_scheduled = True
            QTimer.singleShot(0, self, self._drain)

    @property
    def pending_slices(self) -> int:
        return len(self._queue)

    def _drain(self) -> None:
        """Apply queued slices until this turn's budget is used, then yield to the event loop (paints, input)
        and carry on in the next turn."""
        if self._draining:  # a follow-up queued more work: the loop below picks it up in order
            return
        self._drain_scheduled = False
        self._draining = True
        try:
            deadline = time.perf_counter() + TURN_BUDGET_S
            while self._queue:
                item = self._queue.popleft()
                if callable(item):
                    item()
                else:
                    self.model.apply_rows(item[0], from_feed=item[1])
                if time.perf_counter() >= deadline:
                    break
        finally:
            self._draining = False
            # Also after an exception in one item: the rest of the queue must still reach the model.
            if self._queue and not self._drain_scheduled:
                self._drain_scheduled = True
                QTimer.singleShot(0, self, self._drain)

    # -- change feed ----------------------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        """Whether a PostgreSQL LISTEN connection is up (commits that NOTIFY show without waiting a tick)."""
        return self.listener is not None and self.listener.listening

    def wake(self) -> None:
        """A NOTIFY arrived: poll now, or right after the poll in flight (which may have read too early)."""
        if not self._timer.isActive():  # loading, or stopped
            return
        if self._polling:
            self._poll_again = True
            return
        self.poll()

    def poll(self) -> None:
        """Ask for changes since the last event seen; one request in flight at a time."""
        if self._polling or self.last_event_id is None:
            return
        self._poll_again = False
        self._polling = True
        since = self.last_event_id

        def job(session: Session) -> tuple[int, list[int], list[dict[str, Any]]]:
            last, ids = board.changes_since(session, since)
            return last, ids, _board_rows(session, ids) if ids else []

        self.services.worker.submit(job, self._on_changes, self._on_poll_error, what="following changes")

    def _on_changes(self, result: tuple[int, list[int], list[dict[str, Any]]]) -> None:
        self._polling = False
        self._set_db_state(True, "")
        last, ids, rows = result
        self.last_event_id = last
        if self._poll_again:
            self.poll()
        if rows:
            self._apply(rows, from_feed=True)
        if not ids:
            return
        found = {r["id"] for r in rows}

        def settle() -> None:
            gone = [i for i in ids if i not in found and self.model.has(i)]
            if gone:
                self.model.remove_ids(gone)
            self.services.incidents_changed.emit(ids)

        self._after(settle)

    def _on_poll_error(self, exc: Exception) -> None:
        self._polling = False
        self._poll_again = False
        self._set_db_state(False, f"Database unreachable: {_short(exc)}")

    def _on_error(self, exc: Exception) -> None:
        self._set_db_state(False, f"Database unreachable: {_short(exc)}")
        log.warning("board load failed: %s", exc)

    def _set_db_state(self, ok: bool, message: str) -> None:
        if ok != self._db_ok:
            self._db_ok = ok
            self.database_state.emit(ok, message)

    def refresh_ids(self, ids: list[int]) -> None:
        """Fetch fresh rows for these incidents now (after an action), without waiting for the feed."""
        if not ids:
            return
        self.services.worker.submit(
            lambda s: _board_rows(s, ids), lambda r: self._apply(r, from_feed=True), self._on_error
        )

    # -- older closed incidents -----------------------------------------------------------------------------

    def _fetch_older(self) -> None:
        before = self.model.min_closed_id()

        def job(session: Session) -> tuple[list[dict[str, Any]], bool]:
            ids = board.closed_ids_before(session, before, limit=PAGE_SIZE + 1)
            more = len(ids) > PAGE_SIZE
            return _board_rows(session, ids[:PAGE_SIZE]), more

        def done(result: tuple[list[dict[str, Any]], bool]) -> None:
            rows, more = result
            self._apply(rows, from_feed=False)

            def finished() -> None:  # only once the page is in: min_closed_id must see all of it
                self.model.fetching = False
                self.model.more_available = more
                self.page_loaded.emit()

            self._after(finished)

        def failed(exc: Exception) -> None:
            self.model.fetching = False
            self._on_error(exc)

        self.services.worker.submit(job, done, failed, what="loading older incidents")

    # -- health ---------------------------------------------------------------------------------------------

    def check_health(self) -> None:
        ctx = self.services.ctx
        now = ctx.clock.now()

        def job(s: Any) -> dict[str, Any]:
            from engine.service.queue import set_aside

            return {**board.board_health(s, now, ctx.settings), "intake_set_aside": set_aside(ctx, 0)[0]}

        self.services.worker.submit(
            job,
            self.health.emit,
            self._on_poll_error,
            what="checking engine health",
        )

    def close(self) -> None:
        """Stop for good (the window closes): the timers, and the LISTEN connection."""
        self.stop()
        if self.listener is not None:
            self.listener.stop()

    def stop(self) -> None:
        """Stop following (a reload follows); the LISTEN connection stays up, its wake-ups are ignored."""
        self._generation += 1
        self._timer.stop()
        self._health_timer.stop()
        if self._queue:  # a reload: what was queued belongs to the old board (a page's follow-up included)
            self._queue.clear()
            self.model.fetching = False


def _board_rows(session: Session, ids: list[int]) -> list[dict[str, Any]]:
    """board.board_rows, plus each row's search text, built here on the worker rather than on the GUI thread
    when the row reaches the model."""
    rows = board.board_rows(session, ids)
    for row in rows:
        row["search_text"] = fmt.search_blob(row)
    return rows


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
