"""``smimegate user show`` with [ldap]: the directory's live values at level "ldap", as the
milter applies them, against the session slapd; a directory that is down gives a warning and
the store's values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from smimegate.cli.main import main
from smimegate.store import SqlStore
from tests.helpers.ports import free_port
from tests.unit.ldap.conftest import Tree


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _show(capsys: pytest.CaptureFixture[str], cfg: Path, email: str) -> tuple[dict[str, Any], str]:
    code, out, err = _run(capsys, "-c", str(cfg), "user", "show", email, "--json")
    assert code == 0, err
    shown: dict[str, Any] = json.loads(out)
    return shown, err


def test_user_show_includes_directory_values(
    tree: Tree, capsys: pytest.CaptureFixture[str]
) -> None:
    tree.add_user("uma", "uma@example.com",
                  extra={"smimegateEncryptMode": "mandatory", "mobile": "+4930111111"})
    tree.add_user("dirk", "dirk@example.com", extra={"smimegateSign": "no"})
    cfg = tree.write_config()
    assert _run(capsys, "-c", str(cfg), "db", "init")[0] == 0
    store = SqlStore.open(f"sqlite:///{tree.folder / 'store.db'}", None)
    try:
        store.add_user("uma@example.com", {"encrypt_mode": "allow", "sign_mode": "opaque"})
    finally:
        store.close()

    shown, err = _show(capsys, cfg, "uma@example.com")
    assert err == ""
    # The directory wins over the store's user row; what it does not give falls through.
    assert shown["encrypt_mode"] == {"value": "mandatory", "from": "ldap"}
    assert shown["phone"] == {"value": "+4930111111", "from": "ldap"}
    assert shown["sign_mode"] == {"value": "opaque", "from": "user"}
    code, out, err = _run(capsys, "-c", str(cfg), "user", "show", "uma@example.com")
    assert code == 0, err
    assert any(line.split() == ["encrypt_mode", "mandatory", "(ldap)"]
               for line in out.splitlines())

    # A user only the directory knows is shown as the milter would treat it.
    shown, _ = _show(capsys, cfg, "dirk@example.com")
    assert shown["sign"] == {"value": "no", "from": "ldap"}
    # Neither stored nor in the directory: still an error.
    code, _, err = _run(capsys, "-c", str(cfg), "user", "show", "nobody@example.com")
    assert code == 1 and "nobody@example.com" in err

    # The directory down: one warning line on stderr, then the store's values.
    down = tree.folder / "down.toml"
    down.write_text(tree.config_text(urls=[f"ldap://127.0.0.1:{free_port()}"]))
    shown, err = _show(capsys, down, "uma@example.com")
    assert shown["encrypt_mode"] == {"value": "allow", "from": "user"}
    assert shown["phone"]["from"] != "ldap"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("smimegate: warning: directory not asked")
    assert "store's values only" in lines[0]
