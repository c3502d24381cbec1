"""Log line formatting, the secret guard, and the syslog / stdout handlers."""

from __future__ import annotations

import dataclasses
import io
import logging
import logging.handlers
import os
import shlex
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smimegate import config as cfg
from smimegate import log
from tests.helpers.testpki import TestCA


@pytest.fixture
def clean_logger():
    logger = log.get_logger()
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield logger
    for handler in list(logger.handlers):
        if handler not in saved[0]:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def with_milter(**changes: object) -> cfg.Config:
    base = cfg.Config()
    return dataclasses.replace(base, milter=dataclasses.replace(base.milter, **changes))


# --- line format -----------------------------------------------------------------------------


def test_contract_example_line():
    line = log.message_line(
        "4Xk2q1GZ",
        [
            ("direction", "outbound"),
            ("action", "sign+encrypt"),
            ("from", "<a@x>"),
            ("to", "<b@y>"),
            ("rcpt_certs", 1),
            ("cipher", "aes256-gcm"),
            ("size", "18211->25710"),
            ("delay", 0.14),
            ("result", "ok"),
        ],
    )
    assert line == (
        "4Xk2q1GZ: smimegate: direction=outbound action=sign+encrypt from=<a@x> to=<b@y> "
        "rcpt_certs=1 cipher=aes256-gcm size=18211->25710 delay=0.14 result=ok"
    )


def test_fields_keep_their_order_and_accept_a_mapping():
    assert log.format_fields({"z": 1, "a": 2, "m": 3}) == "z=1 a=2 m=3"


def test_missing_queue_id_is_noqueue():
    assert log.message_line(None, {"result": "ok"}) == "NOQUEUE: smimegate: result=ok"
    assert log.message_line("", {"result": "ok"}) == "NOQUEUE: smimegate: result=ok"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "plain"),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("a=b", '"a=b"'),
        ("", '""'),
        ("line\nbreak", '"line\\nbreak"'),
        ("cr\rtab\t", '"cr\\rtab\\t"'),
        ("bell\x07", '"bell\\x07"'),
        ("ünïcode", "ünïcode"),
        (True, "yes"),
        (False, "no"),
        (3, "3"),
        (0.1234, "0.12"),
        (b"raw bytes\xff", '"raw bytes\\\\xff"'),
    ],
)
def test_value_quoting(value, text):
    assert log.format_value(value) == text


def test_quoted_values_split_back_with_shell_rules():
    # A consumer can split a line with shlex and get every value back unchanged.
    fields = {"subject": 'Re: "quarterly" report', "reason": "no key", "to": "<b@y>"}
    line = log.message_line("ABC123", fields)
    parts = shlex.split(line)
    assert parts[:2] == ["ABC123:", "smimegate:"]
    assert dict(p.split("=", 1) for p in parts[2:]) == fields


def test_a_hostile_value_cannot_start_a_new_line():
    line = log.message_line("Q1", {"subject": "x\nQ2: smimegate: result=forged"})
    assert "\n" not in line
    assert line.count("smimegate:") == 2 and line.startswith("Q1: smimegate: subject=")


def test_none_values_are_left_out():
    assert log.format_fields([("a", 1), ("b", None), ("c", 3)]) == "a=1 c=3"


def test_bad_field_names_are_refused():
    with pytest.raises(ValueError, match="lower-case"):
        log.format_fields({"Bad Name": 1})


def test_odd_queue_id_is_quoted():
    assert log.message_line("a b", {"x": 1}) == '"a b": smimegate: x=1'


def test_warning_lines():
    assert log.warning_line("4Xk2q1GZ", "cannot decrypt", {"reason": "no key"}) == (
        '4Xk2q1GZ: smimegate: warning: cannot decrypt; reason="no key"'
    )
    assert log.warning_line(None, "CRL download failed", {"url": "http://ca/x.crl"}) == (
        "smimegate: warning: CRL download failed; url=http://ca/x.crl"
    )
    assert log.warning_line("", "too big") == "NOQUEUE: smimegate: warning: too big"
    assert log.warning_line(None, "a\nb") == "smimegate: warning: a\\nb"


# --- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "password", "pfx_password", "ldap_password", "passwd", "passphrase", "pin",
        "secret", "reinject_secret", "token", "api_token", "credentials", "private_key",
        "privkey", "key", "master_key", "session_key", "content_encryption_key", "cek",
        "pfx", "pkcs12_data", "hmac",
    ],
)  # fmt: skip
def test_secret_names_are_refused(name):
    assert log.is_secret_name(name)
    with pytest.raises(log.SecretFieldError, match=name):
        log.message_line("Q", {"result": "ok", name: "hunter2"})


