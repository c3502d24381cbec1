"""ML-DSA signers in SignedData (RFC 9882): round trips, the DER we write, bad signatures, and a
second code path (asn1crypto + cryptography's ML-DSA primitive, nothing of ours) that checks what
we write and writes what we must read.

The system openssl here is 3.0 (no ML-DSA), so `openssl cms` cannot be the independent check.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from asn1crypto import algos, core, pem
from asn1crypto import cms as acms
from asn1crypto import x509 as ax509
from cryptography.hazmat.primitives import serialization

from smimegate.smime import mime
from smimegate.smime.errors import Unsupported
from smimegate.smime.results import result_headers
from smimegate.smime.sign import effective_digest, sign, sign_der
from smimegate.smime.unwrap import unwrap
from smimegate.smime.verify import verify, verify_der
from tests.helpers.testpki import Identity, TestCA

CONTENT = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nPost-quantum hello.\r\n"
LEVELS = ["ml-dsa-44", "ml-dsa-65", "ml-dsa-87"]
OIDS = {"ml-dsa-44": "2.16.840.1.101.3.4.3.17", "ml-dsa-65": "2.16.840.1.101.3.4.3.18",
        "ml-dsa-87": "2.16.840.1.101.3.4.3.19"}
SHA512 = "2.16.840.1.101.3.4.2.3"


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def signers(ca: TestCA) -> dict[str, Identity]:
    return {level: ca.issue(f"{level}@example.test", level) for level in LEVELS}


def _signer_info(der: bytes) -> acms.SignerInfo:
    [info] = acms.ContentInfo.load(der)["content"]["signer_infos"]
    return info


def _independent_verify(der: bytes, content: bytes, ident: Identity) -> None:
    """RFC 5652 5.4 / RFC 9882 3.2 checked with asn1crypto and the ML-DSA primitive only."""
    signed = acms.ContentInfo.load(der)["content"]
    [info] = signed["signer_infos"]
    attrs = info["signed_attrs"]
    digest = next(a["values"][0].native for a in attrs if a["type"].native == "message_digest")
    assert digest == hashlib.sha512(content).digest()
    signed_bytes = b"\x31" + attrs.dump()[1:]  # [0] IMPLICIT -> SET OF (RFC 5652 5.4)
    ident.cert.public_key().verify(info["signature"].native, signed_bytes)


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
@pytest.mark.parametrize("level", LEVELS)
def test_round_trip(signers: dict[str, Identity], ca: TestCA, level: str, detached: bool) -> None:
    ident = signers[level]
    entity = sign(CONTENT, ident.key, ident.cert, [ca.cert], detached=detached)
    inner, layer = verify(entity)
    assert inner == CONTENT
    [signer] = layer.signers
    assert signer.valid, signer.reason
    assert (signer.signature_algorithm, signer.digest_algorithm) == (level, "sha512")
    assert signer.certificate == ident.cert
    if detached:
        assert b'micalg="sha-512"' in entity or b"micalg=sha-512" in entity


@pytest.mark.parametrize("level", LEVELS)
def test_der_profile_and_second_code_path(signers: dict[str, Identity], level: str) -> None:
    ident = signers[level]
    der = sign_der(CONTENT, ident.key, ident.cert, digest="sha256")
    info = _signer_info(der)
    # RFC 9882 3.3: the OID of the parameter set with absent parameters; SHA-512 whatever was
    # asked (sha256 is too weak for ML-DSA-65/87, and one digest for all keeps this simple).
    assert info["signature_algorithm"].dump() == algos.SignedDigestAlgorithm(
        {"algorithm": OIDS[level]}).dump()
    assert info["signature_algorithm"].dump()[-2:] != b"\x05\x00"
    assert info["digest_algorithm"]["algorithm"].dotted == SHA512
    assert isinstance(info["digest_algorithm"]["parameters"], core.Void)
    assert effective_digest(ident.key, "sha256") == "sha512"
    _independent_verify(der, CONTENT, ident)


def test_tampered_signature_fails_cleanly(signers: dict[str, Identity]) -> None:
    ident = signers["ml-dsa-65"]
    der = sign_der(CONTENT, ident.key, ident.cert)
    signature = _signer_info(der)["signature"].native
    flipped = bytes([signature[100] ^ 0x01])
    bad = der.replace(signature, signature[:100] + flipped + signature[101:])
    _, layer = verify_der(bad, CONTENT)
    [signer] = layer.signers
    assert (signer.valid, signer.reason) == (False, "signature does not verify")
    _, layer = verify_der(der, CONTENT + b"x")
    assert (layer.signers[0].valid, layer.signers[0].reason) == (False, "message digest mismatch")


def test_unwrap_headers_as_for_classic(signers: dict[str, Identity], ca: TestCA) -> None:
    ident = signers["ml-dsa-65"]
    message = b"From: a@example.test\r\nSubject: pq\r\n" + sign(
        CONTENT, ident.key, ident.cert, [ca.cert])
    unwrapped = unwrap(message)
    assert unwrapped.content == CONTENT
    headers = dict(result_headers(unwrapped.layers))
    serial = format(ident.cert.serial_number, "X")
    assert headers["X-Smimegate-Info-Signer-Verified-0-0"] == "True"
    assert serial in headers["X-Smimegate-Info-Signer-ID-0-0"]
    assert "smimegate Test Root" in headers["X-Smimegate-Info-Signer-ID-0-0"]


def _foreign_signed_data(ident: Identity, oid: str, *, digest: str | None, attrs: bool,
                         parameters: object = None) -> bytes:
    """An opaque SignedData made with asn1crypto and the primitive only (not our sign.py)."""
    cert = ax509.Certificate.load(ident.cert.public_bytes(serialization.Encoding.DER))
    digest_oid = {"sha256": "2.16.840.1.101.3.4.2.1", "sha512": SHA512, None: SHA512}[digest]
    hashed = hashlib.new(digest or "sha512", CONTENT).digest()
    info: dict[str, object] = {
        "version": "v1",
        "sid": acms.SignerIdentifier({"issuer_and_serial_number": {
            "issuer": cert.issuer, "serial_number": cert.serial_number}}),
        "digest_algorithm": {"algorithm": digest_oid},
        "signature_algorithm": {"algorithm": oid, "parameters": parameters},
    }
    if attrs:
        signed_attrs = acms.CMSAttributes([
            {"type": "content_type", "values": ["data"]},
            {"type": "message_digest", "values": [hashed]},
        ])
        info["signed_attrs"] = signed_attrs
        info["signature"] = ident.key.sign(signed_attrs.dump())
    else:
        info["signature"] = ident.key.sign(CONTENT)  # RFC 9882 3.2: the eContent octets
    return bytes(acms.ContentInfo({"content_type": "signed_data", "content": {
        "version": "v1",
        "digest_algorithms": [{"algorithm": digest_oid}],
        "encap_content_info": {"content_type": "data", "content": CONTENT},
        "certificates": [cert],
        "signer_infos": [info],
    }}).dump())


@pytest.mark.parametrize("attrs", [True, False], ids=["signed-attrs", "no-signed-attrs"])
def test_reads_foreign_signed_data(signers: dict[str, Identity], attrs: bool) -> None:
    ident = signers["ml-dsa-44"]
    der = _foreign_signed_data(ident, OIDS["ml-dsa-44"], digest="sha256", attrs=attrs)
    content, layer = verify_der(der)
    assert content == CONTENT
    assert layer.signers[0].valid, layer.signers[0].reason


def test_refusals(signers: dict[str, Identity]) -> None:
    ident = signers["ml-dsa-87"]
    # RFC 9882 3.3 Table 1: SHA-256 does not reach ML-DSA-87's strength (with signed attributes).
    der = _foreign_signed_data(ident, OIDS["ml-dsa-87"], digest="sha256", attrs=True)
    [signer] = verify_der(der)[1].signers
    assert not signer.valid
    assert signer.reason is not None and "too weak for ml-dsa-87" in signer.reason
    # The OID must name the key's parameter set.
    der = _foreign_signed_data(ident, OIDS["ml-dsa-65"], digest="sha512", attrs=True)
    [signer] = verify_der(der)[1].signers
    assert (signer.valid, signer.reason) == (
        False, "signature algorithm ml-dsa-65 does not match the signer's ml-dsa-87 key")
    # RFC 9882 2: parameters MUST be absent.
    der = _foreign_signed_data(ident, OIDS["ml-dsa-87"], digest="sha512", attrs=True,
                               parameters=core.Null())
    [signer] = verify_der(der)[1].signers
    assert (signer.valid, signer.reason) == (
        False, "ml-dsa-87 signatureAlgorithm must have no parameters")
    # Without signed attributes digestAlgorithm is ignored (RFC 9882 3.3): valid.
    der = _foreign_signed_data(ident, OIDS["ml-dsa-87"], digest="sha256", attrs=False)
    assert verify_der(der)[1].signers[0].valid
    with pytest.raises(Unsupported, match="pss"):
        sign_der(CONTENT, ident.key, ident.cert, pss=True)


def test_micalg_of_ml_dsa_entity(signers: dict[str, Identity]) -> None:
    ident = signers["ml-dsa-44"]
    entity = sign(CONTENT, ident.key, ident.cert)
    parsed = mime.parse_entity(entity)
    assert mime.classify(parsed) == "signed"
    assert mime.split_multipart_signed(parsed)[2] == "sha-512"


RFC9882 = Path(__file__).resolve().parents[2] / "vectors" / "rfc9882"


def _with_certificate(der: bytes, cert_der: bytes) -> bytes:
    """The example SignedData with the certificate added to ``certificates``: the RFC 9882
    examples carry none (their key is in RFC 9881 Appendix C), and the field is not signed."""
    info = acms.ContentInfo.load(der)
    signed = info["content"]
    signed["certificates"] = acms.CertificateSet([ax509.Certificate.load(cert_der)])
    return bytes(info.dump(force=False))


@pytest.mark.parametrize(("name", "text"), [
    ("mldsa44-signed-attrs.pem", b"ML-DSA-44 signed-data example with signed attributes"),
    ("mldsa44-no-signed-attrs.pem", b"ML-DSA-44 signed-data example without signed attributes"),
])
def test_rfc9882_examples_verify(name: str, text: bytes) -> None:
    _, _, der = pem.unarmor((RFC9882 / name).read_bytes())
    _, _, cert_der = pem.unarmor((RFC9882 / "ML-DSA-44.crt").read_bytes())
    assert verify_der(der)[1].signers[0].reason == "signer certificate not in message"
    content, layer = verify_der(_with_certificate(der, cert_der))
    assert content == text
    [signer] = layer.signers
    assert signer.valid, signer.reason
    assert (signer.signature_algorithm, signer.digest_algorithm) == ("ml-dsa-44", "sha512")
    assert format(signer.signer_id.serial, "x") == "159ffe6f22fd5cc42c524df6fd5e28d0de38f34e"
    # One bit of the content changed: the example no longer verifies.
    tampered = _with_certificate(der.replace(b"example", b"exbmple"), cert_der)
    assert not verify_der(tampered)[1].signers[0].valid
