"""The outbound and inbound flows through Sendmail 8.17 (issue 5 item 10), run unpacked from
Debian's packages (tests/e2e/mta.py) with contrib/sendmail/smimegate.mc rendered into its
configuration. Sendmail relays every address to an smtp-sink, so the inbound result is read
there rather than from a Maildir.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.clients import OpenSSL, join_message
from tests.e2e.mta import Captured, header_values, headers_with_prefix, wait_for
from tests.e2e.mta_fixtures import (
    ALICE,
    AUTHSERV_ID,
    BOB,
    PREFIX,
    SendmailWorld,
)

pytestmark = pytest.mark.e2e


def one_captured(world: SendmailWorld) -> Captured:
    wait_for(lambda: len(world.sink.files()) >= 1, "a message at the sink",
             log=world.sendmail.log()[-2000:] + world.milter.log()[-2000:])
    # smtp-sink writes the file while the message arrives: wait for Sendmail's queue to empty.
    wait_for(lambda: not [p for p in world.sendmail.queue_files() if p.name.startswith("qf")],
             "Sendmail's queue to empty")
    (captured,) = world.sink.messages()
    world.sink.clear()
    return captured


def test_outbound_through_sendmail(sendmail_world: SendmailWorld, openssl: OpenSSL) -> None:
    world = sendmail_world
    message = (f"From: <{ALICE}>\r\nTo: <{BOB}>\r\nSubject: via sendmail\r\n"
               "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
               "Sendmail carried this.\r\n").encode()
    world.sendmail.send(ALICE, [BOB], message, port=world.sendmail.submission_port)
    out = one_captured(world)
    assert out.recipients == (BOB,)
    assert "enveloped-data" in header_values(out.message, "Content-Type")[0]
    assert b"Sendmail carried this." not in out.message
    verified = openssl.verify(openssl.decrypt(out.message, world.pki.bob))
    assert verified.good, verified.detail
    assert b"Sendmail carried this." in verified.content
    # The log line carries Sendmail's queue id (macro i, asked for by contrib's .mc).
    received = header_values(out.message, "Received")[0]
    match = re.search(r"with ESMTP id (\w+)", received)
    assert match, received
    log = world.milter.log()
    assert f"{match.group(1)}: smimegate: direction=outbound action=sign+encrypt" in log, log


def test_inbound_through_sendmail(sendmail_world: SendmailWorld, openssl: OpenSSL) -> None:
    world = sendmail_world
    entity = b"Content-Type: text/plain\n\nDecrypted behind Sendmail.\n"
    message = join_message(
        [("From", f"<{BOB}>"), ("To", f"<{ALICE}>"), ("Subject", "to alice"),
         (f"{PREFIX}Signer-Trusted-0-1", "True")],
        openssl.encrypt(openssl.sign(entity, world.pki.bob), world.pki.alice),
    )
    world.sendmail.send(BOB, [ALICE], message)
    delivered = one_captured(world).message
    assert b"Decrypted behind Sendmail." in delivered
    assert "multipart/signed" in header_values(delivered, "Content-Type")[0]
    info = headers_with_prefix(delivered, PREFIX)
    assert info[f"{PREFIX}Encryption-Algorithm-0"] == "AES256, Key size: 256"
    assert info[f"{PREFIX}Signer-Verified-0-1"] == "True"
    assert info[f"{PREFIX}Signer-Trusted-0-1"] == "True"
    # The outside sender's forged copy of that header is gone: ours is the only one.
    assert header_values(delivered, f"{PREFIX}Signer-Trusted-0-1") == ["True"]
    assert any(v.startswith(AUTHSERV_ID) and "smime=pass" in v
               for v in header_values(delivered, "Authentication-Results"))
    assert openssl.verify(delivered).good
