"""The wheel builds without setuptools warnings and carries the SQL migrations (issue 9, point 7:
`make test` output free of packaging warnings; smimegate/sql is a symlink to sql/)."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

from tests.conftest import ROOT

PIP = ROOT / ".venv" / "bin" / "pip"


def test_wheel_builds_without_setuptools_warnings_and_ships_the_migrations(tmp_path: Path) -> None:
    done = subprocess.run([str(PIP), "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=280, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout + done.stderr
    for warning in ("BuildBackendWarning", "SetuptoolsWarning", "SetuptoolsDeprecationWarning",
                    "Package would be ignored"):
        assert warning not in output, output
    (wheel,) = tmp_path.glob("smimegate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    migrations = sorted(p.name for p in (ROOT / "sql").glob("*.sql"))
    assert migrations and all(f"smimegate/sql/{m}" in names for m in migrations)
    assert "smimegate/sql/README.md" in names
    assert not [n for n in names if "__pycache__" in n]
