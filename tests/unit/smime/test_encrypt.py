"""encrypt / encrypt_der: structure, every cipher x key type, openssl reading what we make, memory."""

from __future__ import annotations

import subprocess
import tracemalloc
from pathlib import Path

import pytest
from asn1crypto import cms as acms
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from smimegate.smime import bulk, keytrans, mime
from smimegate.smime.algorithms import CONTENT_CIPHER_BY_NAME, WRITABLE_CONTENT_CIPHERS
from smimegate.smime.cms import cert_id, issuer_and_serial_der, to_asn1
from smimegate.smime.decrypt import decrypt, decrypt_der
from smimegate.smime.encrypt import Recipient, encrypt, encrypt_der
from smimegate.smime.envelope import AlgorithmIdentifier, GCMParameters
from smimegate.smime.errors import Unsupported
from tests.helpers.testpki import Identity, TestCA

Pki = dict[str, Identity]

ENTITY = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello, recipients.\r\n"
OID_RSA = "1.2.840.113549.1.1.1"
OID_OAEP = "1.2.840.113549.1.1.7"
OID_ECDH_SHA256 = "1.3.132.1.11.1"
OID_ECDH_SHA384 = "1.3.132.1.11.2"
OID_X25519_HKDF = "1.2.840.113549.1.9.16.3.19"


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = TestCA()
    return {
        "rsa": ca.issue("rsa@x.test", "rsa2048"),
        "oaep": ca.issue("oaep@x.test", "rsa2048"),
        "p256": ca.issue("p256@x.test", "ec-p256"),
        "p384": ca.issue("p384@x.test", "ec-p384"),
        "x25519": ca.issue("x25519@x.test", "x25519"),
        "ed25519": ca.issue("ed@x.test", "ed25519"),
    }


def all_recipients(pki: Pki) -> list[x509.Certificate | Recipient]:
    return [
        pki["rsa"].cert,
        Recipient(pki["oaep"].cert, key_transport="rsa-oaep"),
        pki["p256"].cert,
        pki["p384"].cert,
        Recipient(pki["x25519"].cert),
    ]


def content_info(der: bytes) -> acms.ContentInfo:
    return acms.ContentInfo.load(der)


@pytest.mark.parametrize("cipher", WRITABLE_CONTENT_CIPHERS)
def test_round_trip_every_key_type_in_one_message(pki: Pki, cipher: str) -> None:
    der = encrypt_der(ENTITY, all_recipients(pki), cipher=cipher)
    expected_oids = [OID_RSA, OID_OAEP, OID_ECDH_SHA256, OID_ECDH_SHA384, OID_X25519_HKDF]
    for name in ("rsa", "oaep", "p256", "p384", "x25519"):
        ident = pki[name]
        content, layer = decrypt_der(der, [(ident.cert, ident.key)])
        assert content == ENTITY, name
        assert layer.decrypted is True
        assert layer.kind == ("auth-enveloped" if cipher.endswith("gcm") else "enveloped")
        bits = int(cipher[3:6])
        assert layer.key_size == bits
        assert layer.cipher == f"AES{bits}" + ("-GCM" if cipher.endswith("gcm") else "")
        # Every recipient is listed (in DER SET OF order), each by issuerAndSerialNumber.
        ids = [cert_id(pki[n].cert) for n in ("rsa", "oaep", "p256", "p384", "x25519")]
        expected = {(i.issuer, i.serial, oid) for i, oid in zip(ids, expected_oids, strict=True)}
        listed = {
            (r.recipient_id.issuer, r.recipient_id.serial, r.key_encryption_oid)
            for r in layer.recipients
        }
        assert len(layer.recipients) == 5 and listed == expected
        assert all(r.recipient_id.ski is None for r in layer.recipients)


