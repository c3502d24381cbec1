"""smimegate.smime.certmemo: one value per certificate object, found by identity."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.smime.certmemo import CertificateMemo
from tests.helpers.testpki import TestCA


@pytest.fixture(scope="module")
def certs() -> list[x509.Certificate]:
    ca = TestCA()
    return [ca.issue(f"u{i}@example.test", "ec-p256").cert for i in range(3)]


def test_computed_once_per_object(certs: list[x509.Certificate]) -> None:
    calls: list[x509.Certificate] = []

    def serial(cert: x509.Certificate) -> int:
        calls.append(cert)
        return cert.serial_number

    memo = CertificateMemo(serial, maxsize=8)
    assert [memo(c) for c in (*certs, *certs)] == [c.serial_number for c in (*certs, *certs)]
    assert calls == certs
    # The same DER in another object is worked out again (same value), never mixed up.
    twin = x509.load_der_x509_certificate(certs[0].public_bytes(Encoding.DER))
    assert memo(twin) == certs[0].serial_number and calls[-1] is twin


def test_bounded_and_errors_not_remembered(certs: list[x509.Certificate]) -> None:
    calls: list[x509.Certificate] = []

    def fails_once(cert: x509.Certificate) -> int:
        calls.append(cert)
        if len(calls) == 1:
            raise ValueError("first call fails")
        return cert.serial_number

    memo = CertificateMemo(fails_once, maxsize=2)
    with pytest.raises(ValueError, match="first call"):
        memo(certs[0])
    assert memo(certs[0]) == certs[0].serial_number  # asked again, not a remembered failure
    memo(certs[1])
    memo(certs[2])  # full: starts again empty
    assert len(memo._items) == 1
    memo(certs[0])
    assert calls == [certs[0], certs[0], certs[1], certs[2], certs[0]]
