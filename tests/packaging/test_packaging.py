"""The packaging scripts' own rules, checked without building a package (scripts/prove-packages.sh proves the
built packages in a Debian 12 root): the bundle's library check, the declared dependencies, and the data
upgrade that postinst and install.sh run for a PostgreSQL site, against a real PostgreSQL database.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import make_url, text

from engine.db import make_engine
from engine.migrate import current_revision, upgrade

ROOT = Path(__file__).resolve().parents[2]
SITE_FUNCTIONS = ROOT / "scripts" / "packaging" / "site-functions.sh"


def _package_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("package_script", ROOT / "scripts" / "package.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is made
    spec.loader.exec_module(module)
    return module


package = _package_module()


@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf (binutils) is what the check uses")
def test_a_library_neither_bundled_nor_declared_stops_the_package(tmp_path: Path) -> None:
    import _sqlite3

    bundle = tmp_path / "bundle"
    (bundle / "_internal").mkdir(parents=True)
    shutil.copy(_sqlite3.__file__, bundle / "_internal" / "_sqlite3.so")  # needs libsqlite3.so.0 and libc
    (bundle / "watchkeeper").write_text("not really")
    assert package.unresolved_libraries(bundle) == {"libsqlite3.so.0": ["_internal/_sqlite3.so"]}
    with pytest.raises(package.PackagingError, match=r"libsqlite3\.so\.0: needed by _internal/_sqlite3\.so"):
        package.check_bundle(bundle)
    shutil.copy(_sqlite3.__file__, bundle / "_internal" / "libsqlite3.so.0")  # now it is in the bundle
    assert package.unresolved_libraries(bundle) == {}


def test_a_server_without_a_desktop_can_install_the_package() -> None:
    """What only the console needs is recommended, not required: dpkg -i works on a bare server."""
    depends, recommends = package.depends_and_recommends()
    assert depends == ["libc6 (>= 2.36)", "libstdc++6 (>= 12)", "libgcc-s1", "passwd"]
    for console_only in ("libegl1", "libgl1", "libxcb1", "fontconfig-config", "xkb-data"):
        assert console_only in recommends
    control = package.control_file("1.2.3-1", "amd64", 1000)
    assert "\nDepends: libc6 (>= 2.36), libstdc++6 (>= 12), libgcc-s1, passwd\n" in control
    assert "libgtk-3-0 | libgtk-3-0t64" in control  # Ubuntu 24.04's name too


# -- the data upgrade of a PostgreSQL site (site-functions.sh) -------------------------------------------------


def _run_upgrade_data(tmp_path: Path, db_url: str) -> subprocess.CompletedProcess[str]:
    """wk_upgrade_data as postinst runs it, with a settings file naming `db_url` and watchkeeper-admin
    replaced by this checkout's CLI with those settings (the wrapper itself is proven in the packages)."""
    env_file = tmp_path / "watchkeeper.env"
    env_file.write_text(f"# test\nWATCHKEEPER_DB={db_url}\nWATCHKEEPER_HTTP_PORT=8650\n")
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    admin = prefix / "bin" / "watchkeeper-admin"
    admin.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            export WATCHKEEPER_DB='{db_url}' PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring
            exec '{sys.executable}' '{ROOT / "main.py"}' "$@"
            """
        )
    )
    admin.chmod(0o755)
    script = f". '{SITE_FUNCTIONS}'; WK_ENV='{env_file}'; WK_PREFIX='{prefix}'; wk_upgrade_data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_postgresql_site_at_this_version_s_schema_is_started_again(tmp_path: Path, db_url: str) -> None:
    db = make_engine(db_url)
    upgrade(db)
    db.dispose()
    done = _run_upgrade_data(tmp_path, db_url)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_postgresql_site_is_never_migrated_by_the_package(tmp_path: Path, db_url: str) -> None:
    """The shared database is upgraded once by an administrator: the package says so and keeps the service
    stopped, and the database is left as it is."""
    done = _run_upgrade_data(tmp_path, db_url)
    assert done.returncode == 1
    assert "the shared PostgreSQL database needs a schema upgrade" in done.stderr
    assert "watchkeeper-admin db upgrade" in done.stderr
    db = make_engine(db_url)
    try:
        assert current_revision(db) is None
        with db.connect() as conn:
            assert (
                conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar() == 0
            )
    finally:
        db.dispose()


def test_an_unreachable_postgresql_database_keeps_the_service_stopped(tmp_path: Path) -> None:
    url = make_url("postgresql://watchkeeper@127.0.0.1:1/watchkeeper").render_as_string(hide_password=False)
    done = _run_upgrade_data(tmp_path, url)
    assert done.returncode == 1
    assert "cannot read the database's schema revision" in done.stderr


def test_settings_are_read_as_systemd_reads_them(tmp_path: Path) -> None:
    env_file = tmp_path / "watchkeeper.env"
    env_file.write_text(
        '# comment\nWATCHKEEPER_DB=/old\nWATCHKEEPER_DB = "/var/lib/watchkeeper/site.db"\n'
        "WATCHKEEPER_SMTP_FROM=Watchkeeper <wk@example.org>\n"
    )
    script = f". '{SITE_FUNCTIONS}'; WK_ENV='{env_file}'; wk_setting WATCHKEEPER_DB; wk_setting WATCHKEEPER_SMTP_FROM"
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["/var/lib/watchkeeper/site.db", "Watchkeeper <wk@example.org>"]