def test_defaults_are_aes256_cbc_and_rsa_pkcs1_by_issuer_and_serial(pki: Pki) -> None:
    entity = encrypt(ENTITY, [pki["rsa"].cert])
    parsed = mime.parse_entity(entity)
    ctype, params = mime.content_type(parsed)
    assert ctype == "application/pkcs7-mime"
    assert params["smime-type"] == "enveloped-data"
    assert mime.classify(parsed) == "enveloped"
    info = content_info(mime.decode_smime_body(parsed))
    assert info["content_type"].dotted == "1.2.840.113549.1.7.3"
    env = info["content"]
    assert env["version"].native == "v0"  # RFC 5652 6.1: all ktri v0, no originatorInfo
    eci = env["encrypted_content_info"]
    assert eci["content_type"].dotted == "1.2.840.113549.1.7.1"
    assert eci["content_encryption_algorithm"]["algorithm"].dotted == "2.16.840.1.101.3.4.1.42"
    assert len(eci["content_encryption_algorithm"]["parameters"].native) == 16  # the IV
    (ri,) = env["recipient_infos"]
    assert ri.name == "ktri"
    ktri = ri.chosen
    assert ktri["version"].native == "v0"
    assert ktri["rid"].name == "issuer_and_serial_number"
    assert ktri["rid"].chosen["serial_number"].native == pki["rsa"].cert.serial_number
    assert ktri["key_encryption_algorithm"]["algorithm"].dotted == OID_RSA
    assert len(ktri["encrypted_key"].native) == 256
    # Every line of the base64 body is at most 76 characters and ends in CRLF.
    body = entity.split(b"\r\n\r\n", 1)[1]
    assert body.endswith(b"\r\n")
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))


def test_gcm_makes_auth_enveloped_data_with_rfc5084_parameters(pki: Pki) -> None:
    entity = encrypt(ENTITY, [pki["rsa"].cert], cipher="aes256-gcm")
    parsed = mime.parse_entity(entity)
    assert mime.content_type(parsed)[1]["smime-type"] == "authEnveloped-data"
    assert mime.classify(parsed) == "auth-enveloped"
    info = content_info(mime.decode_smime_body(parsed))
    assert info["content_type"].dotted == "1.2.840.113549.1.9.16.1.23"
    auth = info["content"]
    assert auth["version"].native == "v0"
    alg = auth["auth_encrypted_content_info"]["content_encryption_algorithm"]
    assert alg["algorithm"].dotted == "2.16.840.1.101.3.4.1.46"
    # GCMParameters ::= SEQUENCE { aes-nonce OCTET STRING (12), aes-ICVlen 16 }
    params = alg["parameters"].dump()
    assert params[:4] == b"\x30\x11\x04\x0c" and params[-3:] == b"\x02\x01\x10"
    assert len(auth["mac"].native) == 16
    assert len(auth["auth_encrypted_content_info"]["encrypted_content"].native) == len(ENTITY)


def test_oaep_parameters_are_explicit_sha256_with_mgf1_sha256(pki: Pki) -> None:
    der = encrypt_der(ENTITY, [Recipient(pki["rsa"].cert, "rsa-oaep")])
    (ri,) = content_info(der)["content"]["recipient_infos"]
    alg = ri.chosen["key_encryption_algorithm"].dump()
    sha256 = bytes.fromhex("300b0609608648016503040201")  # parameters absent (RFC 4055 2.1)
    mgf1 = bytes.fromhex("06092a864886f70d010108")
    expected_params = (
        b"\x30\x2b"
        + b"\xa0\x0d" + sha256
        + b"\xa1\x1a" + b"\x30\x18" + mgf1 + sha256
    )  # fmt: skip
    assert alg == b"\x30\x38\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x07" + expected_params


