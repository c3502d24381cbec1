"""Broken and hostile S/MIME input, case by case: each fails with the right typed error and a
message that names the problem (errors.py), or, where the input is odd but readable, gives a
clean result. Never a raw parser exception, never a hang.

Cases: truncated and garbage base64; truncated DER, wrong tags, absurd lengths (2^62, a length
of nine octets); a content type that is not the one the entity claims (SignedData / EnvelopedData
/ id-data); an empty digestAlgorithms set (OpenSSL's test file); nesting past max_depth; 30 MB
bodies; multipart/signed without a boundary, with one part, with a signature that is not CMS;
no matching key (RFC 3218: also a matching identifier with the wrong key); RC2 / DES content
ciphers and other algorithms outside the allow-lists.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms as acms
from asn1crypto import core

from smimegate.smime import mime
from smimegate.smime.decrypt import decrypt, decrypt_der
from smimegate.smime.encrypt import encrypt, encrypt_der
from smimegate.smime.errors import Malformed, NoDecryptionKey, Unsupported
from smimegate.smime.sign import sign, sign_der
from smimegate.smime.unwrap import DEFAULT_MAX_DEPTH, unwrap
from smimegate.smime.verify import verify, verify_der
from tests.helpers.testpki import Identity, TestCA

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
TEXT = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello Bob,\r\nthe plan stands.\r\n"
OUTER = b"From: alice@x.test\r\nTo: bob@x.test\r\nSubject: malformed\r\nMIME-Version: 1.0\r\n"

OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED = "1.2.840.113549.1.7.2"
OID_ENVELOPED = "1.2.840.113549.1.7.3"
TWO_TO_62 = 2**62


@dataclass(frozen=True)
class Pki:
    alice: Identity  # signer (EC P-256: small signatures)
    bob: Identity  # RSA recipient
    eve: Identity  # an RSA key nobody encrypted to


@functools.cache
def pki() -> Pki:
    ca = TestCA()
    return Pki(
        alice=ca.issue("alice@x.test", "ec-p256"),
        bob=ca.issue("bob@x.test", "rsa2048"),
        eve=ca.issue("eve@x.test", "rsa2048"),
    )


def bob_keys() -> list[tuple[Any, Any]]:
    return [(pki().bob.cert, pki().bob.key)]


def tlv(tag: int, body: bytes) -> bytes:
    """DER element with a definite length."""
    if len(body) < 0x80:
        return bytes((tag, len(body))) + body
    raw = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(raw))) + raw + body


def oid(dotted: str) -> bytes:
    return bytes(core.ObjectIdentifier(dotted).dump())


def pkcs7_mime(der: bytes, smime_type: str | None) -> bytes:
    """A pkcs7-mime entity with any smime-type (or none), base64 in lines of 76."""
    ctype = b"Content-Type: application/pkcs7-mime"
    if smime_type is not None:
        ctype += b"; smime-type=" + smime_type.encode()
    return (
        ctype + b'; name="smime.p7m"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + base64.encodebytes(der).replace(b"\n", b"\r\n")
    )


def split_body(entity: bytes) -> tuple[bytes, bytes]:
    head, _, body = entity.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", body


@functools.cache
def enveloped() -> bytes:
    return encrypt(TEXT, [pki().bob.cert])


@functools.cache
def enveloped_der() -> bytes:
    return mime.decode_smime_body(mime.parse_entity(enveloped()))


@functools.cache
def opaque_der() -> bytes:
    return sign_der(TEXT, pki().alice.key, pki().alice.cert, detached=False)


def id_data_der() -> bytes:
    return bytes(acms.ContentInfo({"content_type": "data", "content": core.OctetString(TEXT)})
                 .dump())


# --- base64 ---------------------------------------------------------------------------------


def test_truncated_base64_is_malformed() -> None:
    head, body = split_body(enveloped())
    cut = body[: len(body) // 2].rstrip()
    if len(cut.translate(None, b"\r\n")) % 4 == 0:
        cut = cut[:-1]
    with pytest.raises(Malformed, match=r"^base64: length \d+ is not a multiple of 4"):
        unwrap(OUTER + head + cut + b"\r\n", bob_keys())
    with pytest.raises(Malformed, match=r"^base64: length \d+ is not a multiple of 4"):
        decrypt(head + cut, bob_keys())


def test_base64_truncated_on_a_quantum_is_truncated_der() -> None:
    # Cut on a 4-character boundary: the base64 is fine, the DER inside is short.
    head, body = split_body(enveloped())
    lines = body.split(b"\r\n")
    cut = b"\r\n".join(lines[: len(lines) // 2]) + b"\r\n"
    with pytest.raises(Malformed, match="runs past the end of its container"):
        unwrap(OUTER + head + cut, bob_keys())


@pytest.mark.parametrize(
    ("garbage", "fragment"),
    [
        (b"@@@@", "base64: Only base64 data is allowed"),
        (b"\xff\xfe\xfd\xfc", "base64: Only base64 data is allowed"),
        (b"MA==MA==", "base64: Excess data after padding"),
        (b"=AAA", "base64: Leading padding not allowed"),
    ],
)
def test_garbage_base64_is_malformed(garbage: bytes, fragment: str) -> None:
    head, body = split_body(enveloped())
    with pytest.raises(Malformed, match=re.escape(fragment)):
        unwrap(OUTER + head + garbage + body, bob_keys())


def test_empty_base64_body_is_malformed() -> None:
    head, _body = split_body(enveloped())
    with pytest.raises(Malformed, match="^base64: empty body$"):
        unwrap(OUTER + head + b"\r\n \r\n", bob_keys())


def test_garbage_base64_in_a_detached_signature_is_malformed() -> None:
    signed = sign(TEXT, pki().alice.key, pki().alice.cert)
    # Break the last base64 line of the signature part.
    broken = re.sub(rb"(\r\n)([A-Za-z0-9+/=]+)(\r\n\r\n--[^\r\n]+--\r\n)$", rb"\1!\2\3", signed)
    assert broken != signed
    with pytest.raises(Malformed, match="base64: "):
        unwrap(OUTER + broken)


def test_unknown_transfer_encoding_is_unsupported() -> None:
    head, body = split_body(enveloped())
    head = head.replace(b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: x-uue")
    with pytest.raises(Unsupported, match="Content-Transfer-Encoding x-uue for an S/MIME body"):
        unwrap(OUTER + head + body, bob_keys())


# --- broken ASN.1 ---------------------------------------------------------------------------


def test_truncated_der() -> None:
    env, sig = enveloped_der(), opaque_der()
    with pytest.raises(Malformed, match="^CMS ContentInfo: length \\d+ runs past the end"):
        decrypt_der(env[: len(env) // 2], bob_keys())
    with pytest.raises(Malformed, match="^CMS ContentInfo: Insufficient data"):
        verify_der(sig[:-1])
    # The same through unwrap, re-encoded into clean base64.
    with pytest.raises(Malformed, match="runs past the end of its container"):
        unwrap(OUTER + pkcs7_mime(env[:300], "enveloped-data"), bob_keys())
    with pytest.raises(Malformed, match="Insufficient data"):
        unwrap(OUTER + pkcs7_mime(sig[:300], "signed-data"))


def test_trailing_data_after_der() -> None:
    with pytest.raises(Malformed, match="^CMS ContentInfo: 1 bytes of trailing data$"):
        decrypt_der(enveloped_der() + b"\x00", bob_keys())
    with pytest.raises(Malformed, match="^CMS ContentInfo: Extra data - 1 bytes of trailing"):
        verify_der(opaque_der() + b"\x00")


def test_wrong_outer_tag() -> None:
    # SET (0x31) where ContentInfo is a SEQUENCE (RFC 5652 3).
    with pytest.raises(Malformed, match="^CMS ContentInfo: not a SEQUENCE$"):
        decrypt_der(b"\x31" + enveloped_der()[1:], bob_keys())
    with pytest.raises(Malformed, match="tag should have been 16, but 17 was found"):
        verify_der(b"\x31" + opaque_der()[1:])


def test_wrong_inner_tag() -> None:
    # content is [0] EXPLICIT (0xA0); make it [1].
    env = enveloped_der()
    at = env.index(b"\xa0", 2)
    with pytest.raises(Malformed, match="^CMS ContentInfo: content is not \\[0\\] EXPLICIT$"):
        decrypt_der(env[:at] + b"\xa1" + env[at + 1 :], bob_keys())
    sig = opaque_der()
    at = sig.index(b"\xa0", 2)
    with pytest.raises(Malformed, match="^CMS ContentInfo: "):
        verify_der(sig[:at] + b"\xa1" + sig[at + 1 :])


@pytest.mark.parametrize("content_oid", [OID_ENVELOPED, OID_SIGNED])
def test_length_of_two_to_the_62(content_oid: str) -> None:
    # ContentInfo { contentType, [0] with a length field of 2^62 } in a 20-odd byte object.
    absurd = b"\xa0\x88" + TWO_TO_62.to_bytes(8, "big")
    der = tlv(0x30, oid(content_oid) + absurd)
    expected = {
        OID_ENVELOPED: "CMS ContentInfo: length 4611686018427387904 runs past the end",
        OID_SIGNED: "CMS ContentInfo: Insufficient data - 4611686018427387904 bytes requested",
    }[content_oid]
    call = decrypt_der if content_oid == OID_ENVELOPED else (lambda d, _k: verify_der(d))
    with pytest.raises(Malformed, match=re.escape(expected)):
        call(der, bob_keys())
    # The outermost length itself 2^62.
    outer = b"\x30\x88" + TWO_TO_62.to_bytes(8, "big") + der[2:]
    smime_type = "enveloped-data" if content_oid == OID_ENVELOPED else "signed-data"
    with pytest.raises(Malformed, match="4611686018427387904"):
        unwrap(OUTER + pkcs7_mime(outer, smime_type), bob_keys())


def test_length_of_nine_octets() -> None:
    der = b"\x30\x89" + b"\x01" * 9 + b"\x00" * 20
    with pytest.raises(Malformed, match="^CMS ContentInfo: bad length encoding$"):
        decrypt_der(der, bob_keys())
    with pytest.raises(Malformed, match="^CMS ContentInfo: Insufficient data"):
        verify_der(der)


def test_indefinite_length_on_a_primitive() -> None:
    # X.690 8.1.3.2: only constructed elements may use the indefinite form.
    with pytest.raises(Malformed, match="indefinite length on a primitive element"):
        decrypt_der(b"\x04\x80\x00\x00", bob_keys())


def test_empty_der() -> None:
    with pytest.raises(Malformed, match="^CMS: empty input$"):
        decrypt_der(b"", bob_keys())
    with pytest.raises(Malformed, match="^CMS: empty input$"):
        verify_der(b"")


# --- wrong content types --------------------------------------------------------------------


def test_signed_data_where_enveloped_data_is_expected() -> None:
    with pytest.raises(Malformed, match=f"content type {OID_SIGNED} is not \\(Auth\\)Enveloped"):
        decrypt_der(opaque_der(), bob_keys())
    # Labelled enveloped-data in MIME: unwrap trusts the label, the DER disagrees.
    with pytest.raises(Malformed, match=f"content type {OID_SIGNED} is not \\(Auth\\)Enveloped"):
        unwrap(OUTER + pkcs7_mime(opaque_der(), "enveloped-data"), bob_keys())


def test_enveloped_data_where_signed_data_is_expected() -> None:
    with pytest.raises(Malformed, match=f"^CMS: content type {OID_ENVELOPED} is not SignedData$"):
        verify_der(enveloped_der())
    with pytest.raises(Malformed, match=f"^CMS: content type {OID_ENVELOPED} is not SignedData$"):
        unwrap(OUTER + pkcs7_mime(enveloped_der(), "signed-data"), bob_keys())
    # ... and as the signature of a multipart/signed.
    entity = mime.build_multipart_signed(TEXT, enveloped_der(), "sha-256")
    with pytest.raises(Malformed, match=f"^CMS: content type {OID_ENVELOPED} is not SignedData$"):
        verify(entity)


def test_id_data_instead_of_signed_or_enveloped_data() -> None:
    data = id_data_der()
    with pytest.raises(Malformed, match=f"^CMS: content type {OID_DATA} is not SignedData$"):
        unwrap(OUTER + pkcs7_mime(data, "signed-data"))
    with pytest.raises(Malformed, match=f"content type {OID_DATA} is not \\(Auth\\)Enveloped"):
        unwrap(OUTER + pkcs7_mime(data, "enveloped-data"), bob_keys())
    # Without smime-type the DER is peeked at: id-data is no S/MIME type at all.
    with pytest.raises(Unsupported, match=f"^CMS content type {OID_DATA} is not an S/MIME type"):
        unwrap(OUTER + pkcs7_mime(data, None), bob_keys())


def test_certs_only_where_a_signature_is_expected() -> None:
    # A SignedData without SignerInfos (certs-only, RFC 8551 3.6) as a detached signature.
    bag = acms.ContentInfo(
        {
            "content_type": "signed_data",
            "content": acms.SignedData(
                {
                    "version": "v1",
                    "digest_algorithms": [],
                    "encap_content_info": {"content_type": "data"},
                    "certificates": [],
                    "signer_infos": [],
                }
            ),
        }
    ).dump()
    entity = mime.build_multipart_signed(TEXT, bag, "sha-256")
    with pytest.raises(Malformed, match="^SignedData: no SignerInfo"):
        unwrap(OUTER + entity)


# --- empty digest set -----------------------------------------------------------------------


def test_empty_digest_algorithms_set_is_a_clean_signer_failure() -> None:
    # OpenSSL test/smime-eml/pkcs7-empty-digest-set.eml (tests/vectors/README.md): the
    # digestAlgorithms SET is empty although a signer uses sha256. RFC 5652 5.1 wants every
    # signer's digest listed; the signer is reported invalid with the reason (no exception).
    raw = (VECTORS / "openssl-smime-eml" / "pkcs7-empty-digest-set.eml").read_bytes()
    result = unwrap(raw)
    ((signer,),) = [layer.signers for layer in result.layers]
    assert signer.valid is False
    assert signer.reason is not None
    assert "not listed in the SignedData digestAlgorithms" in signer.reason
    assert signer.digest_algorithm == "sha256"
    assert result.content.strip() == b"This is the content to be signed."


# --- nesting --------------------------------------------------------------------------------


def _nest(layers: int) -> bytes:
    alice = pki().alice
    entity = TEXT
    for _ in range(layers):
        entity = sign(entity, alice.key, alice.cert, detached=False, capabilities=())
    return OUTER + entity


def test_nesting_past_the_depth_limit_is_malformed() -> None:
    assert DEFAULT_MAX_DEPTH == 8
    nine = _nest(9)
    with pytest.raises(Malformed, match="^nesting deeper than 8 layers$"):
        unwrap(nine, max_depth=8)
    with pytest.raises(Malformed, match="^nesting deeper than 8 layers$"):
        unwrap(nine)
    # Exactly at the limit is fine.
    result = unwrap(_nest(8), max_depth=8)
    assert len(result.layers) == 8
    assert all(s.valid for layer in result.layers for s in layer.signers)
    assert mime.canonicalize(result.content) == TEXT


def test_nesting_counts_encrypted_layers_too() -> None:
    alice, bob = pki().alice, pki().bob
    entity = TEXT
    for _ in range(4):
        entity = sign(entity, alice.key, alice.cert, detached=False, capabilities=())
        entity = encrypt(entity, [bob.cert], cipher="aes128-gcm")
    entity = sign(entity, alice.key, alice.cert)  # 9th layer, multipart/signed
    with pytest.raises(Malformed, match="^nesting deeper than 8 layers$"):
        unwrap(OUTER + entity, bob_keys())
    assert len(unwrap(OUTER + entity, bob_keys(), max_depth=9).layers) == 9


def test_max_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_depth must be at least 1"):
        unwrap(OUTER + TEXT, max_depth=0)


# --- huge bodies ----------------------------------------------------------------------------

HUGE = 22 * 1024 * 1024  # 22 MB of content: about 30 MB once encrypted and in base64


@functools.cache
def huge_entity() -> bytes:
    chunk = base64.encodebytes(os.urandom(57 * 1024)).replace(b"\n", b"\r\n")
    body = chunk * (HUGE // len(chunk) + 1)
    return (
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + body[:HUGE - HUGE % 78]
    )


@functools.cache
def huge_enveloped() -> bytes:
    return encrypt(huge_entity(), [pki().bob.cert])


def test_huge_enveloped_message_is_handled() -> None:
    message = OUTER + huge_enveloped()
    assert len(message) > 30_000_000
    result = unwrap(message, bob_keys())
    assert result.error is None
    assert result.layers[0].decrypted is True
    assert result.content == huge_entity()


def test_huge_truncated_der_is_malformed() -> None:
    der = mime.decode_smime_body(mime.parse_entity(huge_enveloped()))
    message = OUTER + mime.build_pkcs7_mime(der[:-1000], "enveloped-data")
    assert len(message) > 30_000_000
    with pytest.raises(Malformed, match="runs past the end of its container"):
        unwrap(message, bob_keys())


def test_huge_truncated_base64_is_malformed() -> None:
    head, body = split_body(huge_enveloped())
    with pytest.raises(Malformed, match=r"^base64: length \d+ is not a multiple of 4"):
        unwrap(OUTER + head + body.rstrip()[:-1], bob_keys())


@pytest.mark.parametrize("smime_type", ["signed-data", "enveloped-data", None])
def test_huge_base64_of_non_cms_is_malformed(smime_type: str | None) -> None:
    # 30 MB of base64 whose DER claims a 4 GB SEQUENCE: refused without allocating for it.
    der = b"\x30\x84\xff\xff\xff\xff" + os.urandom(HUGE)
    message = OUTER + pkcs7_mime(der, smime_type)
    assert len(message) > 30_000_000
    with pytest.raises(Malformed, match="4294967295"):
        unwrap(message, bob_keys())


def test_huge_opaque_signature_is_handled() -> None:
    alice = pki().alice
    message = OUTER + sign(huge_entity(), alice.key, alice.cert, detached=False)
    assert len(message) > 30_000_000
    result = unwrap(message)
    assert result.layers[0].signers[0].valid is True
    assert result.content == huge_entity()


# --- multipart/signed -----------------------------------------------------------------------

SIGNED_HEAD = b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256'


def _signature_part() -> bytes:
    der = sign_der(TEXT, pki().alice.key, pki().alice.cert)
    return (
        b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(der).replace(b"\n", b"\r\n")
    )


def test_multipart_signed_without_boundary() -> None:
    body = b"--b1\r\n" + TEXT + b"\r\n--b1\r\n" + _signature_part() + b"\r\n--b1--\r\n"
    with pytest.raises(Malformed, match="^multipart/signed: missing boundary parameter$"):
        unwrap(OUTER + SIGNED_HEAD + b"\r\n\r\n" + body)


def test_multipart_signed_with_one_part() -> None:
    body = b"--b1\r\n" + TEXT + b"\r\n--b1--\r\n"
    with pytest.raises(Malformed, match="^multipart/signed: expected 2 body parts, found 1$"):
        unwrap(OUTER + SIGNED_HEAD + b"; boundary=b1\r\n\r\n" + body)


def test_multipart_signed_with_three_parts() -> None:
    sig = _signature_part()
    body = b"--b1\r\n" + TEXT + b"\r\n--b1\r\n" + sig + b"\r\n--b1\r\n" + sig + b"\r\n--b1--\r\n"
    with pytest.raises(Malformed, match="^multipart/signed: expected 2 body parts, found 3$"):
        unwrap(OUTER + SIGNED_HEAD + b"; boundary=b1\r\n\r\n" + body)


def test_multipart_signed_without_closing_delimiter() -> None:
    body = b"--b1\r\n" + TEXT + b"\r\n--b1\r\n" + _signature_part()
    with pytest.raises(Malformed, match="^multipart/signed: missing closing delimiter --b1--$"):
        unwrap(OUTER + SIGNED_HEAD + b"; boundary=b1\r\n\r\n" + body)


def test_multipart_signed_whose_boundary_never_occurs() -> None:
    body = b"--b1\r\n" + TEXT + b"\r\n--b1\r\n" + _signature_part() + b"\r\n--b1--\r\n"
    with pytest.raises(Malformed, match="^multipart/signed: no boundary delimiter line"):
        unwrap(OUTER + SIGNED_HEAD + b"; boundary=other\r\n\r\n" + body)


def test_signature_part_of_another_type() -> None:
    body = b"--b1\r\n" + TEXT + b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsigned!\r\n--b1--\r\n"
    with pytest.raises(
        Malformed,
        match="^multipart/signed: second part is text/plain, expected application/pkcs7-signature$",
    ):
        unwrap(OUTER + SIGNED_HEAD + b"; boundary=b1\r\n\r\n" + body)


def test_signature_part_that_is_not_cms() -> None:
    part = (
        b"Content-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"this is not a CMS signature at all") + b"\r\n"
    )
    body = b"--b1\r\n" + TEXT + b"\r\n--b1\r\n" + part + b"--b1--\r\n"
    with pytest.raises(Malformed, match="^CMS ContentInfo: "):
        unwrap(OUTER + SIGNED_HEAD + b"; boundary=b1\r\n\r\n" + body)


# --- keys -----------------------------------------------------------------------------------


def test_no_matching_key() -> None:
    eve = pki().eve
    with pytest.raises(NoDecryptionKey, match="^no key for any recipient of this message$") as err:
        decrypt(enveloped(), [(eve.cert, eve.key)])
    layer = err.value.layer
    assert layer is not None and layer.decrypted is False
    assert [r.recipient_id.serial for r in layer.recipients] == [pki().bob.cert.serial_number]
    # unwrap reports the layer and keeps the message as it came.
    result = unwrap(OUTER + enveloped(), [(eve.cert, eve.key)])
    assert result.error == "not decrypted: no key for any recipient of this message"
    assert result.layers[0].recipients == layer.recipients
    assert result.content == enveloped()
    with pytest.raises(NoDecryptionKey, match="^no key for any recipient"):
        decrypt(enveloped(), [])


def test_matching_identifier_with_the_wrong_key() -> None:
    # RFC 3218 2.3: a failed key unwrap goes on with a random key and fails where a wrong
    # content key would; one message for both.
    bob, eve = pki().bob, pki().eve
    with pytest.raises(NoDecryptionKey, match="^cannot decrypt: wrong key or damaged message$"):
        decrypt(enveloped(), [(bob.cert, eve.key)])
    gcm = encrypt(TEXT, [bob.cert], cipher="aes256-gcm")
    with pytest.raises(NoDecryptionKey, match="^cannot decrypt: wrong key or damaged message$"):
        decrypt(gcm, [(bob.cert, eve.key)])


# --- algorithms outside the allow-lists -----------------------------------------------------


def _openssl_encrypt(tmp_path: Path, cipher: str) -> bytes:
    bob = pki().bob
    _key, crt = bob.write(tmp_path, "bob")
    (tmp_path / "in.txt").write_bytes(TEXT)
    out = tmp_path / f"{cipher}.p7m"
    # RC2 and single DES live in OpenSSL 3's legacy provider.
    subprocess.run(
        ["openssl", "cms", "-encrypt", "-provider", "legacy", "-provider", "default",
         f"-{cipher}", "-in", str(tmp_path / "in.txt"), "-out", str(out), str(crt)],
        check=True, capture_output=True,
    )
    return out.read_bytes()


@pytest.mark.parametrize(("cipher", "name"), [("rc2", "rc2-cbc"), ("des", "des-cbc")])
def test_legacy_content_cipher_is_unsupported(tmp_path: Path, cipher: str, name: str) -> None:
    message = _openssl_encrypt(tmp_path, cipher)
    expected = f"^content encryption algorithm {name} is not supported$"
    with pytest.raises(Unsupported, match=expected):
        unwrap(message, bob_keys())
    # Refused before any key is tried: the same answer without keys.
    with pytest.raises(Unsupported, match=expected):
        unwrap(message, [])
    with pytest.raises(Unsupported, match=expected):
        decrypt_der(mime.decode_smime_body(mime.parse_entity(message)), bob_keys())


def test_md5_signature_is_reported_not_raised(tmp_path: Path) -> None:
    # RSA: OpenSSL has no ECDSA-with-MD5.
    key, crt = pki().bob.write(tmp_path, "bob")
    (tmp_path / "in.txt").write_bytes(TEXT)
    out = tmp_path / "md5.eml"
    subprocess.run(
        ["openssl", "cms", "-sign", "-md", "md5", "-signer", str(crt), "-inkey", str(key),
         "-in", str(tmp_path / "in.txt"), "-out", str(out)],
        check=True, capture_output=True,
    )
    result = unwrap(out.read_bytes())
    (signer,) = result.layers[0].signers
    assert signer.valid is False
    assert signer.reason == "unsupported digest algorithm md5"


def test_compressed_data_is_unsupported() -> None:
    with pytest.raises(Unsupported, match=r"^smime-type compressed-data \(RFC 3274\)"):
        unwrap(OUTER + pkcs7_mime(b"\x30\x00", "compressed-data"))


def test_unknown_cipher_oid_in_an_enveloped_data_is_unsupported() -> None:
    # Rewrite aes256-CBC's OID (2.16.840.1.101.3.4.1.42) into one of the same length that no
    # allow-list knows (2.16.840.1.101.3.4.1.43, id-aes256-OFB).
    der = encrypt_der(TEXT, [pki().bob.cert], cipher="aes256-cbc")
    aes = oid("2.16.840.1.101.3.4.1.42")
    assert der.count(aes) == 1
    unknown = der.replace(aes, oid("2.16.840.1.101.3.4.1.43"))
    with pytest.raises(
        Unsupported, match="^content encryption algorithm 2.16.840.1.101.3.4.1.43 is not supp"
    ):
        decrypt_der(unknown, bob_keys())


# --- MIME header section --------------------------------------------------------------------


def test_line_that_is_not_a_header_field() -> None:
    with pytest.raises(Malformed, match="^header: line 2 is not a header field: b'no colon"):
        unwrap(b"From: a@x.test\r\nno colon here\r\n\r\nbody\r\n")


def test_too_many_header_lines() -> None:
    head = b"".join(b"X-Filler-%d: x\r\n" % i for i in range(1001))
    with pytest.raises(Malformed, match="^header: more than 1000 header lines$"):
        unwrap(head + b"\r\n" + TEXT)


def test_two_content_type_fields() -> None:
    entity = b"Content-Type: text/plain\r\n" + enveloped()
    with pytest.raises(Malformed, match="^header: more than one Content-Type field$"):
        unwrap(OUTER + entity, bob_keys())
