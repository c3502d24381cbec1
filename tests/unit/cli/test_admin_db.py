"""``smimegate db init`` and what every admin command does with the configuration and store."""

from __future__ import annotations

import stat

from tests.unit.cli.admin_support import Cli, cli, sqlite_cli  # noqa: F401


def test_db_init_creates_key_and_schema_and_is_idempotent(cli: Cli) -> None:  # noqa: F811
    # The fixture ran the first `db init`.
    assert stat.S_IMODE(cli.key.stat().st_mode) == 0o600
    key = cli.key.read_bytes()
    assert len(key) == 32
    again = cli.ok("db", "init")
    assert "schema is current" in again.out
    assert "master key created" not in again.out
    assert cli.key.read_bytes() == key
    store = cli.store()
    try:
        assert store.schema_version() == store.latest_version() > 0
    finally:
        store.close()


def test_db_init_reports_what_it_did(sqlite_cli: Cli) -> None:  # noqa: F811
    first = sqlite_cli.ok("db", "init")
    assert f"master key created: {sqlite_cli.key}" in first.out
    assert "schema migrated to version" in first.out
    assert (sqlite_cli.tmp / "var" / "store.db").is_file()


def test_commands_before_db_init_say_what_to_do(sqlite_cli: Cli) -> None:  # noqa: F811
    result = sqlite_cli("settings", "show")
    assert result.code == 1
    assert "db init" in result.err
    assert "Traceback" not in result.err


def test_unknown_config_key_is_exit_2_naming_key_and_file(sqlite_cli: Cli) -> None:  # noqa: F811
    sqlite_cli.config.write_text('[store]\nurl = "sqlite:////tmp/x.db"\nbogus = 1\n')
    result = sqlite_cli("db", "init")
    assert result.code == 2
    assert "bogus" in result.err
    assert str(sqlite_cli.config) in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_missing_config_file_named_with_c_is_exit_2(sqlite_cli: Cli) -> None:  # noqa: F811
    sqlite_cli.config.unlink()
    result = sqlite_cli("user", "list")
    assert result.code == 2
    assert str(sqlite_cli.config) in result.err
