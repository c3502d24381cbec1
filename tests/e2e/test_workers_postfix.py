"""Nothing is lost while milter workers come and go (issue 11 item 4): a real private Postfix
submits a steady load of outbound mail through ``smimegate milter`` with several workers while
the test SIGKILLs a worker that holds an SMTP session. Every message the client submitted is
either accepted, and arrives at the sink signed and encrypted, or tempfailed (Postfix's
milter_default_action from contrib/postfix), and then sent again by the client, as a real
client does, and arrives processed too.

Two milter configurations: the defaults (workers = 0: one per core; log = syslog, which falls
back to stderr where no syslogd listens, as here) on inet:, and workers = 2 on unix:.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.mta import MilterProcess, Postfix, SmtpSink, open_dir, wait_for
from tests.e2e.mta_fixtures import (  # noqa: F401 - fixtures
    ALICE,
    BOB,
    milter_config,
    running,
    smimegate_milter,
    store_dir,
)
from tests.e2e.test_postfix_flow import is_enveloped, plain
from tests.helpers.ports import free_port

pytestmark = pytest.mark.e2e

MESSAGES = 80
SENDERS = 4
KILLS = 6  # at most: until one kill cut a transaction
STARTED = re.compile(r"worker started; worker=(\d+) pid=(\d+)")
CORES = len(os.sched_getaffinity(0))


@dataclass
class World:
    base: Path
    postfix: Postfix
    sink: SmtpSink
    milter: MilterProcess
    spec: str


def _config(base: Path, spec: str, store: Path, reinject_port: int, extra: str) -> Path:
    """The fixtures' milter configuration with the default log target and ``extra``."""
    path = milter_config(base, socket=spec, reinject_port=reinject_port, store=store)
    # Messages are told apart by their outer Subject: RFC 9788 header protection (which
    # shows "[...]" outside an encrypted copy) is off here.
    path.write_text(path.read_text().replace('log = "stdout"\n', "")
                    + "header_protection = false\n" + extra)
    return path


@pytest.fixture(params=["defaults-inet", "workers2-unix"])
def world(request: pytest.FixtureRequest, store_dir: Path) -> Iterator[World]:  # noqa: F811
    base = open_dir("smimegate-workers-")
    sink = SmtpSink(base / "sink")
    if request.param == "defaults-inet":
        port = free_port()
        spec, postfix_spec, extra = f"inet:{port}@127.0.0.1", f"inet:127.0.0.1:{port}", ""
    else:
        path = base / "milter.sock"
        spec, postfix_spec = f"unix:{path}", f"unix:{path}"
        extra = 'workers = 2\nsocket_mode = "0666"\nlog = "stdout"\n'
    postfix = Postfix(base / "postfix", milter=postfix_spec, mailboxes=[ALICE],
                      relay_port=sink.port)
    config = _config(base, spec, store_dir, postfix.reinject_port, extra)
    milter = smimegate_milter(config, spec, base / "milter.log")
    try:
        with running(sink, milter, postfix):
            yield World(base, postfix, sink, milter, spec)
    finally:
        for pid in _workers(milter.log()).values():
            _kill(pid)  # a worker outlives its supervisor only until it notices
    shutil.rmtree(base, ignore_errors=True)


def _workers(log: str) -> dict[int, int]:
    return {int(m.group(1)): int(m.group(2)) for m in STARTED.finditer(log)}


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue  # closed meanwhile
        if link.startswith("socket:["):
            found.add(link[8:-1])
    return found


def _sessions(spec: str) -> set[str]:
    """Inodes of the milter's accepted, connected sockets (an MTA session each)."""
    if spec.startswith("unix:"):
        path = spec[5:]
        rows = Path("/proc/net/unix").read_text().splitlines()[1:]
        # Num RefCount Protocol Flags Type St Inode Path; St 03: connected.
        return {r.split()[6] for r in rows
                if len(r.split()) > 7 and r.split()[7] == path and r.split()[5] == "03"}
    port = int(spec.split(":")[1].split("@")[0])
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    # sl local rem st ... inode; st 01: ESTABLISHED.
    return {r.split()[9] for r in rows
            if int(r.split()[1].split(":")[1], 16) == port and r.split()[3] == "01"}


