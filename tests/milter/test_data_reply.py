"""DATA is negotiated with a reply on inet: (issue 5 item 12, the inet: stall;
smimegate/milter/session.py), and negotiated away on unix: (issue 11 item 2).

Postfix flushes its buffered milter packets only when it waits for a reply. Unless DATA is
answered, smtpd's DATA-stage packets go out unanswered just before cleanup writes the headers
and body on the same connection, and Nagle + delayed ACK hold that write ~40 ms on inet:. These
tests pin the protocol facts the fix rests on, over the real daemon (runner + session, with the
fake gateway of tests/milter/fakegateway.py). On a unix: socket, which has no Nagle, the same
daemon asks the MTA not to send DATA at all (SMFIP_NODATA), when the MTA offers that.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mta import wait_for
from tests.helpers.ports import free_port
from tests.milter import client as mc
from tests.milter.client import MilterClient
from tests.milter.daemon import Daemon, fake_argv, start, write_config


@pytest.fixture()
def daemon_spec(tmp_path: Path) -> Iterator[str]:
    spec = f"inet:{free_port()}@127.0.0.1"
    config = write_config(tmp_path, spec)
    daemon: Daemon = start(fake_argv(config), tmp_path / "milter.log", spec)
    try:
        yield spec
    finally:
        daemon.stop()


def test_data_is_sent_and_answered(daemon_spec: str) -> None:
    with MilterClient(daemon_spec).open() as c:
        neg = c.negotiate()
    assert not neg.protocol & mc.SMFIP_NODATA, "DATA must be sent to the milter"
    assert not neg.protocol & mc.SMFIP_NR_DATA, "DATA must be answered"


def test_data_reply_is_continue_and_the_message_goes_on(daemon_spec: str) -> None:
    with MilterClient(daemon_spec).open() as c:
        c.negotiate()
        c.connect(hostname="mx.outside.test", address="192.0.2.7",
                  macros={"{daemon_name}": "ORIGINATING", "j": "gw.inside.test"})
        c.helo("mx.outside.test")
        assert c.mail("a@inside.test", macros={"i": "4DATA1"}) is None  # @noreply
        rcpt = c.rcpt("bob@outside.test", macros={"i": "4DATA1"})
        assert rcpt is not None and rcpt.cmd == mc.SMFIR_CONTINUE
        data = c.data(macros={"i": "4DATA1"})
        assert data is not None and data.cmd == mc.SMFIR_CONTINUE
        c.header("From", "a@inside.test")
        c.header("To", "bob@outside.test")
        c.eoh(macros={"i": "4DATA1"})
        c.body(b"hello\r\n")
        result = c.eom(macros={"i": "4DATA1"})
    assert result.reply.cmd in (mc.SMFIR_CONTINUE, mc.SMFIR_ACCEPT)


def test_second_message_on_the_connection_answers_data_again(daemon_spec: str) -> None:
    with MilterClient(daemon_spec).open() as c:
        c.negotiate()
        c.connect(hostname="mx.outside.test", address="192.0.2.7")
        c.helo("mx.outside.test")
        for queue_id in ("4DATA2", "4DATA3"):
            r = c.message("a@inside.test", ["bob@outside.test"],
                          [("From", "a@inside.test"), ("Subject", "again")], b"x\r\n",
                          queue_id=queue_id)
            assert r.eom is not None
            assert r.eom.reply.cmd in (mc.SMFIR_CONTINUE, mc.SMFIR_ACCEPT)


@pytest.fixture()
def unix_daemon(tmp_path: Path) -> Iterator[tuple[Daemon, str]]:
    spec = f"unix:{tmp_path}/milter.sock"
    config = write_config(tmp_path, spec)
    daemon: Daemon = start(fake_argv(config), tmp_path / "milter.log", spec)
    try:
        yield daemon, spec
    finally:
        daemon.stop()


def test_unix_socket_negotiates_data_away(unix_daemon: tuple[Daemon, str]) -> None:
    daemon, spec = unix_daemon
    with MilterClient(spec).open() as c:
        neg = c.negotiate()
        assert neg.protocol & mc.SMFIP_NODATA, "DATA is not needed on unix:"
        c.connect(hostname="mx.outside.test", address="192.0.2.7")
        assert c.mail("a@inside.test", macros={"i": "4DATAU1"}) is None
        rcpt = c.rcpt("rewrite@outside.test", macros={"i": "4DATAU1"})
        assert rcpt is not None and rcpt.cmd == mc.SMFIR_CONTINUE
        # As Postfix does: the DATA-stage macros still go out, unanswered, and no DATA.
        assert c.data(macros={"i": "4DATAU1"}) is None
        c.header("From", "a@inside.test")
        c.header("To", "rewrite@outside.test")
        c.body(b"hello\r\n")
        result = c.eom(macros={"i": "4DATAU1"})
    assert result.reply.cmd == mc.SMFIR_CONTINUE
    assert result.new_body == b"REPLACED\r\nhello\r\n"
    # The message's log line carries the queue id the end-of-message macros gave.
    wait_for(lambda: "4DATAU1" in daemon.output(), "the message's log line", timeout=10,
             log=daemon.output())


def test_unix_socket_answers_data_when_the_mta_cannot_skip_it(
        unix_daemon: tuple[Daemon, str]) -> None:
    _, spec = unix_daemon
    client = MilterClient(spec)
    client.protocol &= ~mc.SMFIP_NODATA  # an MTA that does not offer SMFIP_NODATA
    with client.open() as c:
        neg = c.negotiate()
        assert not neg.protocol & mc.SMFIP_NODATA
        r = c.message("a@inside.test", ["bob@outside.test"], [("From", "a@inside.test")],
                      b"x\r\n", queue_id="4DATAU2")
    assert r.eom is not None and r.eom.reply.cmd in (mc.SMFIR_CONTINUE, mc.SMFIR_ACCEPT)
