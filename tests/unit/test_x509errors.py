"""smimegate.x509errors: what cryptography raises for certificates it reads only in part, and
the readers of outside data that must not let it escape (found by fuzzing the gateway)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.pki.addresses import certificate_addresses
from smimegate.pki.fetch import distribution_points
from smimegate.pki.ocsp import responder_url
from smimegate.x509errors import EXTENSION_LOOKUP_ERRORS, X509_ERRORS, check_readable
from tests.helpers.testpki import TestCA
from tests.helpers.x509damage import cert_with_version, with_an_extension_twice


def _with_an_extension_twice(cert: x509.Certificate) -> x509.Certificate:
    """It loads, and fails when its extensions are read; nothing here checks its signature."""
    return x509.load_der_x509_certificate(with_an_extension_twice(cert.public_bytes(Encoding.DER)))


def test_the_errors_that_are_no_value_errors() -> None:
    ident = TestCA().issue("a@example.test")
    twice = _with_an_extension_twice(ident.cert)
    with pytest.raises(X509_ERRORS) as caught:
        twice.extensions  # noqa: B018 - reading is what fails
    assert not isinstance(caught.value, ValueError)  # why ValueError alone is not enough
    with pytest.raises(X509_ERRORS) as caught:
        x509.load_der_x509_certificate(
            cert_with_version(ident.cert.public_bytes(Encoding.DER), 0x11))
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
