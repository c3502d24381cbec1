"""RFC 4134 "Examples of S/MIME Messages": legacy algorithms (SHA-1, DSA, 3DES, 1024-bit RSA)
are read, or refused cleanly: a SmimeError or a SignerResult with valid=False and a reason,
never another exception.
"""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smimegate.smime import mime
from smimegate.smime.decrypt import decrypt_der
from smimegate.smime.errors import Malformed
from smimegate.smime.unwrap import unwrap
from smimegate.smime.verify import verify_der
from tests.conftest import VECTORS

R4134 = VECTORS / "rfc4134"
EX_CONTENT = (R4134 / "ExContent.bin").read_bytes()  # RFC 4134 2.1


def bob():
    cert = x509.load_pem_x509_certificate((R4134 / "BobRSASignByCarl.pem").read_bytes())
    key = serialization.load_pem_private_key((R4134 / "BobPrivRSAEncrypt.key.pem").read_bytes(),
                                             None)
    return cert, key


def test_excontent_is_the_rfc_text():
    assert EX_CONTENT == b"This is some sample content."


# (section, signature algorithm, signer identifier starts with): every signer verifies.
SIGNED = [
    ("4.1", "dsa", "CN=CarlDSS/C8/"),  # basic, DSS
    ("4.2", "rsa", "CN=CarlRSA/"),  # basic, RSA
    ("4.3", "dsa", "CN=CarlDSS/C8/"),  # detached content
    ("4.4", "dsa", "CN=CarlDSS/C8/"),  # signed attributes + countersignature (unsigned attr)
    ("4.5", "rsa", "CN=CarlRSA/"),  # BER with indefinite lengths
    ("4.7", "dsa", "//"),  # SubjectKeyIdentifier as signer identifier
    ("4.10", "dsa", "CN=CarlDSS/C8/"),  # many unusual signed attributes
]


@pytest.mark.parametrize(("section", "algorithm", "sid"), SIGNED, ids=[s[0] for s in SIGNED])
def test_signed_data_verifies(section, algorithm, sid):
    der = (R4134 / f"{section}.bin").read_bytes()
    detached = EX_CONTENT if section == "4.3" else None
    content, layer = verify_der(der, detached)
    assert content == EX_CONTENT
    assert layer.kind == "signed"
    assert layer.detached is (section == "4.3")
    signer, *counter = layer.signers
    # 4.4's countersignature (RFC 5652 11.4) is reported as a signer of its own.
    assert len(counter) == (1 if section == "4.4" else 0)
    assert signer.valid is True, signer.reason
    assert signer.digest_algorithm == "sha1"
    assert signer.signature_algorithm == algorithm
    assert signer.signer_id.header_value().startswith(sid)


def test_countersignature_of_4_4_verifies():
    # Carl's RSA key countersigns the DSS SignerInfo: a published example for the
    # countersignature reading that pqc_signature = countersignature relies on.
    _content, layer = verify_der((R4134 / "4.4.bin").read_bytes())
    counter = layer.signers[1]
    assert (counter.valid, counter.reason, counter.countersigns) == (True, None, 0)
    assert counter.signature_algorithm == "rsa"
    assert counter.signer_id.header_value().startswith("CN=CarlRSA/46346BC7800056BC11D36E2EC410B3B0/")


def test_detached_signature_over_other_content_is_invalid():
    _content, layer = verify_der((R4134 / "4.3.bin").read_bytes(), EX_CONTENT + b"!")
    assert layer.signers[0].valid is False
    assert layer.signers[0].reason


def test_multiple_signers_each_reported():
    # 4.6: Alice and Diane (DSS). Diane's certificate inherits its DSA parameters from Carl's
    # (RFC 3279 2.3.2), which cryptography cannot parse: her SignerResult says so cleanly.
    _content, layer = verify_der((R4134 / "4.6.bin").read_bytes())
    alice, diane = layer.signers
    assert alice.valid is True
    assert alice.signer_id.serial == 0xC8
    assert diane.valid is False
    assert diane.reason and "certificate" in diane.reason
    assert diane.signer_id.serial == 0xD2


def test_certs_only_is_a_clean_error_not_a_signature():
    with pytest.raises(Malformed, match="certs-only"):
        verify_der((R4134 / "4.11.bin").read_bytes())


def test_certs_only_through_unwrap_is_content_without_layers():
    der = (R4134 / "4.11.bin").read_bytes()
    entity = mime.build_pkcs7_mime(der, "certs-only")
    result = unwrap(b"Subject: certs\r\n" + entity)
    assert result.layers == ()
    assert mime.classify(mime.parse_entity(result.content)) == "certs-only"


def test_enveloped_3des_decrypts_with_bob():
    content, layer = decrypt_der((R4134 / "5.1.bin").read_bytes(), [bob()])
    assert content == EX_CONTENT
    assert layer.cipher == "3DES" and layer.key_size == 192
    assert layer.recipients[0].recipient_id.issuer == "CN=CarlRSA"


@pytest.mark.parametrize("name", ["4.8.eml", "4.9.eml"])
def test_smime_signed_messages(name):
    # 4.8 multipart/signed (micalg=SHA1), 4.9 application/pkcs7-mime signed-data, both DSS.
    result = unwrap((R4134 / name).read_bytes())
    (layer,) = result.layers
    assert layer.detached is (name == "4.8.eml")
    (signer,) = layer.signers
    assert signer.valid is True, signer.reason
    assert signer.signature_algorithm == "dsa"
    assert result.content.strip() == EX_CONTENT


def test_smime_enveloped_message_decrypts_with_bob():
    result = unwrap((R4134 / "5.3.eml").read_bytes(), [bob()])
    (layer,) = result.layers
    assert layer.kind == "enveloped" and layer.decrypted is True and layer.cipher == "3DES"
    # ExContent is not a MIME entity: it is delivered as a header-less (text/plain) body.
    assert result.content.strip() == EX_CONTENT
    assert mime.content_type(mime.parse_entity(result.content))[0] == "text/plain"


def test_smime_enveloped_message_without_key():
    result = unwrap((R4134 / "5.3.eml").read_bytes())
    assert result.layers[0].decrypted is False
    assert result.layers[0].recipients[0].key_encryption_oid == "1.2.840.113549.1.1.1"
    assert result.error
