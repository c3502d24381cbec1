"""A tiny certificate factory for the trust tests: roots, intermediates, end entities and CRLs.

tests/helpers/testpki.py makes a root that issues end entities directly; the trust tests need
more shapes (intermediates, odd key usages and EKUs, fixed validity windows, CRLs, a broken
signature), so they build them here with cryptography's builders. EC P-256 keys by default:
they are made in microseconds, unlike RSA.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.helpers.testpki import new_key

UTC = dt.UTC
# A fixed "now" for the tests: every certificate below is valid around it unless a test says
# otherwise, so results do not depend on the day the suite runs.
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
EMAIL = [ExtendedKeyUsageOID.EMAIL_PROTECTION]


def key_usage(*names: str) -> x509.KeyUsage:
    """KeyUsage with the named bits set (cryptography's argument names)."""
    bits = dict.fromkeys(
        ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
         "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
        False,
    )
    for name in names:
        if name not in bits:
            raise ValueError(name)
        bits[name] = True
    return x509.KeyUsage(**bits)


@dataclass(frozen=True)
class Issued:
    key: Any
    cert: x509.Certificate

    @property
    def name(self) -> x509.Name:
        return self.cert.subject


def _hash_for(key: Any, digest: hashes.HashAlgorithm | None) -> Any:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return digest or hashes.SHA256()


def _builder(subject: x509.Name, issuer_name: x509.Name, public: Any, not_before: dt.datetime,
             days: float) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def root(cn: str = "Trust Test Root", key_kind: str = "ec-p256", *,
         not_before: dt.datetime = NOW - dt.timedelta(days=365), days: float = 3650) -> Issued:
    key = new_key(key_kind)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        _builder(name, name, key.public_key(), not_before, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage("key_cert_sign", "crl_sign"), critical=True)
        .sign(key, _hash_for(key, None))
    )
    return Issued(key, cert)


def ca(issuer: Issued, cn: str = "Trust Test Intermediate", key_kind: str = "ec-p256", *,
       not_before: dt.datetime = NOW - dt.timedelta(days=300), days: float = 1825,
       path_length: int | None = 0) -> Issued:
    key = new_key(key_kind)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        _builder(name, issuer.name, key.public_key(), not_before, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(key_usage("key_cert_sign", "crl_sign"), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, _hash_for(issuer.key, None))
    )
    return Issued(key, cert)


_DEFAULT = object()


def ee(issuer: Issued, email: str = "alice@example.test", key_kind: str = "ec-p256", *,
       not_before: dt.datetime = NOW - dt.timedelta(days=30), days: float = 365,
       usage: x509.KeyUsage | None | object = _DEFAULT,
       eku: Sequence[x509.ObjectIdentifier] | None = EMAIL,
       crl_dp: str | None = None,
       extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
       digest: hashes.HashAlgorithm | None = None,
       subject_email: bool = False) -> Issued:
    """An end entity; usage defaults to the CA/B Forum mailbox profile for the key type."""
    key = new_key(key_kind)
    public = key.public_key()
    if usage is _DEFAULT:
        if key_kind.startswith("rsa"):
            usage = key_usage("digital_signature", "key_encipherment")
        elif key_kind.startswith("ec"):
            usage = key_usage("digital_signature", "key_agreement")
        elif key_kind == "x25519":
            usage = key_usage("key_agreement")
        else:
            usage = key_usage("digital_signature")
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, email)]
    if subject_email:
        attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    builder = (
        _builder(x509.Name(attrs), issuer.name, public, not_before, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if isinstance(usage, x509.KeyUsage):
        builder = builder.add_extension(usage, critical=True)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if crl_dp is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_dp)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    return Issued(key, builder.sign(issuer.key, _hash_for(issuer.key, digest)))


def crl(issuer: Issued,
        revoked: Sequence[tuple[x509.Certificate, dt.datetime, x509.ReasonFlags | None]] = (),
        *, last_update: dt.datetime = NOW - dt.timedelta(days=1),
        next_update: dt.datetime = NOW + dt.timedelta(days=30),
        signer: Any = None) -> x509.CertificateRevocationList:
    """A CRL of issuer listing revoked (cert, date, reason); signer overrides the signing key."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.name)
        .last_update(last_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for cert, when, reason in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(when)
        )
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    key = signer or issuer.key
    return builder.sign(key, _hash_for(key, None))


def corrupt_signature(cert: x509.Certificate) -> x509.Certificate:
    """The same certificate with the last byte of its signature flipped (still parses)."""
    der = bytearray(cert.public_bytes(Encoding.DER))
    der[-1] ^= 0x01
    return x509.load_der_x509_certificate(bytes(der))
