"""smimegate.pki.addresses: RFC 8550 3 From-address vs certificate addresses."""

from __future__ import annotations

import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from smimegate.pki.addresses import (
    SMTP_UTF8_MAILBOX,
    address_match,
    certificate_addresses,
    normalize_address,
)
from smimegate.pki.trust import TrustAnchors, check
from tests.helpers.testpki import new_key
from tests.unit.pki import pkibuild as pb
from tests.unit.pki.pkibuild import NOW


@pytest.fixture(scope="module")
def issuer() -> pb.Issued:
    return pb.root()


def cert_with(issuer: pb.Issued, names: list[x509.GeneralName] | None,
              subject_email: str | None = None) -> x509.Certificate:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, "someone")]
    if subject_email is not None:
        attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, subject_email))
    key = new_key("ec-p256")
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(issuer.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW.replace(year=2027))
    )
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer.key, hashes.SHA256())


def test_rfc822name_in_the_san(issuer: pb.Issued) -> None:
    cert = cert_with(issuer, [x509.RFC822Name("alice@example.test"), x509.DNSName("x.test")])
    assert certificate_addresses(cert) == ("alice@example.test",)
    assert address_match(cert, "alice@example.test")
    assert address_match(cert, "Alice Example <alice@example.test>")
    assert not address_match(cert, "bob@example.test")
    assert not address_match(cert, "alice@example.test.evil")


def test_case_of_domain_and_local_part(issuer: pb.Issued) -> None:
    cert = cert_with(issuer, [x509.RFC822Name("Alice@Example.TEST")])
    assert address_match(cert, "alice@example.test")
    assert address_match(cert, "ALICE@example.test.")  # a trailing root dot is the same domain


def test_email_address_in_the_subject_dn(issuer: pb.Issued) -> None:
    # RFC 8550 3: receiving agents recognize emailAddress in the DN (NSS's test certificates
    # have nothing else).
    cert = cert_with(issuer, None, subject_email="dn@example.test")
    assert certificate_addresses(cert) == ("dn@example.test",)
    assert address_match(cert, "<dn@example.test>")


def test_several_addresses_and_duplicates(issuer: pb.Issued) -> None:
    cert = cert_with(issuer, [x509.RFC822Name("a@one.test"), x509.RFC822Name("b@two.test")],
                     subject_email="a@one.test")
    assert certificate_addresses(cert) == ("a@one.test", "b@two.test")
    assert address_match(cert, "b@two.test") and address_match(cert, "a@one.test")


def test_internationalized_addresses(issuer: pb.Issued) -> None:
    # RFC 8398: SmtpUTF8Mailbox otherName holds a UTF-8 local part and a U-label domain;
    # rfc822Name carries the A-label form of an IDN domain.
    mailbox = core.UTF8String("用户@bücher.example").dump()
    cert = cert_with(issuer, [
        x509.OtherName(SMTP_UTF8_MAILBOX, mailbox),
        x509.RFC822Name("shop@xn--bcher-kva.example"),
    ])
    assert certificate_addresses(cert) == ("shop@xn--bcher-kva.example", "用户@bücher.example")
    assert address_match(cert, "用户@bücher.example")
    assert address_match(cert, "用户@xn--bcher-kva.example")
    assert address_match(cert, "shop@bücher.example")


def test_no_address_and_bad_input_do_not_match(issuer: pb.Issued) -> None:
    cert = cert_with(issuer, [x509.DNSName("host.example.test")])
    assert certificate_addresses(cert) == ()
    assert not address_match(cert, "host@example.test")
    with_addr = cert_with(issuer, [x509.RFC822Name("a@example.test")])
    for junk in ("", "a", "@example.test", "a@", "<>"):
        assert not address_match(with_addr, junk)
    assert normalize_address("no at sign") is None


def test_address_mismatch_never_changes_trust(issuer: pb.Issued) -> None:
    cert = pb.ee(issuer, "alice@example.test").cert
    result = check(cert, TrustAnchors(roots=(issuer.cert,)), purpose="sign", at=NOW)
    assert result.trusted and not address_match(cert, "mallory@example.test")
