"""End-to-end fixtures: Qt warnings fail these tests too; QSettings in the test's own directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QSettings

QT_IGNORED = ("pipewire", "Couldn't resolve", "propagateSizeHints")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents and not item.get_closest_marker("qt_log_level_fail"):
            item.add_marker(pytest.mark.qt_log_level_fail("WARNING"))
            item.add_marker(pytest.mark.qt_log_ignore(*QT_IGNORED))


@pytest.fixture(autouse=True)
def _qsettings(tmp_path: Path) -> Iterator[None]:
    QCoreApplication.setOrganizationName("watchkeeper-tests")
    QCoreApplication.setApplicationName("watchkeeper-tests")
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(tmp_path / "qsettings"))
    yield
