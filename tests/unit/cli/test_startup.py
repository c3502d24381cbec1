"""Commands import only what they use (issue 9, point 4): which modules a fresh interpreter has
loaded after a command is deterministic, unlike its timing (bench/startup_bench.py prints that).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from smimegate.cli.main import GROUPS, build_parser
from tests.conftest import ROOT

PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
# Run main() in a fresh interpreter, then print the modules it loaded.
_PROBE = """
import json, sys
from smimegate.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""
LIBRARIES = ("cryptography", "asn1crypto", "pyhanko_certvalidator", "ldap3", "psycopg",
             "psycopg_pool", "Milter", "ssl")


def _loaded(*argv: str) -> set[str]:
    done = subprocess.run([PYTHON, "-c", _PROBE, *argv], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, done.stderr
    return set(report["modules"])


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.fixture(scope="module")
def store_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("startup")
    config = tmp / "smimegate.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp}/s.db"\nmaster_key_file = "master.key"\n')
    subprocess.run([PYTHON, "-m", "smimegate", "-c", str(config), "db", "init"], check=True,
                   capture_output=True, cwd=ROOT, timeout=120)
    return config


def test_help_imports_no_command_module_and_no_library() -> None:
    modules = _loaded("--help")
    assert not _top(modules) & set(LIBRARIES)
    ours = {m for m in modules if m.startswith("smimegate.")}
    assert ours == {"smimegate.cli", "smimegate.cli.main", "smimegate.cli.common",
                    "smimegate.service", "smimegate.service.errors"}
    assert "logging" not in modules


def test_store_command_needs_no_crypto_path_validation_directory_or_postgres(
    store_config: Path,
) -> None:
    modules = _loaded("-c", str(store_config), "domain", "list")
    assert "smimegate.cli.domain" in modules and "smimegate.store.sql" in modules
    assert not _top(modules) & {"asn1crypto", "pyhanko_certvalidator", "ldap3", "psycopg",
                                "psycopg_pool", "Milter", "ssl"}
    # Only the group on the command line is imported (cli.config also loads the file).
    others = {f"smimegate.cli.{name}" for name, _ in GROUPS if name not in ("domain", "config")}
    assert not others & modules


def test_cert_list_does_not_load_the_directory_delivery_or_downloads(store_config: Path) -> None:
    modules = _loaded("-c", str(store_config), "cert", "list")
    assert not _top(modules) & {"ldap3", "psycopg", "psycopg_pool", "Milter"}
    assert not {"smimegate.delivery", "smimegate.pki.fetch", "smimegate.store.ldap",
                "smimegate.milter", "smimegate.smime.unwrap"} & modules


def test_user_show_without_a_directory_does_not_load_ldap3(store_config: Path) -> None:
    subprocess.run([PYTHON, "-m", "smimegate", "-c", str(store_config), "user", "add",
                    "a@example.com"], check=True, capture_output=True, cwd=ROOT, timeout=120)
    modules = _loaded("-c", str(store_config), "user", "show", "a@example.com")
    assert "ldap3" not in _top(modules)


def test_top_level_help_is_what_each_group_registers() -> None:
    full = build_parser()
    (sub,) = [a for a in full._actions if a.dest == "command"]
    registered = {a.dest: a.help for a in sub._choices_actions}  # type: ignore[attr-defined]
    assert registered == dict(GROUPS)
