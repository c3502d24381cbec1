"""pyca/cryptography's PKCS#7 vectors (cryptography-vectors, pkcs7/) and OpenSSL's
test/smime-eml: decrypt coverage and edge cases that must end cleanly."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smimegate.smime import mime
from smimegate.smime.decrypt import decrypt, decrypt_der
from smimegate.smime.errors import Malformed, NoDecryptionKey, SmimeError
from smimegate.smime.unwrap import unwrap
from tests.conftest import VECTORS

PYCA = VECTORS / "pyca-pkcs7"
OPENSSL_EML = VECTORS / "openssl-smime-eml"


@pytest.fixture(scope="module")
def key():
    cert = x509.load_pem_x509_certificate((PYCA / "rsa_ca.pem").read_bytes())
    private = serialization.load_pem_private_key((PYCA / "rsa_key.pem").read_bytes(), None)
    return cert, private


def pem_der(name: str) -> bytes:
    lines = (PYCA / name).read_text().strip().splitlines()
    assert lines[0] == "-----BEGIN PKCS7-----" and lines[-1] == "-----END PKCS7-----"
    return base64.b64decode("".join(lines[1:-1]))


@pytest.mark.parametrize(
    ("name", "plaintext", "cipher", "oid"),
    [
        ("enveloped-rsa-oaep.pem", b"Hello, world!", "AES128", "1.2.840.113549.1.1.7"),
        ("enveloped-triple-des.pem", b"Hello, World!\r\n", "3DES", "1.2.840.113549.1.1.1"),
    ],
)
def test_enveloped_vectors_decrypt(key, name, plaintext, cipher, oid):
    content, layer = decrypt_der(pem_der(name), [key])
    assert content == plaintext
    assert layer.kind == "enveloped" and layer.decrypted is True
    assert layer.cipher == cipher
    (recipient,) = layer.recipients
    assert recipient.key_encryption_oid == oid
    assert recipient.recipient_id.issuer == "CN=cryptography CA"


def test_enveloped_vector_as_smime_message(key):
    entity = mime.build_pkcs7_mime(pem_der("enveloped-rsa-oaep.pem"), "enveloped-data")
    result = unwrap(b"From: x@y.test\r\n" + entity, [key])
    assert result.layers[0].decrypted is True
    assert result.content.strip() == b"Hello, world!"


def test_enveloped_without_content_is_a_clean_error(key):
    der = (PYCA / "enveloped-no-content.der").read_bytes()
    with pytest.raises(Malformed, match="encryptedContent"):
        decrypt_der(der, [key])
    entity = mime.build_pkcs7_mime(der, "enveloped-data")
    with pytest.raises(SmimeError):
        decrypt(entity, [key])
    with pytest.raises(Malformed):
        unwrap(entity, [key])


def test_enveloped_without_content_and_without_key_is_still_clean():
    der = (PYCA / "enveloped-no-content.der").read_bytes()
    with pytest.raises((Malformed, NoDecryptionKey)):
        decrypt_der(der, [])


def test_empty_digest_algorithms_set_is_a_clean_error():
    # OpenSSL's pkcs7-empty-digest-set.eml: SignedData.digestAlgorithms is an empty SET while
    # the signer uses sha256. RFC 5652 5.1 wants every signer's digest listed; OpenSSL 3.0
    # refuses the file ("unable to find message digest") and so do we, cleanly: the signer is
    # invalid with the reason, the message still unwraps, nothing raises.
    result = unwrap((OPENSSL_EML / "pkcs7-empty-digest-set.eml").read_bytes())
    (layer,) = result.layers
    assert layer.detached is True
    (signer,) = layer.signers
    assert signer.valid is False
    assert "digestAlgorithms" in (signer.reason or "")
    assert result.content.strip() == b"This is the content to be signed."
