"""ML-KEM-512 (smimegate.smime.mlkem512, kyber-py behind cryptography's interface): the RFC 9936
Appendix C example opened with the RFC's own key (issue 14 point 4), RFC 9935's three PKCS#8
forms, and our own KEMRecipientInfo for it (AES-128 key wrap, RFC 9936 3) beside RSA.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import cms as acms
from asn1crypto import core, pem
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smimegate.smime import mlkem512
from smimegate.smime.decrypt import CANNOT_DECRYPT, decrypt, decrypt_der
from smimegate.smime.encrypt import encrypt, encrypt_der
from smimegate.smime.errors import NoDecryptionKey
from tests.helpers.testpki import Identity, TestCA

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "rfc9936"
OID = "2.16.840.1.101.3.4.4.1"
CONTENT = b"Content-Type: text/plain\r\n\r\nSmall but quantum-safe.\r\n"


def unarmor(name: str) -> bytes:
    return bytes(pem.unarmor((VECTORS / name).read_bytes())[2])


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def bob(ca: TestCA) -> Identity:
    """The RFC's key (seed 00 01 .. 3F) under a certificate of ours: the example names its
    recipient by subjectKeyIdentifier, the SHA-1 of the public key (RFC 5280 4.2.1.2)."""
    key = mlkem512.load_der_private_key(unarmor("ML-KEM-512-bob.key.pem"))
    return ca.issue("bob@example.com", "ml-kem-512", key=key)


def test_rfc9936_example_opens_with_the_rfcs_key(bob: Identity) -> None:
    der = unarmor("ML-KEM-512-example.cms.pem")
    content, layer = decrypt_der(der, [(bob.cert, bob.key)])
    assert content == b"Hello, world!"
    assert layer.kind == "auth-enveloped" and layer.decrypted
    [recipient] = layer.recipients
    assert recipient.key_encryption_oid == OID
    # The example's rid, and what our certificate of the RFC's key carries.
    assert recipient.recipient_id.ski == bytes.fromhex("599788c37aed400ee405d1b2a3366ab17d824a51")
    assert recipient.recipient_id.ski == bob.cert.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest


def test_rfc9936_example_refuses_another_key(bob: Identity, ca: TestCA) -> None:
    der = unarmor("ML-KEM-512-example.cms.pem")
    seed = bytearray(bob.key.private_bytes_raw())
    seed[0] ^= 1  # another d: another key under the same certificate
    other = mlkem512.MLKEM512PrivateKey.from_seed_bytes(bytes(seed))
    with pytest.raises(NoDecryptionKey, match=CANNOT_DECRYPT):
        decrypt_der(der, [(bob.cert, other)])
    # An ML-KEM-768 key where the KEM is ML-KEM-512: the same clean failure.
    with pytest.raises(NoDecryptionKey, match=CANNOT_DECRYPT):
        decrypt_der(der, [(bob.cert, ca.issue("x@example.com", "ml-kem-768").key)])


def _pkcs8(inner: bytes) -> bytes:
    alg = b"\x30\x0b" + bytes(core.ObjectIdentifier(OID).dump())
    body = b"\x02\x01\x00" + alg + bytes(core.OctetString(inner).dump())
    return b"\x30" + _len(len(body)) + body


def _len(n: int) -> bytes:
    return bytes((n,)) if n < 0x80 else b"\x82" + n.to_bytes(2, "big")


def test_pkcs8_forms_of_rfc9935(bob: Identity) -> None:
    seed_form = unarmor("ML-KEM-512-bob.key.pem")
    seed = bytes(range(64))
    assert bob.key.private_bytes_raw() == seed
    expanded = mlkem512.load_der_private_key(seed_form)._dk
    assert len(expanded) == mlkem512.EXPANDED_BYTES
    both = bytes(core.OctetString(seed).dump()) + bytes(core.OctetString(expanded).dump())
    both_der = _pkcs8(b"\x30" + _len(len(both)) + both)
    expanded_der = _pkcs8(bytes(core.OctetString(expanded).dump()))
    ciphertext_secret = bob.key.public_key().encapsulate()
    for der in (seed_form, both_der, expanded_der):
        key = mlkem512.load_der_private_key(der)
        assert key.public_key() == bob.key.public_key()
        assert key.decapsulate(ciphertext_secret[1]) == ciphertext_secret[0]
    # Written back: the seed form when the seed is known (RFC 9935 recommends it), else the
    # expanded key, each read again to the same key.
    plain = serialization.NoEncryption()
    assert bob.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 plain) == seed_form
    assert mlkem512.load_der_private_key(expanded_der).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, plain) == expanded_der


def test_inconsistent_or_broken_pkcs8_is_refused() -> None:
    seed = bytes(range(64))
    expanded = bytearray(mlkem512.MLKEM512PrivateKey.from_seed_bytes(seed)._dk)
    # RFC 9935 6: a seed and an expanded key that disagree are refused.
    other = mlkem512.MLKEM512PrivateKey.from_seed_bytes(bytes(63) + b"\x01")._dk
    both = bytes(core.OctetString(seed).dump()) + bytes(core.OctetString(other).dump())
    with pytest.raises(ValueError, match="do not match"):
        mlkem512.load_der_private_key(_pkcs8(b"\x30" + _len(len(both)) + both))
    # FIPS 203 7.3: an expanded key whose H(ek) is wrong fails the hash check.
    expanded[800] ^= 1
    with pytest.raises(ValueError, match="hash check"):
        mlkem512.load_der_private_key(_pkcs8(bytes(core.OctetString(bytes(expanded)).dump())))
    with pytest.raises(ValueError, match="seed"):
        mlkem512.load_der_private_key(_pkcs8(bytes(core.OctetString(b"\x01" * 10,
                                                                      implicit=0).dump())))
    with pytest.raises(ValueError, match="public key"):
        mlkem512.MLKEM512PublicKey(b"\x00" * 799)
    with pytest.raises(ValueError, match="ciphertext"):
        mlkem512.MLKEM512PrivateKey.from_seed_bytes(seed).decapsulate(b"\x00" * 767)


@pytest.mark.parametrize("cipher", ["aes256-cbc", "aes128-gcm"])
def test_we_write_ml_kem_512_beside_rsa(ca: TestCA, cipher: str) -> None:
    kem_id, rsa_id = ca.issue("k@example.com", "ml-kem-512"), ca.issue("r@example.com")
    der = encrypt_der(CONTENT, [rsa_id.cert, kem_id.cert], cipher=cipher)
    [ori] = [ri for ri in acms.ContentInfo.load(der)["content"]["recipient_infos"]
             if ri.name == "ori"]
    kemri = bytes(ori.chosen["ori_value"].dump())
    # RFC 9936 3: id-alg-ml-kem-512, HKDF-SHA256, kekLength 16 with id-aes128-wrap.
    assert bytes(core.ObjectIdentifier(OID).dump()) in kemri
    assert bytes(core.ObjectIdentifier("2.16.840.1.101.3.4.1.5").dump()) in kemri
    assert b"\x02\x01\x10" in kemri
    for ident in (kem_id, rsa_id):
        content, layer = decrypt(encrypt(CONTENT, [rsa_id.cert, kem_id.cert], cipher=cipher),
                                 [(ident.cert, ident.key)])
        assert content == CONTENT
        assert {r.key_encryption_oid for r in layer.recipients} == {OID, "1.2.840.113549.1.1.1"}


def test_trust_takes_ml_kem_512_certificates_for_encryption_only(ca: TestCA) -> None:
    from smimegate.pki import trust

    anchors = trust.TrustAnchors(roots=(ca.cert,))
    cert = ca.issue("k@example.com", "ml-kem-512").cert
    assert trust.check(cert, anchors, purpose="encrypt").trusted
    assert trust.check(cert, anchors, purpose="sign").reason == "key type cannot sign"
