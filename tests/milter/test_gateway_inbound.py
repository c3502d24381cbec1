"""Inbound: decrypt + verify with exact result header names, undecryptable and malformed mail,
harvesting signer certificates, stripping forged headers."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smimegate.milter.edit import apply_header_edits, apply_outcome_to_message
from smimegate.milter.transaction import Outcome
from smimegate.smime.mime import build_pkcs7_mime
from smimegate.smime.sign import sign as smime_sign
from smimegate.smime.verify import verify_der
from tests.helpers.testpki import TestCA
from tests.helpers.x509damage import crl_with_version, with_an_extension_twice
from tests.milter.gateway_support import (
    AUTHSERV,
    World,
    envelope,
    make_world,
    openssl,
    parse,
    plain,
    signed_carrying,
)

ALICE, BOB = "alice@internal.test", "bob@internal.test"
FRANK, CAROL = "frank@external.test", "carol@external.test"
P = "X-Smimegate-Info-"
OUTSIDE = "198.51.100.7"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("inbound"))


def signed_encrypted(world: World, to: tuple[str, ...], sign: bool = True) -> bytes:
    """A message from frank (outside), signed with openssl, encrypted to ``to``."""
    message = plain(FRANK, ", ".join(f"{n}@internal.test" for n in to), "from outside")
    head, _sep, body = message.partition(b"\r\n\r\n")
    entity = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body
    if sign:
        key, crt = world.pem("frank")
        entity = openssl("smime", "-sign", "-signer", str(crt), "-inkey", str(key),
                         data=entity)
    certs = [str(world.pem(n)[1]) for n in to]
    envelope_part = openssl("smime", "-encrypt", "-aes256", *certs, data=entity)
    outer = b"\r\n".join(line for line in head.split(b"\r\n")
                         if not line.lower().startswith((b"content-", b"mime-version")))
    return outer + b"\r\n" + envelope_part


def deliver(world: World, raw: bytes, *rcpts: str) -> tuple[Outcome, list[tuple[str, str]], bytes]:
    headers, body = parse(raw)
    outcome = world.gateway.process(envelope(FRANK, *rcpts, client=OUTSIDE), headers, body)
    edited = apply_header_edits(headers, outcome.header_edits)
    return outcome, edited, apply_outcome_to_message(headers, body, outcome)


def names(headers: list[tuple[str, str]]) -> list[str]:
    return [n for n, _v in headers if n.startswith(P)]


def value(headers: list[tuple[str, str]], name: str) -> str:
    return next(v for n, v in headers if n == name)


def test_decrypt_and_verify_with_index_level_headers(world: World) -> None:
    raw = signed_encrypted(world, ("alice",))
    outcome, headers, message = deliver(world, raw, ALICE)
    assert outcome.reply.kind == "continue"
    assert names(headers) == [
        f"{P}Encryption-Algorithm-0", f"{P}Encryption-Recipient-0-0",
        f"{P}Signer-ID-0-1", f"{P}Signer-Verified-0-1", f"{P}Signer-Trusted-0-1",
    ]
    assert value(headers, f"{P}Encryption-Algorithm-0") == "AES256, Key size: 256"
    assert value(headers, f"{P}Signer-Verified-0-1") == "True"
    assert value(headers, f"{P}Signer-Trusted-0-1") == "True"
    assert value(headers, f"{P}Encryption-Recipient-0-0").endswith("/1.2.840.113549.1.1.1")
    ar = value(headers, "Authentication-Results")
    assert ar.startswith(f"{AUTHSERV}; smime=pass")
    assert "body.smime-identifier=frank@external.test" in ar
    assert headers[0][0] == "Authentication-Results"
    # The signature stays: the delivered entity is the signed one, readable and verifiable.
    assert b"multipart/signed" in message and b"pkcs7-mime;" not in message
    ca = world.root / "ca.pem"
    ca.write_bytes(world.ca.cert_pem())
    assert b"Hello there." in openssl("smime", "-verify", "-CAfile", str(ca), data=message)
    assert "direction=inbound action=decrypt" in outcome.log_line
    # frank's certificate was harvested so that replies can be encrypted.
    assert world.store.find_certificates(FRANK)


def test_two_recipients_number_by_index(world: World) -> None:
    raw = signed_encrypted(world, ("alice", "bob"), sign=False)
    outcome, headers, _message = deliver(world, raw, ALICE, BOB)
    assert names(headers) == [f"{P}Encryption-Algorithm-0", f"{P}Encryption-Recipient-0-0",
                              f"{P}Encryption-Recipient-1-0"]
    assert not outcome.reinjections
    assert "smime=none" in value(headers, "Authentication-Results")


def test_not_entitled_recipients_are_split(world: World) -> None:
    # Encrypted to alice only; bob is internal too but holds no key that opens it.
    raw = signed_encrypted(world, ("alice",))
    outcome, _headers, message = deliver(world, raw, ALICE, BOB)
    assert outcome.new_body is not None and b"multipart/signed" in message
    assert outcome.remove_recipients == (BOB,)
    (copy,) = outcome.reinjections
    assert copy.recipients == (BOB,)
    assert b"pkcs7-mime" in copy.message  # bob's copy stays encrypted
    assert f"{P}Error: not decrypted".encode() in copy.message


def test_undecryptable_delivered_unchanged_with_failure_headers(world: World) -> None:
    raw = signed_encrypted(world, ("bob",), sign=False)
    headers_in, body_in = parse(raw)
    outcome, headers, message = deliver(world, raw, ALICE)
    assert outcome.reply.kind == "continue" and outcome.new_body is None
    assert value(headers, f"{P}Error").startswith("not decrypted")
    assert f"{P}Encryption-Recipient-0-0" in names(headers)
    assert message.endswith(body_in)


def test_malformed_smime_delivered_with_error(world: World) -> None:
    raw = (b"From: x@external.test\r\nTo: alice@internal.test\r\nSubject: broken\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; "
           b"smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"AAAAbm90IENNUw==\r\n")
    outcome, headers, _message = deliver(world, raw, ALICE)
    assert outcome.reply.kind == "continue" and outcome.new_body is None
    assert f"{P}Error" in names(headers)
    assert "smime=permerror" in value(headers, "Authentication-Results")
    assert "result=malformed" in outcome.log_line


def test_malformed_tempfail_when_configured(tmp_path: Path) -> None:
    world = make_world(tmp_path, on_malformed="tempfail")
    raw = (b"From: x@external.test\r\nTo: alice@internal.test\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n")
    outcome, _headers, _message = deliver(world, raw, ALICE)
    assert (outcome.reply.kind, outcome.reply.code) == ("tempfail", "451")


def test_forged_result_headers_and_our_authentication_results_are_stripped(
        world: World) -> None:
    raw = plain(FRANK, ALICE).replace(
        b"Subject:",
        b"X-Smimegate-Info-Signer-Trusted-0-0: True\r\n"
        b"x-smimegate-info-signer-verified-0-0: True\r\n"
        + f"Authentication-Results: {AUTHSERV}; smime=pass\r\n".encode()
        + b"Authentication-Results: (comment) MX.INTERNAL.TEST;\r\n\tsmime=pass\r\n"
        b"Authentication-Results: other.example; dkim=pass\r\nSubject:")
    outcome, headers, _message = deliver(world, raw, ALICE)
    assert names(headers) == []
    assert [v for n, v in headers if n == "Authentication-Results"] == [
        "other.example; dkim=pass"]
    deletes = [(e.name, e.index) for e in outcome.header_edits if e.op == "delete"]
    assert ("Authentication-Results", 2) in deletes and ("Authentication-Results", 1) in deletes
    # Highest index first within a name, so counting stays right whatever the MTA does.
    ar = [i for n, i in deletes if n == "Authentication-Results"]
    assert ar == sorted(ar, reverse=True)


def test_plain_inbound_mail_is_left_alone(world: World) -> None:
    raw = plain(FRANK, ALICE)
    headers_in, body_in = parse(raw)
    outcome, headers, message = deliver(world, raw, ALICE)
    assert outcome.header_edits == () and outcome.new_body is None
    assert "direction=inbound" in outcome.log_line


def test_signed_only_inbound_gets_signer_headers(world: World) -> None:
    key, crt = world.pem("frank")
    entity = openssl("smime", "-sign", "-signer", str(crt), "-inkey", str(key),
                     data=b"Content-Type: text/plain\r\n\r\nsigned text\r\n")
    raw = b"From: frank@external.test\r\nTo: alice@internal.test\r\nSubject: s\r\n" + entity
    outcome, headers, _message = deliver(world, raw, ALICE)
    assert names(headers) == [f"{P}Signer-ID-0-0", f"{P}Signer-Verified-0-0",
                              f"{P}Signer-Trusted-0-0"]
    assert outcome.new_body is None and "action=verify" in outcome.log_line


def test_signer_certificate_with_broken_extensions_is_not_an_internal_error(
        world: World) -> None:
    # Found by fuzzing: a signature verifies with the signer certificate's key alone, so a
    # certificate whose subjectAltName does not parse still gave a valid signer, and
    # recording its SMIMECapabilities then failed the whole message (tempfail, forever).
    # Also a certificate with an extension given twice, beside the signer's.
    ident = world.ca.issue("broken-san@external.test")
    email = ident.email.encode()
    der = ident.cert.public_bytes(serialization.Encoding.DER)
    good = b"\x81" + bytes([len(email)]) + email
    assert der.count(good) == 1
    # The rfc822Name's length runs one byte past its SAN: the certificate loads, its
    # extensions do not.
    bad = x509.load_der_x509_certificate(der.replace(good, b"\x81" + bytes([len(email) + 1])
                                                     + email))
    with pytest.raises(ValueError):
        bad.extensions  # noqa: B018 - the property is what fails
    entity = b"Content-Type: text/plain\r\n\r\nsigned text\r\n"
    raw = (b"From: broken-san@external.test\r\nTo: alice@internal.test\r\nSubject: s\r\n"
           + smime_sign(entity, ident.key, bad))
    outcome, headers, _message = deliver(world, raw, ALICE)
    assert outcome.reply.kind == "continue", outcome.log_line
    assert "result=internal" not in outcome.log_line
    # The certificate is read whole where it comes in (x509errors.check_readable): one
    # whose extensions do not parse is no certificate to verify with (RFC 5280 4.2).
    assert value(headers, f"{P}Signer-Verified-0-0") == "False"
    assert "signer certificate unreadable" in value(headers, f"{P}Signer-Trusted-Info-0-0")
    assert world.store.find_certificates(ident.email) == []


HI = b"Content-Type: text/plain\r\n\r\nhi\r\n"
FROM_CAROL = b"From: carol@external.test\r\nTo: alice@internal.test\r\nSubject: s\r\n"


def test_a_carried_certificate_with_a_duplicate_extension_is_set_aside(world: World) -> None:
    # Found by fuzzing: cryptography's DuplicateExtension (RFC 5280 4.2: at most one of each)
    # is no ValueError; a validly signed message carrying such a certificate in its set was
    # tempfailed on every retry while the gateway looked for CA certificates to keep.
    other = TestCA("Other CA")
    twice = with_an_extension_twice(other.cert.public_bytes(serialization.Encoding.DER))
    der = signed_carrying(world.ids["carol"], HI, certificates=[twice])
    raw = FROM_CAROL + build_pkcs7_mime(der, "signed-data")
    outcome, headers, _message = deliver(world, raw, ALICE)
    assert outcome.reply.kind == "continue", outcome.log_line
    assert value(headers, f"{P}Signer-Verified-0-0") == "True"
    assert all("Other CA" not in r.subject for r in world.store.list_certificates())


@pytest.mark.parametrize("damage", ["version", "issuer"])
def test_a_crl_of_an_unknown_version_in_a_signed_message_is_not_an_internal_error(
        world: World, damage: str) -> None:
    # Found by fuzzing: a validly signed message may carry CRLs (RFC 5652 5.1), which we
    # keep. cryptography's InvalidVersion for a CRL version other than v1/v2 is no
    # ValueError, and an issuer name that does not parse is only found when read; both
    # escaped, and the sender's message was tempfailed on every retry.
    good = world.ca.crl_der()
    if damage == "version":
        bad = crl_with_version(good, 0x11)
    else:  # the issuer's CN not UTF-8 (as the fuzzer made it): read only when asked for
        bad = good.replace(b"smimegate Test Root", b"sm\xb7megate Test Root", 1)
    assert bad != good
    good_der = signed_carrying(world.ids["carol"], HI, crls=[good])
    # The damaged CRL in place of the good one, as long: every outer length still holds.
    raw = FROM_CAROL + build_pkcs7_mime(good_der.replace(good, bad), "signed-data")
    outcome, headers, _message = deliver(world, raw, ALICE)
    assert outcome.reply.kind == "continue", outcome.log_line
    assert value(headers, f"{P}Signer-Verified-0-0") == "True"
    # asn1crypto may already leave a CRL it cannot dump out (verify._crls); the keeping
    # itself must refuse the damaged one quietly too, as the fuzzer reached it.
    _content, layer = verify_der(good_der)
    layer = dataclasses.replace(layer, crls=(bad,))
    assert world.gateway.services.import_signers([layer]) >= 0
    assert world.store.list_crls() == []


def broken_inner(world: World) -> bytes:
    """Encrypted to alice, holding a multipart/signed whose signature is not CMS."""
    head = plain(FRANK, ALICE, "broken inside").partition(b"\r\n\r\n")[0]
    entity = (b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
              b'micalg=sha-256; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n'
              b'hi\r\n--b1\r\nContent-Type: application/pkcs7-signature\r\n'
              b'Content-Transfer-Encoding: base64\r\n\r\nAAAAbm90IENNUw==\r\n--b1--\r\n')
    envelope_part = openssl("smime", "-encrypt", "-aes256", str(world.pem("alice")[1]),
                            data=entity)
    outer = b"\r\n".join(line for line in head.split(b"\r\n")
                         if not line.lower().startswith((b"content-", b"mime-version")))
    return outer + b"\r\n" + envelope_part


@pytest.mark.parametrize("case", ["signed", "unsigned-two", "split", "not-for-us",
                                  "broken-inner", "signed-only"])
def test_one_pass_gives_what_two_passes_gave(world: World, case: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # An encrypted message for internal users is opened once (Gateway._open_early) instead of
    # once without keys and once with them; the outcome must be the two passes' to the byte.
    raw, rcpts = {
        "signed": lambda: (signed_encrypted(world, ("alice",)), (ALICE,)),
        "unsigned-two": lambda: (signed_encrypted(world, ("alice", "bob"), False), (ALICE, BOB)),
        "split": lambda: (signed_encrypted(world, ("alice",)), (ALICE, BOB)),
        "not-for-us": lambda: (signed_encrypted(world, ("bob",), False), (ALICE,)),
        "broken-inner": lambda: (broken_inner(world), (ALICE,)),
        "signed-only": lambda: (openssl("smime", "-sign", "-signer", str(world.pem("frank")[1]),
                                        "-inkey", str(world.pem("frank")[0]),
                                        data=plain(FRANK, ALICE, "signed")), (ALICE,)),
    }[case]()
    one, _headers, _message = deliver(world, raw, *rcpts)
    monkeypatch.setattr(world.gateway, "_open_early", lambda *args: None)
    two, _headers, _message = deliver(world, raw, *rcpts)
    assert one.reply == two.reply
    assert one.header_edits == two.header_edits
    assert one.new_body == two.new_body
    assert one.remove_recipients == two.remove_recipients
    assert one.reinjections == two.reinjections
    assert re.sub(r" delay=\S+", "", one.log_line) == re.sub(r" delay=\S+", "", two.log_line)
    if case == "broken-inner":
        assert "result=malformed" in one.log_line
