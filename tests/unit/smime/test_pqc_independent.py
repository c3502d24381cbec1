"""What smimegate writes with ML-KEM and ML-DSA, read by an independent implementation
(issue 14 point 4): tests/interop/pqc-js/check.mjs, JavaScript on asn1js and the @noble
implementations of FIPS 203/204, SHA-2, HKDF and AES; it shares no code with smimegate, nor
with cryptography or OpenSSL (RSA signers aside, which it checks with node:crypto).

The checker is first held against the published examples: the ML-KEM-512 AuthEnvelopedData of
RFC 9936 Appendix C (smimegate opens it too: tests/unit/smime/test_mlkem512.py) and the
ML-DSA-44 SignedData of RFC 9882 Appendix B. Then it reads our output, ML-KEM-512 (kyber-py,
smimegate.smime.mlkem512) as well as ML-KEM-768/1024 (cryptography).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import cms as acms
from asn1crypto import pem
from asn1crypto import x509 as ax509

from smimegate.smime import encrypt, mime, sign
from smimegate.smime.decrypt import decrypt_der
from smimegate.smime.errors import NoDecryptionKey, Unsupported
from tests.helpers import pqcjs
from tests.helpers.testpki import Identity, TestCA

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
CONTENT = mime.canonicalize(b"Content-Type: text/plain\r\n\r\nRead elsewhere.\r\n")


def unarmor(path: Path) -> bytes:
    return bytes(pem.unarmor(path.read_bytes())[2])


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def people(ca: TestCA) -> dict[str, Identity]:
    kinds = ("rsa2048", "ml-kem-512", "ml-kem-768", "ml-kem-1024", "ml-dsa-44", "ml-dsa-65",
             "ml-dsa-87")
    return {kind: ca.issue("pq@example.test", kind) for kind in kinds}


def test_checker_opens_the_rfc9936_example(tmp_path: Path) -> None:
    der = unarmor(VECTORS / "rfc9936" / "ML-KEM-512-example.cms.pem")
    key = unarmor(VECTORS / "rfc9936" / "ML-KEM-512-bob.key.pem")
    assert pqcjs.decrypt(tmp_path, der, key) == b"Hello, world!"
    # A wrong key does not open it: the checker really decapsulates and unwraps. (The seed is
    # d || z, RFC 9935; z only matters for a ciphertext that fails, so d is changed.)
    other = bytearray(key)
    other[-64] ^= 1
    done = pqcjs.run("decrypt", str(tmp_path / "js-in.der"),
                     str(_write(tmp_path, bytes(other))))
    assert done.returncode == 1 and b"no KEMRecipientInfo opens" in done.stderr


def test_smimegate_refuses_the_example_to_another_key(people: dict[str, Identity]) -> None:
    """Held by none of our keys (an ML-KEM-768 one here): one clear refusal, never a crash."""
    der = unarmor(VECTORS / "rfc9936" / "ML-KEM-512-example.cms.pem")
    kem = people["ml-kem-768"]
    with pytest.raises((Unsupported, NoDecryptionKey)):
        decrypt_der(der, [(kem.cert, kem.key)])


def _write(folder: Path, data: bytes) -> Path:
    path = folder / "other.der"
    path.write_bytes(data)
    return path


def _with_certificate(der: bytes, cert_der: bytes) -> bytes:
    # The RFC 9882 examples carry no certificate; the field is not signed.
    info = acms.ContentInfo.load(der)
    info["content"]["certificates"] = acms.CertificateSet([ax509.Certificate.load(cert_der)])
    return bytes(info.dump(force=False))


@pytest.mark.parametrize("name", ["mldsa44-signed-attrs.pem", "mldsa44-no-signed-attrs.pem"])
def test_checker_verifies_the_rfc9882_examples(tmp_path: Path, name: str) -> None:
    der = _with_certificate(unarmor(VECTORS / "rfc9882" / name),
                            unarmor(VECTORS / "rfc9882" / "ML-DSA-44.crt"))
    assert pqcjs.verify(tmp_path, der) == [
        {"algorithm": "ml-dsa-44", "valid": True, "reason": None, "countersigns": None}]
    tampered = der.replace(b"example", b"exbmple")
    [signer] = pqcjs.verify(tmp_path, tampered)
    assert signer["valid"] is False


@pytest.mark.parametrize("cipher", ["aes256-cbc", "aes128-cbc", "aes256-gcm", "aes128-gcm"])
def test_our_kem_recipient_infos_open_elsewhere(tmp_path: Path, people: dict[str, Identity],
                                                cipher: str) -> None:
    kinds = ("ml-kem-512", "ml-kem-768", "ml-kem-1024")
    der = encrypt.encrypt_der(CONTENT, [people["rsa2048"].cert,
                                        *(people[kind].cert for kind in kinds)], cipher=cipher)
    for kind in kinds:
        assert pqcjs.decrypt(tmp_path, der, people[kind].key) == CONTENT


@pytest.mark.parametrize("kind", ["ml-dsa-44", "ml-dsa-65", "ml-dsa-87"])
@pytest.mark.parametrize("arrangement", ["parallel", "countersignature"])
@pytest.mark.parametrize("detached", [True, False])
def test_our_ml_dsa_signers_verify_elsewhere(tmp_path: Path, people: dict[str, Identity],
                                             kind: str, arrangement: str,
                                             detached: bool) -> None:
    signers = [sign.Signer(people["rsa2048"].key, people["rsa2048"].cert),
               sign.Signer(people[kind].key, people[kind].cert)]
    der = sign.sign_several_der(CONTENT, signers, arrangement=arrangement,  # type: ignore[arg-type]
                                detached=detached)
    found = pqcjs.verify(tmp_path, der, CONTENT if detached else None)
    counter = 0 if arrangement == "countersignature" else None
    assert sorted(found, key=lambda s: s["algorithm"]) == [
        {"algorithm": "1.2.840.113549.1.1.1", "valid": True, "reason": None,
         "countersigns": None},
        {"algorithm": kind, "valid": True, "reason": None, "countersigns": counter}]
    # Over other content, every signer of the content fails there too.
    if detached:
        assert not any(s["valid"] for s in pqcjs.verify(tmp_path, der, CONTENT + b"x")
                       if s["countersigns"] is None)


def test_ml_dsa_alone(tmp_path: Path, people: dict[str, Identity]) -> None:
    der = sign.sign_der(CONTENT, people["ml-dsa-65"].key, people["ml-dsa-65"].cert)
    assert pqcjs.verify(tmp_path, der, CONTENT) == [
        {"algorithm": "ml-dsa-65", "valid": True, "reason": None, "countersigns": None}]
