"""End to end through a real private Postfix (issue 5 item 10): the real ``smimegate milter``
signs and encrypts what alice submits, decrypts and verifies what outsiders send her, splits
mixed recipients, refuses mandatory recipients without a certificate, and fails closed when
it is down. Outbound copies are read back by OpenSSL, gpgsm and NSS; inbound mail is read from
alice's Maildir as Postfix's virtual(8) delivered it.

The world (alice, bob, carol, dave) is described in tests/e2e/mta_fixtures.py.
"""

from __future__ import annotations

import email
import email.policy
import re
import smtplib

import pytest

from tests.e2e.clients import Gpgsm, Nss, OpenSSL, join_message, pkcs7_der, split_signed
from tests.e2e.mta import Captured, header_values, headers_with_prefix, wait_for
from tests.e2e.mta_fixtures import (
    ALICE,
    AUTHSERV_ID,
    BOB,
    CAROL,
    DAVE,
    PREFIX,
    PostfixWorld,
    smimegate,
)

pytestmark = pytest.mark.e2e

BODY = b"Hello Bob,\r\n\r\nthe quarterly figures are attached in spirit.\r\n-- \r\nAlice\r\n"


def plain(sender: str, to: list[str], subject: str, body: bytes = BODY) -> bytes:
    head = f"From: <{sender}>\r\nTo: {', '.join(f'<{t}>' for t in to)}\r\nSubject: {subject}\r\n"
    return head.encode() + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + body


def wait_captured(world: PostfixWorld, count: int) -> list[Captured]:
    wait_for(lambda: len(world.sink.files()) >= count, f"{count} message(s) at the sink",
             log=world.postfix.log_tail() + "\n" + world.milter.log()[-2000:])
    world.postfix.wait_idle()
    captured = world.sink.messages()
    assert len(captured) == count, [c.recipients for c in captured]
    return captured


def log_lines(world: PostfixWorld, queue_id: str) -> list[str]:
    return [line for line in world.milter.log().splitlines()
            if f"{queue_id}: smimegate:" in line]


def queue_id_of(message: bytes) -> str:
    """Postfix's queue id from the first Received header ("with ESMTP id QUEUEID")."""
    received = header_values(message, "Received")[0]
    match = re.search(r"with E?SMTP id ([0-9A-F]+)", received)
    assert match, received
    return match.group(1)


def is_enveloped(message: bytes) -> bool:
    ctype = header_values(message, "Content-Type")[0].lower()
    return ctype.startswith("application/pkcs7-mime") and "enveloped-data" in ctype


def test_outbound_signed_and_encrypted_read_by_openssl_gpgsm_nss(
    world: PostfixWorld, openssl: OpenSSL, gpgsm: Gpgsm, nss: Nss
) -> None:
    world.postfix.send(ALICE, [BOB], plain(ALICE, [BOB], "figures"),
                       port=world.postfix.submission_port)
    (out,) = wait_captured(world, 1)
    assert out.sender == ALICE and out.recipients == (BOB,)
    assert is_enveloped(out.message), out.message[:600]
    assert b"quarterly figures" not in out.message
    # RFC 9788 ([milter] header_protection, on by default): the Subject travels inside.
    assert header_values(out.message, "Subject") == ["[...]"]
    assert not headers_with_prefix(out.message, "X-Smimegate-")

    # OpenSSL: decrypt with bob's key, verify alice's signature against the CA.
    inner = openssl.decrypt(out.message, world.pki.bob)
    assert "multipart/signed" in header_values(inner, "Content-Type")[0]
    verified = openssl.verify(inner)
    assert verified.good, verified.detail
    assert b"quarterly figures" in verified.content
    assert header_values(verified.content, "Subject") == ["figures"]

    # gpgsm and NSS work on raw CMS: the EnvelopedData DER, then the detached signature.
    der = pkcs7_der(out.message)
    for client in (gpgsm, nss):
        decrypted = client.decrypt(der)
        part, signature = split_signed(decrypted)
        assert b"quarterly figures" in part
        result = client.verify_detached(signature, part)
        assert result.good, f"{type(client).__name__}: {result.detail}"

    (line,) = log_lines(world, queue_id_of(out.message))
    assert "direction=outbound" in line and "action=sign+encrypt" in line
    assert f"to=<{BOB}>" in line and "result=ok" in line


