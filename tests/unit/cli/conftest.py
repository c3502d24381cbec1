"""Every CLI test runs apart from the machine's configuration: $SMIMEGATE_CONFIG is unset and
the default path (smimegate.cli.main.DEFAULT_CONFIG, /etc/smimegate/smimegate.toml) points to a
file that does not exist, so a test that names no configuration sees none, wherever it runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from smimegate.cli import main as cli_main


@pytest.fixture(autouse=True)
def no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The default configuration path of this test (absent unless the test writes it)."""
    default = tmp_path / "default-config" / "smimegate.toml"
    monkeypatch.delenv("SMIMEGATE_CONFIG", raising=False)
    monkeypatch.setattr(cli_main, "DEFAULT_CONFIG", str(default))
    return default
