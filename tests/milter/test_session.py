"""Quick unit checks of the daemon's pieces that need no socket (the rest: test_runner.py)."""

from __future__ import annotations

import pytest

from smimegate.config import Config, loads
from smimegate.milter import replies
from smimegate.milter.macros import ENVFROM_MACROS, EOM_MACROS, Macros
from smimegate.milter.runner import parse_socket
from smimegate.milter.session import _bare, internal_error_reply, parse_reinject


def test_macros_keep_first_value_and_reset_per_message() -> None:
    sent: dict[str, str | bytes] = {"{daemon_name}": "ORIGINATING", "{auth_authen}": b"alice",
                                    "i": ""}
    m = Macros().read(lambda name: sent.get(name), ENVFROM_MACROS)
    assert m == Macros(queue_id=None, auth_authen="alice", daemon_name="ORIGINATING")
    m = m.read(lambda name: {"i": "4XkQ"}.get(name), EOM_MACROS)  # later stages do not erase what is known
    assert m == Macros(queue_id="4XkQ", auth_authen="alice", daemon_name="ORIGINATING")
    assert m.for_new_message() == Macros(daemon_name="ORIGINATING")


def test_internal_error_reply_follows_config() -> None:
    assert internal_error_reply(Config()) == replies.TEMPFAIL_INTERNAL
    accept = loads('[milter]\non_internal_error = "accept"\n')
    reject = loads('[milter]\non_internal_error = "reject"\n')
    assert internal_error_reply(accept) == replies.ACCEPT
    assert internal_error_reply(reject) == replies.REJECT_INTERNAL


def test_addresses_and_specs() -> None:
    assert _bare("<a@x.test>") == "a@x.test" and _bare("<>") == "" and _bare("b@y") == "b@y"
    assert parse_reinject("smtp:127.0.0.1:10026") == ("127.0.0.1", 10026)
    assert parse_reinject("smtp:[::1]:10026") == ("::1", 10026)
    with pytest.raises(ValueError):
        parse_reinject("lmtp:127.0.0.1:24")
    assert parse_socket("inet:8891@127.0.0.1").port == 8891
    assert parse_socket("inet6:8891").host == "::"
    assert parse_socket("local:/run/m.sock").spec == "unix:/run/m.sock"
    assert parse_socket("fd:3").fd == 3
    for bad in ("inet:0@127.0.0.1", "tcp:25", "unix:relative", "fd:x"):
        with pytest.raises(ValueError, match="milter socket"):
            parse_socket(bad)


def test_runtime_counts_transactions_and_refuses_new_ones_when_stopping() -> None:
    import threading

    from smimegate.milter.session import Runtime

    class Gw:
        def reload(self, config: Config | None = None) -> None: ...

    runtime = Runtime(Config(), Gw())  # type: ignore[arg-type]
    assert runtime.begin() and runtime.begin() and runtime.active == 2
    assert not runtime.stopping
    assert runtime.stop() == 2 and runtime.stopping
    assert not runtime.begin() and runtime.active == 2  # not counted: refused at RCPT
    runtime.end()
    assert not runtime.wait_idle(0.05)
    threading.Timer(0.1, runtime.end).start()
    assert runtime.wait_idle(5) and runtime.active == 0
    assert replies.TEMPFAIL_STOPPING.line() == (
        "451 4.3.2 encryption gateway: shutting down, try again later")


def test_runtime_waits_for_end_of_message_replies_until_the_next_command() -> None:
    import threading

    from smimegate.milter.session import Runtime

    class Gw:
        def reload(self, config: Config | None = None) -> None: ...

    runtime = Runtime(Config(), Gw())  # type: ignore[arg-type]
    assert runtime.begin()
    runtime.end(reply_pending=True)  # end of message: libmilter has not written the reply yet
    assert runtime.active == 0
    assert not runtime.wait_replies(0.05)
    threading.Timer(0.1, runtime.reply_written).start()  # the MTA's next command arrived
    assert runtime.wait_replies(5)
    assert runtime.begin()
    runtime.end()  # abort / close: no reply pending
    assert runtime.wait_replies(0)
