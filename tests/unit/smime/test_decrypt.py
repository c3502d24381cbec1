"""decrypt / decrypt_der: what OpenSSL, NSS and the RFCs make; wrong keys; RFC 3218; refusals."""

from __future__ import annotations

import base64
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms as acms
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, pkcs12
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smimegate.smime import ber, bulk, envelope, keytrans, mime
from smimegate.smime.algorithms import ContentCipher
from smimegate.smime.cms import cert_id
from smimegate.smime.decrypt import CANNOT_DECRYPT, NO_MATCHING_KEY, decrypt, decrypt_der
from smimegate.smime.encrypt import Recipient, encrypt, encrypt_der
from smimegate.smime.errors import Malformed, NoDecryptionKey, SmimeError, Unsupported
from smimegate.smime.results import result_headers, serial_hex
from tests.conftest import VECTORS
from tests.helpers.testpki import Identity, TestCA

Pki = dict[str, Identity]
KeyPair = tuple[x509.Certificate, Any]
Keys = list[KeyPair]

BODY = b"Content-Type: text/plain\r\n\r\nSecret for the recipient.\r\n"
OID_RSA = "1.2.840.113549.1.1.1"
OID_OAEP = "1.2.840.113549.1.1.7"


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = TestCA()
    return {
        "rsa": ca.issue("rsa@x.test", "rsa2048"),
        "rsa2": ca.issue("rsa2@x.test", "rsa2048"),
        "p256": ca.issue("p256@x.test", "ec-p256"),
        "p384": ca.issue("p384@x.test", "ec-p384"),
        "x25519": ca.issue("x25519@x.test", "x25519"),
        "mallory": ca.issue("mallory@x.test", "rsa2048"),
    }


def pair(ident: Identity) -> KeyPair:
    return (ident.cert, ident.key)


def entity_of(message: bytes) -> bytes:
    return mime.split_message(message)[1]


def load_p12(path: Path, password: bytes) -> KeyPair:
    with warnings.catch_warnings():
        # NSS writes BER PKCS#12; cryptography reads it after this warning.
        warnings.filterwarnings("ignore", message="PKCS#12 bundle could not be parsed as DER")
        key, cert, _ = pkcs12.load_key_and_certificates(path.read_bytes(), password)
    assert key is not None and cert is not None
    return cert, key


def load_pem_pair(cert_path: Path, key_path: Path) -> KeyPair:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert, load_pem_private_key(key_path.read_bytes(), None)


# --- OpenSSL makes, we read ---------------------------------------------------------------


