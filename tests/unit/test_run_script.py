"""scripts/run.sh (``make run``) on a copy of the tree: it announces the socket the milter
really uses, --socket from its arguments before the configuration's, and starts the web admin
beside it with a first account whose password it prints once."""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.helpers.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def _start(tree: Path, *args: str, web: int | None = None,
           seen: list[str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """Run the copied run.sh; return the process (the milter after exec) and its announce line.
    web: the port for the web admin (default: a free one); seen collects the lines read.
    """
    env = {**os.environ, "WEB_LISTEN": f"127.0.0.1:{web or free_port()}"}
    proc = subprocess.Popen([str(tree / "scripts" / "run.sh"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)
    assert proc.stdout is not None
    seen = [] if seen is None else seen
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if "milter starting on" in line:
            return proc, line.strip()
    proc.kill()
    raise AssertionError(f"run.sh never announced the milter: {''.join(seen)}")


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def _stop(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError("the milter did not stop on SIGTERM") from None


def test_run_announces_the_socket_given_with_socket(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "run.sh", tree / "scripts" / "run.sh")
    (tree / ".venv").symlink_to(ROOT / ".venv")

    for form in ("separate", "equals"):
        port = free_port()
        spec = f"inet:{port}@127.0.0.1"
        args = ("--socket", spec) if form == "separate" else (f"--socket={spec}",)
        proc, line = _start(tree, *args)
        try:
            assert line.startswith(f"smimegate: milter starting on {spec} (config ")
            assert "8891" not in line  # the config's socket is not what runs
            _wait_listening(port)
        finally:
            _stop(proc)
    assert 'socket = "inet:8891@127.0.0.1"' in (tree / "var" / "smimegate.toml").read_text()


def test_run_starts_the_web_admin_with_a_first_account(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "run.sh", tree / "scripts" / "run.sh")
    (tree / ".venv").symlink_to(ROOT / ".venv")
    port, seen = free_port(), []
    proc, _ = _start(tree, "--socket", f"inet:{free_port()}@127.0.0.1", web=port, seen=seen)
    try:
        text = "".join(seen)
        assert f"smimegate: web admin on http://127.0.0.1:{port}/ (sign in as admin)" in text
        found = re.search(r"^smimegate: password: (\S+)  \(shown once\)$", text, re.M)
        assert found, text
        _wait_listening(port)
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        base = f"http://127.0.0.1:{port}"
        page = opener.open(f"{base}/login", timeout=10).read().decode()
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token
        form = urllib.parse.urlencode({"csrf": token.group(1), "user": "admin",
                                       "password": found.group(1)}).encode()
        dashboard = opener.open(f"{base}/login", data=form, timeout=10)
        assert dashboard.geturl() == f"{base}/dashboard"
        assert "Dashboard" in dashboard.read().decode()
    finally:
        _stop(proc)
