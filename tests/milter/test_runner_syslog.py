"""``smimegate milter`` with ``log = "syslog"`` where no syslog daemon listens (a container): it
starts, serves, logs to stderr after one warning, and goes back to syslog once the socket is
there (issue 9, point 1). The real milter over an SQLite store, driven by the protocol client.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.ports import free_port
from tests.milter import client as mc
from tests.milter.client import MilterClient
from tests.milter.daemon import PYTHON, ROOT, Daemon, milter_argv, start, write_config

HEADERS = [("From", "a@x.test"), ("To", "b@y.test"), ("Subject", "hello")]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="sg-syslog-"))
    yield path
    shutil.rmtree(path)


def _milter(directory: Path, syslog_path: Path) -> tuple[Daemon, str]:
    spec = f"inet:{free_port()}@127.0.0.1"
    config = write_config(directory, spec, log="syslog", syslog_socket=str(syslog_path))
    subprocess.run([PYTHON, "-m", "smimegate", "-c", str(config), "db", "init"], cwd=ROOT,
                   check=True, capture_output=True, timeout=60)
    return start(milter_argv(config), directory / "milter.log", spec), spec


def _send(spec: str, queue_id: str) -> mc.Reply:
    with MilterClient(spec).open() as c:
        c.negotiate()
        c.connect(hostname="mx.y.test", address="192.0.2.7")
        c.helo("mx.y.test")
        r = c.message("a@x.test", ["b@y.test"], HEADERS, b"hello\r\n", queue_id=queue_id)
    assert r.eom is not None
    return r.eom.reply


def _wait_for(daemon: Daemon, text: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in (out := daemon.output()):
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{out}"
        time.sleep(0.05)
    return out


def test_milter_without_syslog_socket_serves_and_logs_to_stderr(short_dir: Path) -> None:
    missing = short_dir / "no-syslogd" / "log"
    daemon, spec = _milter(short_dir, missing)
    try:
        reply = _send(spec, "4NOSYS1")
        assert reply.cmd in (mc.SMFIR_CONTINUE, mc.SMFIR_ACCEPT)
        out = _wait_for(daemon, "4NOSYS1: smimegate: ")
        warnings = [line for line in out.splitlines() if "syslog socket" in line]
        assert warnings == [f"smimegate: warning: syslog socket {missing}: No such file or "
                            "directory; logging to stderr until it answers"]
        assert "smimegate: starting;" in out
    finally:
        daemon.stop()


def test_syslog_socket_that_appears_later_receives_the_log(short_dir: Path) -> None:
    path = short_dir / "log"
    daemon, spec = _milter(short_dir, path)
    try:
        assert _send(spec, "4BEFORE1").cmd in (mc.SMFIR_CONTINUE, mc.SMFIR_ACCEPT)
        _wait_for(daemon, "4BEFORE1: smimegate: ")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslogd:
            syslogd.bind(str(path))  # syslogd (re)started
            syslogd.settimeout(0.2)
            received = b""
            # The milter tries the socket again at most every log.SYSLOG_RETRY seconds, when it
            # has a line to log: send messages until one of their lines arrives.
            deadline = time.monotonic() + 30
            n = 0
            while b": smimegate: " not in received:
                assert time.monotonic() < deadline, daemon.output()
                n += 1
                _send(spec, f"4AFTER{n}")
                try:
                    received = syslogd.recv(65536)
                except TimeoutError:
                    continue
        assert received.startswith(b"<22>smimegate[")  # mail.info (RFC 3164 PRI 2*8+6)
        assert b": 4AFTER" in received
        out = daemon.output()
        assert f"smimegate: syslog socket {path} answers again; logging there" in out
        assert out.count("smimegate: warning: syslog socket") == 1
    finally:
        daemon.stop()