def openssl_encrypt(
    tmp_path: Path, args: list[str], idents: list[Identity], body: bytes = BODY
) -> bytes:
    source = tmp_path / "body.mime"
    source.write_bytes(body)
    recips: list[str] = []
    for ident in idents:
        _key, crt = ident.write(tmp_path, ident.email.split("@")[0])
        recips += ["-recip", str(crt), *args[1:]]
    result = subprocess.run(
        ["openssl", "cms", "-encrypt", args[0], "-in", str(source), *recips],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


OAEP_SHA256 = ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"]


@pytest.mark.parametrize(
    ("args", "name", "cipher", "bits", "oid"),
    [
        (["-aes-256-cbc"], "rsa", "AES256", 256, OID_RSA),
        (["-aes-128-cbc"], "rsa", "AES128", 128, OID_RSA),
        (["-aes-256-gcm"], "rsa", "AES256-GCM", 256, OID_RSA),
        (["-aes-128-gcm"], "p256", "AES128-GCM", 128, "1.3.133.16.840.63.0.2"),
        (["-aes-256-cbc", *OAEP_SHA256], "rsa", "AES256", 256, OID_OAEP),
        (["-aes-256-cbc"], "p256", "AES256", 256, "1.3.133.16.840.63.0.2"),
        (["-aes-256-gcm"], "p384", "AES256-GCM", 256, "1.3.133.16.840.63.0.2"),
        (["-aes-192-cbc"], "p384", "AES192", 192, "1.3.133.16.840.63.0.2"),
        (["-des3"], "rsa", "3DES", 192, OID_RSA),
        # RFC 5753 KDF hashes and cofactor DH (equal to standard DH on NIST curves).
        (
            ["-aes-128-cbc", "-keyopt", "ecdh_kdf_md:sha224"],
            "p256",
            "AES128",
            128,
            "1.3.132.1.11.0",
        ),
        (
            ["-aes-128-cbc", "-keyopt", "ecdh_kdf_md:sha384"],
            "p384",
            "AES128",
            128,
            "1.3.132.1.11.2",
        ),
        (
            ["-aes-256-gcm", "-keyopt", "ecdh_kdf_md:sha256", "-keyopt", "ecdh_cofactor_mode:1"],
            "p256",
            "AES256-GCM",
            256,
            "1.3.132.1.14.1",
        ),
    ],
)
def test_reads_openssl(
    pki: Pki, tmp_path: Path, args: list[str], name: str, cipher: str, bits: int, oid: str
) -> None:
    message = openssl_encrypt(tmp_path, args, [pki[name]])
    content, layer = decrypt(entity_of(message), [pair(pki["mallory"]), pair(pki[name])])
    assert content == BODY
    assert layer.decrypted and layer.cipher == cipher and layer.key_size == bits
    assert layer.kind == ("auth-enveloped" if "gcm" in args[0] else "enveloped")
    (recipient,) = layer.recipients
    assert recipient.key_encryption_oid == oid
    assert recipient.recipient_id.issuer == cert_id(pki[name].cert).issuer
    assert recipient.recipient_id.serial == pki[name].cert.serial_number


def test_reads_openssl_with_several_recipients_of_mixed_types(pki: Pki, tmp_path: Path) -> None:
    idents = [pki["rsa"], pki["p256"], pki["p384"]]
    message = openssl_encrypt(tmp_path, ["-aes-128-cbc"], idents)
    serials = set()
    for ident in idents:
        content, layer = decrypt(entity_of(message), [pair(ident)])
        assert content == BODY
        serials = {r.recipient_id.serial for r in layer.recipients}
    assert serials == {i.cert.serial_number for i in idents}


@pytest.mark.parametrize("name", ["rsa", "p256"])
def test_reads_openssl_subject_key_identifier_recipients(
    pki: Pki, tmp_path: Path, name: str
) -> None:
    message = openssl_encrypt(tmp_path, ["-aes-256-cbc", "-keyid"], [pki[name]])
    content, layer = decrypt(entity_of(message), [pair(pki[name])])
    assert content == BODY
    (recipient,) = layer.recipients
    ski = pki[name].cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert recipient.recipient_id.ski == ski.value.digest
    assert recipient.recipient_id.serial is None


def test_reads_openssl_streamed_ber(pki: Pki, tmp_path: Path) -> None:
    # -stream writes indefinite lengths and a constructed encryptedContent (X.690 8.7.3).
    source = tmp_path / "big.mime"
    body = b"Content-Type: text/plain\r\n\r\n" + b"0123456789abcdef\r\n" * 5000
    source.write_bytes(body)
    _key, crt = pki["rsa"].write(tmp_path, "rsa")
    result = subprocess.run(
        ["openssl", "cms", "-encrypt", "-aes-128-cbc", "-stream", "-outform", "DER",
         "-in", str(source), "-binary", str(crt)],
        capture_output=True,
        check=True,
    )  # fmt: skip
    der = result.stdout
    assert der[1] == 0x80  # indefinite length at the top: really BER
    content, layer = decrypt_der(der, [pair(pki["rsa"])])
    assert content == body and layer.cipher == "AES128"


# --- third-party messages --------------------------------------------------------------------

INTEROP = VECTORS / "thunderbird-smime-interop"
FRAN_TEXT = b"This is a test message to Fran."


@pytest.fixture(scope="module")
def fran() -> Keys:
    return [load_p12(INTEROP / "Fran.p12", b"nss"), load_p12(INTEROP / "Fran-ec.p12", b"nss")]


@pytest.mark.parametrize(
    ("name", "cipher", "oid"),
    [
        ("fran-oaep_ossl.env", "3DES", OID_OAEP),  # OAEP default parameters (SHA-1)
        ("fran-oaep-label_ossl.env", "AES256", OID_OAEP),  # with a pSourceFunc label
        ("fran-oaep-sha256hash_ossl.env", "AES128", OID_OAEP),
        ("fran-oaep-sha256hash-sha256mgf_ossl.env", "AES256", OID_OAEP),
        ("fran-ec_ossl-aes128-sha256.env", "AES128", "1.3.132.1.11.1"),
        ("fran-ec_ossl-aes256-sha512.env", "AES256", "1.3.132.1.11.3"),
    ],
)
def test_thunderbird_interop_messages(fran: Keys, name: str, cipher: str, oid: str) -> None:
    content, layer = decrypt(entity_of((INTEROP / name).read_bytes()), fran)
    assert FRAN_TEXT in content
    assert layer.cipher == cipher
    assert [r.key_encryption_oid for r in layer.recipients] == [oid]


@pytest.mark.parametrize(
    "name",
    ["alice.env.eml", "alice.dsig.SHA256.multipart.env.eml", "alice.sig.SHA256.opaque.env.eml"],
)
def test_nss_messages_ber_with_indefinite_lengths(name: str) -> None:
    folder = VECTORS / "thunderbird-smime"
    message = (folder / name).read_bytes()
    content, layer = decrypt(entity_of(message), [load_p12(folder / "Bob.p12", b"nss")])
    assert layer.cipher == "AES128" and layer.key_size == 128
    parsed = mime.parse_entity(content)
    expected = {
        "alice.env.eml": "text/plain",
        "alice.dsig.SHA256.multipart.env.eml": "multipart/signed",
        "alice.sig.SHA256.opaque.env.eml": "application/pkcs7-mime",
    }[name]
    assert mime.content_type(parsed)[0] == expected


def pyca_der(name: str) -> bytes:
    text = (VECTORS / "pyca-pkcs7" / name).read_text()
    return base64.b64decode("".join(ln for ln in text.splitlines() if not ln.startswith("-----")))


@pytest.fixture(scope="module")
def pyca_key() -> KeyPair:
    folder = VECTORS / "pyca-pkcs7"
    return load_pem_pair(folder / "rsa_ca.pem", folder / "rsa_key.pem")


@pytest.mark.parametrize(
    ("name", "text", "cipher", "oid"),
    [
        ("enveloped-rsa-oaep.pem", b"Hello, world!", "AES128", OID_OAEP),
        ("enveloped-triple-des.pem", b"Hello, World!\r\n", "3DES", OID_RSA),
    ],
)
def test_pyca_vectors(pyca_key: KeyPair, name: str, text: bytes, cipher: str, oid: str) -> None:
    content, layer = decrypt_der(pyca_der(name), [pyca_key])
    assert content == text
    assert layer.cipher == cipher
    assert layer.recipients[0].key_encryption_oid == oid


def test_pyca_enveloped_without_content_is_malformed(pyca_key: KeyPair) -> None:
    der = (VECTORS / "pyca-pkcs7" / "enveloped-no-content.der").read_bytes()
    with pytest.raises(Malformed, match="no encryptedContent"):
        decrypt_der(der, [pyca_key])


@pytest.fixture(scope="module")
def rfc4134_bob() -> KeyPair:
    folder = VECTORS / "rfc4134"
    return load_pem_pair(folder / "BobRSASignByCarl.pem", folder / "BobPrivRSAEncrypt.key.pem")


def test_rfc4134_5_1_and_5_3(rfc4134_bob: KeyPair) -> None:
    expected = (VECTORS / "rfc4134" / "ExContent.bin").read_bytes()
    content, layer = decrypt_der((VECTORS / "rfc4134" / "5.1.bin").read_bytes(), [rfc4134_bob])
    assert content == expected
    assert layer.cipher == "3DES" and layer.key_size == 192
    assert layer.recipients[0].recipient_id.issuer == "CN=CarlRSA"
    message = (VECTORS / "rfc4134" / "5.3.eml").read_bytes()
    content, _ = decrypt(entity_of(message), [rfc4134_bob])
    assert content == expected


def test_rfc4134_5_2_rc2_is_unsupported_by_name(rfc4134_bob: KeyPair) -> None:
    with pytest.raises(Unsupported, match="rc2-cbc"):
        decrypt_der((VECTORS / "rfc4134" / "5.2.bin").read_bytes(), [rfc4134_bob])


RFC9216 = VECTORS / "rfc9216"


@pytest.mark.parametrize("who", ["dana", "carlos"])
@pytest.mark.parametrize("cipher", ["aes128-cbc", "aes256-gcm"])
def test_rfc9216_x25519_round_trip(who: str, cipher: str) -> None:
    # RFC 9216 holds no example messages; Dana and Carlos are X25519 (RFC 8418) recipients.
    cert, key = load_pem_pair(RFC9216 / f"{who}.encrypt.crt", RFC9216 / f"{who}.encrypt.key")
    entity = encrypt(BODY, [cert], cipher=cipher)
    content, layer = decrypt(entity, [(cert, key)])
    assert content == BODY
    (recipient,) = layer.recipients
    assert recipient.key_encryption_oid == "1.2.840.113549.1.9.16.3.19"
    assert recipient.recipient_id.issuer.startswith("CN=Sample LAMPS Ed25519")


def test_rfc9216_bob_rsa_read_by_openssl(tmp_path: Path) -> None:
    cert_path, key_path = RFC9216 / "bob.encrypt.crt", RFC9216 / "bob.encrypt.key"
    cert, key = load_pem_pair(cert_path, key_path)
    entity = encrypt(BODY, [Recipient(cert, "rsa-oaep")], cipher="aes256-gcm")
    message = tmp_path / "m.eml"
    message.write_bytes(b"MIME-Version: 1.0\r\n" + entity)
    result = subprocess.run(
        ["openssl", "cms", "-decrypt", "-in", str(message), "-recip", str(cert_path),
         "-inkey", str(key_path)],
        capture_output=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == BODY
    assert decrypt(entity, [(cert, key)])[0] == BODY


# --- no key, wrong key, RFC 3218 -------------------------------------------------------------


def test_no_matching_key_lists_every_recipient(pki: Pki) -> None:
    entity = encrypt(BODY, [pki["rsa"].cert, pki["p256"].cert, pki["x25519"].cert])
    with pytest.raises(NoDecryptionKey) as info:
        decrypt(entity, [pair(pki["mallory"]), pair(pki["p384"])])
    assert str(info.value) == NO_MATCHING_KEY
    layer = info.value.layer
    assert layer is not None and layer.decrypted is False
    assert layer.cipher == "AES256" and layer.key_size == 256
    headers = dict(result_headers([layer]))
    assert headers["X-Smimegate-Info-Encryption-Algorithm-0"] == "AES256, Key size: 256"
    values = {headers[f"X-Smimegate-Info-Encryption-Recipient-{i}-0"] for i in range(3)}
    expected = {
        f"{cert_id(pki[n].cert).issuer}/{serial_hex(pki[n].cert.serial_number)}//{oid}"
        for n, oid in (
            ("rsa", OID_RSA),
            ("p256", "1.3.132.1.11.1"),
            ("x25519", "1.2.840.113549.1.9.16.3.19"),
        )
    }
    assert values == expected


def test_no_keys_at_all(pki: Pki) -> None:
    der = encrypt_der(BODY, [pki["rsa"].cert])
    with pytest.raises(NoDecryptionKey, match=NO_MATCHING_KEY):
        decrypt_der(der, [])


def corrupt_encrypted_key(der: bytes) -> bytes:
    info = acms.ContentInfo.load(der)
    (ri,) = info["content"]["recipient_infos"]
    old = ri.chosen["encrypted_key"].native
    new = bytes([old[0] ^ 0xFF]) + old[1:-1] + bytes([old[-1] ^ 0x55])
    assert der.count(old) == 1
    return der.replace(old, new)


def failure(der: bytes, keys: Keys) -> NoDecryptionKey:
    with pytest.raises(NoDecryptionKey) as info:
        decrypt_der(der, keys)
    return info.value


@pytest.mark.parametrize("transport", ["rsa-pkcs1", "rsa-oaep"])
def test_rfc3218_corrupted_key_and_wrong_key_fail_the_same_way(
    pki: Pki, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GCM: a wrong content key always fails the tag check, so the outcome is deterministic.
    bob = pki["rsa"]
    der = encrypt_der(BODY, [Recipient(bob.cert, transport)], cipher="aes256-gcm")
    calls: list[int] = []
    real = bulk.decrypt

    def spy(cipher: ContentCipher, algorithm: Any, key: bytes, *args: Any, **kwargs: Any) -> bytes:
        calls.append(len(key))
        return real(cipher, algorithm, key, *args, **kwargs)

    monkeypatch.setattr(bulk, "decrypt", spy)
    corrupted = failure(corrupt_encrypted_key(der), [pair(bob)])
    wrong = failure(der, [(bob.cert, pki["mallory"].key)])
    assert type(corrupted) is type(wrong)
    assert str(corrupted) == str(wrong) == CANNOT_DECRYPT
    # Both failed in content decryption, with a key of the right length (RFC 3218 2.3).
    assert calls == [32, 32]
    assert corrupted.layer is not None and wrong.layer is not None
    assert corrupted.layer.recipients == wrong.layer.recipients


def test_rfc3218_with_cbc_same_message(pki: Pki) -> None:
    # CBC has no integrity: a random key passes the padding check about 1 time in 256, so try a
    # few messages; every failure must carry the one fixed message.
    bob = pki["rsa"]
    messages = set()
    for _ in range(4):
        der = encrypt_der(BODY, [bob.cert], cipher="aes256-cbc")
        for keys, data in (
            ([pair(bob)], corrupt_encrypted_key(der)),
            ([(bob.cert, pki["mallory"].key)], der),
        ):
            try:
                content, _ = decrypt_der(data, keys)
            except NoDecryptionKey as exc:
                messages.add(str(exc))
            else:
                assert content != BODY
    assert messages == {CANNOT_DECRYPT}


def test_rfc3218_unwrapped_key_of_the_wrong_length(pki: Pki) -> None:
    # An AES-128 key delivered in a message that says AES-256: same error, same path.
    bob = pki["rsa"]
    der = encrypt_der(BODY, [bob.cert], cipher="aes128-gcm")
    aes128_gcm = bytes.fromhex("0609608648016503040106")
    assert der.count(aes128_gcm) == 1
    relabelled = der.replace(aes128_gcm, bytes.fromhex("060960864801650304012e"))
    exc = failure(relabelled, [pair(bob)])
    assert str(exc) == CANNOT_DECRYPT and exc.layer is not None
    assert exc.layer.cipher == "AES256-GCM"


def test_key_of_the_wrong_type_for_the_recipient(pki: Pki) -> None:
    der = encrypt_der(BODY, [pki["rsa"].cert, pki["p256"].cert], cipher="aes128-gcm")
    assert str(failure(der, [(pki["rsa"].cert, pki["p256"].key)])) == CANNOT_DECRYPT
    assert str(failure(der, [(pki["p256"].cert, pki["rsa"].key)])) == CANNOT_DECRYPT


def test_damaged_kari_wrap_is_the_same_error(pki: Pki) -> None:
    ident = pki["p384"]
    der = encrypt_der(BODY, [ident.cert], cipher="aes256-gcm")
    info = acms.ContentInfo.load(der)
    (ri,) = info["content"]["recipient_infos"]
    old = ri.chosen["recipient_encrypted_keys"][0]["encrypted_key"].native
    damaged = der.replace(old, bytes([old[0] ^ 1]) + old[1:])
    assert str(failure(damaged, [pair(ident)])) == CANNOT_DECRYPT


def test_first_matching_pair_is_used_among_many(pki: Pki) -> None:
    der = encrypt_der(BODY, [pki["p256"].cert, pki["rsa2"].cert], cipher="aes256-cbc")
    keys = [pair(pki["mallory"]), pair(pki["x25519"]), pair(pki["rsa2"])]
    assert decrypt_der(der, keys)[0] == BODY


# --- refusals and malformed input ------------------------------------------------------------


def handmade(pki: Pki, algorithm_der: bytes, ciphertext: bytes, kind: str = "enveloped") -> bytes:
    """An (Auth)EnvelopedData with any content algorithm, for refusal tests."""
    ident = pki["rsa"]
    rid = acms.RecipientIdentifier(
        name="issuer_and_serial_number",
        value=acms.IssuerAndSerialNumber(
            {
                "issuer": acms.Name.load(ident.cert.issuer.public_bytes()),
                "serial_number": ident.cert.serial_number,
            }
        ),
    )
    public_key = ident.cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    info = keytrans.build(rid, public_key, b"k" * 16, "rsa-pkcs1")
    head = envelope.head(kind, [info], algorithm_der, len(ciphertext))  # type: ignore[arg-type]
    tail = envelope.MAC_HEADER + b"\x00" * 16 if kind == "auth-enveloped" else b""
    return head + ciphertext + tail


@pytest.mark.parametrize(
    ("oid", "name"),
    [("1.3.14.3.2.7", "des-cbc"), ("1.2.840.113549.3.2", "rc2-cbc"), ("1.2.3.4", "1.2.3.4")],
)
def test_unsupported_content_ciphers_are_named(pki: Pki, oid: str, name: str) -> None:
    algorithm = envelope.AlgorithmIdentifier(
        {"algorithm": oid, "parameters": core.OctetString(b"\x00" * 8)}
    ).dump()
    with pytest.raises(Unsupported, match=name):
        decrypt_der(handmade(pki, algorithm, b"\x00" * 16), [pair(pki["rsa"])])


def test_gcm_inside_enveloped_data_is_malformed(pki: Pki) -> None:
    params = envelope.GCMParameters({"aes_nonce": b"\x00" * 12, "aes_icvlen": 16})
    algorithm = envelope.AlgorithmIdentifier(
        {"algorithm": "2.16.840.1.101.3.4.1.6", "parameters": params}
    ).dump()
    with pytest.raises(Malformed, match="EnvelopedData with content cipher aes128-gcm"):
        decrypt_der(handmade(pki, algorithm, b"\x00" * 16), [pair(pki["rsa"])])


def test_cbc_ciphertext_not_whole_blocks_is_malformed(pki: Pki) -> None:
    algorithm = envelope.AlgorithmIdentifier(
        {"algorithm": "2.16.840.1.101.3.4.1.2", "parameters": core.OctetString(b"\x00" * 16)}
    ).dump()
    with pytest.raises(Malformed, match="not a multiple of 16"):
        decrypt_der(handmade(pki, algorithm, b"\x00" * 17), [pair(pki["rsa"])])


def test_unknown_key_transport_is_unsupported(pki: Pki) -> None:
    der = encrypt_der(BODY, [pki["rsa"].cert])
    rsa_oid = bytes.fromhex("06092a864886f70d010101")
    assert der.count(rsa_oid) == 1
    weird = der.replace(rsa_oid, bytes.fromhex("06092a864886f70d01010a"))  # RSASSA-PSS
    with pytest.raises(Unsupported, match="1.2.840.113549.1.1.10"):
        decrypt_der(weird, [pair(pki["rsa"])])


def test_unknown_key_agreement_scheme_is_unsupported(pki: Pki) -> None:
    der = encrypt_der(BODY, [pki["p256"].cert])
    scheme = bytes.fromhex("06062b8104010b01")  # 1.3.132.1.11.1
    assert der.count(scheme) == 1
    weird = der.replace(scheme, bytes.fromhex("06062b8104010b09"))
    with pytest.raises(Unsupported, match="1.3.132.1.11.9"):
        decrypt_der(weird, [pair(pki["p256"])])


def test_not_enveloped_is_malformed(pki: Pki) -> None:
    data = acms.ContentInfo({"content_type": "data", "content": b"plain"}).dump()
    with pytest.raises(Malformed, match="not \\(Auth\\)EnvelopedData"):
        decrypt_der(data, [pair(pki["rsa"])])


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda d: b"", "empty"),
        (lambda d: d[:-1], "length"),
        (lambda d: d + b"\x00", "trailing"),
        (lambda d: b"\x04" + d[1:], "SEQUENCE"),
        (lambda d: d[:40], "length"),
    ],
)
def test_broken_der_is_malformed(pki: Pki, mangle: Callable[[bytes], bytes], match: str) -> None:
    der = encrypt_der(BODY, [pki["rsa"].cert])
    with pytest.raises(Malformed, match=match):
        decrypt_der(mangle(der), [pair(pki["rsa"])])


