"""The admin commands through the installed console script, as an admin's shell runs them:
exit codes, one-line errors without tracebacks, JSON on stdout, a closed pipe."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.unit.cli.admin_support import R9216, SMIMEGATE


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "smimegate.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/var/s.db"\n'
                      f'master_key_file = "{tmp_path}/etc/master.key"\n')
    return config


def _run(config: Path, *argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SMIMEGATE), "-c", str(config), *map(str, argv)],
                          capture_output=True, text=True, timeout=60)


def test_console_script_end_to_end(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert _run(config, "db", "init").returncode == 0
    ok = _run(config, "cert", "import", R9216 / "dana.p12", "--password", "dana")
    assert ok.returncode == 0, ok.stderr
    listed = json.loads(_run(config, "cert", "list", "--json").stdout)
    assert sum(c["has_key"] for c in listed) == 2
    wrong = _run(config, "cert", "import", R9216 / "dana.p12", "--password", "carlos")
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == (f"smimegate: error: {R9216 / 'dana.p12'}: wrong password "
                                    "for this PKCS#12 file")
    bad = _run(config, "user", "add", "a@example.com", "--encrypt-mode", "sometimes")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "none, allow, mandatory" in bad.stderr
    assert _run(config, "user", "add", "a@example.com").returncode == 0
    shown = json.loads(_run(config, "user", "show", "a@example.com", "--json").stdout)
    assert shown["encrypt_mode"] == {"value": "allow", "from": "default"}


def test_closed_pipe_is_quiet(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert _run(config, "db", "init").returncode == 0
    # The reader is gone before the command writes: its first write fails with EPIPE.
    proc = subprocess.Popen([str(SMIMEGATE), "-c", str(config), "settings", "show", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert proc.returncode in (0, 1)
