"""Statistics for supervisors: figures, charts and tables for a period and filter; CSV and PDF export."""

from console.stats.widget import StatsWidget

__all__ = ["StatsWidget"]
