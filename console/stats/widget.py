"""Statistics for a period and filter: headline figures, charts, the trend over time and tables, with CSV and
PDF export. The tab computes the last 30 days as soon as it opens.

The figures are engine.api.stats (MTTA, MTTR, acknowledgement rate, SLA compliance, pages per person,
channel success and cost) plus engine.history.breaches_by (breaches per category and per site) and
engine.stats.trend (the figures per day or week, and against the period before), computed on the database
worker. The widget only arranges them: tiles for the headline numbers, QtCharts bar charts, and
model/view tables that the CSV export writes out as shown. The PDF report is a QTextDocument (figures,
the charts as pictures, the tables) printed to a QPdfWriter.
"""

from __future__ import annotations

import csv
import html
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from PySide6.QtCharts import (
    QBarCategoryAxis,
    QBarSeries,
    QBarSet,
    QChart,
    QChartView,
    QHorizontalBarSeries,
    QStackedBarSeries,
    QValueAxis,
)
from PySide6.QtCore import QDate, QMarginsF, QSortFilterProxyModel, Qt, QUrl, Signal
from PySide6.QtGui import QColor, QPageLayout, QPageSize, QPainter, QPdfWriter, QTextDocument
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateEdit,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from console.history.records import SORT_ROLE, Column, RecordTableModel, replies
from console.services import ConsoleServices
from engine import api, history
from engine import stats as engine_stats
from engine.history import BreachRow
from engine.models import Severity

Row = dict[str, Any]


