"""History: closed incidents and the event log, searched on the database worker, one page at a time."""

from console.history.widget import HistoryWidget

__all__ = ["HistoryWidget"]
