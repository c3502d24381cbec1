"""sign / sign_der: round trips, the DER we write, and OpenSSL accepting it."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms as acms
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from smimegate.smime import mime
from smimegate.smime.errors import Unsupported
from smimegate.smime.sign import effective_digest, sign, sign_der
from smimegate.smime.verify import verify, verify_der
from tests.helpers.testpki import Identity, TestCA

CONTENT = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello Bob,\r\nsigned.\r\n"
KINDS = ["rsa", "rsa-pss", "ec-p256", "ec-p384", "ed25519"]
DIGESTS = ["sha256", "sha384", "sha512"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    ca = TestCA()
    folder = tmp_path_factory.mktemp("pki")
    (folder / "ca.crt").write_bytes(ca.cert_pem())
    ids = {
        "rsa": ca.issue("rsa@example.test", "rsa2048"),
        "ec-p256": ca.issue("p256@example.test", "ec-p256"),
        "ec-p384": ca.issue("p384@example.test", "ec-p384"),
        "ed25519": ca.issue("ed@example.test", "ed25519"),
    }
    ids["rsa-pss"] = ids["rsa"]
    return {"ca": ca, "dir": folder, "ids": ids}


def _ident(pki: dict[str, object], kind: str) -> Identity:
    ids = pki["ids"]
    assert isinstance(ids, dict)
    ident = ids[kind]
    assert isinstance(ident, Identity)
    return ident


def _signer_info(der: bytes) -> acms.SignerInfo:
    info = acms.ContentInfo.load(der)
    return info["content"]["signer_infos"][0]


def _openssl_verify(folder: Path, der: bytes, content: bytes | None) -> subprocess.CompletedProcess[bytes]:
    (folder / "sig.der").write_bytes(der)
    cmd = ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(folder / "sig.der"),
           "-CAfile", str(folder / "ca.crt"), "-purpose", "any", "-out", str(folder / "out.bin")]
    if content is not None:
        (folder / "content.bin").write_bytes(content)
        cmd += ["-content", str(folder / "content.bin")]
    return subprocess.run(cmd, capture_output=True, timeout=30, check=False)


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
@pytest.mark.parametrize("digest", DIGESTS)
@pytest.mark.parametrize("kind", KINDS)
def test_round_trip(pki: dict[str, object], kind: str, digest: str, detached: bool) -> None:
    ident = _ident(pki, kind)
    ca = pki["ca"]
    assert isinstance(ca, TestCA)
    der = sign_der(CONTENT, ident.key, ident.cert, [ca.cert], digest=digest, detached=detached,
                   pss=kind == "rsa-pss")
    content, layer = verify_der(der, CONTENT if detached else None)
    assert content == CONTENT
    assert layer.kind == "signed" and layer.detached is detached
    [signer] = layer.signers
    assert signer.valid, signer.reason
    assert signer.reason is None
    assert signer.certificate == ident.cert
    # RFC 8419 3.1: Ed25519 always uses SHA-512 as digestAlgorithm.
    assert signer.digest_algorithm == ("sha512" if kind == "ed25519" else digest)
    expected_sig = {"rsa": "rsa", "rsa-pss": "rsa-pss", "ec-p256": "ecdsa", "ec-p384": "ecdsa",
                    "ed25519": "ed25519"}[kind]
    assert signer.signature_algorithm == expected_sig
    assert signer.capabilities == ("aes256-gcm", "aes128-gcm", "aes256-cbc", "aes128-cbc",
                                   "rsaes-oaep")
    assert set(layer.certificates) == {ident.cert, ca.cert}
    # And the signature covers the content: one changed byte breaks it.
    tampered = CONTENT.replace(b"Bob", b"Eve")
    if detached:
        _, bad = verify_der(der, tampered)
    else:
        _, bad = verify_der(der.replace(b"Bob", b"Eve"))
    assert not bad.signers[0].valid
    assert bad.signers[0].reason == "message digest mismatch"


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
@pytest.mark.parametrize("digest", DIGESTS)
@pytest.mark.parametrize("kind", ["rsa", "rsa-pss", "ec-p256", "ec-p384"])
def test_openssl_accepts(pki: dict[str, object], kind: str, digest: str, detached: bool) -> None:
    ident = _ident(pki, kind)
    folder = pki["dir"]
    assert isinstance(folder, Path)
    der = sign_der(CONTENT, ident.key, ident.cert, digest=digest, detached=detached,
                   pss=kind == "rsa-pss")
    result = _openssl_verify(folder, der, CONTENT if detached else None)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Verification successful" in result.stderr
    assert (folder / "out.bin").read_bytes() == CONTENT


def test_ed25519_signature_checked_by_openssl_pkeyutl(pki: dict[str, object]) -> None:
    # OpenSSL 3.0's `cms -verify` cannot do Ed25519 (eddsa_digest_signverify_init: invalid
    # digest), so check the raw RFC 8419 signature over the DER signed attributes with pkeyutl.
    ident = _ident(pki, "ed25519")
    folder = pki["dir"]
    assert isinstance(folder, Path)
    info = _signer_info(sign_der(CONTENT, ident.key, ident.cert))
    assert info["digest_algorithm"]["algorithm"].dotted == "2.16.840.1.101.3.4.2.3"
    assert info["signature_algorithm"].dump() == bytes.fromhex("300506032b6570")  # no params
    # RFC 5652 5.4: the signed bytes are the attributes under a SET tag instead of [0].
    attrs_der = info["signed_attrs"].untag().dump()
    assert attrs_der[0] == 0x31 and attrs_der[1:] == info["signed_attrs"].dump()[1:]
    (folder / "attrs.der").write_bytes(attrs_der)
    (folder / "ed.sig").write_bytes(info["signature"].native)
    (folder / "ed.pub").write_bytes(ident.cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    result = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(folder / "ed.pub"), "-rawin",
         "-in", str(folder / "attrs.der"), "-sigfile", str(folder / "ed.sig")],
        capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"Signature Verified Successfully" in result.stdout


def test_der_profile(pki: dict[str, object]) -> None:
    ident = _ident(pki, "rsa")
    when = dt.datetime(2030, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    der = sign_der(CONTENT, ident.key, ident.cert, signing_time=when)
    signed = acms.ContentInfo.load(der)["content"]
    assert signed["version"].native == "v1"
    assert signed["encap_content_info"]["content_type"].native == "data"
    assert signed["encap_content_info"]["content"].native is None  # detached
    info = signed["signer_infos"][0]
    assert info["version"].native == "v1"
    assert info["sid"].name == "issuer_and_serial_number"
    assert info["sid"].chosen["serial_number"].native == ident.cert.serial_number
    # RFC 5754 2: SHA-2 parameters absent; RFC 3370 3.2: rsaEncryption with NULL.
    assert info["digest_algorithm"].dump() == bytes.fromhex("300b0609608648016503040201")
    assert info["signature_algorithm"].dump() == bytes.fromhex("300d06092a864886f70d0101010500")
    attrs = info["signed_attrs"]
    types = [a["type"].native for a in attrs]
    assert sorted(types) == ["content_type", "message_digest", "signing_time",
                             "smime_capabilities"]
    # DER SET OF: encodings in ascending order (X.690 11.6).
    encodings = [a.dump() for a in attrs]
    assert encodings == sorted(encodings)
    time_attr = next(a for a in attrs if a["type"].native == "signing_time")
    assert time_attr["values"][0].name == "utc_time"
    assert time_attr["values"][0].native == when


def test_signing_time_2050_is_generalized_time(pki: dict[str, object]) -> None:
    ident = _ident(pki, "ec-p256")
    when = dt.datetime(2050, 1, 1, tzinfo=dt.UTC)
    info = _signer_info(sign_der(CONTENT, ident.key, ident.cert, signing_time=when))
    time_attr = next(a for a in info["signed_attrs"] if a["type"].native == "signing_time")
    assert time_attr["values"][0].name == "generalized_time"  # RFC 5652 11.3
    _, layer = verify_der(sign_der(CONTENT, ident.key, ident.cert, signing_time=when), CONTENT)
    assert layer.signers[0].signing_time == when


def test_pss_parameters_explicit(pki: dict[str, object]) -> None:
    ident = _ident(pki, "rsa")
    info = _signer_info(sign_der(CONTENT, ident.key, ident.cert, digest="sha384", pss=True))
    params = info["signature_algorithm"]["parameters"]
    assert info["signature_algorithm"]["algorithm"].dotted == "1.2.840.113549.1.1.10"
    assert params["hash_algorithm"]["algorithm"].native == "sha384"
    assert params["mask_gen_algorithm"]["algorithm"].native == "mgf1"
    assert params["mask_gen_algorithm"]["parameters"]["algorithm"].native == "sha384"
    assert params["salt_length"].native == 48
    assert params.dump().count(bytes.fromhex("a203020130")) == 1  # saltLength written


def test_capabilities_chosen_and_omitted(pki: dict[str, object]) -> None:
    ident = _ident(pki, "rsa")
    der = sign_der(CONTENT, ident.key, ident.cert, capabilities=["aes128-cbc", "rsaes-oaep"])
    assert verify_der(der, CONTENT)[1].signers[0].capabilities == ("aes128-cbc", "rsaes-oaep")
    info = _signer_info(sign_der(CONTENT, ident.key, ident.cert, capabilities=()))
    assert "smime_capabilities" not in [a["type"].native for a in info["signed_attrs"]]
    with pytest.raises(Unsupported, match="rot13"):
        sign_der(CONTENT, ident.key, ident.cert, capabilities=["rot13"])


def test_default_capabilities_announce_oaep_sha256_after_the_ciphers(
    pki: dict[str, object]
) -> None:
    # RFC 8551 2.5.2: ciphers first, then key encipherment; rsaesOAEP with the RFC 4055 4.1
    # parameters of the OAEP we make (SHA-256, MGF1-SHA-256), not the SHA-1 defaults.
    ident = _ident(pki, "rsa")
    info = _signer_info(sign_der(CONTENT, ident.key, ident.cert))
    (attr,) = [a for a in info["signed_attrs"] if a["type"].native == "smime_capabilities"]
    items = list(attr["values"][0])
    assert [i["capability_id"].dotted for i in items] == [
        "2.16.840.1.101.3.4.1.46", "2.16.840.1.101.3.4.1.6", "2.16.840.1.101.3.4.1.42",
        "2.16.840.1.101.3.4.1.2", "1.2.840.113549.1.1.7"]
    assert all(i.dump().hex() == "300b0609" + i["capability_id"].dump().hex()[4:]
               for i in items[:4])  # AES: parameters absent
    sha256 = "300b0609608648016503040201"  # AlgorithmIdentifier sha256, parameters absent
    assert items[4].dump().hex() == (
        "3038" "06092a864886f70d010107"                       # id-RSAES-OAEP
        "302b" "a00d" + sha256 +                              # [0] hashFunc
        "a11a" "3018" "06092a864886f70d010108" + sha256)      # [1] MGF1 with sha256


def test_refusals(pki: dict[str, object]) -> None:
    rsa_id, ec_id = _ident(pki, "rsa"), _ident(pki, "ec-p256")
    with pytest.raises(Unsupported, match="sha1"):
        sign_der(CONTENT, rsa_id.key, rsa_id.cert, digest="sha1")
    with pytest.raises(Unsupported, match="md5"):
        sign_der(CONTENT, rsa_id.key, rsa_id.cert, digest="md5")
    with pytest.raises(ValueError, match="key"):
        sign_der(CONTENT, ec_id.key, rsa_id.cert)
    with pytest.raises(Unsupported, match="RSA"):
        sign_der(CONTENT, ec_id.key, ec_id.cert, pss=True)
    with pytest.raises(ValueError, match="signing_time"):
        sign_der(CONTENT, rsa_id.key, rsa_id.cert, signing_time=dt.datetime(2030, 1, 1))
    with pytest.raises(Unsupported, match="secp521r1"):
        effective_digest(ec.generate_private_key(ec.SECP521R1()), "sha256")
    with pytest.raises(Unsupported, match="X25519"):
        effective_digest(x25519.X25519PrivateKey.generate(), "sha256")  # type: ignore[arg-type]
    assert effective_digest(rsa_id.key, "SHA-384") == "sha384"


def test_sign_entity_detached_canonical_and_openssl(pki: dict[str, object]) -> None:
    ident = _ident(pki, "rsa")
    folder = pki["dir"]
    assert isinstance(folder, Path)
    lf_entity = CONTENT.replace(b"\r\n", b"\n")
    signed = sign(lf_entity, ident.key, ident.cert, digest="sha384")
    parsed = mime.parse_entity(signed)
    assert mime.classify(parsed) == "signed"
    first, sig_der, micalg = mime.split_multipart_signed(parsed)
    assert micalg == "sha-384"
    assert first == CONTENT  # the canonical form is what is sent and signed
    inner, layer = verify(signed)
    assert inner == CONTENT and layer.detached and layer.signers[0].valid
    (folder / "signed.eml").write_bytes(b"MIME-Version: 1.0\r\n" + signed)
    result = subprocess.run(
        ["openssl", "cms", "-verify", "-in", str(folder / "signed.eml"), "-CAfile",
         str(folder / "ca.crt"), "-purpose", "any", "-out", str(folder / "out.eml")],
        capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert (folder / "out.eml").read_bytes().replace(b"\r\n", b"\n") == lf_entity


@pytest.mark.parametrize("detached", [True, False])
def test_signed_entity_is_canonical(pki: dict[str, object], detached: bool) -> None:
    # The gateway hands sign's output to encrypt(canonical=True): it must be CRLF throughout.
    ident = _ident(pki, "rsa")
    signed = sign(CONTENT.replace(b"\r\n", b"\n") + b"no line end", ident.key, ident.cert,
                  detached=detached)
    assert mime.canonicalize(signed) == signed
    # canonical=True: the caller vouches for CRLF; the same bytes are signed and carried.
    again = sign(CONTENT, ident.key, ident.cert, detached=detached, canonical=True)
    assert verify(again)[0] == CONTENT


@pytest.mark.parametrize("kind", ["ec-p256", "ed25519"])
def test_sign_entity_opaque(pki: dict[str, object], kind: str) -> None:
    ident = _ident(pki, kind)
    signed = sign(CONTENT, ident.key, ident.cert, detached=False)
    parsed = mime.parse_entity(signed)
    assert mime.classify(parsed) == "opaque-signed"
    assert mime.content_type(parsed)[1]["smime-type"] == "signed-data"
    inner, layer = verify(signed)
    assert inner == CONTENT and not layer.detached
    assert layer.signers[0].valid, layer.signers[0].reason


def test_ed25519_micalg_is_sha512(pki: dict[str, object]) -> None:
    ident = _ident(pki, "ed25519")
    _, _, micalg = mime.split_multipart_signed(mime.parse_entity(sign(CONTENT, ident.key,
                                                                       ident.cert)))
    assert micalg == "sha-512"
