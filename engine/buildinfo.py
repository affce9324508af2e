"""What `watchkeeper --version` says about this build: the version, and for a packaged build its build date.

A packaged build (PyInstaller, build.spec) carries `build-info.json` beside this module, written when the
bundle is built: the version, the build time (UTC, or SOURCE_DATE_EPOCH for a reproducible build) and the
source commit when the build had one. Running from a source checkout there is no such file, and the version
line says so instead of inventing a date.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BUILD_INFO_FILE = "build-info.json"
_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BuildInfo:
    version: str
    built_at: datetime
    commit: str = ""

    def describe(self) -> str:
        when = self.built_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        commit = f", commit {self.commit}" if self.commit else ""
        return f"{self.version} (built {when}{commit})"

    def to_json(self) -> str:
        data = {"version": self.version, "built_at": self.built_at.astimezone(UTC).isoformat()}
        if self.commit:
            data["commit"] = self.commit
        return json.dumps(data, indent=2) + "\n"


def read_build_info(directory: Path = _HERE) -> BuildInfo | None:
    """The build information of a packaged build; None when running from source (or the file is unreadable)."""
    path = directory / BUILD_INFO_FILE
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        built_at = datetime.fromisoformat(str(data["built_at"]))
        if built_at.tzinfo is None:
            built_at = built_at.replace(tzinfo=UTC)
        return BuildInfo(version=str(data["version"]), built_at=built_at, commit=str(data.get("commit", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def version_line(version: str, directory: Path = _HERE) -> str:
    """`watchkeeper --version`: 'watchkeeper 0.1.0 (built 2026-03-02 08:00 UTC, commit abc1234)'."""
    info = read_build_info(directory)
    if info is None:
        return f"watchkeeper {version} (from source, not a packaged build)"
    return f"watchkeeper {info.describe()}"


def new_build_info(version: str, source_dir: Path, env: dict[str, str] | None = None) -> BuildInfo:
    """For build.spec: now (or SOURCE_DATE_EPOCH) and the checkout's commit, when it is a git checkout."""
    environ = os.environ if env is None else env
    epoch = environ.get("SOURCE_DATE_EPOCH", "").strip()
    built_at = datetime.fromtimestamp(int(epoch), UTC) if epoch.isdigit() else datetime.now(UTC)
    commit = ""
    try:
        result = subprocess.run(
            ["git", "-C", str(source_dir), "rev-parse", "--short=10", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if result.returncode == 0:
            commit = result.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass  # no git on the build machine: the version and date still say which build this is
    return BuildInfo(version=version, built_at=built_at.replace(microsecond=0), commit=commit)
