"""ML-KEM recipients (KEMRecipientInfo in ori, RFC 9629 / RFC 9936): beside an RSA recipient in
one message, both ways, and a second code path (asn1crypto + cryptography primitives only) that
opens what we write.

Neither the system openssl (3.0) nor anything installable here reads KEMRecipientInfo.
ML-KEM-512 (kyber-py, as cryptography 50 has none) and the RFC 9936 example: test_mlkem512.py.
"""

from __future__ import annotations

import pytest
from asn1crypto import algos, core
from asn1crypto import cms as acms
from cryptography.hazmat.primitives import hashes, keywrap, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from smimegate.smime.decrypt import CANNOT_DECRYPT, decrypt, decrypt_der
from smimegate.smime.encrypt import encrypt, encrypt_der
from smimegate.smime.errors import NoDecryptionKey
from smimegate.smime.results import result_headers
from smimegate.smime.unwrap import unwrap
from tests.helpers.testpki import Identity, TestCA

CONTENT = b"Content-Type: text/plain\r\n\r\nQuantum-safe hello.\r\n"
KEM_OIDS = {"ml-kem-768": "2.16.840.1.101.3.4.4.2", "ml-kem-1024": "2.16.840.1.101.3.4.4.3"}


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def people(ca: TestCA) -> dict[str, Identity]:
    return {kind: ca.issue(f"{kind}@example.test", kind)
            for kind in ("rsa2048", "ml-kem-768", "ml-kem-1024")}


class _KemRecipientInfo(core.Sequence):  # type: ignore[misc]
    # RFC 9629 3, written out again here so that the check shares no code with smimegate.
    _fields = [
        ("version", core.Integer),
        ("rid", acms.RecipientIdentifier),
        ("kem", algos.AnyAlgorithmIdentifier),
        ("kemct", core.OctetString),
        ("kdf", algos.AnyAlgorithmIdentifier),
        ("kek_length", core.Integer),
        ("ukm", core.OctetString, {"explicit": 0, "optional": True}),
        ("wrap", algos.AnyAlgorithmIdentifier),
        ("encrypted_key", core.OctetString),
    ]


class _OtherInfo(core.Sequence):  # type: ignore[misc]
    # RFC 9629 5 CMSORIforKEMOtherInfo
    _fields = [
        ("wrap", algos.AnyAlgorithmIdentifier),
        ("kek_length", core.Integer),
        ("ukm", core.OctetString, {"explicit": 0, "optional": True}),
    ]


def _independent_open(der: bytes, ident: Identity) -> bytes:
    enveloped = acms.ContentInfo.load(der)["content"]
    assert enveloped["version"].native == "v3"  # RFC 5652 6.1: ori present
    [ori] = [ri for ri in enveloped["recipient_infos"] if ri.name == "ori"]
    assert ori.chosen["ori_type"].dotted == "1.2.840.113549.1.9.16.13.3"  # id-ori-kem
    kemri = _KemRecipientInfo.load(ori.chosen["ori_value"].dump())
    assert kemri["version"].native == 0
    assert kemri["rid"].chosen["serial_number"].native == ident.cert.serial_number
    # HKDF-SHA256 (RFC 8619), parameters absent: the SEQUENCE holds the OID alone.
    assert kemri["kdf"].dump() == b"\x30\x0d" + core.ObjectIdentifier(
        "1.2.840.113549.1.9.16.3.28").dump()
    assert kemri["wrap"]["algorithm"].dotted == "2.16.840.1.101.3.4.1.45"  # id-aes256-wrap
    assert kemri["kek_length"].native == 32
    shared = ident.key.decapsulate(kemri["kemct"].native)
    info = _OtherInfo({"wrap": kemri["wrap"], "kek_length": 32}).dump()
    kek = HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(shared)
    cek = keywrap.aes_key_unwrap(kek, kemri["encrypted_key"].native)
    eci = enveloped["encrypted_content_info"]
    iv = eci["content_encryption_algorithm"]["parameters"].native
    dec = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
    padded = dec.update(eci["encrypted_content"].native) + dec.finalize()
    unpad = padding.PKCS7(128).unpadder()
    return unpad.update(padded) + unpad.finalize()


