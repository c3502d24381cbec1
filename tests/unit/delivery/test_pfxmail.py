"""The PKCS#12 mail: its text and attachment, and handing it to a real SMTP server on loopback."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from smimegate.delivery import DeliveryError
from smimegate.delivery.pfxmail import build_pfx_mail, parse_relay, send_mail
from tests.helpers.ports import free_port
from tests.unit.delivery.conftest import EMAIL, PASSWORD
from tests.unit.delivery.servers import SmtpBehaviour, smtp_server


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def attachment(msg: EmailMessage) -> EmailMessage:
    (part,) = list(msg.iter_attachments())
    assert isinstance(part, EmailMessage)
    return part


def test_mail_explains_the_import_and_attaches_key_pfx(pfx: bytes) -> None:
    raw = build_pfx_mail("ca@gateway.test", EMAIL, pfx, password_by_sms=True)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF throughout
    msg = parse(raw)
    assert msg["From"] == "ca@gateway.test"
    assert msg["To"] == EMAIL
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"].endswith("@gateway.test>")
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    for client in ("Outlook", "Windows", "Thunderbird", "Apple Mail", "key.pfx", EMAIL):
        assert client in text
    assert "text message (SMS)" in text
    part = attachment(msg)
    assert part.get_content_type() == "application/x-pkcs12"
    assert part.get_filename() == "key.pfx"
    assert part["Content-Transfer-Encoding"] == "base64"
    assert part.get_content() == pfx
    key, cert, _chain = pkcs12.load_key_and_certificates(part.get_content(), PASSWORD.encode())
    assert key is not None and cert is not None
    assert PASSWORD.encode() not in raw


def test_without_sms_the_mail_says_who_has_the_password(pfx: bytes) -> None:
    text = parse(build_pfx_mail("ca@gateway.test", EMAIL, pfx, password_by_sms=False))
    body = text.get_body(("plain",))
    assert body is not None
    assert "ask the person" in body.get_content()
    assert "SMS" not in body.get_content()


@pytest.mark.parametrize("bad", ["", "a@x.test\r\nBcc: evil@x.test"])
def test_bad_addresses_are_refused(pfx: bytes, bad: str) -> None:
    with pytest.raises(ValueError, match="recipient"):
        build_pfx_mail("ca@gateway.test", bad, pfx, password_by_sms=True)


def test_parse_relay() -> None:
    assert parse_relay("127.0.0.1:25") == ("127.0.0.1", 25)
    assert parse_relay("[::1]:2525") == ("::1", 2525)
    assert parse_relay("mx.example.com:587") == ("mx.example.com", 587)
    for bad in ("127.0.0.1", "host:0", "host:99999", ":25"):
        with pytest.raises(ValueError, match="relay"):
            parse_relay(bad)


def test_send_mail_hands_the_message_to_the_relay(pfx: bytes) -> None:
    raw = build_pfx_mail("ca@gateway.test", EMAIL, pfx, password_by_sms=True)
    with smtp_server() as (port, sink):
        send_mail(f"127.0.0.1:{port}", "ca@gateway.test", EMAIL, raw)
    (got,) = sink.messages
    assert got.mail_from == "ca@gateway.test"
    assert got.rcpt_to == [EMAIL]
    assert attachment(parse(got.data)).get_content() == pfx


def test_relay_down_is_a_transient_error() -> None:
    port = free_port()
    with pytest.raises(DeliveryError, match=f"relay 127.0.0.1:{port}: .*refused") as info:
        send_mail(f"127.0.0.1:{port}", "ca@gateway.test", EMAIL, b"Subject: x\r\n\r\nx\r\n")
    assert not info.value.permanent


@pytest.mark.parametrize(
    ("behaviour", "permanent", "where"),
    [
        (SmtpBehaviour(rcpt_reply="550 5.1.1 no such user"), True, "RCPT TO"),
        (SmtpBehaviour(rcpt_reply="450 4.2.0 try later"), False, "RCPT TO"),
        (SmtpBehaviour(data_reply="554 5.7.1 content refused"), True, "DATA"),
        (SmtpBehaviour(data_reply="451 4.3.0 disk full"), False, "DATA"),
    ],
)
def test_smtp_refusals(behaviour: SmtpBehaviour, permanent: bool, where: str) -> None:
    with smtp_server(behaviour=behaviour) as (port, _), pytest.raises(DeliveryError) as info:
        send_mail(f"127.0.0.1:{port}", "ca@gateway.test", EMAIL, b"Subject: x\r\n\r\nx\r\n")
    assert info.value.permanent is permanent
    assert where in str(info.value)
    assert (behaviour.rcpt_reply or behaviour.data_reply or "")[:3] in str(info.value)