@pytest.mark.parametrize(
    ("name", "cipher", "scheme", "wrap"),
    [
        ("p256", "aes128-cbc", OID_ECDH_SHA256, "2.16.840.1.101.3.4.1.5"),
        ("p256", "aes256-gcm", OID_ECDH_SHA256, "2.16.840.1.101.3.4.1.45"),
        ("p384", "aes256-cbc", OID_ECDH_SHA384, "2.16.840.1.101.3.4.1.45"),
        ("x25519", "aes128-gcm", OID_X25519_HKDF, "2.16.840.1.101.3.4.1.5"),
    ],
)
def test_key_agreement_structure(pki: Pki, name: str, cipher: str, scheme: str, wrap: str) -> None:
    der = encrypt_der(ENTITY, [pki[name].cert], cipher=cipher)
    body = content_info(der)["content"]
    if cipher.endswith("cbc"):
        assert body["version"].native == "v2"  # RFC 5652 6.1: a kari is version 3
    (ri,) = body["recipient_infos"]
    assert ri.name == "kari"
    kari = ri.chosen
    assert kari["version"].native == "v3"
    assert kari["ukm"].native is None
    originator = kari["originator"]
    assert originator.name == "originator_key"
    algorithm = kari["key_encryption_algorithm"]
    assert algorithm["algorithm"].dotted == scheme
    # The KEK is as long as the content key; the key wrap AlgorithmIdentifier has no parameters.
    assert algorithm["parameters"].dump() == b"\x30\x0b\x06\x09\x60\x86\x48\x01\x65\x03\x04\x01" + (
        bytes([int(wrap.rsplit(".", 1)[1])])
    )
    (rek,) = kari["recipient_encrypted_keys"]
    assert rek["rid"].name == "issuer_and_serial_number"
    assert len(rek["encrypted_key"].native) == int(cipher[3:6]) // 8 + 8  # RFC 3394 adds 8
    spki = originator.chosen
    if name == "x25519":
        assert spki["algorithm"]["algorithm"].dotted == "1.3.101.110"
        assert len(spki["public_key"].native) == 32
    else:
        curve = {"p256": "secp256r1", "p384": "secp384r1"}[name]
        assert spki["algorithm"]["parameters"].chosen.native == curve


def test_every_message_has_fresh_keys_and_iv(pki: Pki) -> None:
    one = encrypt_der(ENTITY, [pki["p256"].cert])
    two = encrypt_der(ENTITY, [pki["p256"].cert])
    assert one != two
    ct_one = content_info(one)["content"]["encrypted_content_info"]["encrypted_content"].native
    ct_two = content_info(two)["content"]["encrypted_content_info"]["encrypted_content"].native
    assert ct_one[:16] != ct_two[:16]


def test_entity_is_canonicalised_to_crlf(pki: Pki) -> None:
    ident = pki["rsa"]
    entity = encrypt(b"Content-Type: text/plain\n\nline one\nline two\n", [ident.cert])
    content, _ = decrypt(entity, [(ident.cert, ident.key)])
    assert content == b"Content-Type: text/plain\r\n\r\nline one\r\nline two\r\n"


def test_canonical_entity_is_encrypted_as_given(pki: Pki) -> None:
    # canonical=True: the caller vouches for CRLF (what sign returns); nothing is rewritten.
    ident = pki["rsa"]
    entity = b"Content-Type: text/plain\r\n\r\nline one\r\nline two\r\n"
    sealed = encrypt(entity, [ident.cert], canonical=True)
    assert decrypt(sealed, [(ident.cert, ident.key)])[0] == entity
    lf = entity.replace(b"\r\n", b"\n")
    assert decrypt(encrypt(lf, [ident.cert], canonical=True),
                   [(ident.cert, ident.key)])[0] == lf


@pytest.mark.parametrize("cipher", ["aes128-cbc", "aes256-gcm"])
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 4096])
def test_content_lengths_around_the_block_size(pki: Pki, cipher: str, size: int) -> None:
    ident = pki["p256"]
    content = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    der = encrypt_der(content, [ident.cert], cipher=cipher)
    assert decrypt_der(der, [(ident.cert, ident.key)])[0] == content


