"""contrib/postfix and contrib/sendmail, checked on their own with the harness's no-op milter
(tests/e2e/noop_milter.py): the snippets load into a real Postfix without warnings, the
submission listener sends {daemon_name}=ORIGINATING, the queue id reaches the milter, the
re-injection listener bypasses milters, and the Sendmail .mc builds a configuration that asks
for the macros the milter reads. The flows with the real milter are in test_postfix_flow.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mta import (
    MilterProcess,
    Postfix,
    SmtpSink,
    header_values,
    noop_milter,
    open_dir,
    render_master_cf,
    render_sendmail_mc,
    run,
)
from tests.helpers.ports import free_port

pytestmark = pytest.mark.e2e

MESSAGE = b"From: <a@int.test>\r\nSubject: contrib\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def noop_postfix() -> Iterator[tuple[Postfix, SmtpSink, MilterProcess]]:
    base = open_dir("smimegate-contrib-")
    sink = SmtpSink(base / "sink")
    milter = noop_milter(f"inet:{free_port()}@127.0.0.1", base / "noop.log")
    postfix = Postfix(base / "postfix", milter=milter.postfix_spec, mailboxes=["in@int.test"],
                      relay_port=sink.port)
    try:
        sink.start()
        milter.start()
        postfix.start()
        yield postfix, sink, milter
    finally:
        milter.signal_stop()
        postfix.stop()
        milter.stop()
        sink.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_contrib_postfix_loads_cleanly(noop_postfix: tuple[Postfix, SmtpSink, MilterProcess]) -> None:
    postfix, _, milter = noop_postfix
    conf = postfix.conf

    def postconf(name: str) -> str:
        return run(["postconf", "-c", conf, "-hx", name]).stdout.decode().strip()

    assert postconf("smtpd_milters") == milter.postfix_spec
    assert postconf("non_smtpd_milters") == milter.postfix_spec
    assert postconf("milter_default_action") == "tempfail"
    for macro in ("i", "{auth_authen}", "{daemon_name}"):
        assert macro in postconf("milter_mail_macros").split()
    assert "i" in postconf("milter_end_of_data_macros").split()
    # Neither postconf nor postfix check complains about the rendered files.
    checked = run(["postfix", "-c", conf, "check"])
    assert checked.stderr == b"" and checked.stdout == b""
    assert "warning" not in run(["postconf", "-c", conf, "-n"]).stderr.decode()
    assert "warning" not in postfix.log(), postfix.log_tail()


def test_listeners_and_macros(noop_postfix: tuple[Postfix, SmtpSink, MilterProcess]) -> None:
    postfix, sink, _ = noop_postfix
    sink.clear()
    postfix.send("a@int.test", ["out@ext.test"], MESSAGE, port=postfix.submission_port)
    postfix.send("x@ext.test", ["in@int.test"], MESSAGE, port=postfix.smtp_port)
    postfix.send("a@int.test", ["again@ext.test"], MESSAGE, port=postfix.reinject_port)
    postfix.wait_idle()
    by_rcpt = {c.recipients: c.message for c in sink.messages()}
    assert set(by_rcpt) == {("out@ext.test",), ("again@ext.test",)}

    # Submission: the milter saw the queue id and {daemon_name}=ORIGINATING.
    (seen,) = header_values(by_rcpt[("out@ext.test",)], "X-Noop-Milter")
    queue_id, daemon = seen.split()
    assert daemon == "ORIGINATING"
    assert f"with ESMTP id {queue_id}" in header_values(by_rcpt[("out@ext.test",)], "Received")[0]
    # Port 25: through the milter, under another daemon name; delivered to the Maildir.
    (inbound,) = postfix.maildir("in@int.test")
    (seen,) = header_values(inbound, "X-Noop-Milter")
    assert seen.split()[1] not in ("ORIGINATING", "-")
    # Re-injection: no milter at all.
    assert header_values(by_rcpt[("again@ext.test",)], "X-Noop-Milter") == []


def test_render_keeps_contrib_text() -> None:
    """Only addresses change between contrib and the private instances (plus test overrides
    for the missing SASL server, appended after the contrib options)."""
    contrib = (Path(__file__).parents[2] / "contrib" / "postfix" / "master.cf").read_text()
    rendered = render_master_cf(10587, 10626)
    for line in contrib.splitlines():
        if line.startswith("  -o "):
            assert line in rendered
    assert "127.0.0.1:10587 inet" in rendered and "127.0.0.1:10626 inet" in rendered
    mc = render_sendmail_mc("inet:18891@127.0.0.1", 10587, 10626)
    assert "S=inet:18891@127.0.0.1" in mc and "Name=ORIGINATING" in mc
    assert "`Port=10626, Addr=127.0.0.1, Name=REINJECT, InputMailFilters='" in mc
