"""Settings come from defaults, then the TOML file, then WATCHKEEPER_* variables, then --db; errors name where."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import build_parser, resolve_settings
from engine.errors import ConfigurationError
from engine.settings import Settings, SettingsError, default_settings_file, load_settings


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_without_a_file_the_database_is_a_sqlite_file_in_the_user_data_directory(tmp_path: Path) -> None:
    settings = load_settings(env={})
    assert settings.db.startswith("sqlite:///")
    assert settings.db.endswith("/watchkeeper/watchkeeper.db")
    # The autouse fixture points XDG_DATA_HOME into a temporary home: platformdirs follows it.
    assert "/data/watchkeeper/" in settings.db
    assert settings.source == default_settings_file()


def test_the_settings_file_lives_in_the_platform_config_directory_and_is_read() -> None:
    path = default_settings_file()
    assert path.name == "settings.toml"
    assert path.parent.name == "watchkeeper"
    write(path, 'schema_version = 1\nsmtp_host = "mail.example.org"\nsmtp_port = 25\nlog_format = "json"\n')
    settings = load_settings(env={})
    assert (settings.smtp_host, settings.smtp_port, settings.log_format) == ("mail.example.org", 25, "json")
    assert settings.source == path


def test_environment_variables_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", "smtp_port = 25\ndelivery_polling = true\n")
    env = {
        "WATCHKEEPER_SMTP_PORT": "2525",
        "WATCHKEEPER_DELIVERY_POLLING": "off",
        "WATCHKEEPER_RATE_PER_CHANNEL_PER_SECOND": "sms=2, voice=0.5",
        "WATCHKEEPER_DB": "postgresql://wk@db1/wk",
    }
    settings = load_settings(path, env)
    assert settings.smtp_port == 2525
    assert settings.delivery_polling is False
    assert settings.rate_per_channel_per_second == {"sms": 2.0, "voice": 0.5}
    assert settings.db == "postgresql://wk@db1/wk"


def test_watchkeeper_config_variable_chooses_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "elsewhere.toml", 'http_host = "0.0.0.0"\n')
    settings = load_settings(env={"WATCHKEEPER_CONFIG": str(path)})
    assert settings.http_host == "0.0.0.0"
    assert settings.source == path


def test_bad_toml_is_a_settings_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.toml", "smtp_port = = 25\n")
    with pytest.raises(SettingsError, match=r"broken\.toml: not valid TOML"):
        load_settings(path, {})


def test_an_unknown_key_is_named_with_its_file(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", "smtp_prot = 25\n")
    with pytest.raises(SettingsError, match=r"s\.toml: unknown setting 'smtp_prot'"):
        load_settings(path, {})


def test_a_wrong_type_in_the_file_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", 'smtp_port = "twenty-five"\n')
    with pytest.raises(SettingsError, match=r"s\.toml: setting 'smtp_port'"):
        load_settings(path, {})
    path = write(tmp_path / "t.toml", "http_port = true\n")
    with pytest.raises(SettingsError, match=r"t\.toml: setting 'http_port': expected a number"):
        load_settings(path, {})


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="WATCHKEEPER_HTTP_PORT: setting 'http_port'"):
        load_settings(env={"WATCHKEEPER_HTTP_PORT": "eighty"})
    with pytest.raises(SettingsError, match=r"WATCHKEEPER_LOG_FORMAT: .*not one of plain, json"):
        load_settings(env={"WATCHKEEPER_LOG_FORMAT": "xml"})


def test_choices_are_normalised() -> None:
    settings = load_settings(env={"WATCHKEEPER_LOG_LEVEL": "debug", "WATCHKEEPER_SMTP_SECURITY": "SSL"})
    assert (settings.log_level, settings.smtp_security) == ("DEBUG", "ssl")


def test_a_settings_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", "schema_version = 99\n")
    with pytest.raises(SettingsError, match="newer than this Watchkeeper"):
        load_settings(path, {})


def test_an_explicit_config_file_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(SettingsError, match=r"nope\.toml: settings file not found"):
        load_settings(missing, {}, required=True)
    # Without `required` a missing file means "defaults" (first start on a new workstation).
    assert load_settings(missing, {}).smtp_port == 587


def test_settings_errors_are_configuration_errors_for_the_cli() -> None:
    assert issubclass(SettingsError, ConfigurationError)


def test_saved_settings_load_back_equal(tmp_path: Path) -> None:
    original = Settings(smtp_host="mx", http_port=9000, rate_per_channel_per_second={"sms": 1.5})
    path = original.save(tmp_path / "cfg" / "settings.toml")
    loaded = load_settings(path, {})
    assert loaded == original
    assert not (tmp_path / "cfg" / "settings.tmp").exists()


def test_db_flag_beats_environment_beats_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "s.toml", f'db = "sqlite:///{tmp_path}/from-file.db"\n')
    parser = build_parser()

    args = parser.parse_args(["--config", str(config), "list"])
    assert resolve_settings(args).db.endswith("from-file.db")

    monkeypatch.setenv("WATCHKEEPER_DB", f"sqlite:///{tmp_path}/from-env.db")
    assert resolve_settings(args).db.endswith("from-env.db")

    args = parser.parse_args(["--config", str(config), "--db", f"{tmp_path}/from-flag.db", "list"])
    assert resolve_settings(args).db.endswith("from-flag.db")
    # The flag is also accepted after the command, as scripts tend to write it.
    args = parser.parse_args(["list", "--db", f"{tmp_path}/after.db"])
    assert resolve_settings(args).db.endswith("after.db")


def test_simulated_channels_are_a_list_from_the_file_or_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('simulated_channels = ["SMS", "email"]\n')
    assert load_settings(path, env={}).simulated_channels == ["sms", "email"]
    env = {"WATCHKEEPER_SIMULATED_CHANNELS": "all"}
    assert load_settings(path, env=env).simulated_channels == ["all"]
    assert load_settings(path, env={"WATCHKEEPER_SIMULATED_CHANNELS": ""}).simulated_channels == []


def test_an_unknown_simulated_channel_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('simulated_channels = ["sms", "pager"]\n')
    with pytest.raises(SettingsError, match=r"simulated_channels.*'pager'"):
        load_settings(path, env={})
