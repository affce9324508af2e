"""`watchkeeper --smoke-test`: the check installers and CI run on a build. It opens the database, paints the
first window and loads every console part, then exits 0 — without signing anyone in or starting the engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from engine.bootstrap import open_context
from engine.models import Event, Operator
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _run(db: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env.update(
        QT_QPA_PLATFORM="offscreen",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
    )
    return subprocess.run(
        [sys.executable, "main.py", "--smoke-test", "--db", str(db)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_smoke_test_paints_the_first_window_and_signs_nobody_in(tmp_path: Path) -> None:
    db = tmp_path / "watchkeeper.db"
    done = _run(db, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "console smoke test passed: Qt offscreen, first-run window painted" in done.stdout
    assert "6 console parts loaded" in done.stdout
    assert "Traceback" not in done.stderr
    ctx = open_context(Settings(db=f"sqlite:///{db}"), "cli")
    try:
        with ctx.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Operator)) == 0
            assert session.scalar(select(func.count()).select_from(Event)) == 0
    finally:
        ctx.db.dispose()


def test_smoke_test_on_a_database_that_cannot_open_fails_loudly(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    done = _run(blocker / "watchkeeper.db", tmp_path)
    assert done.returncode == 1
    assert "console smoke test failed" in done.stderr and "not-a-dir" in done.stderr
