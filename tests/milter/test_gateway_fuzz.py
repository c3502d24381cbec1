"""Property-based fuzzing of Gateway.process: no mutated message is an internal error.

tests/unit/smime/test_fuzz.py holds unwrap() to its typed errors. This holds the gateway
around it (certificate and CRL harvesting, trust, header protection, the Subject trigger,
the result headers) to its rule that bad input is answered, never failed: an internal error
tempfails the message, and a sender whose mail always fails the same way has it tempfailed
on every retry until it bounces. Each of these was found this way: a signer certificate
whose subjectAltName does not parse, a CRL of version 18 or with an unreadable issuer name
carried in a signed message, a carried certificate with an extension given twice, a Subject
encoded-word with a charset no codec has.

Seeds, inbound (carol outside to alice inside): signed detached and opaque, encrypted,
signed then encrypted, signed with the CA certificate and a CRL in the SignedData, and
what the gateway itself writes with header protection; outbound (alice to carol): plain
text, a multipart with an HTML alternative, an attachment and a message/rfc822 part, and
a Subject of RFC 2047 encoded-words. Mutations: bytes flipped, deleted, inserted (MIME and
ASN.1 tokens), the message cut short, a slice duplicated, and a byte of the first base64
block's DER changed with the block encoded again, so that the change reaches the CMS and
X.509 parsers rather than the base64 decoder.

Property: the outcome is never result=internal-error (a refusal, a malformed-message
header, an unverified signer: all fine). Examples: 500 inbound + 300 outbound. Each bug
above has a test of its own; this keeps the whole from regressing, and a longer run
(HYPOTHESIS settings or a loop) is how the next ones are found.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import re
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smimegate.cli.common import OperationFailed
from smimegate.milter.edit import apply_outcome_to_message
from smimegate.smime.encrypt import encrypt
from smimegate.smime.mime import build_pkcs7_mime
from smimegate.smime.sign import sign
from tests.milter.gateway_support import (
    World,
    envelope,
    make_world,
    parse,
    plain,
    signed_carrying,
)

ALICE, CAROL = "alice@internal.test", "carol@external.test"
OUTSIDE = "198.51.100.7"
FUZZ = settings(
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
    print_blob=True,
)
TOKENS = [b"\r\n", b"\r\n\r\n", b"--", b'; boundary="x"', b"Content-Type: multipart/mixed",
          b"=?utf-8?b?", b"=?x?q?", b"\x00", b"\xff\xfe", b"\x30\x80", b"\x84\xff\xff\xff\xff"]
_BASE64_LINE = re.compile(rb"[A-Za-z0-9+/=]{60,}")


@dataclasses.dataclass(frozen=True)
class Seeds:
    world: World
    inbound: tuple[bytes, ...]
    outbound: tuple[bytes, ...]


@functools.cache
def _seeds(root: Path) -> Seeds:
    world = make_world(root, header_protection=True)
    alice, carol = world.ids["alice"], world.ids["carol"]
    text = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello there.\r\n"
    head = (b"From: carol@external.test\r\nTo: alice@internal.test\r\nSubject: hi\r\n"
            b"MIME-Version: 1.0\r\n")
    signed = sign(text, carol.key, carol.cert)
    opaque = sign(text, carol.key, carol.cert, detached=False)
    # The CA certificate and a CRL in the SignedData (RFC 5652 5.1), as some clients send.
    chained = build_pkcs7_mime(signed_carrying(
        carol, text, certificates=[world.ca.cert.public_bytes(Encoding.DER)],
        crls=[world.ca.crl_der(7, number=4)]), "signed-data")
    headers, body = parse(plain(ALICE, CAROL, "secret subject"))
    ours = world.gateway.process(envelope(ALICE, CAROL, auth="alice"), headers, body)
    inbound = (head + signed, head + opaque, head + encrypt(text, [alice.cert]),
               head + encrypt(signed, [alice.cert], cipher="aes256-gcm"), head + chained,
               head + encrypt(chained, [alice.cert]),
               apply_outcome_to_message(headers, body, ours))
    out_head = (b"From: alice@internal.test\r\nTo: carol@external.test\r\n"
                b"Subject: =?utf-8?b?w7xiZXI=?= report =?iso-8859-1?q?caf=E9?=\r\n"
                b"Message-ID: <x@internal.test>\r\nMIME-Version: 1.0\r\n")
    attachment = base64.encodebytes(bytes(range(256)) * 2).replace(b"\n", b"\r\n")
    mixed = (out_head + b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\npre\r\n'
             b'--outer\r\nContent-Type: multipart/alternative; boundary="alt"\r\n\r\n'
             b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n"
             b"Content-Transfer-Encoding: 8bit\r\n\r\n\xc3\xbcber\r\n"
             b"--alt\r\nContent-Type: text/html\r\n\r\n<html><body><p>hi</p></body></html>\r\n"
             b"--alt--\r\n--outer\r\nContent-Type: application/octet-stream\r\n"
             b'Content-Disposition: attachment; filename="a.bin"\r\n'
             b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment
             + b"--outer\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y\r\nSubject: inner\r\n"
             b"\r\ninner body\r\n--outer--\r\nepilogue\r\n")
    outbound = (plain(ALICE, CAROL, "plain"), mixed)
    return Seeds(world, inbound, outbound)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    return _seeds(tmp_path_factory.mktemp("gwfuzz"))


def _der_mutation(message: bytes, data: st.DataObject) -> bytes:
    """A byte of the first base64 block's DER changed, the block encoded again."""
    lines = message.split(b"\r\n")
    start = next((i for i, line in enumerate(lines) if _BASE64_LINE.fullmatch(line)), None)
    if start is None:
        return message
    end = start
    while end + 1 < len(lines) and lines[end + 1] and _BASE64_LINE.fullmatch(lines[end + 1]):
        end += 1
    try:
        der = bytearray(base64.b64decode(b"".join(lines[start:end + 1])))
    except ValueError:
        return message
    if not der:
        return message
    at = data.draw(st.integers(0, len(der) - 1))
    der[at] = data.draw(st.integers(0, 255))
    lines[start:end + 1] = base64.encodebytes(bytes(der)).rstrip(b"\n").split(b"\n")
    return b"\r\n".join(lines)


