"""Fixtures for the admin command tests: a configuration and an initialised store on SQLite
and on the private PostgreSQL cluster (tests.fixtures.postgres), and a runner for the real CLI.

Import the fixtures into a test module with ``from tests.unit.cli.admin_support import cli``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smimegate.cli.main import main
from smimegate.store import SqlStore
from tests.conftest import ROOT, VECTORS

SMIMEGATE = ROOT / ".venv" / "bin" / "smimegate"
R9216 = VECTORS / "rfc9216"
TB = VECTORS / "thunderbird-smime"
PYCA = VECTORS / "pyca-pkcs7"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """Runs ``smimegate -c CONFIG ...`` in-process and captures what it prints."""

    def __init__(self, capsys: pytest.CaptureFixture[str], tmp: Path, url: str) -> None:
        self.capsys = capsys
        self.tmp = tmp
        self.url = url
        self.key = tmp / "etc" / "master.key"
        self.config = tmp / "smimegate.toml"
        self.config.write_text(
            f'[store]\nurl = "{url}"\nmaster_key_file = "{self.key}"\n', encoding="utf-8"
        )

    def __call__(self, *argv: str | Path) -> Result:
        self.capsys.readouterr()
        code = main(["-c", str(self.config), *map(str, argv)])
        out, err = self.capsys.readouterr()
        return Result(code, out, err)

    def ok(self, *argv: str | Path) -> Result:
        result = self(*argv)
        assert result.code == 0, result.err
        assert result.err == "" or "no " in result.err  # empty listings say so on stderr
        return result

    def store(self) -> SqlStore:
        return SqlStore.open(self.url, self.key)


@pytest.fixture(params=["sqlite", "postgresql"])
def cli(
    request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Iterator[Cli]:
    """A configuration on each backend with `db init` already run."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'var' / 'store.db'}"
    else:
        url = str(request.getfixturevalue("pg_url"))
    runner = Cli(capsys, tmp_path, url)
    assert runner("db", "init").code == 0
    yield runner


@pytest.fixture
def sqlite_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    """SQLite only, `db init` not run yet."""
    return Cli(capsys, tmp_path, f"sqlite:///{tmp_path / 'var' / 'store.db'}")
