"""A classic and an ML-DSA signer of one message (issue 14 point 3): side by side in one
SignedData (parallel, RFC 5652 5.1 / RFC 4853) or the ML-DSA one as a countersignature of the
classic SignerInfo (RFC 5652 11.4). Both read back by our verifier, each signer reported; the
classic signer checked by the system openssl (3.0, which knows no ML-DSA)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms as acms

from smimegate.smime import mime
from smimegate.smime.results import result_headers
from smimegate.smime.sign import Signer, sign_several, sign_several_der
from smimegate.smime.verify import verify, verify_der
from tests.helpers.testpki import Identity, TestCA

ENTITY = b"Content-Type: text/plain\r\n\r\nSigned twice.\r\n"


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def pair(ca: TestCA) -> tuple[Identity, Identity]:
    return ca.issue("a@example.test"), ca.issue("a@example.test", "ml-dsa-87")


def signers(pair: tuple[Identity, Identity]) -> list[Signer]:
    return [Signer(pair[0].key, pair[0].cert), Signer(pair[1].key, pair[1].cert)]


def openssl_verify(ca: TestCA, tmp_path: Path, entity: bytes) -> subprocess.CompletedProcess[bytes]:
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem())
    return subprocess.run(["openssl", "smime", "-verify", "-CAfile", str(tmp_path / "ca.pem")],
                          input=entity, capture_output=True, check=False)


@pytest.mark.parametrize("detached", [True, False])
def test_countersignature_verifies_in_openssl_30_and_ours(
        ca: TestCA, pair: tuple[Identity, Identity], tmp_path: Path, detached: bool) -> None:
    entity = sign_several(ENTITY, signers(pair), arrangement="countersignature",
                          detached=detached)
    if detached:
        assert b"micalg=sha-256;" in entity or b"micalg=sha-256\r\n" in entity
    done = openssl_verify(ca, tmp_path, entity)
    assert done.returncode == 0, done.stderr
    assert b"Signed twice." in done.stdout
    _content, layer = verify(entity)
    assert [(s.signature_algorithm, s.valid, s.countersigns) for s in layer.signers] == [
        ("rsa", True, None), ("ml-dsa-87", True, 0)]
    names = [n for n, _v in result_headers([layer], "P-")]
    assert "P-Signer-Countersigns-1-0" in names and "P-Signer-Countersigns-0-0" not in names


def test_parallel_signers_both_verify(pair: tuple[Identity, Identity]) -> None:
    entity = sign_several(ENTITY, signers(pair), arrangement="parallel")
    assert b'micalg="sha-256,sha-512"' in entity
    _content, layer = verify(entity)
    assert sorted((s.signature_algorithm, s.valid) for s in layer.signers) == [
        ("ml-dsa-87", True), ("rsa", True)]
    assert all(s.countersigns is None for s in layer.signers)


def _tamper_countersignature(der: bytes) -> bytes:
    """Flip one bit of the countersignature's signature value."""
    info = acms.ContentInfo.load(der)
    parent = info["content"]["signer_infos"][0]
    raw = parent["unsigned_attrs"][0].dump()
    bad = bytearray(raw)
    bad[-5] ^= 0x01  # inside the ML-DSA signature, the last field of the SignerInfo
    return der.replace(raw, bytes(bad))


def test_a_broken_countersignature_fails_alone(pair: tuple[Identity, Identity]) -> None:
    content = mime.canonicalize(ENTITY)
    der = sign_several_der(content, signers(pair), arrangement="countersignature")
    _c, layer = verify_der(_tamper_countersignature(der), content)
    assert [(s.valid, s.countersigns) for s in layer.signers] == [(True, None), (False, 0)]
    assert layer.signers[1].reason == "signature does not verify"


def test_countersignature_over_another_signature_fails(pair: tuple[Identity, Identity]) -> None:
    """Moving a countersignature to another SignerInfo of the same key must not verify: it
    signs the signature value it was made for (RFC 5652 11.4)."""
    content = mime.canonicalize(ENTITY)
    first = acms.ContentInfo.load(sign_several_der(content, signers(pair),
                                                   arrangement="countersignature"))
    second = acms.ContentInfo.load(sign_several_der(content + b"x", signers(pair),
                                                    arrangement="countersignature"))
    stolen = first["content"]["signer_infos"][0]["unsigned_attrs"][0].dump()
    own = second["content"]["signer_infos"][0]["unsigned_attrs"][0].dump()
    der = second.dump().replace(own, stolen)
    _c, layer = verify_der(der, content + b"x")
    assert [s.valid for s in layer.signers] == [True, False]
    assert layer.signers[1].reason == "message digest mismatch"


def test_no_signer_and_bad_arrangement_are_refused(pair: tuple[Identity, Identity]) -> None:
    with pytest.raises(ValueError, match="signers"):
        sign_several_der(b"x", [])
    with pytest.raises(ValueError, match="arrangement"):
        sign_several_der(b"x", signers(pair), arrangement="nested")  # type: ignore[arg-type]
