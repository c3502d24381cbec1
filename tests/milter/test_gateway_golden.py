"""Golden outputs of Gateway.process: the same input, randomness and time give the same bytes.

Issue 11 point 2 asks for the milter's CPU per message to come down with every output byte
left as it is. These cases pin, byte for byte, what the gateway answers for the common paths
(outbound sign + encrypt with and without RFC 9788 header protection, sign only; inbound
decrypt + verify, verify only): the header edits, the new body and the log line. The keys are
RFC 9216's (tests/vectors/rfc9216), so nothing depends on a key made at test time; os.urandom
(content-encryption key, IV), secrets.token_hex (MIME boundaries) and the signing time are
fixed. Two things stay random and are masked: the log line's ``delay``, and the RSA PKCS#1
v1.5 encryptedKey of an outbound copy (RFC 8017 7.2.1 pads with random octets inside OpenSSL),
which is decrypted with bob's key and checked to be the fixed content-encryption key first.

The expected files are in tests/milter/golden/ (README.md there says how they were made).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asn1crypto import cms as acms
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from smimegate.milter.gateway import Gateway
from smimegate.milter.transaction import Outcome
from smimegate.smime import encrypt as smime_encrypt
from smimegate.smime import sign as smime_sign
from smimegate.store import SqlStore
from smimegate.store.keys import ensure_master_key
from tests.milter.gateway_support import envelope, make_config, parse

R9216 = Path(__file__).resolve().parent.parent / "vectors" / "rfc9216"
GOLDEN = Path(__file__).resolve().parent / "golden"
ALICE, BOB, DAVE = "alice@smime.example", "bob@smime.example", "dave@elsewhere.example"
SIGNING_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
DRAWS: list[bytes] = []  # what os.urandom gave in this test
WRITE = os.environ.get("SMIMEGATE_GOLDEN_WRITE") == "1"  # README.md: only on purpose


def _cert(name: str, use: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((R9216 / f"{name}.{use}.crt").read_bytes())


def _key(name: str, use: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key((R9216 / f"{name}.{use}.key").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


class _FixedNow(datetime):
    @classmethod
    def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
        return SIGNING_TIME


@pytest.fixture
def fixed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """os.urandom: a SHA-256 counter stream; secrets.token_hex: a counter; signing time fixed."""
    counter = [0]
    DRAWS.clear()

    def urandom(n: int) -> bytes:
        counter[0] += 1
        out = b""
        while len(out) < n:
            out += hashlib.sha256(f"golden {counter[0]} {len(out)}".encode()).digest()
        DRAWS.append(out[:n])
        return out[:n]

    tokens = [0]

    def token_hex(n: int | None = None) -> str:
        tokens[0] += 1
        return hashlib.sha256(f"boundary {tokens[0]}".encode()).hexdigest()[: 2 * (n or 32)]

    monkeypatch.setattr(os, "urandom", urandom)
    monkeypatch.setattr(secrets, "token_hex", token_hex)
    monkeypatch.setattr(smime_sign, "datetime", _FixedNow)
    yield


def _gateway(root: Path, **milter: object) -> Gateway:
    ensure_master_key(root / "master.key")
    store = SqlStore.open(f"sqlite:///{root / 'store.db'}", root / "master.key",
                          check_schema=False, create=True)
    store.migrate()
    store.add_root(_cert("ca", "rsa"))
    store.add_user(ALICE, {"locality": "internal"})
    for use in ("sign", "encrypt"):
        store.add_certificate(_cert("alice", use), key=_key("alice", use))
    store.add_user(BOB)
    store.add_certificate(_cert("bob", "encrypt"))
    return Gateway.create(make_config(root, **milter), store)


def _message(sender: str, to: str) -> bytes:
    line = b"La de da de da 1. La de da de da 2. La de da de da 3. La de da de da 4.\r\n"
    return (f"From: Alice Lovelace <{sender}>\r\nTo: <{to}>\r\n"
            "Subject: =?utf-8?q?golden_=C3=BCber?= and a subject long enough to be folded\r\n"
            " over two lines\r\nMessage-ID: <golden@smime.example>\r\n"
            "Date: Fri, 02 Jan 2026 03:04:05 +0000\r\nKeywords: a, b\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n").encode() + line * 40


def _masked_body(body: bytes) -> bytes:
    """An outbound enveloped body with each RSA encryptedKey zeroed, after checking that it
    holds a content-encryption key drawn from the fixed os.urandom and that the base64
    layout is the one a plain re-encoding gives."""
    lines = body.split(b"\r\n")
    width = len(lines[0])
    der = base64.b64decode(b"".join(lines))

    def layout(data: bytes) -> bytes:
        text = base64.b64encode(data)
        return b"".join(text[i:i + width] + b"\r\n" for i in range(0, len(text), width))

    assert layout(der) == body
    info = acms.ContentInfo.load(der)
    for ri in info["content"]["recipient_infos"]:
        ek = ri.chosen["encrypted_key"].native
        cek = _key("bob", "encrypt").decrypt(ek, padding.PKCS1v15())
        assert cek in DRAWS
        assert der.count(ek) == 1
        der = der.replace(ek, bytes(len(ek)))
    return layout(der)


def render(outcome: Outcome) -> bytes:
    """Everything the gateway answers, as bytes to compare."""
    out = [f"reply {outcome.reply!r}".encode()]
    encrypted = False
    for edit in outcome.header_edits:
        out.append(f"edit {edit!r}".encode())
        if edit.value is not None and "enveloped-data" in edit.value:
            encrypted = True
    out += [f"remove {r}".encode() for r in outcome.remove_recipients]
    out += [f"reinject {r!r}".encode() for r in outcome.reinjections]
    out.append(re.sub(r"delay=[0-9.]+", "delay=MASKED", outcome.log_line).encode())
    if outcome.new_body is None:
        out.append(b"body unchanged")
    else:
        out.append(b"body")
        out.append(_masked_body(outcome.new_body) if encrypted else outcome.new_body)
    return b"\n".join(out) + b"\n"


def _check(name: str, outcome: Outcome) -> None:
    got = render(outcome)
    path = GOLDEN / f"{name}.txt"
    if WRITE:
        path.write_bytes(got)
    assert path.exists(), f"{path} missing (README.md there says how it was made)"
    assert got == path.read_bytes()


def _process(gateway: Gateway, sender: str, to: str, raw: bytes, client: str) -> Outcome:
    headers, body = parse(raw)
    return gateway.process(envelope(sender, to, client=client), headers, body)


def _inbound_enveloped() -> bytes:
    """bob signs then encrypts to alice (stored: RSA encryption is random, so this input is
    made once, by this function, and read from golden/in-enveloped.eml since)."""
    path = GOLDEN / "in-enveloped.eml"
    if not path.exists() or WRITE:
        entity = b"Content-Type: text/plain\r\n\r\n" + _message(BOB, ALICE).partition(
            b"\r\n\r\n")[2]
        signed = smime_sign.sign(entity, _key("bob", "sign"), _cert("bob", "sign"),
                                 (_cert("ca", "rsa"),))
        sealed = smime_encrypt.encrypt(signed, [smime_encrypt.Recipient(_cert("alice",
                                                                              "encrypt"))])
        path.write_bytes(f"From: <{BOB}>\r\nTo: <{ALICE}>\r\nSubject: golden in\r\n"
                         "Message-ID: <golden-in@smime.example>\r\nMIME-Version: 1.0\r\n"
                         .encode() + sealed)
    return path.read_bytes()


@pytest.mark.parametrize("hp", [True, False], ids=["hp", "nohp"])
def test_outbound_sign_encrypt(tmp_path: Path, fixed: None, hp: bool) -> None:
    gateway = _gateway(tmp_path, header_protection=hp)
    outcome = _process(gateway, ALICE, BOB, _message(ALICE, BOB), "127.0.0.1")
    assert "action=sign+encrypt" in outcome.log_line
    _check(f"out-sign-encrypt-{'hp' if hp else 'nohp'}", outcome)


def test_outbound_sign_only(tmp_path: Path, fixed: None) -> None:
    gateway = _gateway(tmp_path)
    outcome = _process(gateway, ALICE, DAVE, _message(ALICE, DAVE), "127.0.0.1")
    assert "action=sign " in outcome.log_line
    _check("out-sign", outcome)


def test_inbound_decrypt_verify(tmp_path: Path, fixed: None) -> None:
    gateway = _gateway(tmp_path)
    outcome = _process(gateway, BOB, ALICE, _inbound_enveloped(), "192.0.2.7")
    assert "verified=yes trusted=yes" in outcome.log_line
    _check("in-decrypt-verify", outcome)


def test_inbound_verify(tmp_path: Path, fixed: None) -> None:
    entity = b"Content-Type: text/plain\r\n\r\nHello alice, signed only.\r\n"
    signed = smime_sign.sign(entity, _key("bob", "sign"), _cert("bob", "sign"),
                             (_cert("ca", "rsa"),))
    raw = (f"From: <{BOB}>\r\nTo: <{ALICE}>\r\nSubject: golden signed\r\n"
           "MIME-Version: 1.0\r\n").encode() + signed
    gateway = _gateway(tmp_path)
    outcome = _process(gateway, BOB, ALICE, raw, "192.0.2.7")
    assert "verified=yes trusted=yes" in outcome.log_line
    _check("in-verify", outcome)
