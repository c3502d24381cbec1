"""verify / verify_der: OpenSSL-made signatures, third-party vectors, bad and broken input."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from asn1crypto import algos
from asn1crypto import cms as acms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smimegate.smime import mime
from smimegate.smime.errors import Malformed
from smimegate.smime.sign import assemble, build_signer_info, sign_der
from smimegate.smime.verify import _signing_time, verify, verify_der
from tests.helpers.testpki import Identity, TestCA

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
CONTENT = b"Content-Type: text/plain\r\n\r\nSigned text.\r\n"


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def alice(ca: TestCA) -> Identity:
    return ca.issue("alice@example.test", "rsa2048")


@pytest.fixture(scope="module")
def erin(ca: TestCA) -> Identity:
    return ca.issue("erin@example.test", "ec-p256")


def _openssl_sign(tmp_path: Path, ident: Identity, content: bytes, *extra: str) -> bytes:
    key, crt = ident.write(tmp_path, "signer")
    (tmp_path / "in.txt").write_bytes(content)
    result = subprocess.run(
        ["openssl", "cms", "-sign", "-in", str(tmp_path / "in.txt"), "-signer", str(crt),
         "-inkey", str(key), "-outform", "DER", "-out", str(tmp_path / "sig.der"), *extra],
        capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return (tmp_path / "sig.der").read_bytes()


@pytest.mark.parametrize(
    ("kind", "options", "sig_name", "digest"),
    [
        ("rsa2048", [], "rsa", "sha256"),
        ("rsa2048", ["-md", "sha512"], "rsa", "sha512"),
        ("rsa2048", ["-keyopt", "rsa_padding_mode:pss"], "rsa-pss", "sha256"),
        ("rsa2048", ["-md", "sha384", "-keyopt", "rsa_padding_mode:pss",
                     "-keyopt", "rsa_pss_saltlen:-1"], "rsa-pss", "sha384"),
        ("ec-p256", [], "ecdsa", "sha256"),
        ("ec-p384", ["-md", "sha384"], "ecdsa", "sha384"),
    ],
)
@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
def test_openssl_made(tmp_path: Path, ca: TestCA, kind: str, options: list[str], sig_name: str,
                      digest: str, detached: bool) -> None:
    ident = ca.issue("o@example.test", kind)
    der = _openssl_sign(tmp_path, ident, CONTENT, "-binary",
                        *([] if detached else ["-nodetach"]), *options)
    content, layer = verify_der(der, CONTENT if detached else None)
    assert content == CONTENT
    [signer] = layer.signers
    assert signer.valid, signer.reason
    assert (signer.signature_algorithm, signer.digest_algorithm) == (sig_name, digest)
    assert signer.certificate == ident.cert
    assert signer.signing_time is not None
    assert "aes256-cbc" in signer.capabilities  # OpenSSL's default SMIMECapabilities
    _, bad = verify_der(der, CONTENT + b"x") if detached else verify_der(
        der.replace(b"Signed text", b"Signed test"))
    assert not bad.signers[0].valid


def test_openssl_lf_file_retried_canonical(tmp_path: Path, alice: Identity) -> None:
    # Without -binary OpenSSL signs the CRLF form of an LF file (RFC 8551 3.1.1); the bytes we
    # are handed still have LF, so the first try fails and the canonical retry succeeds.
    lf = CONTENT.replace(b"\r\n", b"\n")
    der = _openssl_sign(tmp_path, alice, lf)
    content, layer = verify_der(der, lf)
    assert content == lf
    assert layer.signers[0].valid, layer.signers[0].reason


def test_tampered_signature_value(alice: Identity) -> None:
    der = bytearray(sign_der(CONTENT, alice.key, alice.cert))
    info = acms.ContentInfo.load(bytes(der))
    sig = info["content"]["signer_infos"][0]["signature"].native
    at = bytes(der).index(sig)
    der[at + 10] ^= 0x01
    _, layer = verify_der(bytes(der), CONTENT)
    assert not layer.signers[0].valid
    assert layer.signers[0].reason == "signature does not verify"


def test_multiple_signers_and_missing_cert(ca: TestCA, alice: Identity, erin: Identity) -> None:
    infos = [build_signer_info(CONTENT, alice.key, alice.cert),
             build_signer_info(CONTENT, erin.key, erin.cert, digest="sha384")]
    der = assemble(CONTENT, infos, [alice.cert, erin.cert, ca.cert], detached=False)
    signed = acms.ContentInfo.load(der)["content"]
    assert len(signed["digest_algorithms"]) == 2
    content, layer = verify_der(der)
    assert content == CONTENT
    # SignerInfos is a DER SET OF: the order on the wire is by encoding, not as given.
    assert [s.valid for s in layer.signers] == [True, True]
    by_cert = {s.signature_algorithm: s.certificate for s in layer.signers}
    assert by_cert == {"rsa": alice.cert, "ecdsa": erin.cert}
    # Erin's certificate left out: Alice still verifies, Erin cannot be checked.
    _, layer = verify_der(assemble(CONTENT, infos, [alice.cert], detached=False))
    results = {s.signer_id.serial: (s.valid, s.reason) for s in layer.signers}
    assert results == {
        alice.cert.serial_number: (True, None),
        erin.cert.serial_number: (False, "signer certificate not in message"),
    }


def test_subject_key_identifier_signer(erin: Identity) -> None:
    info = build_signer_info(CONTENT, erin.key, erin.cert, use_ski=True)
    der = assemble(CONTENT, [info], [erin.cert])
    assert acms.ContentInfo.load(der)["content"]["version"].native == "v3"
    _, layer = verify_der(der, CONTENT)
    [signer] = layer.signers
    assert signer.valid and signer.certificate == erin.cert
    assert signer.signer_id.serial is None and signer.signer_id.ski is not None


def test_without_signed_attributes(alice: Identity, erin: Identity) -> None:
    for ident in (alice, erin):
        info = build_signer_info(CONTENT, ident.key, ident.cert, with_signed_attributes=False)
        der = assemble(CONTENT, [info], [ident.cert])
        _, layer = verify_der(der, CONTENT)
        assert layer.signers[0].valid, layer.signers[0].reason
        assert layer.signers[0].signing_time is None
        _, bad = verify_der(der, CONTENT + b" ")
        assert bad.signers[0].reason == "signature does not verify"


def test_unsupported_digest_reported(alice: Identity) -> None:
    info = build_signer_info(CONTENT, alice.key, alice.cert)
    info["digest_algorithm"] = algos.DigestAlgorithm({"algorithm": "md5"})
    _, layer = verify_der(assemble(CONTENT, [info], [alice.cert]), CONTENT)
    assert not layer.signers[0].valid
    assert layer.signers[0].reason == "unsupported digest algorithm md5"
    assert layer.signers[0].digest_algorithm == "md5"


def test_other_content_type_is_noted(alice: Identity) -> None:
    tst_info = "1.2.840.113549.1.9.16.1.4"
    info = build_signer_info(CONTENT, alice.key, alice.cert, content_type=tst_info)
    der = assemble(CONTENT, [info], [alice.cert], detached=False, content_type=tst_info)
    content, layer = verify_der(der)
    assert content == CONTENT
    assert layer.signers[0].valid
    assert layer.signers[0].reason is not None and "is not id-data" in layer.signers[0].reason
    # The contentType attribute must match eContentType (RFC 5652 11.1).
    mismatched = assemble(CONTENT, [info], [alice.cert], detached=False)
    assert verify_der(mismatched)[1].signers[0].reason == (
        "contentType attribute does not match eContentType")


def test_an_unknown_content_type_gives_its_octets(alice: Identity) -> None:
    # In a version 1 SignedData asn1crypto reads the eContent of a type it does not know as
    # Any (PKCS #7); the content is still the OCTET STRING inside (RFC 5652 5.2), never
    # asn1crypto's repr of the Any.
    other = "1.2.3.4"
    info = build_signer_info(CONTENT, alice.key, alice.cert, content_type=other)
    signed = acms.ContentInfo.load(assemble(CONTENT, [info], [alice.cert], detached=False,
                                            content_type=other))
    signed["content"]["version"] = "v1"
    content, layer = verify_der(signed.dump(force=True))
    assert content == CONTENT
    assert layer.signers[0].valid, layer.signers[0].reason


def test_typed_content_is_malformed(alice: Identity) -> None:
    # PKCS #7 style (RFC 2315 9.1): eContent as the DER of its type, here a SignedData, which
    # no mail carries: a clear error, not content made of asn1crypto's repr.
    inner = acms.ContentInfo.load(sign_der(CONTENT, alice.key, alice.cert, detached=False))
    outer = acms.ContentInfo.load(sign_der(CONTENT, alice.key, alice.cert, detached=False))
    outer["content"]["encap_content_info"] = acms.ContentInfo(
        {"content_type": "signed_data", "content": inner["content"]})
    with pytest.raises(Malformed, match="eContent of type 1.2.840.113549.1.7.2 is not an "
                                        "OCTET STRING"):
        verify_der(outer.dump(force=True))


def test_certificates_harvested(ca: TestCA, alice: Identity) -> None:
    der = sign_der(CONTENT, alice.key, alice.cert, [ca.cert])
    certificates = verify_der(der, CONTENT)[1].certificates
    assert sorted(c.serial_number for c in certificates) == sorted(
        [alice.cert.serial_number, ca.cert.serial_number])


@pytest.mark.parametrize(
    "der",
    [b"", b"\x30\x03\x02\x01", b"garbage", b"\x30\x80" + b"\x00" * 5,
     bytes.fromhex("300b06092a864886f70d010703")],  # envelopedData type, no content
    ids=["empty", "truncated", "garbage", "indefinite-junk", "enveloped"],
)
def test_broken_input_is_malformed(der: bytes) -> None:
    with pytest.raises(Malformed):
        verify_der(der, CONTENT)


def test_detached_without_content_is_malformed(alice: Identity) -> None:
    with pytest.raises(Malformed, match="no eContent"):
        verify_der(sign_der(CONTENT, alice.key, alice.cert))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutations_never_crash(data: st.DataObject) -> None:
    der = _FUZZ_DER
    position = data.draw(st.integers(0, len(der) - 1))
    value = data.draw(st.integers(0, 255))
    cut = data.draw(st.booleans())
    mutated = der[:position] if cut else der[:position] + bytes([value]) + der[position + 1:]
    try:
        _, layer = verify_der(mutated, CONTENT)
    except Malformed:
        return
    assert all(isinstance(s.valid, bool) for s in layer.signers)


_FUZZ_ID = TestCA().issue("fuzz@example.test", "ec-p256")
_FUZZ_DER = sign_der(CONTENT, _FUZZ_ID.key, _FUZZ_ID.cert)


# --- third-party vectors (tests/vectors/README.md) ---

EX_CONTENT = (VECTORS / "rfc4134" / "ExContent.bin").read_bytes() if VECTORS.exists() else b""


@pytest.mark.parametrize("name", ["4.1", "4.2", "4.3", "4.4", "4.5", "4.7", "4.10"])
def test_rfc4134_signed_examples(name: str) -> None:
    der = (VECTORS / "rfc4134" / f"{name}.bin").read_bytes()
    content, layer = verify_der(der, EX_CONTENT if name == "4.3" else None)
    assert content == EX_CONTENT
    # 4.4 also carries a countersignature (RFC 5652 11.4), reported as a second signer.
    signer, *counter = layer.signers
    assert [c.countersigns for c in counter] == ([0] if name == "4.4" else [])
    assert signer.valid, signer.reason
    assert signer.digest_algorithm == "sha1"
    assert signer.signature_algorithm == ("rsa" if name in ("4.2", "4.5") else "dsa")
    assert signer.certificate is not None
    if name == "4.7":
        assert signer.signer_id.ski is not None and signer.signer_id.serial is None
    else:
        assert signer.signer_id.issuer in ("CN=CarlDSS", "CN=CarlRSA")
    if name == "4.4":
        assert signer.signing_time is not None and signer.signing_time.year == 2003


def test_rfc4134_multiple_signers() -> None:
    # 4.6: Alice and Diane. Diane's DSA certificate inherits its parameters from Carl (RFC 3279
    # 2.3.2), which cryptography cannot load: she is reported, not crashed on.
    _, layer = verify_der((VECTORS / "rfc4134" / "4.6.bin").read_bytes())
    alice, diane = layer.signers
    assert alice.valid
    assert not diane.valid
    assert diane.reason is not None and diane.reason.startswith("signer certificate unreadable")
    assert diane.signer_id.serial == 210


def test_rfc4134_certs_only_is_malformed() -> None:
    with pytest.raises(Malformed, match="no SignerInfo"):
        verify_der((VECTORS / "rfc4134" / "4.11.bin").read_bytes())


@pytest.mark.parametrize("name", ["rfc4134/4.8.eml", "rfc4134/4.9.eml"])
def test_signed_messages(name: str) -> None:
    _, entity = mime.split_message((VECTORS / name).read_bytes())
    content, layer = verify(entity)
    assert layer.signers and all(s.valid for s in layer.signers)
    assert b"content" in content


TB = VECTORS / "thunderbird-smime"


@pytest.mark.parametrize("digest", ["SHA1", "SHA256", "SHA384", "SHA512"])
def test_thunderbird_messages(digest: str) -> None:
    def run(name: str) -> tuple[bytes, list[tuple[bool, str | None]]]:
        _, entity = mime.split_message((TB / name).read_bytes())
        content, layer = verify(entity)
        return content, [(s.valid, s.reason) for s in layer.signers]

    assert run(f"alice.dsig.{digest}.multipart.eml")[1] == [(True, None)]
    content, results = run(f"alice.sig.{digest}.opaque.eml")
    assert results == [(True, None)] and b"Alice" in content
    assert run(f"alice.dsig.{digest}.multipart.bad.eml")[1] == [
        (False, "message digest mismatch")]
    # The body part shown is fake; the signature's own eContent is Alice's: not valid.
    content, results = run(f"alice.dsig.{digest}.multipart.mismatch-econtent.eml")
    assert b"FAKE" in content
    assert [valid for valid, _ in results] == [False]


def test_not_a_signed_entity() -> None:
    with pytest.raises(Malformed, match="not a signed entity"):
        verify(b"Content-Type: text/plain\r\n\r\nhello\r\n")


@pytest.mark.parametrize("value", [
    b"\x17\x0d260102030405Z", b"\x17\x0d491231235959Z", b"\x17\x0d500101000000Z",
    b"\x17\x0b2601020304Z", b"\x17\x11260102030405+0100", b"\x18\x0f20260102030405Z",
])
def test_signing_time_read_as_asn1crypto_reads_it(value: bytes) -> None:
    # verify reads the usual DER UTCTime itself (issue 11 point 2); the same datetime.
    expected = acms.Time.load(value).native
    got = _signing_time(value)
    assert got == expected and got.tzinfo == expected.tzinfo


@pytest.mark.parametrize("value", [b"\x17\x0d991301000000Z", b"\x17\x0d260230000000Z"])
def test_impossible_signing_time_raises_as_asn1crypto(value: bytes) -> None:
    with pytest.raises(ValueError):
        _ = acms.Time.load(value).native
    with pytest.raises(ValueError):
        _signing_time(value)