@pytest.mark.parametrize("kind", ["ml-kem-768", "ml-kem-1024"])
@pytest.mark.parametrize("cipher", ["aes256-cbc", "aes256-gcm"])
def test_round_trip_beside_rsa(people: dict[str, Identity], kind: str, cipher: str) -> None:
    rsa_id, kem_id = people["rsa2048"], people[kind]
    entity = encrypt(CONTENT, [rsa_id.cert, kem_id.cert], cipher=cipher)
    for ident in (kem_id, rsa_id):
        content, layer = decrypt(entity, [(ident.cert, ident.key)])
        assert content == CONTENT
        oids = {r.recipient_id.serial: r.key_encryption_oid for r in layer.recipients}
        assert oids[kem_id.cert.serial_number] == KEM_OIDS[kind]
        assert oids[rsa_id.cert.serial_number] == "1.2.840.113549.1.1.1"


def test_second_code_path_opens_what_we_write(people: dict[str, Identity]) -> None:
    ident = people["ml-kem-768"]
    der = encrypt_der(CONTENT, [people["rsa2048"].cert, ident.cert])
    assert _independent_open(der, ident) == CONTENT


def test_wrong_or_damaged_key_fails_cleanly(people: dict[str, Identity], ca: TestCA) -> None:
    ident = people["ml-kem-768"]
    other = ca.issue("other@example.test", "ml-kem-768")
    der = encrypt_der(CONTENT, [ident.cert], cipher="aes256-gcm")
    # Another ML-KEM key under the right certificate: the unwrap fails, a random key follows
    # (RFC 3218), and the content check fails like any wrong key.
    with pytest.raises(NoDecryptionKey, match=CANNOT_DECRYPT):
        decrypt_der(der, [(ident.cert, other.key)])
    # An ML-KEM-1024 key where the KEM is ML-KEM-768: the same clean failure.
    with pytest.raises(NoDecryptionKey, match=CANNOT_DECRYPT):
        decrypt_der(der, [(ident.cert, people["ml-kem-1024"].key)])


def test_unwrap_headers_name_the_kem(people: dict[str, Identity]) -> None:
    ident = people["ml-kem-1024"]
    message = b"Subject: pq\r\n" + encrypt(CONTENT, [ident.cert, people["rsa2048"].cert])
    unwrapped = unwrap(message, [(ident.cert, ident.key)])
    assert unwrapped.content == CONTENT and unwrapped.error is None
    values = [v for k, v in result_headers(unwrapped.layers) if "Encryption-Recipient" in k]
    assert any(v.endswith("/" + KEM_OIDS["ml-kem-1024"]) for v in values)
    assert any(v.endswith("/1.2.840.113549.1.1.1") for v in values)


def test_trust_takes_ml_kem_certificates_for_encryption_only(
        people: dict[str, Identity], ca: TestCA) -> None:
    from smimegate.pki import trust

    anchors = trust.TrustAnchors(roots=(ca.cert,))
    cert = people["ml-kem-768"].cert
    assert trust.check(cert, anchors, purpose="encrypt").trusted
    assert trust.check(cert, anchors, purpose="sign").reason == "key type cannot sign"


def test_signed_with_ml_dsa_then_encrypted_beside_ecdh(ca: TestCA,
                                                       people: dict[str, Identity]) -> None:
    from smimegate.smime.sign import sign

    signer = ca.issue("pq-signer@example.test", "ml-dsa-65")
    ecdh = ca.issue("ec@example.test", "ec-p256")
    kem_id = people["ml-kem-768"]
    signed = sign(CONTENT, signer.key, signer.cert, [ca.cert])
    message = b"Subject: pq\r\n" + encrypt(signed, [ecdh.cert, kem_id.cert], cipher="aes256-gcm")
    for ident in (kem_id, ecdh):
        unwrapped = unwrap(message, [(ident.cert, ident.key)])
        assert unwrapped.error is None and unwrapped.content == CONTENT
        headers = dict(result_headers(unwrapped.layers))
        assert headers["X-Smimegate-Info-Encryption-Algorithm-0"].startswith("AES256-GCM")
        assert headers["X-Smimegate-Info-Signer-Verified-0-1"] == "True"