def test_bad_arguments_are_named(pki: Pki) -> None:
    cert = pki["rsa"].cert
    with pytest.raises(ValueError, match="cipher"):
        encrypt(ENTITY, [cert], cipher="des-ede3-cbc")  # read only (RFC 8551 2.7)
    with pytest.raises(ValueError, match="cipher"):
        encrypt(ENTITY, [cert], cipher="rc2-cbc")
    with pytest.raises(ValueError, match="recipients"):
        encrypt(ENTITY, [])
    with pytest.raises(ValueError, match="key_transport"):
        Recipient(cert, key_transport="rsa-pss")
    with pytest.raises(ValueError, match="recipients"):
        encrypt_der(ENTITY, [b"not a certificate"])  # type: ignore[list-item]
    with pytest.raises(Unsupported, match="Ed25519"):
        encrypt(ENTITY, [pki["ed25519"].cert])


def test_recipient_infos_are_in_der_set_order(pki: Pki) -> None:
    der = encrypt_der(ENTITY, all_recipients(pki))
    encodings = [ri.dump() for ri in content_info(der)["content"]["recipient_infos"]]
    assert len(encodings) == 5 and encodings == sorted(encodings)


def test_cryptography_reads_our_default_form(pki: Pki) -> None:
    # pyca/cryptography's own PKCS#7 decryption (RSA v1.5 + AES-CBC, ktri only) as an oracle.
    ident = pki["rsa"]
    der = encrypt_der(ENTITY, [pki["oaep"].cert, ident.cert], cipher="aes128-cbc")
    assert pkcs7.pkcs7_decrypt_der(der, ident.cert, ident.key, []) == ENTITY


