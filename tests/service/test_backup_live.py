"""`watchkeeper backup` of a SQLite site while a real `serve` node takes Events API triggers and applies them.

The node runs as its own process, fed without pause over HTTP; backups are taken meanwhile with the CLI.
Each backup must be a sound, self-contained pair of files in which every event the spool copy records as
applied is in the database copy (the spool is copied first), every incident has its escalation (the copy is
one transaction's view), and the node must have gone on writing throughout. A restored backup then applies
the events its spool still had pending, and no alert opens two incidents.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

from engine.backup import spool_beside
from engine.bootstrap import open_context
from engine.cli import main
from engine.clock import FakeClock, SystemClock
from engine.migrate import head_revision
from engine.service.keys import create_routing_key
from engine.service.queue import CLAIM_SECONDS, drain
from engine.settings import Settings
from tests.engine.test_backup import seed_site
from tests.engine.test_cli import _restore_logging  # noqa: F401 (autouse: main() configures logging)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
BACKUPS = 4


def _seed(url: str) -> str:
    """The policy "ops" and a routing key to it; returns the key."""
    db, ctx = seed_site(url)
    secret = create_routing_key(ctx, policy="ops", label="live-backup").secret
    db.dispose()
    return secret


class Feeder(threading.Thread):
    """Posts triggers with new dedup keys, one after another, until stopped."""

    def __init__(self, base_url: str, routing_key: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.routing_key = routing_key
        self.stopping = threading.Event()
        self.accepted = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            body = {
                "routing_key": self.routing_key,
                "event_action": "trigger",
                "dedup_key": f"live-{self.accepted:05d}",
                "payload": {"summary": f"Alarm {self.accepted}", "source": "test", "severity": "critical"},
            }
            req = urllib.request.Request(
                self.base_url + "/v2/enqueue",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    if resp.status == 202:
                        self.accepted += 1
            except (urllib.error.URLError, OSError) as exc:
                self.errors.append(str(exc))
                time.sleep(0.1)


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _wait_for_url(proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}:\n{log.read_text()}")
        found = re.search(r"listening on (http://[0-9.]+:[0-9]+)", log.read_text())
        if found:
            return found.group(1)
        time.sleep(0.2)
    raise AssertionError(f"serve did not listen:\n{log.read_text()}")


def test_backups_of_a_live_site_are_consistent_and_the_engine_keeps_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db_file = tmp_path / "site" / "watchkeeper.db"
    url = f"sqlite:///{db_file}"
    routing_key = _seed(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env.update(
        {
            "WATCHKEEPER_DB": url,
            "WATCHKEEPER_HTTP_PORT": "0",
            "WATCHKEEPER_CONFIG": str(tmp_path / "none.toml"),
            "WATCHKEEPER_RATE_PER_CHANNEL_PER_SECOND": "sms=100000",
            "WATCHKEEPER_RATE_PER_RECIPIENT_PER_MINUTE": "10000000",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "PYTHONUNBUFFERED": "1",
        }
    )
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "serve"],
            cwd=str(ROOT),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    feeder = Feeder(_wait_for_url(proc, log), routing_key)
    made: list[Path] = []
    try:
        feeder.start()
        # Backups start once the node has applied a good number of events, and the feed goes on throughout.
        deadline = time.monotonic() + 120
        while _rows(db_file, "SELECT count(*) FROM incident")[0][0] < 50:
            assert feeder.is_alive() and proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the node applied no events"
            time.sleep(0.1)
        for n in range(BACKUPS):
            code = main(["backup", str(tmp_path / "backups" / f"b{n}.db"), "--db", url])
            out_text, err_text = capsys.readouterr()
            assert code == 0, err_text
            assert "backed up the intake spool" in out_text
            made.append(tmp_path / "backups" / f"b{n}.db")
            time.sleep(0.3)
        time.sleep(1.0)
    finally:
        feeder.stopping.set()
        feeder.join(timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    assert feeder.errors == []

    live_incidents = _rows(db_file, "SELECT count(*) FROM incident")[0][0]
    first_incidents = _rows(made[0], "SELECT count(*) FROM incident")[0][0]
    # The node went on applying events after the first backup: it was never stopped or blocked by it.
    assert 0 < first_incidents < live_incidents

    for copy in made:
        spool = spool_beside(copy)
        assert _rows(copy, "PRAGMA quick_check") == [("ok",)]
        assert _rows(spool, "PRAGMA quick_check") == [("ok",)]
        assert _rows(copy, "PRAGMA journal_mode") == [("delete",)]
        assert _rows(copy, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
        applied = {
            key
            for (key,) in _rows(
                spool, "SELECT dedup_key FROM intake_event WHERE status = 'done' AND event_action = 'trigger'"
            )
        }
        in_database = {key for (key,) in _rows(copy, "SELECT key FROM incident")}
        assert applied, f"{copy}: the spool copy records no applied event"
        assert applied <= in_database, (
            f"{copy}: applied in the spool copy, missing: {sorted(applied - in_database)[:5]}"
        )
        assert _rows(
            copy,
            "SELECT count(*) FROM incident i LEFT JOIN escalation e ON e.incident_id = i.id WHERE e.id IS NULL",
        ) == [(0,)]

    # Restore the last backup as a new site: the events it still had pending are applied, each key once.
    restored = f"sqlite:///{tmp_path}/restored/watchkeeper.db"
    assert main(["restore", str(made[-1]), "--db", restored]) == 0, capsys.readouterr()
    pending = {
        key
        for (key,) in _rows(
            spool_beside(made[-1]), "SELECT dedup_key FROM intake_event WHERE status = 'pending'"
        )
    }
    # An event a node had claimed but not finished when the spool was copied waits for that claim to expire,
    # as after a crash: the restored site applies it then.
    later = FakeClock(SystemClock().now() + timedelta(seconds=CLAIM_SECONDS + 1))
    ctx = open_context(Settings(db=restored), "test", clock=later)
    try:
        drain(ctx)
    finally:
        ctx.db.dispose()
    restored_file = tmp_path / "restored" / "watchkeeper.db"
    keys = [key for (key,) in _rows(restored_file, "SELECT key FROM incident")]
    assert len(keys) == len(set(keys)), "an alert opened two incidents after the restore"
    assert pending <= set(keys), "an event pending in the spool copy was not applied after the restore"
