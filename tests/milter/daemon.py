"""Helpers for the daemon tests: start a milter subprocess, wait for it, a tiny SMTP sink."""

from __future__ import annotations

import ctypes
import os
import platform
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.milter.client import MilterClient

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
if not Path(PYTHON).exists():
    PYTHON = sys.executable



def write_config(
    directory: Path, socket_spec: str, *, store_url: str = "", tables: str = "", **milter: object
) -> Path:
    """A configuration with an SQLite store under ``directory`` (or ``store_url``) and log to
    stdout unless ``milter`` says ``log``; ``milter`` are [milter] options, ``tables`` more TOML
    tables appended as they are."""
    lines = [
        "[store]",
        f'url = "{store_url or f"sqlite:///{directory}/smimegate.db"}"',
        'master_key_file = "master.key"',
        "[milter]",
        f'socket = "{socket_spec}"',
        'reinject_secret_file = "reinject.key"',
    ]
    if "log" not in milter:
        lines.append('log = "stdout"')
    for key, value in milter.items():
        rendered = f'"{value}"' if isinstance(value, str) else str(value).lower()
        lines.append(f"{key} = {rendered}")
    if tables:
        lines.append(tables)
    path = directory / "smimegate.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Daemon:
    """A running milter process; ``output()`` is what it logged so far."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def serving(self) -> int:
        """How many processes serve: the workers the supervisor's start line names
        (``[milter] workers`` > 1, the default on a machine with several cores), else 1."""
        found = re.search(r"smimegate: starting; .*\bworkers=(\d+)", self.output())
        return int(found.group(1)) if found else 1

    def wait_each(self, text: str, timeout: float = 10.0) -> None:
        """Wait until every serving process has logged ``text`` (a reload reaches each worker
        on its own). Raises AssertionError with the log after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.output().count(text) < self.serving():
            assert time.monotonic() < deadline, f"no {text!r} from each process:\n{self.output()}"
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def start(
    argv: Sequence[str],
    log_path: Path,
    ready: str | None,
    *,
    pass_fds: Sequence[int] = (),
    timeout: float = 15.0,
) -> Daemon:
    """Start ``argv`` (run from the repository root); wait until ``ready`` (a socket spec)
    accepts connections. Raises AssertionError with the log when it does not come up."""
    out = log_path.open("wb")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(list(argv), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                            env=env, pass_fds=tuple(pass_fds))
    out.close()
    daemon = Daemon(proc, log_path)
    deadline = time.monotonic() + timeout
    while ready is not None:
        if proc.poll() is not None:
            raise AssertionError(f"milter exited with {proc.returncode}:\n{daemon.output()}")
        if _accepts(ready):
            break
        if time.monotonic() > deadline:
            daemon.stop()
            raise AssertionError(f"milter not ready on {ready}:\n{daemon.output()}")
        time.sleep(0.05)
    return daemon


def _accepts(spec: str) -> bool:
    from tests.milter.client import parse_spec

    family, address = parse_spec(spec)
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(address)  # type: ignore[arg-type]
        except OSError:
            return False
        return True


def session(spec: str) -> MilterClient:
    """A negotiated connection from an outside client, after CONNECT and HELO."""
    from tests.milter.client import MilterClient

    c = MilterClient(spec).open()
    c.negotiate()
    c.connect(hostname="mx.outside.test", address="192.0.2.7")
    c.helo("mx.outside.test")
    return c


def refuses_connections(spec: str) -> bool:
    from tests.milter.client import MilterClient

    try:
        MilterClient(spec, timeout=1).open().close()
    except OSError:
        return True
    return False


def milter_argv(config: Path, *extra: str) -> list[str]:
    return [PYTHON, "-m", "smimegate", "-c", str(config), "milter", *extra]


def fake_argv(config: Path, *extra: str) -> list[str]:
    return [PYTHON, "-m", "tests.milter.fakegateway", str(config), *extra]


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class SmtpSink:
    """A minimal SMTP server on loopback that keeps what it receives."""

    port: int = 0
    messages: list[Received] = field(default_factory=list)
    _server: socketserver.ThreadingTCPServer | None = None

    def __enter__(self) -> SmtpSink:
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 sink ESMTP\r\n")
                sender, rcpts = "", list[str]()
                while line := self.rfile.readline():
                    cmd = line.decode().strip()
                    verb = cmd.split(" ", 1)[0].split(":", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.wfile.write(b"250 sink\r\n")
                    elif verb == "MAIL":
                        sender, rcpts = cmd.split(":", 1)[1].strip().strip("<>"), []
                        self.wfile.write(b"250 ok\r\n")
                    elif verb == "RCPT":
                        rcpts.append(cmd.split(":", 1)[1].strip().strip("<>"))
                        self.wfile.write(b"250 ok\r\n")
                    elif verb == "DATA":
                        self.wfile.write(b"354 go\r\n")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk
                        sink.messages.append(Received(sender, rcpts, data))
                        self.wfile.write(b"250 queued\r\n")
                    elif verb == "QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:
                        self.wfile.write(b"250 ok\r\n")

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# tgkill(2)'s system call number: x86_64, aarch64.
SYS_TGKILL = {"x86_64": 234, "aarch64": 131}[platform.machine()]


def thread_signals(pid: int) -> dict[int, tuple[int, int]]:
    """Thread id -> (blocked, caught) signal masks of every thread of a process, from
    /proc/PID/task/TID/status (bit n-1 for signal n)."""
    masks = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = dict(line.split(":\t", 1) for line in (task / "status").read_text().splitlines()
                      if ":\t" in line)
        masks[int(task.name)] = (int(fields["SigBlk"], 16), int(fields["SigCgt"], 16))
    return masks


def has(mask: int, signo: int) -> bool:
    return bool(mask & (1 << (signo - 1)))


def libmilter_signal_thread(pid: int) -> int:
    """The thread id of libmilter's signal thread (mi_signal_thread): while it sigwait()s for
    SIGHUP/SIGTERM/SIGINT the kernel shows them unblocked in its SigBlk, and the only other
    thread with SIGTERM unblocked is the main thread (runner.py StopSignals), whose id is the
    process id."""
    found = [tid for tid, (blocked, _) in thread_signals(pid).items()
             if tid != pid and not has(blocked, signal.SIGTERM)]
    assert len(found) == 1, f"threads with SIGTERM unblocked besides the main one: {found}"
    return found[0]


def tgkill(pid: int, tid: int, sig: signal.Signals) -> None:
    """tgkill(2): a signal to one thread of another process, which os.kill and
    signal.pthread_kill (threads of this process only) cannot do."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_TGKILL, pid, tid, int(sig)) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill {pid} {tid} {sig.name}")