def _mutate(message: bytes, data: st.DataObject) -> bytes:
    for _ in range(data.draw(st.integers(1, 3))):
        if not message:
            return message
        kind = data.draw(st.sampled_from(["der", "der", "flip", "delete", "insert", "cut",
                                          "duplicate"]))
        at = data.draw(st.integers(0, len(message) - 1))
        if kind == "der":
            message = _der_mutation(message, data)
        elif kind == "flip":
            message = (message[:at] + bytes([message[at] ^ (1 << data.draw(st.integers(0, 7)))])
                       + message[at + 1:])
        elif kind == "delete":
            message = message[:at] + message[at + data.draw(st.integers(1, 64)):]
        elif kind == "insert":
            message = message[:at] + data.draw(st.sampled_from(TOKENS)) + message[at:]
        elif kind == "cut":
            message = message[:at]
        else:
            other = data.draw(st.integers(0, len(message) - 1))
            message = message[:at] + message[other:other + data.draw(st.integers(1, 200))] \
                + message[at:]
    return message


def _never_internal(seeds: Seeds, message: bytes, outbound: bool) -> None:
    try:
        headers, body = parse(message)
    except OperationFailed:
        return  # not a message at all (no header section): the MTA would not pass it on
    if outbound:
        env = envelope(ALICE, CAROL, auth="alice")
    else:
        env = envelope(CAROL, ALICE, client=OUTSIDE)
    outcome = seeds.world.gateway.process(env, headers, body)
    assert "result=internal-error" not in outcome.log_line, outcome.log_line


@settings(FUZZ, max_examples=500)
@given(data=st.data())
def test_inbound_mutations_are_never_internal_errors(seeds: Seeds, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(seeds.inbound))
    _never_internal(seeds, _mutate(seed, data), outbound=False)


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_outbound_mutations_are_never_internal_errors(seeds: Seeds,
                                                      data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(seeds.outbound))
    _never_internal(seeds, _mutate(seed, data), outbound=True)


def test_seeds_go_through_cleanly(seeds: Seeds) -> None:
    # Unmutated, every inbound seed verifies or decrypts and every outbound one is sealed:
    # the mutations start from messages that reach the deep paths.
    for message in seeds.inbound:
        headers, body = parse(message)
        outcome = seeds.world.gateway.process(envelope(CAROL, ALICE, client=OUTSIDE), headers,
                                              body)
        assert "result=ok" in outcome.log_line, outcome.log_line
        assert re.search(r"action=(verify|decrypt)", outcome.log_line), outcome.log_line
    for message in seeds.outbound:
        headers, body = parse(message)
        outcome = seeds.world.gateway.process(envelope(ALICE, CAROL, auth="alice"), headers,
                                              body)
        assert "action=sign+encrypt" in outcome.log_line, outcome.log_line