def test_broken_base64_is_malformed(pki: Pki) -> None:
    entity = encrypt(BODY, [pki["rsa"].cert])
    head, body = entity.split(b"\r\n\r\n", 1)
    with pytest.raises(Malformed, match="base64"):
        decrypt(head + b"\r\n\r\n" + body[:-7], [pair(pki["rsa"])])


@pytest.fixture(scope="module")
def fuzz_base() -> tuple[bytes, Keys]:
    ca = TestCA()
    rsa, ec = ca.issue("f@x.test"), ca.issue("g@x.test", "ec-p256")
    der = encrypt_der(BODY, [rsa.cert, ec.cert], cipher="aes128-gcm")
    return der, [pair(rsa), pair(ec)]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutations_only_raise_engine_errors(
    fuzz_base: tuple[bytes, Keys], data: st.DataObject
) -> None:
    der, keys = fuzz_base
    position = data.draw(st.integers(0, len(der) - 1))
    action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
    if action == "flip":
        mutated = (
            der[:position]
            + bytes([der[position] ^ data.draw(st.integers(1, 255))])
            + der[position + 1 :]
        )
    elif action == "cut":
        mutated = der[:position]
    else:
        mutated = der[:position] + data.draw(st.binary(min_size=1, max_size=8)) + der[position:]
    try:
        content, _ = decrypt_der(mutated, keys)
    except SmimeError:
        return
    # A mutation that still decrypts can only be one GCM does not cover (structure, not data).
    assert content == BODY


