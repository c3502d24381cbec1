"""Graceful stop (issue 5 item 1): SIGTERM/SIGINT/SIGHUP let the messages in flight finish.

A milter subprocess with tests/milter/fakegateway.py (``slowN@`` recipients make processing take
N tenths of a second) driven by the protocol client over its real socket.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.helpers.ports import free_port
from tests.milter import client as mc
from tests.milter.client import MessageResult, MilterClient
from tests.milter.daemon import (
    Daemon,
    fake_argv,
    libmilter_signal_thread,
    refuses_connections,
    session,
    start,
    tgkill,
    write_config,
)

HEADERS = [("From", "alice@inside.test"), ("To", "bob@outside.test"), ("Subject", "hi")]


def _open_transaction(spec: str, queue_id: str) -> MilterClient:
    """A connection whose transaction is open: headers sent, body and end not yet."""
    c = session(spec)
    c.mail("a@inside.test", macros={"i": queue_id})
    assert c.rcpt("bob@outside.test") == mc.Reply(mc.SMFIR_CONTINUE)
    c.header("Subject", "x")
    c.eoh()
    return c


def _wait_for(daemon: Daemon, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in daemon.output():
        assert daemon.proc.poll() is None, daemon.output()
        assert time.monotonic() < deadline, f"no {text!r} in:\n{daemon.output()}"
        time.sleep(0.02)


def _send_in_background(spec: str, recipient: str,
                        queue_id: str) -> tuple[threading.Thread, list[MessageResult]]:
    """One message to ``recipient`` (``slowN@``: N tenths of a second) on a connection of its
    own, from a thread this starts; its result lands in the list."""
    results: list[MessageResult] = []

    def send() -> None:
        with session(spec) as c:
            results.append(c.message("a@inside.test", [recipient], HEADERS, b"x\r\n",
                                     queue_id=queue_id))

    sender = threading.Thread(target=send)
    sender.start()
    return sender, results


# workers 0 (the default, one per core: a supervisor passes the signal on) and 1 (one process).
@pytest.mark.parametrize(("sig", "kind", "workers"), [
    (signal.SIGTERM, "inet", 0), (signal.SIGINT, "unix", 0), (signal.SIGHUP, "inet", 0),
    (signal.SIGTERM, "inet", 1), (signal.SIGINT, "unix", 1)])
def test_stop_signal_lets_the_message_in_flight_finish(
    tmp_path: Path, sig: signal.Signals, kind: str, workers: int
) -> None:
    spec = (f"inet:{free_port()}@127.0.0.1" if kind == "inet"
            else f"unix:{tmp_path}/milter.sock")
    daemon = start(fake_argv(write_config(tmp_path, spec, workers=workers)),
                   tmp_path / "milter.log", spec)
    sender, results = _send_in_background(spec, "slow40@outside.test", "QSLOW")
    try:
        _wait_for(daemon, "QSLOW: smimegate: fake slow start")
        daemon.proc.send_signal(sig)
        # No new connections from the moment the stop begins, while the message is in flight.
        # (The message in flight takes 4 s; the deadline leaves room for a loaded machine.)
        deadline = time.monotonic() + 3
        while not refuses_connections(spec):
            assert time.monotonic() < deadline, "still accepting connections after the signal"
            time.sleep(0.05)
        assert sender.is_alive() and daemon.proc.poll() is None
        sender.join(15)
        assert daemon.proc.wait(15) == 0
    finally:
        daemon.stop()
        sender.join(5)
    # The client got its final reply, with the gateway's edits.
    (result,) = results
    assert result.eom is not None and result.eom.reply.cmd == mc.SMFIR_CONTINUE
    assert [a.name for a in result.eom.of("addheader")] == ["X-Smimegate-Info-Seen"]
    out = daemon.output()
    assert f"smimegate: stopping; signal={sig.name} in_progress=1" in out
    assert "QSLOW: smimegate: fake result=ok" in out
    assert "smimegate: drained; finished=yes cut=0" in out
    assert "transactions cut" not in out and "smimegate: stopped" in out
    assert not (tmp_path / "milter.sock").exists()


def _in_progress_at_stop(daemon: Daemon) -> tuple[int, int]:
    """(processes that began their stop, transactions they counted in progress then)."""
    # Always signal=SIGTERM: workers get the stop as SIGRTMIN+1 (runner.FORWARDED_STOP), which
    # libmilter's own signal thread does not wait for. When they got SIGTERM itself, that
    # thread now and then took it before Python's handler (1 of 15 runs on a loaded machine).
    counts = re.findall(r"smimegate: stopping; signal=SIGTERM in_progress=(\d+)",
                        daemon.output())
    return len(counts), sum(int(n) for n in counts)


def test_open_transaction_finishes_and_new_ones_are_refused(tmp_path: Path) -> None:
    spec = f"inet:{free_port()}@127.0.0.1"
    daemon = start(fake_argv(write_config(tmp_path, spec)), tmp_path / "milter.log", spec)
    try:
        with _open_transaction(spec, "QOPEN1") as first, \
                _open_transaction(spec, "QOPEN2") as second:
            daemon.proc.send_signal(signal.SIGTERM)
            # Both counted by the process(es) serving them (with several workers, the two
            # connections may be in one worker or in two).
            deadline = time.monotonic() + 10
            while _in_progress_at_stop(daemon) != (daemon.serving(), 2):
                assert time.monotonic() < deadline, daemon.output()
                time.sleep(0.02)
            # Whether the two are in two workers: each then counted one.
            split = re.findall(r"stopping; signal=SIGTERM in_progress=(\d+)",
                               daemon.output()) == ["1", "1"]
            # The first one goes on after the signal and gets its reply.
            first.body(b"body\r\n")
            done = first.eom()
            assert done.reply.cmd == mc.SMFIR_CONTINUE
            assert [a.name for a in done.of("addheader")] == ["X-Smimegate-Info-Seen"]
            # A new transaction on that connection is refused at its first recipient. When
            # the first connection's worker holds nothing else, it may finish its stop (the
            # MTA's next command shows its last reply was written) before it answers: the
            # connection closes, which the MTA answers with its milter_default_action
            # (tempfail) as well. This race is the likely cause of one failure seen under load.
            try:
                refused = first.message("a@inside.test", ["bob@outside.test"], HEADERS,
                                        b"x\r\n", queue_id="QLATE")
            except (mc.ProtocolError, OSError):
                assert split, "the connection closed although its worker holds a transaction"
            else:
                (rcpt,) = refused.rcpts
                assert rcpt is not None and rcpt.text is not None
                assert rcpt.text.startswith("451 4.3.2 "), rcpt.text
            assert daemon.proc.poll() is None  # the second one still holds the stop
            second.body(b"body\r\n")
            assert second.eom().reply.cmd == mc.SMFIR_CONTINUE
            assert daemon.proc.wait(15) == 0
    finally:
        daemon.stop()
    out = daemon.output()
    assert "QOPEN1: smimegate: fake result=ok" in out
    assert "QOPEN2: smimegate: fake result=ok" in out
    assert "QLATE: smimegate: fake" not in out
    assert split or "QLATE: smimegate: action=rcpt-refused" in out
    assert "smimegate: drained; finished=yes cut=0" in out


def test_stop_timeout_cuts_a_transaction_that_does_not_end(tmp_path: Path) -> None:
    spec = f"inet:{free_port()}@127.0.0.1"
    config = write_config(tmp_path, spec, stop_timeout=1.0)
    daemon = start(fake_argv(config), tmp_path / "milter.log", spec)
    try:
        with _open_transaction(spec, "QSTUCK") as c:
            started = time.monotonic()
            daemon.proc.send_signal(signal.SIGTERM)
            assert daemon.proc.wait(15) == 0
            took = time.monotonic() - started
            # The MTA sees the connection go and answers per milter_default_action.
            with pytest.raises((mc.ProtocolError, OSError)):
                c.body(b"late\r\n")
                c.eom()
    finally:
        daemon.stop()
    # It waited for the transaction as long as stop_timeout says (behaviour, not speed: the
    # upper end is proved by wait(15) returning).
    assert took >= 1.0, took
    out = daemon.output()
    assert "transactions cut at stop; the MTA tempfails them; in_progress=1" in out
    assert "smimegate: drained; finished=no cut=1" in out
    assert "QSTUCK: smimegate: fake" not in out and "smimegate: stopped" in out


def test_second_signal_ends_the_wait(tmp_path: Path) -> None:
    spec = f"inet:{free_port()}@127.0.0.1"
    config = write_config(tmp_path, spec, stop_timeout=120.0)
    daemon = start(fake_argv(config), tmp_path / "milter.log", spec)
    try:
        with _open_transaction(spec, "QWAIT"):
            daemon.proc.send_signal(signal.SIGTERM)
            _wait_for(daemon, "smimegate: stopping; signal=SIGTERM in_progress=1")
            with pytest.raises(subprocess.TimeoutExpired):
                daemon.proc.wait(0.3)  # still waiting for QWAIT, not gone
            daemon.proc.send_signal(signal.SIGINT)
            # stop_timeout is 120 s: ending within wait(15) shows the second signal ended it.
            assert daemon.proc.wait(15) == 0
    finally:
        daemon.stop()
    assert "smimegate: drained; finished=no cut=1" in daemon.output()


def test_a_stop_signal_taken_by_libmilters_own_thread_still_drains(tmp_path: Path) -> None:
    """The signal reaches libmilter's signal thread instead of Python's handler (seen now and
    then in workers): libmilter closes its listening socket and smfi_main returns by itself
    within MI_CHK_TIME (5 s), and the stop still waits for the message in flight (8 s, so it
    is still running then), logs which thread took the signal, and exits 0."""
    spec = f"inet:{free_port()}@127.0.0.1"
    daemon = start(fake_argv(write_config(tmp_path, spec, workers=1)),
                   tmp_path / "milter.log", spec)
    sender, results = _send_in_background(spec, "slow80@outside.test", "QLIB")
    try:
        _wait_for(daemon, "QLIB: smimegate: fake slow start")
        tgkill(daemon.proc.pid, libmilter_signal_thread(daemon.proc.pid), signal.SIGTERM)
        sender.join(20)
        assert daemon.proc.wait(20) == 0
    finally:
        daemon.stop()
        sender.join(5)
    (result,) = results
    assert result.eom is not None and result.eom.reply.cmd == mc.SMFIR_CONTINUE
    out = daemon.output()
    assert "smimegate: stopping; signal=libmilter in_progress=1" in out, out
    assert "QLIB: smimegate: fake result=ok" in out
    assert "smimegate: drained; finished=yes cut=0" in out