@dataclass
class Load:
    """SENDERS clients submit messages numbered from 0 until ``finish`` is set and at least
    MESSAGES were taken; a tempfailed one is submitted again later, as an SMTP client does
    with a 4xx reply."""

    world: World
    issued: int = 0
    finish: threading.Event = field(default_factory=threading.Event)
    accepted: set[int] = field(default_factory=set)
    tempfailed: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> int | None:
        with self.lock:
            if self.finish.is_set() and self.issued >= MESSAGES:
                return None
            self.issued += 1
            return self.issued - 1

    def submit(self, n: int) -> bool:
        """True when Postfix accepted message ``n``; False on a 4xx."""
        postfix = self.world.postfix
        try:
            refused = postfix.send(ALICE, [BOB], plain(ALICE, [BOB], f"load-{n:05d}"),
                                   port=postfix.submission_port)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(400 <= code < 500 for code in codes):
                return False
            raise
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                return False
            raise
        assert not refused, refused
        return True

    def sender(self) -> None:
        while (n := self.take()) is not None:
            try:
                ok = self.submit(n)
            except (OSError, smtplib.SMTPException) as exc:
                with self.lock:
                    self.errors.append(f"{n}: {type(exc).__name__}: {exc}")
                continue
            with self.lock:
                (self.accepted.add if ok else self.tempfailed.append)(n)


def test_killing_workers_under_load_loses_nothing(world: World) -> None:
    log = world.milter.log
    workers = 2 if "workers = 2" in (world.base / "smimegate.toml").read_text() else CORES
    wait_for(lambda: len(_workers(log())) == workers, f"{workers} workers", log=log())
    load = Load(world)
    senders = [threading.Thread(target=load.sender) for _ in range(SENDERS)]
    for t in senders:
        t.start()
    kills = []
    try:
        wait_for(lambda: len(load.accepted) >= 5, "the first messages", log=log())
        # Kill a worker while it holds an SMTP session, until one kill cut a transaction.
        while len(kills) < KILLS and not load.tempfailed:
            index = len(kills) % workers
            pid = _workers(log())[index]
            deadline = time.monotonic() + 20
            while not _socket_inodes(pid) & _sessions(world.spec):
                assert time.monotonic() < deadline, f"worker {pid} got no session\n{log()}"
                time.sleep(0.005)
            os.kill(pid, signal.SIGKILL)
            kills.append(pid)
            wait_for(lambda index=index, pid=pid: _workers(log())[index] != pid,
                     "the worker's restart", log=log())
    finally:
        load.finish.set()
        for t in senders:
            t.join(120)
    assert not load.errors, load.errors
    first_tempfailed = list(load.tempfailed)
    # The client sends the tempfailed ones again.
    retry = list(load.tempfailed)
    deadline = time.monotonic() + 120
    while retry:
        assert time.monotonic() < deadline, f"still tempfailed: {retry}\n{log()[-3000:]}"
        n = retry.pop(0)
        if load.submit(n):
            load.accepted.add(n)
        else:
            retry.append(n)
    total = load.issued
    assert total >= MESSAGES and load.accepted == set(range(total))
    wait_for(lambda: len(world.sink.files()) >= total, f"{total} messages at the sink",
             timeout=180, log=world.postfix.log_tail())
    world.postfix.wait_idle()
    captured = world.sink.messages()
    subjects = sorted(re.search(rb"^Subject: (load-\d+)", c.message, re.M).group(1).decode()
                      for c in captured)  # type: ignore[union-attr]
    assert subjects == [f"load-{n:05d}" for n in range(total)]  # each once
    unprocessed = [c.path.name for c in captured if not is_enveloped(c.message)]
    assert not unprocessed, unprocessed
    print(f"\n{world.spec}: {total} messages, {len(kills)} worker(s) killed, "
          f"{len(first_tempfailed)} tempfailed and sent again: {first_tempfailed}")
    assert first_tempfailed, f"no kill cut a transaction in {len(kills)} tries\n{log()[-3000:]}"
    out = log()
    if "log = " not in (world.base / "smimegate.toml").read_text():  # the default: syslog
        # No syslogd here: one warning for the supervisor and every worker, then stderr.
        assert out.count("logging to stderr until it answers") == 1, out[:3000]
    for pid in kills:
        assert re.search(rf"worker died; starting it again; worker=\d+ pid={pid} "
                         r"signal=SIGKILL", out), out[-3000:]
