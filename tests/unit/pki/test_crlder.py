"""smimegate.pki.crlder: the CRL we assemble is what cryptography's builder writes, byte for byte
(RSA PKCS#1 v1.5 signatures are deterministic), and openssl reads a large one."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from asn1crypto import crl as acrl
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from smimegate.pki.ca import aki_for
from smimegate.pki.crl import REASONS, Entry, build_crl
from smimegate.pki.crlder import entry_der
from tests.unit.pki.ca_support import ca_pair, openssl, pem, write

NOW = dt.datetime(2026, 12, 3, 7, 0, 0, tzinfo=dt.UTC)


def reference(entries: list[Entry], number: int) -> bytes:
    """The same CRL through cryptography's builders alone."""
    pair = ca_pair("rsa2048")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pair.intermediate.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=30))
        .add_extension(aki_for(pair.intermediate), critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for e in sorted(entries, key=lambda e: (e.revoked_at, e.serial)):
        revoked = x509.RevokedCertificateBuilder().serial_number(e.serial).revocation_date(
            e.revoked_at)
        if e.reason is not None:
            revoked = revoked.add_extension(x509.CRLReason(REASONS[e.reason]), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    crl = builder.sign(pair.intermediate_key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.DER)


def ours(entries: list[Entry], number: int) -> bytes:
    pair = ca_pair("rsa2048")
    crl = build_crl(pair.intermediate, pair.intermediate_key, entries, number,
                    next_update_days=30, now=NOW)
    return crl.public_bytes(serialization.Encoding.DER)


def test_same_bytes_as_cryptography_builder() -> None:
    reasons = [None, *(r for r in REASONS if r != "unspecified")]
    entries = [
        Entry(serial, NOW - dt.timedelta(seconds=serial % 5000, microseconds=serial % 7),
              reasons[serial % len(reasons)])
        # One-octet, sign-bit (0x80 needs a leading zero), 20-octet and in-between serials.
        for serial in (1, 0x7F, 0x80, 0xFF, 0x100, 2**63, 2**159 - 1, *range(1000, 1300))
    ]
    assert ours(entries, 42) == reference(entries, 42)
    assert ours([], 43) == reference([], 43)  # no entries: revokedCertificates left out


@pytest.mark.parametrize("year", [1950, 2049, 2050, 2100])
def test_entry_times_follow_rfc5280(year: int) -> None:
    when = dt.datetime(year, 6, 1, 12, 30, 5, tzinfo=dt.UTC)
    revoked = (x509.RevokedCertificateBuilder().serial_number(77).revocation_date(when)
               .add_extension(x509.CRLReason(x509.ReasonFlags.superseded), critical=False)
               .build())
    pair = ca_pair("rsa2048")
    crl = (x509.CertificateRevocationListBuilder().issuer_name(pair.intermediate.subject)
           .last_update(NOW).next_update(NOW + dt.timedelta(days=1))
           .add_revoked_certificate(revoked).sign(pair.intermediate_key, hashes.SHA256()))
    parsed = acrl.CertificateList.load(crl.public_bytes(serialization.Encoding.DER))
    expected = parsed["tbs_cert_list"]["revoked_certificates"][0].dump()
    assert entry_der(77, when, x509.ReasonFlags.superseded) == expected
    # UTCTime (tag 0x17) until 2049, GeneralizedTime (0x18) from 2050 (RFC 5280 5.1.2.6).
    assert expected[5] == (0x17 if year < 2050 else 0x18)


@pytest.mark.parametrize("ca_type", ["ec-p384", "rsa2048"])
def test_openssl_verifies_a_large_crl(tmp_path: Path, ca_type: str) -> None:
    pair = ca_pair(ca_type)
    entries = [Entry(s, NOW, "key-compromise" if s % 2 else None) for s in range(1, 5001)]
    crl = build_crl(pair.intermediate, pair.intermediate_key, entries, 9)
    assert len(crl) == 5000
    path = write(tmp_path, "crl.pem", crl.public_bytes(serialization.Encoding.PEM))
    inter = write(tmp_path, "inter.pem", pem(pair.intermediate))
    check = openssl("crl", "-in", path, "-CAfile", inter, "-noout")
    assert "verify OK" in check.stdout + check.stderr
    text = openssl("crl", "-in", path, "-noout", "-text").stdout
    assert len(re.findall(r"Serial Number: ", text)) == 5000
    assert text.count("Key Compromise") == 2500
