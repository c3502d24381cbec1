"""The log line's revocation field (issue 9 item 9) and CRLs carried by signed messages
(RFC 8551 2.4.5, issue 10 item 1): one revocation=good|revoked|unknown per signer certificate
(inbound) and per certificate used outbound (the signer's first, then each recipient's)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest
from asn1crypto import cms as acms
from asn1crypto import crl as acrl
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.milter.transaction import Outcome
from tests.milter.gateway_support import World, envelope, make_world, openssl, parse, plain

ALICE, CAROL, FRANK, BOB = ("alice@internal.test", "carol@external.test",
                            "frank@external.test", "bob@internal.test")
OUTSIDE = "198.51.100.7"


@pytest.fixture()
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def ca_crl(world: World, *revoked: x509.Certificate, number: int = 1
           ) -> x509.CertificateRevocationList:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(world.ca.cert.subject)
               .last_update(now - dt.timedelta(minutes=5))
               .next_update(now + dt.timedelta(days=7))
               .add_extension(x509.CRLNumber(number), critical=False))
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
            .revocation_date(now - dt.timedelta(minutes=1)).build())
    return builder.sign(world.ca.key, hashes.SHA256())


def revocation_field(outcome: Outcome) -> str:
    found = re.search(r" revocation=(\S+)", outcome.log_line)
    assert found, outcome.log_line
    return found.group(1)


def outbound(world: World) -> Outcome:
    headers, body = parse(plain(ALICE, CAROL))
    return world.gateway.process(envelope(ALICE, CAROL), headers, body)  # type: ignore[arg-type]


def test_outbound_signer_and_recipient_revocation(world: World) -> None:
    # No CRL: both unknown (soft-fail trusts them).
    assert revocation_field(outbound(world)) == "unknown,unknown"
    world.store.add_crl(ca_crl(world), verified=True)
    world.gateway.reload()
    assert revocation_field(outbound(world)) == "good,good"
    # Carol revoked: not used any more; alice's signature stays good.
    world.store.add_crl(ca_crl(world, world.ids["carol"].cert, number=2), verified=True)
    world.gateway.reload()
    outcome = outbound(world)
    assert "action=sign " in outcome.log_line
    assert revocation_field(outcome) == "good"


def signed_by_frank(world: World, crl: x509.CertificateRevocationList | None = None) -> bytes:
    """An opaque-signed message from frank (outside) to bob, made by openssl; with ``crl``,
    the SignedData carries it in its crls field (outside the signature, RFC 5652 5.1)."""
    message = plain(FRANK, BOB, "from outside")
    head, _sep, body = message.partition(b"\r\n\r\n")
    entity = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body
    key, crt = world.pem("frank")
    der = openssl("cms", "-sign", "-nodetach", "-binary", "-outform", "DER", "-signer", str(crt),
                  "-inkey", str(key), data=entity)
    if crl is not None:
        info = acms.ContentInfo.load(der)
        signed = info["content"]
        signed["crls"] = acms.RevocationInfoChoices(
            [acms.RevocationInfoChoice(name="crl", value=acrl.CertificateList.load(
                crl.public_bytes(Encoding.DER)))])
        der = info.dump(force=True)
    outer = b"\r\n".join(line for line in head.split(b"\r\n")
                         if not line.lower().startswith((b"content-", b"mime-version")))
    return (outer + b"\r\nMIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; "
            b"smime-type=signed-data; name=smime.p7m\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(der).replace(b"\n", b"\r\n"))


def inbound(world: World, raw: bytes) -> Outcome:
    headers, body = parse(raw)
    return world.gateway.process(envelope(FRANK, BOB, client=OUTSIDE), headers, body)


def test_inbound_signer_revocation(world: World) -> None:
    assert revocation_field(inbound(world, signed_by_frank(world))) == "unknown"
    world.store.add_crl(ca_crl(world), verified=True)
    world.gateway.reload()
    assert revocation_field(inbound(world, signed_by_frank(world))) == "good"
    world.store.add_crl(ca_crl(world, world.ids["frank"].cert, number=2), verified=True)
    world.gateway.reload()
    outcome = inbound(world, signed_by_frank(world))
    assert revocation_field(outcome) == "revoked" and "trusted=no" in outcome.log_line


def test_crl_carried_by_a_signed_message_is_kept_and_used(world: World) -> None:
    # RFC 8551 2.4.5: the CRL that comes with a message is kept like an imported one; here it
    # revokes carol, so her certificate is no longer chosen once the anchors reload.
    carried = ca_crl(world, world.ids["carol"].cert)
    outcome = inbound(world, signed_by_frank(world, carried))
    assert "verified=yes" in outcome.log_line
    (row,) = world.store.list_crls()
    assert (row.source, row.verified) == ("message", True)
    world.gateway.reload()
    assert "action=sign " in outbound(world).log_line


def test_crl_carried_by_a_message_from_an_unknown_issuer_is_not_kept(world: World) -> None:
    from tests.helpers.testpki import TestCA

    stranger = TestCA("Stranger Root")
    now = dt.datetime.now(dt.UTC)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(stranger.cert.subject)
           .last_update(now).next_update(now + dt.timedelta(days=1))
           .sign(stranger.key, hashes.SHA256()))
    inbound(world, signed_by_frank(world, crl))
    assert world.store.list_crls() == []


def test_reload_takes_a_changed_revocation_mode(world: World) -> None:
    # soft-fail (the default): no CRL for carol's CA, carol's certificate is used all the same.
    assert "action=sign+encrypt" in outbound(world).log_line
    strict = dataclasses.replace(world.config, crl=dataclasses.replace(
        world.config.crl, revocation_mode="require"))
    world.gateway.reload(strict)
    # require: a link without a CRL or OCSP answer is not trusted, so neither alice's signing
    # certificate nor carol's is used (the mode reached the trust decision without a restart).
    outcome = outbound(world)
    assert "action=none " in outcome.log_line, outcome.log_line
    world.gateway.reload(world.config)
    assert "action=sign+encrypt" in outbound(world).log_line