def test_inbound_decrypted_into_maildir_with_result_headers(
    world: PostfixWorld, openssl: OpenSSL
) -> None:
    entity = (b"Content-Type: text/plain; charset=us-ascii\n\n"
              b"Hi Alice,\n\nthe launch code is 0000.\n-- \nBob\n")
    signed = openssl.sign(entity, world.pki.bob)
    encrypted = openssl.encrypt(signed, world.pki.alice)
    message = join_message(
        [("From", f"<{BOB}>"), ("To", f"<{ALICE}>"), ("Subject", "launch"),
         # Forged by the outside sender: must not reach alice.
         (f"{PREFIX}Signer-Verified-0-9", "True"),
         ("Authentication-Results", f"{AUTHSERV_ID}; smime=pass")],
        encrypted,
    )
    world.postfix.send(BOB, [ALICE], message)
    world.postfix.wait_idle()
    (delivered,) = world.postfix.maildir(ALICE)
    assert_result_headers_as_inspect_says(world, message)

    assert b"the launch code is 0000." in delivered
    assert not is_enveloped(delivered)
    assert "multipart/signed" in header_values(delivered, "Content-Type")[0]
    info = headers_with_prefix(delivered, PREFIX)
    assert f"{PREFIX}Signer-Verified-0-9" not in info
    assert info[f"{PREFIX}Encryption-Algorithm-0"] == "AES256, Key size: 256"
    # ISSUER/SERIAL HEX/SKI...: the serial may carry a leading zero (DER bytes in hex).
    recipient_serial = info[f"{PREFIX}Encryption-Recipient-0-0"].split("/")[1]
    assert int(recipient_serial, 16) == world.pki.alice.cert.serial_number
    signer_serial = info[f"{PREFIX}Signer-ID-0-1"].split("/")[1]
    assert int(signer_serial, 16) == world.pki.bob.cert.serial_number
    assert info[f"{PREFIX}Signer-Verified-0-1"] == "True"
    assert info[f"{PREFIX}Signer-Trusted-0-1"] == "True"
    results = [v for v in header_values(delivered, "Authentication-Results")
               if v.startswith(AUTHSERV_ID)]
    assert len(results) == 1 and "smime=pass" in results[0], results
    # The message as delivered still verifies for alice's own mail client.
    assert openssl.verify(delivered).good

    (line,) = log_lines(world, queue_id_of(delivered.split(b"\r\n", 3)[3]))
    assert "direction=inbound" in line and "result=ok" in line


def assert_result_headers_as_inspect_says(world: PostfixWorld, sent: bytes) -> None:
    """The result headers in alice's Maildir file, read by Python's email package and unfolded
    (RFC 5322 2.2.3), are exactly, in order, what ``smimegate message inspect`` prints for the
    message that was sent; and the file has one line-end form (virtual(8) writes LF: a CR left
    in a folded value we added would show here)."""
    (path,) = (world.postfix.vmail / ALICE / "Maildir" / "new").iterdir()
    raw = path.read_bytes()
    assert b"\r" not in raw.partition(b"\n\n")[0], raw[:2000]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    delivered = [(name, str(value)) for name, value in parsed.items()
                 if name.startswith(PREFIX)]
    sent_file = world.base / "inbound-sent.eml"
    sent_file.write_bytes(sent)
    printed = smimegate(world.config, "message", "inspect", str(sent_file))
    expected = [tuple(line.split(": ", 1)) for line in printed.splitlines()]
    assert delivered == expected, (delivered, expected)
    # Long values were folded on the way (else this would not test folding at all).
    folded = [name for name, value in expected if len(name) + 2 + len(value) > 76]
    assert folded, expected
    head = raw.partition(b"\n\n")[0].decode("latin-1")
    assert all(re.search(rf"^{re.escape(n)}: [^\n]*\n[ \t]", head, re.M) for n in folded), head