def fmt_seconds(value: float | None) -> str:
    """A duration as an operator reads it: 45 s, 12 min, 3.5 h, 2.1 d."""
    if value is None:
        return "—"
    if value < 90:
        return f"{value:.0f} s"
    if value < 90 * 60:
        return f"{value / 60:.0f} min"
    if value < 48 * 3600:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def fmt_rate(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def fmt_percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def fmt_cost(cost: dict[str, str], unpriced: int = 0) -> str:
    """The reported cost per currency, and how many billed messages the provider has not priced (yet)."""
    text = ", ".join(f"{amount} {currency}" for currency, amount in sorted(cost.items())) or "—"
    if unpriced:
        text += f" (+{unpriced} not priced)"
    return text


@dataclass
class StatsResult:
    stats: dict[str, Any]
    by_category: list[BreachRow] = field(default_factory=list)
    by_site: list[BreachRow] = field(default_factory=list)
    trend: dict[str, Any] = field(default_factory=dict)


BUCKETS = [("By day or week", "auto"), ("By day", "day"), ("By week", "week")]


def period_label(period: Row, bucket: str) -> str:
    """ "Mon 02 Mar" for a day, "02 Mar – 08 Mar" for a week (its last day), in local time."""
    start = datetime.fromisoformat(period["start"]).astimezone()
    if bucket == "day":
        return start.strftime("%a %d %b")
    last = datetime.fromisoformat(period["end"]).astimezone() - timedelta(seconds=1)
    return f"{start:%d %b} – {last:%d %b}"


def _change(now: float | None, before: float | None, show: Any) -> str:
    if now is None or before is None:
        return "—"
    difference = now - before
    return ("+" if difference > 0 else "−" if difference < 0 else "±") + show(abs(difference))


# (label, key in a trend summary, how a value reads, how a change reads)
COMPARED: list[tuple[str, str, Any, Any]] = [
    ("Incidents", "incidents", str, lambda d: f"{d:.0f}"),
    ("MTTA (median)", "mtta_median", fmt_seconds, fmt_seconds),
    ("MTTR (median)", "mttr_median", fmt_seconds, fmt_seconds),
    ("SLA compliance", "sla_compliance_percent", fmt_percent, lambda d: f"{d:.1f} points"),
    ("SLA breaches", "sla_breaches", str, lambda d: f"{d:.0f}"),
]
COMPARISON_COLUMNS: list[Column[Row]] = [
    Column("Figure", lambda r: r["label"]),
    Column("This period", lambda r: r["now"], numeric=True),
    Column("Previous period", lambda r: r["before"], numeric=True),
    Column("Change", lambda r: r["change"], numeric=True),
]
TREND_COLUMNS: list[Column[Row]] = [
    Column("Period", lambda r: r["label"]),
    Column("Incidents", lambda r: r["incidents"], numeric=True),
    Column("MTTA (median)", lambda r: fmt_seconds(r["mtta_median"]), numeric=True),
    Column("MTTR (median)", lambda r: fmt_seconds(r["mttr_median"]), numeric=True),
    Column("SLA compliance", lambda r: fmt_percent(r["sla_compliance_percent"]), numeric=True),
    Column("SLA breaches", lambda r: r["sla_breaches"], numeric=True),
]


def comparison_rows(trend: dict[str, Any]) -> list[Row]:
    """This period against the one of the same length just before it, figure by figure."""
    now, before = trend.get("current") or {}, trend.get("previous") or {}
    return [
        {
            "label": label,
            "now": show(now.get(key)) if now.get(key) is not None else "—",
            "before": show(before.get(key)) if before.get(key) is not None else "—",
            "change": _change(now.get(key), before.get(key), change),
        }
        for label, key, show, change in COMPARED
    ]


PEOPLE_COLUMNS: list[Column[Row]] = [
    Column("Person", lambda r: r.get("name") or r.get("handle")),
    Column("Handle", lambda r: r.get("handle")),
    Column("Pages", lambda r: r.get("pages", 0), numeric=True),
    Column("Confirmed", lambda r: r.get("confirmed", 0), numeric=True),
    Column("Exhausted", lambda r: r.get("exhausted", 0), numeric=True),
]
CHANNEL_COLUMNS: list[Column[Row]] = [
    Column("Channel", lambda r: r.get("channel")),
    Column("Messages", lambda r: r.get("messages", 0), numeric=True),
    Column("Sent", lambda r: r.get("sent", 0), numeric=True),
    Column("Failed", lambda r: r.get("failed", 0), numeric=True),
    Column("Success", lambda r: fmt_rate(r.get("success_rate")), numeric=True),
    Column("Cost", lambda r: fmt_cost(r.get("cost") or {}, int(r.get("unpriced") or 0)), numeric=True),
]


def breach_columns(title: str) -> list[Column[BreachRow]]:
    return [
        Column(title, lambda r: r.group or "(none)"),
        Column("Incidents", lambda r: r.incidents, numeric=True),
        Column("SLA-monitored", lambda r: r.monitored, numeric=True),
        Column("Response breaches", lambda r: r.response_breaches, numeric=True),
        Column("Resolution breaches", lambda r: r.resolution_breaches, numeric=True),
        Column("Breaches", lambda r: r.breaches, numeric=True),
    ]


class Tile(QFrame):
    """One headline figure: a caption, the number, and a line of detail."""

    def __init__(self, caption: str) -> None:
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName("statTile")
        self.caption = QLabel(caption)
        self.caption.setStyleSheet("color: palette(dark); font-size: 11px;")
        self.value = QLabel("—")
        self.value.setStyleSheet("font-size: 22px; font-weight: 600;")
        self.detail = QLabel("")
        self.detail.setStyleSheet("color: palette(dark); font-size: 11px;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(self.caption)
        layout.addWidget(self.value)
        layout.addWidget(self.detail)

    def set(self, value: str, detail: str = "") -> None:
        self.value.setText(value)
        self.detail.setText(detail)


def _table(model: RecordTableModel[Any]) -> QTableView:
    proxy = QSortFilterProxyModel(model)
    proxy.setSourceModel(model)
    proxy.setSortRole(SORT_ROLE)
    view = QTableView()
    view.setModel(proxy)
    view.setSortingEnabled(True)
    view.horizontalHeader().setSortIndicator(
        -1, Qt.SortOrder.AscendingOrder
    )  # the engine's order until clicked
    proxy.sort(-1)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setAlternatingRowColors(True)
    view.verticalHeader().setVisible(False)
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    view.horizontalHeader().setStretchLastSection(False)
    return view


def _chart(title: str) -> QChartView:
    chart = QChart()
    chart.setTitle(title)
    chart.setAnimationOptions(QChart.AnimationOption.NoAnimation)
    chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
    chart.setMargins(QMarginsF(4, 4, 4, 4).toMargins())
    view = QChartView(chart)
    view.setRenderHint(QPainter.RenderHint.Antialiasing)
    view.setMinimumSize(320, 220)
    return view


def _reset(view: QChartView) -> QChart:
    """A fresh chart for new figures: reusing one keeps the old axis label widths, and labels get elided."""
    old = view.chart()
    chart = QChart()
    chart.setTitle(old.title())
    chart.setAnimationOptions(QChart.AnimationOption.NoAnimation)
    chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
    chart.setMargins(QMarginsF(4, 4, 4, 4).toMargins())
    view.setChart(chart)
    old.deleteLater()
    return chart


def _nice_step(top: float) -> int:
    step, factors = 1, (2, 2.5, 2)
    i = 0
    while top / step > 6:
        step = int(step * factors[i % 3])
        i += 1
    return step


def _bars(
    view: QChartView,
    categories: list[str],
    sets: list[tuple[str, list[float], str]],
    *,
    stacked: bool = False,
    horizontal: bool = False,
    maximum: float | None = None,
    value_title: str = "",
) -> None:
    chart = _reset(view)
    series: QBarSeries | QStackedBarSeries | QHorizontalBarSeries
    if horizontal:
        series = QHorizontalBarSeries()
    elif stacked:
        series = QStackedBarSeries()
    else:
        series = QBarSeries()
    for label, values, colour in sets:
        bar = QBarSet(label)
        bar.setColor(QColor(colour))
        bar.append([float(v) for v in values])
        series.append(bar)
    chart.addSeries(series)
    labels = QBarCategoryAxis()
    labels.append(categories or ["(no data)"])
    values_axis = QValueAxis()
    if maximum is not None:
        values_axis.setRange(0, maximum)
        values_axis.setTickCount(5)
    else:
        columns = list(zip(*[values for _l, values, _c in sets], strict=False))
        top = max((sum(col) if stacked else max(col) for col in columns), default=0)
        step = _nice_step(top)
        values_axis.setRange(0, max(1, math.ceil(top * 1.05 / step)) * step)
        # Whole-number ticks at a round step (counts of breaches or pages have no fractions), at most ~6.
        values_axis.setTickType(QValueAxis.TickType.TicksDynamic)
        values_axis.setTickAnchor(0)
        values_axis.setTickInterval(step)
    values_axis.setLabelFormat("%.0f")
    if value_title:
        values_axis.setTitleText(value_title)
    if horizontal:
        chart.addAxis(labels, Qt.AlignmentFlag.AlignLeft)
        chart.addAxis(values_axis, Qt.AlignmentFlag.AlignBottom)
    else:
        chart.addAxis(labels, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(values_axis, Qt.AlignmentFlag.AlignLeft)
    series.attachAxis(labels)
    series.attachAxis(values_axis)
    chart.legend().setVisible(len(sets) > 1)


def _day_start(day: QDate) -> datetime:
    local = datetime.combine(date(day.year(), day.month(), day.day()), time()).astimezone()
    return local.astimezone(UTC)


class StatsWidget(QWidget):
    refreshed = Signal()
    exported = Signal(str)
    failed = Signal(str)

    def __init__(self, services: ConsoleServices, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.result: StatsResult | None = None
        self._request = 0

        today = services.ctx.clock.now().astimezone().date()
        self.date_from = QDateEdit(QDate(today - timedelta(days=30)))
        self.date_to = QDateEdit(QDate(today))
        for edit in (self.date_from, self.date_to):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
        self.policy = QComboBox()
        self.team = QComboBox()
        for box, label in ((self.policy, "All policies"), (self.team, "All teams")):
            box.addItem(label, "")
            box.setMinimumContentsLength(12)
        self.site = QLineEdit()
        self.site.setPlaceholderText("Site")
        self.category = QLineEdit()
        self.category.setPlaceholderText("Category")
        self.severity = QComboBox()
        self.severity.addItem("All severities", "")
        for s in Severity:
            self.severity.addItem(s.value, s.value)
        self.bucket = QComboBox()
        self.bucket.setObjectName("trendBucket")
        self.bucket.setToolTip(
            "The trend per day or per week (by day or week: days up to a month, weeks beyond)"
        )
        for label, value in BUCKETS:
            self.bucket.addItem(label, value)
        self.show_button = QPushButton("&Show")
        self.show_button.setDefault(True)
        self.csv_button = QPushButton("Export CSV…")
        self.pdf_button = QPushButton("PDF report…")
        bar = QHBoxLayout()
        for w in (
            QLabel("From"),
            self.date_from,
            QLabel("to"),
            self.date_to,
            self.policy,
            self.team,
            self.site,
            self.category,
            self.severity,
            self.bucket,
            self.show_button,
        ):
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(self.csv_button)
        bar.addWidget(self.pdf_button)

        self.tiles = {
            "incidents": Tile("Incidents"),
            "mtta": Tile("MTTA (median)"),
            "mttr": Tile("MTTR (median)"),
            "ack": Tile("Acknowledged"),
            "sla": Tile("SLA compliance"),
            "breaches": Tile("SLA breaches"),
        }
        tiles = QHBoxLayout()
        for tile in self.tiles.values():
            tiles.addWidget(tile)

        self.category_chart = _chart("SLA breaches by category")
        self.site_chart = _chart("SLA breaches by site")
        self.people_chart = _chart("Pages per person")
        self.channel_chart = _chart("Channel success rate (%)")
        charts = QWidget()
        grid = QGridLayout(charts)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.category_chart, 0, 0)
        grid.addWidget(self.site_chart, 0, 1)
        grid.addWidget(self.people_chart, 1, 0)
        grid.addWidget(self.channel_chart, 1, 1)

        self.people = RecordTableModel(PEOPLE_COLUMNS, self)
        self.channels = RecordTableModel(CHANNEL_COLUMNS, self)
        self.categories = RecordTableModel(breach_columns("Category"), self)
        self.sites = RecordTableModel(breach_columns("Site"), self)
        self.comparison = RecordTableModel(COMPARISON_COLUMNS, self)
        self.periods = RecordTableModel(TREND_COLUMNS, self)
        self.trend_chart = _chart("Incidents and SLA breaches")
        self.tables = QTabWidget()
        self.tables.addTab(self._trend_tab(), "Trend")
        for model, title, name in (
            (self.people, "Pages per person", "peopleTable"),
            (self.channels, "Channels", "channelTable"),
            (self.categories, "By category", "categoryTable"),
            (self.sites, "By site", "siteTable"),
        ):
            view = _table(model)
            view.setObjectName(name)
            self.tables.addTab(view, title)

        # Charts on the left, the tables beside them with the whole height: a table below the charts had
        # room for a row and a half at 1600×1000.
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(charts)
        split.addWidget(self.tables)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)

        self.status = QLabel()
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addLayout(tiles)
        layout.addWidget(split, 1)
        layout.addWidget(self.status)

        self.show_button.clicked.connect(self.refresh)
        self.csv_button.clicked.connect(self._choose_csv)
        self.pdf_button.clicked.connect(self._choose_pdf)
        self.bucket.currentIndexChanged.connect(lambda _i: self.refresh())
        self._load_choices()
        self._draw(StatsResult(stats={}))
        self.refresh()  # the last 30 days as soon as the tab opens

    def _trend_tab(self) -> QWidget:
        comparison = _table(self.comparison)
        comparison.setObjectName("comparisonTable")
        periods = _table(self.periods)
        periods.setObjectName("trendTable")
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(comparison)
        top.addWidget(self.trend_chart)
        # The comparison's four columns whole (this period, the one before, the change), the chart the rest.
        comparison.setMinimumWidth(comparison.fontMetrics().horizontalAdvance("M") * 44)
        top.setStretchFactor(0, 0)
        top.setStretchFactor(1, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(periods)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        return split

    # -- loading -------------------------------------------------------------------------------------
    def _load_choices(self) -> None:
        def job(session: Any) -> tuple[list[str], list[tuple[str, str]]]:
            from engine import config_io

            policies = [str(p["name"]) for p in config_io.export_objects(session, "policies")]
            teams = [
                (str(t["handle"]), str(t.get("name") or t["handle"]))
                for t in config_io.export_objects(session, "teams")
            ]
            return policies, teams

        def done(result: tuple[list[str], list[tuple[str, str]]]) -> None:
            policies, teams = result
            for name in policies:
                self.policy.addItem(name, name)
            for handle, name in teams:
                self.team.addItem(name, handle)

        self.services.worker.submit(job, **replies(self, done, lambda _e: None), what="statistics filters")

    def filters(self) -> dict[str, Any]:
        return {
            "since": _day_start(self.date_from.date()),
            "until": _day_start(self.date_to.date().addDays(1)),
            "policy": self.policy.currentData() or None,
            "team": self.team.currentData() or None,
            "site": self.site.text().strip() or None,
            "category": self.category.text().strip() or None,
            "severity": self.severity.currentData() or None,
        }

    def refresh(self) -> None:
        self._request += 1
        request = self._request
        filters = self.filters()
        ctx = self.services.ctx

        bucket = str(self.bucket.currentData())

        def job() -> StatsResult:
            figures = api.stats(ctx, **filters)
            with ctx.sessions() as session:
                by_category = history.breaches_by(session, "category", **filters)
                by_site = history.breaches_by(session, "site", **filters)
                trend = engine_stats.trend(
                    session,
                    now=ctx.clock.now(),
                    bucket=bucket,
                    timezone=ctx.settings.default_timezone,
                    **filters,
                )
            return StatsResult(figures, by_category, by_site, trend)

        self.status.setText("Computing…")
        self.services.worker.call(
            job,
            **replies(self, lambda r: self._arrived(request, r), lambda e: self._failed(request, e)),
            what="statistics",
        )

    def _arrived(self, request: int, result: StatsResult) -> None:
        if request != self._request:
            return
        self.result = result
        self._draw(result)
        self.status.setText(self.period_text())
        self.refreshed.emit()

    def _failed(self, request: int, exc: Exception) -> None:
        if request != self._request:
            return
        self.status.setText(f"⚠ {exc}")
        self.failed.emit(str(exc))

    def period_text(self) -> str:
        f = self.filters()
        parts = [
            f"{self.date_from.date().toString('yyyy-MM-dd')} to {self.date_to.date().toString('yyyy-MM-dd')}"
        ]
        parts += [f"{k} {v}" for k, v in f.items() if k not in ("since", "until") and v]
        return "Period " + ", ".join(parts)

    # -- showing -------------------------------------------------------------------------------------
    def figures(self) -> list[tuple[str, str]]:
        """The headline figures as (label, text), for the tiles, CSV and PDF."""
        s = self.result.stats if self.result else {}
        incidents = s.get("incidents", {})
        mtta = s.get("mtta_seconds", {})
        mttr = s.get("mttr_seconds", {})
        sla = s.get("sla", {})
        return [
            ("Incidents", str(incidents.get("total", 0))),
            ("MTTA median", fmt_seconds(mtta.get("median"))),
            ("MTTA mean", fmt_seconds(mtta.get("mean"))),
            ("MTTA 90th percentile", fmt_seconds(mtta.get("p90"))),
            ("MTTR median", fmt_seconds(mttr.get("median"))),
            ("MTTR mean", fmt_seconds(mttr.get("mean"))),
            ("MTTR 90th percentile", fmt_seconds(mttr.get("p90"))),
            ("Acknowledgement rate", fmt_rate(s.get("ack_rate"))),
            ("Resolution rate", fmt_rate(s.get("resolution_rate"))),
            ("SLA-monitored incidents", str(sla.get("monitored", 0))),
            ("SLA compliance", fmt_percent(sla.get("compliance_percent"))),
            ("Response breaches", str(sla.get("response_breaches", 0))),
            ("Resolution breaches", str(sla.get("resolution_breaches", 0))),
        ]

    def _draw(self, result: StatsResult) -> None:
        s = result.stats
        incidents = s.get("incidents", {})
        mtta = s.get("mtta_seconds", {})
        mttr = s.get("mttr_seconds", {})
        sla = s.get("sla", {})
        by_status = incidents.get("by_status", {})
        self.tiles["incidents"].set(
            str(incidents.get("total", 0)),
            ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(by_status.items())),
        )
        self.tiles["mtta"].set(
            fmt_seconds(mtta.get("median")),
            f"mean {fmt_seconds(mtta.get('mean'))}, p90 {fmt_seconds(mtta.get('p90'))}",
        )
        self.tiles["mttr"].set(
            fmt_seconds(mttr.get("median")),
            f"mean {fmt_seconds(mttr.get('mean'))}, p90 {fmt_seconds(mttr.get('p90'))}",
        )
        self.tiles["ack"].set(fmt_rate(s.get("ack_rate")), f"resolved {fmt_rate(s.get('resolution_rate'))}")
        self.tiles["sla"].set(
            fmt_percent(sla.get("compliance_percent")), f"{sla.get('monitored', 0)} monitored"
        )
        self.tiles["breaches"].set(
            str(sla.get("breaches", 0)),
            f"{sla.get('response_breaches', 0)} response, {sla.get('resolution_breaches', 0)} resolution",
        )
        people = list(s.get("pages_per_person", []))
        channels = list(s.get("channels", []))
        self.people.set_rows(people)
        self.channels.set_rows(channels)
        self.categories.set_rows(result.by_category)
        self.sites.set_rows(result.by_site)
        self._draw_trend(result.trend)

        for view, rows in ((self.category_chart, result.by_category), (self.site_chart, result.by_site)):
            shown = rows[:8]
            _bars(
                view,
                [r.group or "(none)" for r in shown],
                [
                    ("Response", [r.response_breaches for r in shown], "#e15759"),
                    ("Resolution", [r.resolution_breaches for r in shown], "#f28e2b"),
                ],
                stacked=True,
            )
        top = people[:10][::-1]
        _bars(
            self.people_chart,
            [str(p.get("name") or p.get("handle")) for p in top],
            [
                ("Pages", [p.get("pages", 0) for p in top], "#4e79a7"),
                ("Confirmed", [p.get("confirmed", 0) for p in top], "#59a14f"),
            ],
            horizontal=True,
        )
        _bars(
            self.channel_chart,
            [str(c.get("channel")) for c in channels],
            [("Success rate", [100 * (c.get("success_rate") or 0) for c in channels], "#59a14f")],
            maximum=100,
        )

    def _draw_trend(self, trend: dict[str, Any]) -> None:
        bucket = str(trend.get("bucket") or "day")
        periods = [{**p, "label": period_label(p, bucket)} for p in trend.get("periods", [])]
        self.periods.set_rows(periods)
        self.comparison.set_rows(comparison_rows(trend) if trend else [])
        title = "Incidents and SLA breaches per " + bucket
        _bars(
            self.trend_chart,
            [p["label"] for p in periods],
            [
                ("Incidents", [p["incidents"] for p in periods], "#4e79a7"),
                ("SLA breaches", [p["sla_breaches"] for p in periods], "#e15759"),
            ],
        )
        self.trend_chart.chart().setTitle(title)

    # -- export --------------------------------------------------------------------------------------
    def _choose_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export statistics", "watchkeeper-statistics.csv", "CSV (*.csv)"
        )
        if path:
            self.export_csv(Path(path))

    def _choose_pdf(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Statistics report", "watchkeeper-statistics.pdf", "PDF (*.pdf)"
        )
        if path:
            self.export_pdf(Path(path))

    def _tables(self) -> list[tuple[str, RecordTableModel[Any]]]:
        return [
            ("This period and the previous one", self.comparison),
            ("Trend", self.periods),
            ("Pages per person", self.people),
            ("Channels", self.channels),
            ("SLA breaches by category", self.categories),
            ("SLA breaches by site", self.sites),
        ]

    def export_csv(self, path: Path) -> None:
        """The figures, then each table as shown, separated by a blank line (opens in any spreadsheet)."""
        with path.open("w", newline="", encoding="utf-8") as handle:
            out = csv.writer(handle)
            out.writerow(["Watchkeeper statistics", self.period_text()])
            out.writerow([])
            out.writerow(["Figure", "Value"])
            out.writerows(self.figures())
            for title, model in self._tables():
                out.writerow([])
                out.writerow([title])
                out.writerow([c.header for c in model.columns()])
                out.writerows(model.display_rows())
        self.status.setText(f"Saved {path}")
        self.exported.emit(str(path))

    def report_html(self, document: QTextDocument) -> str:
        """The report as HTML; the charts are added to `document` as image resources."""
        parts = [
            "<h1>Watchkeeper statistics</h1>",
            f"<p>{html.escape(self.period_text())}<br/>Prepared by {html.escape(self.services.operator.display_name)}"
            f" on {self.services.ctx.clock.now().astimezone().strftime('%Y-%m-%d %H:%M')}</p>",
            "<table border='1' cellspacing='0' cellpadding='3'>",
        ]
        for label, value in self.figures():
            parts.append(f"<tr><td>{html.escape(label)}</td><td align='right'>{html.escape(value)}</td></tr>")
        parts.append("</table>")
        for i, view in enumerate(
            (self.trend_chart, self.category_chart, self.site_chart, self.people_chart, self.channel_chart)
        ):
            image = view.grab().toImage()
            name = f"chart{i}.png"
            document.addResource(QTextDocument.ResourceType.ImageResource, QUrl(name), image)
            parts.append(f"<p><img src='{name}' width='480'/></p>")
        for title, model in self._tables():
            parts.append(f"<h2>{html.escape(title)}</h2>")
            rows = model.display_rows()
            if not rows:
                parts.append("<p>None in this period.</p>")
                continue
            parts.append("<table border='1' cellspacing='0' cellpadding='3'><tr>")
            parts += [f"<th>{html.escape(c.header)}</th>" for c in model.columns()]
            parts.append("</tr>")
            for row in rows:
                parts.append("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>")
            parts.append("</table>")
        return "\n".join(parts)

    def export_pdf(self, path: Path) -> None:
        writer = QPdfWriter(str(path))
        writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
        writer.setPageMargins(QMarginsF(15, 15, 15, 15), QPageLayout.Unit.Millimeter)
        writer.setTitle("Watchkeeper statistics")
        writer.setCreator("Watchkeeper")
        document = QTextDocument()
        document.setHtml(self.report_html(document))
        document.print_(writer)
        self.status.setText(f"Saved {path}")
        self.exported.emit(str(path))
