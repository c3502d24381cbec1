"""smimegate.x509errors: what cryptography raises for certificates it reads only in part, and
the readers of outside data that must not let it escape (found by fuzzing the gateway)."""

from __future__ import annotations

import pytest
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.pki.addresses import certificate_addresses
from smimegate.pki.fetch import distribution_points
from smimegate.pki.ocsp import responder_url
from smimegate.x509errors import EXTENSION_LOOKUP_ERRORS, X509_ERRORS, check_readable
from tests.helpers.testpki import TestCA


def _with_an_extension_twice(cert: x509.Certificate) -> x509.Certificate:
    """cert with its first extension given again (RFC 5280 4.2 forbids it): it loads, and
    fails when its extensions are read. The CA signature no longer holds; nothing here
    checks it."""
    parsed = ax509.Certificate.load(cert.public_bytes(Encoding.DER))
    extensions = list(parsed["tbs_certificate"]["extensions"])
    parsed["tbs_certificate"]["extensions"] = ax509.Extensions([*extensions, extensions[0]])
    return x509.load_der_x509_certificate(parsed.dump(force=True))


def _of_version(cert: x509.Certificate, version: int) -> bytes:
    der = cert.public_bytes(Encoding.DER)
    return der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01" + bytes([version]), 1)


def test_the_errors_that_are_no_value_errors() -> None:
    ident = TestCA().issue("a@example.test")
    twice = _with_an_extension_twice(ident.cert)
    with pytest.raises(X509_ERRORS) as caught:
        twice.extensions  # noqa: B018 - reading is what fails
    assert not isinstance(caught.value, ValueError)  # why ValueError alone is not enough
    with pytest.raises(X509_ERRORS) as caught:
        x509.load_der_x509_certificate(_of_version(ident.cert, 0x11))
    assert not isinstance(caught.value, ValueError)
    with pytest.raises(X509_ERRORS):
        check_readable(twice)
    assert check_readable(ident.cert) is ident.cert
    assert x509.ExtensionNotFound in EXTENSION_LOOKUP_ERRORS


def test_extension_readers_answer_nothing_for_an_unreadable_set() -> None:
    twice = _with_an_extension_twice(TestCA().issue("a@example.test").cert)
    # The subject's emailAddress still counts (RFC 8551 3.1); the unreadable SAN does not.
    assert certificate_addresses(twice) == ("a@example.test",)
    assert distribution_points(twice) == []
    assert responder_url(twice) is None