def openssl_decrypt(
    message: bytes, ident: Identity, folder: Path
) -> subprocess.CompletedProcess[bytes]:
    key, crt = ident.write(folder, "recip")
    msg = folder / "msg.eml"
    msg.write_bytes(b"MIME-Version: 1.0\r\nSubject: t\r\n" + message)
    return subprocess.run(
        ["openssl", "cms", "-decrypt", "-in", str(msg), "-recip", str(crt), "-inkey", str(key)],
        capture_output=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "transport", "cipher"),
    [
        ("rsa", "rsa-pkcs1", "aes256-cbc"),
        ("rsa", "rsa-pkcs1", "aes128-cbc"),
        ("rsa", "rsa-pkcs1", "aes256-gcm"),
        ("rsa", "rsa-oaep", "aes256-cbc"),
        ("rsa", "rsa-oaep", "aes128-gcm"),
        ("p256", "rsa-pkcs1", "aes256-cbc"),
        ("p256", "rsa-pkcs1", "aes256-gcm"),
        ("p384", "rsa-pkcs1", "aes128-cbc"),
    ],
)
def test_openssl_decrypts_what_we_make(
    pki: Pki, tmp_path: Path, name: str, transport: str, cipher: str
) -> None:
    others: list[x509.Certificate | Recipient] = [
        pki[n].cert for n in ("oaep", "p384", "p256") if n != name
    ]
    recipients = [*others, Recipient(pki[name].cert, transport)]
    entity = encrypt(ENTITY, recipients, cipher=cipher)
    result = openssl_decrypt(entity, pki[name], tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == ENTITY


def test_large_entity_memory_stays_under_three_times_its_size(pki: Pki) -> None:
    # Requirement: a 25 MB entity encrypts and decrypts in well under 4x its size of extra
    # memory. tracemalloc sees every Python-level buffer (bytes, BytesIO, bytearray).
    ident = pki["p256"]
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    entity = b"Content-Type: text/plain\r\n\r\n" + line * (25 * 1024 * 1024 // len(line))
    tracemalloc.start()
    try:
        encrypted = encrypt(entity, [ident.cert], cipher="aes256-cbc")
        _, encrypt_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        content, _layer = decrypt(encrypted, [(ident.cert, ident.key)])
        _, decrypt_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert content == entity
    assert encrypt_peak < 3 * len(entity), encrypt_peak / len(entity)
    assert decrypt_peak - base < 3 * len(encrypted), (decrypt_peak - base) / len(encrypted)


def test_large_der_functions_make_a_single_copy(pki: Pki) -> None:
    ident = pki["rsa"]
    content = b"\x00" * (8 * 1024 * 1024)
    for cipher in ("aes256-cbc", "aes256-gcm"):
        tracemalloc.start()
        try:
            der = encrypt_der(content, [ident.cert], cipher=cipher)
            _, enc_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            plain, _layer = decrypt_der(der, [(ident.cert, ident.key)])
            _, dec_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert plain == content
        assert enc_peak < 1.2 * len(content), (cipher, enc_peak / len(content))
        assert dec_peak - base < 1.2 * len(content), (cipher, (dec_peak - base) / len(content))


# --- the DER written directly pinned to what asn1crypto builds (issue 11 item 2) -------------


@pytest.mark.parametrize("transport", ["rsa-pkcs1", "rsa-oaep"])
def test_ktri_bytes_as_asn1crypto_builds_them(pki: Pki, transport: str) -> None:
    cert = pki["rsa"].cert
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    got = keytrans.build_der(issuer_and_serial_der(cert), public_key, b"k" * 32, transport)
    ktri = acms.KeyTransRecipientInfo.load(got)
    issuer_serial = acms.IssuerAndSerialNumber({"issuer": to_asn1(cert).issuer,
                                                "serial_number": cert.serial_number})
    algorithm = (keytrans.oaep_sha256_algorithm() if transport == "rsa-oaep"
                 else acms.KeyEncryptionAlgorithm({"algorithm": OID_RSA}))
    reference = acms.KeyTransRecipientInfo({
        "version": "v0",
        "rid": acms.RecipientIdentifier(name="issuer_and_serial_number", value=issuer_serial),
        "key_encryption_algorithm": algorithm,
        "encrypted_key": ktri["encrypted_key"].native,  # PKCS#1 / OAEP are randomised
    })
    assert got == reference.dump()


@pytest.mark.parametrize("cipher", WRITABLE_CONTENT_CIPHERS)
def test_content_algorithm_bytes_as_asn1crypto_builds_them(cipher: str) -> None:
    spec = CONTENT_CIPHER_BY_NAME[cipher]
    params = bulk.new_parameters(spec)
    if spec.mode == "gcm":
        value: core.Asn1Value = GCMParameters({"aes_nonce": params.iv, "aes_icvlen": 16})
    else:
        value = core.OctetString(params.iv)
    reference = AlgorithmIdentifier({"algorithm": spec.oid, "parameters": value})
    assert params.algorithm_der == reference.dump()


@pytest.mark.parametrize("cipher", ["aes128-cbc", "aes256-gcm"])
def test_envelope_bytes_as_asn1crypto_builds_them(pki: Pki, cipher: str) -> None:
    der = encrypt_der(b"x" * 300, all_recipients(pki), cipher=cipher)
    info = content_info(der)
    inner = info["content"]
    gcm = cipher.endswith("-gcm")
    eci_name = "auth_encrypted_content_info" if gcm else "encrypted_content_info"
    eci = inner[eci_name]
    fields = {
        "version": inner["version"].native,
        "recipient_infos": acms.RecipientInfos.load(inner["recipient_infos"].dump()),
        eci_name: acms.EncryptedContentInfo({
            "content_type": "data",
            "content_encryption_algorithm": acms.EncryptionAlgorithm.load(
                eci["content_encryption_algorithm"].dump()),
            "encrypted_content": eci["encrypted_content"].native,
        }),
    }
    if gcm:
        fields["mac"] = inner["mac"].native
        reference = acms.ContentInfo({"content_type": "1.2.840.113549.1.9.16.1.23",
                                      "content": acms.AuthEnvelopedData(fields)})
    else:
        reference = acms.ContentInfo({"content_type": "enveloped_data",
                                      "content": acms.EnvelopedData(fields)})
    assert inner["version"].native == ("v0" if gcm else "v2")
    assert der == reference.dump()