@pytest.mark.parametrize(
    "name",
    ["key_transport", "key_size", "key_id", "keyid", "rcpt_certs", "signer", "cipher",
     "from", "to", "size", "delay", "passed", "pinned_cert", "tokens_seen"],
)  # fmt: skip
def test_ordinary_names_are_allowed(name):
    assert not log.is_secret_name(name)
    assert log.format_fields({name: "v"}) == f"{name}=v"


def test_private_key_values_are_refused():
    pem = TestCA().issue("k@x.test", "ec-p256").key_pem().decode()
    with pytest.raises(log.SecretFieldError, match="private key"):
        log.format_fields({"note": pem})
    with pytest.raises(log.SecretFieldError):
        log.format_fields({"note": pem.encode()})


def test_redact_filters_instead_of_refusing():
    assert log.redact(
        {"user": "a", "password": "hunter2", "blob": "-----BEGIN PRIVATE KEY-----"}
    ) == [
        ("user", "a"),
        ("password", log.REDACTED),
        ("blob", log.REDACTED),
    ]


# --- handlers --------------------------------------------------------------------------------


def test_stdout_handler_writes_bare_lines(clean_logger):
    out = io.StringIO()
    logger = log.setup_logging(with_milter(log="stdout"), stream=out)
    assert logger is clean_logger
    log.log_message("Q1", {"result": "ok"})
    log.log_warning("Q1", "odd", {"why": "x"})
    assert out.getvalue() == "Q1: smimegate: result=ok\nQ1: smimegate: warning: odd; why=x\n"


def test_log_level_from_config(clean_logger):
    out = io.StringIO()
    log.setup_logging(with_milter(log="stdout", log_level="warning"), stream=out)
    log.log_message("Q1", {"result": "ok"})
    log.log_warning("Q1", "shown")
    assert out.getvalue() == "Q1: smimegate: warning: shown\n"


def test_setup_again_replaces_the_handler(clean_logger):
    first, second = io.StringIO(), io.StringIO()
    log.setup_logging(with_milter(log="stdout"), stream=first)
    log.setup_logging(with_milter(log="stdout"), stream=second)
    log.log_message("Q1", {"n": 1})
    assert first.getvalue() == "" and second.getvalue() == "Q1: smimegate: n=1\n"
    assert len([h for h in clean_logger.handlers if h.get_name() == "smimegate-main"]) == 1


def test_handler_scrubs_private_keys_from_any_record(clean_logger):
    out = io.StringIO()
    log.setup_logging(with_milter(log="stdout"), stream=out)
    pem = TestCA().issue("k@x.test", "rsa2048").key_pem().decode()
    clean_logger.error("unexpected: %s", pem)
    text = out.getvalue()
    assert "PRIVATE KEY" not in text and "unexpected: [private key redacted]" in text
    assert text.count("\n") == 1