# --- the BER walker's limits -------------------------------------------------------------------


def test_ber_chunk_flood_is_refused() -> None:
    flood = b"\x04\x00" * (ber.MAX_CHILDREN + 1)
    indefinite = memoryview(b"\x24\x80" + flood + b"\x00\x00")
    with pytest.raises(Malformed, match="more than"):
        ber.read(indefinite, 0, len(indefinite), "flood")
    definite = memoryview(ber.der_header(0x24, len(flood)) + flood)
    top = ber.read(definite, 0, len(definite), "flood")
    with pytest.raises(Malformed, match="more than"):
        ber.octet_chunks(definite, top, "flood")


def test_ber_nesting_and_truncation_are_refused() -> None:
    deep = memoryview(b"\x30\x80" * (ber.MAX_DEPTH + 2) + b"\x00\x00" * (ber.MAX_DEPTH + 2))
    with pytest.raises(Malformed, match="nesting"):
        ber.read(deep, 0, len(deep), "deep")
    for broken in (b"\x30", b"\x30\x85\x01", b"\x04\x80\x00\x00", b"\x30\x80\x04\x01"):
        view = memoryview(broken)
        with pytest.raises(Malformed):
            ber.read(view, 0, len(view), "broken")


def test_ber_constructed_octet_string_chunks_are_views() -> None:
    data = memoryview(b"\x24\x80\x04\x02ab\x24\x80\x04\x01c\x00\x00\x04\x00\x00\x00")
    top = ber.read(data, 0, len(data), "nested")
    chunks = ber.octet_chunks(data, top, "nested")
    assert [bytes(c) for c in chunks] == [b"ab", b"c", b""]
    assert all(c.obj is data.obj for c in chunks)