def test_mixed_recipients_split_each_copy_right(world: PostfixWorld, openssl: OpenSSL) -> None:
    world.postfix.send(ALICE, [BOB, CAROL], plain(ALICE, [BOB, CAROL], "both"),
                       port=world.postfix.submission_port)
    captured = wait_captured(world, 2)
    by_rcpt = {c.recipients: c for c in captured}
    assert set(by_rcpt) == {(BOB,), (CAROL,)}

    to_bob, to_carol = by_rcpt[(BOB,)].message, by_rcpt[(CAROL,)].message
    assert is_enveloped(to_bob) and b"quarterly figures" not in to_bob
    assert openssl.verify(openssl.decrypt(to_bob, world.pki.bob)).good
    # carol has no certificate (encrypt_mode allow): signed, in clear.
    assert "multipart/signed" in header_values(to_carol, "Content-Type")[0]
    verified = openssl.verify(to_carol)
    assert verified.good, verified.detail
    assert b"quarterly figures" in verified.content
    # RFC 9788: only the encrypted copy obscures its Subject.
    assert header_values(to_bob, "Subject") == ["[...]"]
    assert header_values(to_carol, "Subject") == ["both"]
    for copy in (to_bob, to_carol):
        assert not headers_with_prefix(copy, "X-Smimegate-")


def test_mandatory_recipient_without_certificate_refused(world: PostfixWorld) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        world.postfix.send(ALICE, [DAVE], plain(ALICE, [DAVE], "secret"),
                           port=world.postfix.submission_port)
    code, text = refused.value.recipients[DAVE]
    assert code == 550, (code, text)
    assert text.startswith(b"5.7.1") and DAVE.encode() in text, text

    # With a deliverable recipient as well, only dave is refused; bob's copy is encrypted.
    rejected = world.postfix.send(ALICE, [BOB, DAVE], plain(ALICE, [BOB, DAVE], "secret"),
                                  port=world.postfix.submission_port)
    assert set(rejected) == {DAVE} and rejected[DAVE][0] == 550
    (out,) = wait_captured(world, 1)
    assert out.recipients == (BOB,) and is_enveloped(out.message)


def test_milter_down_tempfails_and_nothing_is_lost(world: PostfixWorld, openssl: OpenSSL) -> None:
    inbound = join_message(
        [("From", f"<{BOB}>"), ("To", f"<{ALICE}>"), ("Subject", "queued")],
        openssl.encrypt(b"Content-Type: text/plain\n\nwaited for the milter\n", world.pki.alice),
    )
    world.milter.stop()
    try:
        with pytest.raises(smtplib.SMTPResponseException) as failed:
            world.postfix.send(ALICE, [BOB], plain(ALICE, [BOB], "retry me"),
                               port=world.postfix.submission_port)
        assert failed.value.smtp_code == 451
        error = failed.value.smtp_error
        assert (error if isinstance(error, bytes) else error.encode()).startswith(b"4.7.1"), error
        # Mail submitted on the host (sendmail(1), non_smtpd_milters): cleanup refuses it with
        # 4.7.1 and pickup keeps it in the maildrop, retrying.
        world.postfix.sendmail_command(BOB, [ALICE], inbound)
        wait_for(lambda: re.search(r"cleanup\[\d+\]: \w+: milter-reject: .* 4\.7\.1 .*"
                                   + re.escape(f"from=<{BOB}>"), world.postfix.log()),
                 "cleanup's tempfail of the locally submitted message",
                 log=world.postfix.log_tail())
        assert len(world.postfix.maildrop()) == 1
        assert world.sink.files() == [] and world.postfix.maildir(ALICE) == []
    finally:
        world.milter.start()
    # The client retries; the queued message goes on when the queue is flushed.
    world.postfix.send(ALICE, [BOB], plain(ALICE, [BOB], "retry me"),
                       port=world.postfix.submission_port)
    world.postfix.flush()
    (out,) = wait_captured(world, 1)
    assert out.recipients == (BOB,) and is_enveloped(out.message)
    assert openssl.verify(openssl.decrypt(out.message, world.pki.bob)).good
    wait_for(lambda: world.postfix.maildir(ALICE), "the queued message in alice's Maildir",
             log=world.postfix.log_tail())
    (delivered,) = world.postfix.maildir(ALICE)
    assert b"waited for the milter" in delivered and not is_enveloped(delivered)
    assert headers_with_prefix(delivered, PREFIX)[f"{PREFIX}Encryption-Algorithm-0"] == (
        "AES256, Key size: 256"
    )