def test_tracebacks_stay_on_one_line(clean_logger):
    out = io.StringIO()
    log.setup_logging(with_milter(log="stdout"), stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        clean_logger.exception("Q1: smimegate: warning: internal error")
    text = out.getvalue()
    assert text.count("\n") == 1 and "RuntimeError: boom" in text


@pytest.fixture
def syslog_socket(tmp_path):
    path = tmp_path / "log.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield path, sock
    sock.close()


@pytest.mark.parametrize(("facility", "code"), [("mail", 2), ("daemon", 3), ("local3", 19)])
def test_syslog_handler_sends_facility_and_tag(clean_logger, syslog_socket, facility, code):
    path, sock = syslog_socket
    log.setup_logging(with_milter(log="syslog", syslog_socket=str(path), syslog_facility=facility))
    log.log_message("4Xk2q1GZ", {"direction": "inbound", "result": "ok"})
    log.log_warning("4Xk2q1GZ", "bad signature")
    info, warning = sock.recv(4096).decode(), sock.recv(4096).decode()
    # RFC 3164 PRI = facility * 8 + severity (info 6, warning 4); then the tag and our line.
    assert info == (
        f"<{code * 8 + 6}>smimegate[{os.getpid()}]: "
        "4Xk2q1GZ: smimegate: direction=inbound result=ok\x00"
    )
    assert warning == (
        f"<{code * 8 + 4}>smimegate[{os.getpid()}]: 4Xk2q1GZ: smimegate: warning: bad signature\x00"
    )


def test_syslog_socket_missing_falls_back_to_stderr_after_one_warning(clean_logger, tmp_path):
    missing = tmp_path / "none"
    err = io.StringIO()
    log.setup_logging(with_milter(log="syslog", syslog_socket=str(missing)), stream=err)
    log.log_message("Q1", {"n": 1})
    log.log_warning("Q2", "odd")
    assert err.getvalue().splitlines() == [
        f"smimegate: warning: syslog socket {missing}: No such file or directory; logging to "
        "stderr until it answers",
        "Q1: smimegate: n=1",
        "Q2: smimegate: warning: odd",
    ]


def test_stderr_target(clean_logger, capsys):
    log.setup_logging(with_milter(log="stderr"))
    log.log_message("Q1", {"n": 1})
    assert capsys.readouterr() == ("", "Q1: smimegate: n=1\n")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_syslog_socket_that_appears_is_used_after_the_retry_interval(tmp_path):
    path = tmp_path / "log.sock"
    err, clock = io.StringIO(), FakeClock()
    handler = log.SyslogWithFallback(str(path), 2, fallback=err, retry=5.0, clock=clock)
    handler.setFormatter(logging.Formatter("tag: %(message)s"))
    record = logging.LogRecord("smimegate", logging.INFO, __file__, 1, "line %s", ("1",), None)
    assert not handler.open()
    handler.emit(record)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslogd:
        syslogd.bind(str(path))
        syslogd.settimeout(5)
        clock.now += 4.9  # not yet: at most one connect per retry interval
        handler.emit(record)
        assert not handler.connected
        clock.now += 0.1
        handler.emit(record)
        assert handler.connected
        assert syslogd.recv(4096) == b"<22>tag: line 1\x00"
    handler.close()
    lines = err.getvalue().splitlines()
    assert lines[0].startswith(f"smimegate: warning: syslog socket {path}: ")
    assert lines[1:] == ["tag: line 1", "tag: line 1",
                         f"smimegate: syslog socket {path} answers again; logging there"]


def test_syslog_that_goes_away_is_one_warning_then_stderr(clean_logger, tmp_path):
    path = tmp_path / "log.sock"
    err = io.StringIO()
    syslogd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    syslogd.bind(str(path))
    log.setup_logging(with_milter(log="syslog", syslog_socket=str(path)), stream=err)
    log.log_message("Q1", {"n": 1})
    assert syslogd.recv(4096).endswith(b"Q1: smimegate: n=1\x00")
    syslogd.close()
    path.unlink()
    log.log_message("Q2", {"n": 2})
    log.log_message("Q3", {"n": 3})
    assert err.getvalue().splitlines() == [
        f"smimegate: warning: syslog socket {path}: No such file or directory; logging to "
        "stderr until it answers",
        "Q2: smimegate: n=2",
        "Q3: smimegate: n=3",
    ]


def test_stream_syslog_socket_is_accepted(clean_logger, tmp_path):
    path = tmp_path / "stream.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(4)
        server.settimeout(5)
        log.setup_logging(with_milter(log="syslog", syslog_socket=str(path)))
        log.log_message("Q9", {"n": 9})
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            while not data.endswith(b"\x00"):
                data += conn.recv(4096)
        assert data.endswith(b"Q9: smimegate: n=9\x00")


def test_logger_does_not_propagate_to_root(clean_logger, caplog):
    out = io.StringIO()
    log.setup_logging(with_milter(log="stdout"), stream=out)
    with caplog.at_level(logging.INFO):
        log.log_message("Q", {"a": 1})
    assert out.getvalue() == "Q: smimegate: a=1\n"
    assert caplog.records == []


def test_syslog_restart_is_survived(clean_logger, tmp_path):
    path = tmp_path / "log.sock"

    def listen() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.settimeout(5)
        return sock

    first = listen()
    log.setup_logging(with_milter(log="syslog", syslog_socket=str(path)))
    log.log_message("Q1", {"n": 1})
    assert first.recv(4096).endswith(b"Q1: smimegate: n=1\x00")
    first.close()
    path.unlink()
    second = listen()  # syslogd restarted: same path, new socket
    try:
        log.log_message("Q2", {"n": 2})
        assert second.recv(4096).endswith(b"Q2: smimegate: n=2\x00")
    finally:
        second.close()


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))))
def test_any_printable_value_reads_back_with_shlex(text):
    assert shlex.split(f"k={log.format_value(text)}") == [f"k={text}"]


@given(st.text())
def test_any_value_stays_on_one_line(text):
    assert len(log.format_value(text).splitlines()) <= 1


def test_facilities_in_the_table_are_known_to_syslog():
    row = next(r for r in cfg.OPTIONS if r.name == "syslog_facility")
    assert row.choices and all(
        f in logging.handlers.SysLogHandler.facility_names for f in row.choices
    )


def test_format_value_plain_ascii_as_is_and_the_rest_quoted() -> None:
    # The fast path for plain printable ASCII must agree with the quoting rules.
    for code in range(0x20, 0x7F):
        text = f"a{chr(code)}b"
        out = log.format_value(text)
        if chr(code) in " \"'\\=":
            assert out.startswith('"') and shlex.split(out) == [text]
        else:
            assert out == text
