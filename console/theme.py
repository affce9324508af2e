"""Light and dark (night shift) themes and the large-font option.

The style sheets live in resources/style/*.qss; the colours the board paints itself (status tint, severity,
SLA warning and breach) are in `Palette`, one per theme, so both stay in step. Dark uses the Fusion style with a
dark QPalette underneath the sheet, so every native widget follows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication


@dataclass(frozen=True)
class Palette:
    name: str
    text: str
    muted: str
    warning: str
    breached: str
    tint_alpha: int
    tint_alpha_max: int
    status: dict[str, str] = field(default_factory=dict)
    severity: dict[str, str] = field(default_factory=dict)
    severity_text: dict[str, str] = field(default_factory=dict)


LIGHT = Palette(
    name="light",
    text="#1b1f24",
    muted="#6a737d",
    warning="#9a5b00",
    breached="#c0081b",
    tint_alpha=40,
    tint_alpha_max=150,
    status={
        "open": "#e5534b",
        "escalated": "#f0883e",
        "acknowledged": "#d4a72c",
        "in_progress": "#4493f8",
        "resolved": "#3fb950",
        "cancelled": "#8b949e",
    },
    severity={
        "critical": "#b00020",
        "high": "#d9480f",
        "medium": "#b08800",
        "low": "#1f6feb",
        "info": "#6e7781",
    },
    severity_text={
        "critical": "#b00020",
        "high": "#b3400c",
        "medium": "#7a5c00",
        "low": "#1a5fc9",
        "info": "#57606a",
    },
)

DARK = Palette(
    name="dark",
    text="#e6edf3",
    muted="#8b949e",
    warning="#f2cc60",
    breached="#ff7b72",
    tint_alpha=45,
    tint_alpha_max=170,
    status={
        "open": "#f85149",
        "escalated": "#f0883e",
        "acknowledged": "#d29922",
        "in_progress": "#388bfd",
        "resolved": "#2ea043",
        "cancelled": "#6e7681",
    },
    severity={
        "critical": "#ff4d4f",
        "high": "#ff8c42",
        "medium": "#e3b341",
        "low": "#58a6ff",
        "info": "#8b949e",
    },
    severity_text={
        "critical": "#ff6b6b",
        "high": "#ffa657",
        "medium": "#e3b341",
        "low": "#79c0ff",
        "info": "#a5aeb8",
    },
)

_current = LIGHT


def current_palette() -> Palette:
    return _current


def _sheet(name: str) -> str:
    try:
        return (resources.files("resources") / "style" / name).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        return ""


def _dark_qpalette() -> QPalette:
    p = QPalette()
    window, base, text = QColor("#0d1117"), QColor("#161b22"), QColor("#e6edf3")
    for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
        p.setColor(group, QPalette.ColorRole.Window, window)
        p.setColor(group, QPalette.ColorRole.WindowText, text)
        p.setColor(group, QPalette.ColorRole.Base, base)
        p.setColor(group, QPalette.ColorRole.AlternateBase, QColor("#1c2128"))
        p.setColor(group, QPalette.ColorRole.Text, text)
        p.setColor(group, QPalette.ColorRole.Button, QColor("#21262d"))
        p.setColor(group, QPalette.ColorRole.ButtonText, text)
        p.setColor(group, QPalette.ColorRole.Highlight, QColor("#1f6feb"))
        p.setColor(group, QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
        p.setColor(group, QPalette.ColorRole.ToolTipBase, QColor("#21262d"))
        p.setColor(group, QPalette.ColorRole.ToolTipText, text)
        p.setColor(group, QPalette.ColorRole.PlaceholderText, QColor("#8b949e"))
        p.setColor(group, QPalette.ColorRole.Link, QColor("#58a6ff"))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#6e7681"))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#6e7681"))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor("#6e7681"))
    return p


def apply_theme(app: QApplication, *, dark: bool, large: bool) -> Palette:
    """Switch the whole application; returns the board palette to hand to the models."""
    global _current
    app.setStyle("Fusion")
    app.setPalette(_dark_qpalette() if dark else app.style().standardPalette())
    sheet = _sheet("base.qss") + "\n" + _sheet("dark.qss" if dark else "light.qss")
    if large:
        sheet += "\n" + _sheet("large.qss")
    # The font before the sheet: polishing under a style sheet fixes each widget's font from the application
    # font of that moment, so the other order left every widget one switch behind (large after "off").
    font = QFont(app.font())
    font.setPointSizeF(13.0 if large else 10.0)
    app.setFont(font)
    app.setStyleSheet(sheet)
    _current = DARK if dark else LIGHT
    return _current
