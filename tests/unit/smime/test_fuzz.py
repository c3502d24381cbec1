"""Property-based fuzzing of unwrap(): mutated S/MIME messages fail only with the typed errors.

Seeds are small valid messages (signed detached, signed opaque, enveloped AES-CBC,
auth-enveloped AES-GCM, signed-then-encrypted), made once per module. Hypothesis mutates them
at byte level (flip, overwrite, insert, delete, truncate, duplicate a slice) in these places:

- the whole message text (outer header fields, Content-* fields, boundaries, base64);
- the DER inside, re-encoded into base64 afterwards, so the mutation reaches the CMS parsers
  instead of dying in the base64 decoder;
- single ASN.1 elements of that DER, lengths re-encoded, so the mutation reaches field-level
  parsing and the algorithm allow-lists;
- the signed entity inside an encrypted layer, re-encrypted afterwards, so the mutation reaches
  the inner layer past decryption;
- the signed first part of a multipart/signed, the signature left intact.

Each mutant goes through unwrap() with the right keys. Properties:
1. the only exceptions are Malformed, BadSignature, NoDecryptionKey and Unsupported;
2. the result headers (CONTRACT.md) have no line ends in their values (no header injection
   from a forged SignerIdentifier or a broken name);
3. a signature reported valid, or an AES-GCM layer that decrypted, means the content is the
   original one: no mutation gets past the integrity checks.

Cases: 5 seeds x (220 + 140 + 100) + 150 + 150 = 2600 examples. pytest-timeout and the hypothesis
deadline turn a hang or a quadratic blow-up into a failure.
"""

from __future__ import annotations

import binascii
import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smimegate.smime import mime
from smimegate.smime.encrypt import encrypt
from smimegate.smime.errors import BadSignature, Malformed, NoDecryptionKey, Unsupported
from smimegate.smime.results import Unwrapped, result_headers
from smimegate.smime.sign import sign
from smimegate.smime.unwrap import unwrap
from tests.helpers.testpki import TestCA

TYPED = (Malformed, BadSignature, NoDecryptionKey, Unsupported)

# A generous per-example bound: a seed is 1-2 KB and one unwrap takes a few milliseconds; only
# a hang or a blow-up out of proportion to the input gets near it.
FUZZ = settings(
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

INNER = (
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"the numbers for Q3 are attached. Gr=C3=BC=C3=9Fe\r\n"
    b"--\r\n"
    b"Alice\r\n"
)
OUTER = (
    b"From: Alice <alice@x.test>\r\n"
    b"To: Bob <bob@x.test>\r\n"
    b"Subject: fuzz seed\r\n"
    b"Message-ID: <seed@x.test>\r\n"
    b"MIME-Version: 1.0\r\n"
)

# Byte values that mean something to the parsers: ASN.1 tags and length octets, line ends,
# MIME specials, base64 padding.
SPECIAL = [0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x0A, 0x0D, 0x20, 0x24, 0x2D, 0x30, 0x31,
           0x3A, 0x3B, 0x3D, 0x7F, 0x80, 0x81, 0x82, 0x84, 0x88, 0x89, 0xA0, 0xA1, 0xFF]
TOKENS = [b"\r\n", b"\n", b"\r\n\r\n", b"--", b"=", b";", b":", b" ", b"\x00",
          b"\x30\x80", b"\x00\x00", b"\x84\xff\xff\xff\xff", b"\x88" + b"\x40" + b"\x00" * 7,
          b"Content-Type: application/pkcs7-mime\r\n", b"boundary=", b"smime-type="]


@dataclass(frozen=True)
class Seed:
    """A valid message and what its parts are, for mutating each of them."""

    name: str
    message: bytes  # the whole RFC 5322 message
    smime_type: str | None  # pkcs7-mime smime-type, None for multipart/signed
    der: bytes  # the outer CMS object (the signature for multipart/signed)
    gcm: bool  # outermost layer is AES-GCM: a decrypted layer proves the content unchanged


@dataclass(frozen=True)
class World:
    keys: tuple[tuple[x509.Certificate, Any], ...]
    bob: Any  # the RSA recipient of the encrypted seeds
    signer: Any
    seeds: dict[str, Seed]
    signed_inner: bytes  # the opaque-signed entity inside "signed-then-encrypted"


@functools.cache
def world() -> World:
    """Keys and seed messages, made once per module run (key generation dominates otherwise)."""
    ca = TestCA()
    alice = ca.issue("alice@x.test", "ec-p256")  # small certificate: a small seed
    carol = ca.issue("carol@x.test", "rsa2048")
    bob = ca.issue("bob@x.test", "rsa2048")
    dave = ca.issue("dave@x.test", "ec-p256")  # key agreement (RFC 5753) in the GCM seed
    keys = ((bob.cert, bob.key), (dave.cert, dave.key))

    detached = sign(INNER, alice.key, alice.cert)
    opaque = sign(INNER, carol.key, carol.cert, detached=False)
    cbc = encrypt(INNER, [bob.cert], cipher="aes256-cbc")
    gcm = encrypt(INNER, [dave.cert], cipher="aes128-gcm")
    signed_inner = sign(INNER, alice.key, alice.cert, detached=False, capabilities=())
    both = encrypt(signed_inner, [bob.cert], cipher="aes256-cbc")

    def seed(name: str, entity: bytes, smime_type: str | None, gcm: bool = False) -> Seed:
        parsed = mime.parse_entity(entity)
        if smime_type is None:
            _content, der, _micalg = mime.split_multipart_signed(parsed)
        else:
            der = mime.decode_smime_body(parsed)
        return Seed(name, OUTER + entity, smime_type, der, gcm)

    seeds = {
        s.name: s
        for s in (
            seed("signed-detached", detached, None),
            seed("signed-opaque", opaque, "signed-data"),
            seed("enveloped-cbc", cbc, "enveloped-data"),
            seed("auth-enveloped-gcm", gcm, "authEnveloped-data", gcm=True),
            seed("signed-then-encrypted", both, "enveloped-data"),
        )
    }
    return World(keys, bob, alice, seeds, signed_inner)


SEED_NAMES = ["signed-detached", "signed-opaque", "enveloped-cbc", "auth-enveloped-gcm",
              "signed-then-encrypted"]


def test_seeds_are_small_and_unwrap_cleanly() -> None:
    w = world()
    for name in SEED_NAMES:
        s = w.seeds[name]
        assert 600 < len(s.message) < 4096, (name, len(s.message))
        result = unwrap(s.message, w.keys)
        assert result.error is None, name
        assert mime.canonicalize(result.content) == INNER, name
        for layer in result.layers:
            assert all(signer.valid for signer in layer.signers), name
            assert layer.kind == "signed" or layer.decrypted, name
    assert [lay.kind for lay in unwrap(w.seeds["signed-then-encrypted"].message, w.keys).layers] \
        == ["enveloped", "signed"]


# --- mutations ------------------------------------------------------------------------------


def _position(data: st.DataObject, size: int, lo: int, hi: int) -> int:
    """A position in [lo, hi], biased toward the start of the range half the time (headers,
    ASN.1 tags and lengths live there; the bulk of base64 or ciphertext is uniform)."""
    hi = max(lo, min(hi, size))
    if data.draw(st.booleans()):
        return data.draw(st.integers(lo, min(hi, lo + 160)))
    return data.draw(st.integers(lo, hi))


def mutate(data: st.DataObject, blob: bytes, lo: int = 0, hi: int | None = None) -> bytes:
    """Apply 1-4 byte-level mutations inside blob[lo:hi] (positions only; the result may grow
    or shrink). The result is never equal to blob."""
    hi = len(blob) if hi is None else hi
    out = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4), label="count")):
        size = len(out)
        end = min(hi, size)
        op = data.draw(
            st.sampled_from(["flip", "set", "insert", "token", "delete", "truncate", "duplicate"]),
            label="op",
        )
        if size == 0:
            out += b"\x30"
            continue
        pos = _position(data, size, min(lo, size - 1), max(min(lo, size - 1), end - 1))
        if op == "flip":
            out[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            out[pos] = data.draw(st.sampled_from(SPECIAL) | st.integers(0, 255))
        elif op == "insert":
            out[pos:pos] = data.draw(st.binary(min_size=1, max_size=24))
        elif op == "token":
            out[pos:pos] = data.draw(st.sampled_from(TOKENS))
        elif op == "delete":
            length = data.draw(st.integers(1, 96))
            del out[pos : pos + length]
        elif op == "truncate":
            del out[max(pos, 1) :]
        else:
            length = data.draw(st.integers(1, 256))
            chunk = bytes(out[pos : pos + length])
            where = data.draw(st.integers(0, len(out)))
            out[where:where] = chunk * data.draw(st.integers(1, 3))
    if bytes(out) == blob:
        out.append(0x0A)
    return bytes(out)


# A DER tree: (identifier octets, children or None, contents). Structure-aware mutations edit
# one element and re-encode every length, so the mutant passes the outer TLV checks and reaches
# the field-level parsing (asn1crypto's lazy parse, our allow-lists) that byte flips rarely get to.
Node = tuple[bytes, "list[Node] | None", bytes]
TAGS = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0C, 0x13, 0x17, 0x18, 0x30, 0x31, 0x80, 0x81,
        0xA0, 0xA1, 0xA2, 0xA3, 0x24, 0x1F]


def _parse_tree(der: bytes, pos: int = 0, end: int | None = None, depth: int = 0) -> list[Node]:
    """Definite-length DER elements in der[pos:end]; ValueError when they do not parse."""
    end = len(der) if end is None else end
    nodes: list[Node] = []
    while pos < end:
        start = pos
        if der[pos] & 0x1F == 0x1F:
            raise ValueError("high tag number")
        pos += 1
        if pos >= end:
            raise ValueError("no length")
        first = der[pos]
        pos += 1
        if first & 0x80:
            count = first & 0x7F
            if count == 0 or count > 4 or pos + count > end:
                raise ValueError("length")
            length = int.from_bytes(der[pos : pos + count], "big")
            pos += count
        else:
            length = first
        if pos + length > end:
            raise ValueError("overrun")
        identifier, contents = der[start : start + 1], der[pos : pos + length]
        children: list[Node] | None = None
        if identifier[0] & 0x20 and depth < 24:
            try:
                children = _parse_tree(der, pos, pos + length, depth + 1)
            except ValueError:
                children = None
        nodes.append((identifier, children, contents))
        pos += length
    return nodes


def _encode(nodes: list[Node]) -> bytes:
    out = []
    for identifier, children, contents in nodes:
        body = _encode(children) if children is not None else contents
        size = len(body)
        if size < 0x80:
            length = bytes((size,))
        else:
            raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
            length = bytes((0x80 | len(raw),)) + raw
        out.append(identifier + length + body)
    return b"".join(out)


def _copy(node: Node) -> Node:
    identifier, children, contents = node
    return (identifier, None if children is None else [_copy(c) for c in children], contents)


def _all_lists(nodes: list[Node]) -> list[tuple[list[Node], int]]:
    """Every (sibling list, index) of the tree, pre-order."""
    found: list[tuple[list[Node], int]] = []
    for index, (_identifier, children, _contents) in enumerate(nodes):
        found.append((nodes, index))
        if children is not None:
            found.extend(_all_lists(children))
    return found


def mutate_tree(data: st.DataObject, der: bytes) -> bytes:
    """1-3 edits of single DER elements (contents, tag, delete, duplicate, graft), lengths
    re-encoded. Falls back to byte mutations when der does not parse as definite DER."""
    try:
        tree = _parse_tree(der)
    except ValueError:
        return mutate(data, der)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        places = _all_lists(tree)
        if not places:
            break
        siblings, index = places[data.draw(st.integers(0, len(places) - 1), label="element")]
        identifier, children, contents = siblings[index]
        op = data.draw(st.sampled_from(["contents", "tag", "delete", "duplicate", "graft",
                                        "empty", "flatten"]), label="tree-op")
        if op == "contents" and children is None:
            siblings[index] = (identifier, None, mutate(data, contents) if contents else b"\x00")
        elif op == "tag":
            siblings[index] = (bytes((data.draw(st.sampled_from(TAGS)),)), children, contents)
        elif op == "delete" and len(places) > 1:
            del siblings[index]
        elif op == "duplicate":
            siblings.insert(index, siblings[index])
        elif op == "graft":
            other_list, other_index = places[data.draw(st.integers(0, len(places) - 1))]
            # A copy: grafting an element into its own subtree must not make a cycle.
            siblings[index] = _copy(other_list[other_index])
        elif op == "empty":
            siblings[index] = (identifier, None, b"")
        else:
            # The element's encoding becomes opaque contents: mutate it at byte level.
            body = _encode(children) if children is not None else contents
            siblings[index] = (identifier, None, mutate(data, body) if body else b"\x00")
    out = _encode(tree)
    return out if out and out != der else der + b"\x00"


def _body_start(message: bytes) -> int:
    """Offset of the first body byte of the top-level entity (after the blank line)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = message.find(sep)
        if at >= 0:
            return at + len(sep)
    return len(message)


def rebuild(seed: Seed, der: bytes) -> bytes:
    """The seed message with its outer CMS object replaced by ``der`` (re-encoded in base64)."""
    if seed.smime_type is None:
        entity = mime.build_multipart_signed(INNER, der, "sha-256")
    else:
        entity = mime.build_pkcs7_mime(der, seed.smime_type)
    return OUTER + entity


# --- checking one mutant --------------------------------------------------------------------


def check(message: bytes, keys: Any, gcm_seed: bool = False) -> Unwrapped | None:
    """Run unwrap() and check the properties; None when it raised one of the typed errors.

    gcm_seed: the message is a mutant of the AES-GCM seed, so a GCM layer that decrypted must
    hold the original content (not so when a test re-encrypts mutated content itself).
    """
    try:
        result = unwrap(message, keys)
    except TYPED:
        return None
    assert isinstance(result, Unwrapped)
    assert isinstance(result.content, bytes)
    for name, value in result_headers(result.layers):
        assert "\r" not in value and "\n" not in value, (name, value)
        assert name.isascii() and ":" not in name, name
    if result.error is None and result.layers:
        last = result.layers[-1]
        valid = last.kind == "signed" and any(s.valid for s in last.signers)
        authenticated = gcm_seed and last.kind == "auth-enveloped" and last.decrypted
        if valid or authenticated:
            # A valid signature (or a GCM tag) over other bytes than the ones we put in would
            # be a forgery: the content must be the original entity, up to line ends (the
            # verifier accepts a detached part in LF form, RFC 8551 3.1.1).
            assert mime.canonicalize(result.content) == INNER, result.layers
    return result


# --- the properties -------------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", SEED_NAMES)
@settings(FUZZ, max_examples=220)
@given(data=st.data())
def test_message_text_mutations(name: str, data: st.DataObject) -> None:
    """Mutations anywhere in the message text: outer and Content-* fields, boundaries, base64."""
    w = world()
    seed = w.seeds[name]
    region = data.draw(st.sampled_from(["headers", "body", "anywhere"]), label="region")
    split = _body_start(seed.message)
    lo, hi = {"headers": (0, split), "body": (split, len(seed.message)),
              "anywhere": (0, len(seed.message))}[region]
    check(mutate(data, seed.message, lo, hi), w.keys, seed.gcm)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", SEED_NAMES)
@settings(FUZZ, max_examples=140)
@given(data=st.data())
def test_der_mutations(name: str, data: st.DataObject) -> None:
    """Mutations of the CMS DER, re-encoded into clean base64 so the ASN.1 parsers see them."""
    w = world()
    seed = w.seeds[name]
    der = mutate(data, seed.der)
    if not der:
        der = b"\x30"
    check(rebuild(seed, der), w.keys, seed.gcm)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", SEED_NAMES)
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_der_element_mutations(name: str, data: st.DataObject) -> None:
    """Single ASN.1 elements edited with every length re-encoded, so the mutant reaches the
    field-level CMS parsing and the algorithm allow-lists."""
    w = world()
    seed = w.seeds[name]
    check(rebuild(seed, mutate_tree(data, seed.der)), w.keys, seed.gcm)


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=150)
@given(data=st.data(), at_der=st.booleans())
def test_inner_layer_mutations(data: st.DataObject, at_der: bool) -> None:
    """The signed entity inside an encrypted layer mutated, then encrypted again: the mutation
    meets verify() only after a successful decryption."""
    w = world()
    inner = w.signed_inner
    if at_der:
        der = mime.decode_smime_body(mime.parse_entity(inner))
        mutated_der = mutate(data, der) or b"\x30"
        inner = mime.build_pkcs7_mime(mutated_der, "signed-data")
    else:
        inner = mutate(data, inner)
    message = OUTER + encrypt(inner, [w.bob.cert], cipher="aes256-gcm")
    result = check(message, w.keys)
    if result is not None:
        # The outer layer is intact: it always decrypts, whatever is inside.
        assert result.layers[0].kind == "auth-enveloped" and result.layers[0].decrypted


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_detached_content_mutations(data: st.DataObject) -> None:
    """The signed first part of a multipart/signed mutated, signature intact: parsing never
    crashes, and a signature never verifies over other content."""
    w = world()
    seed = w.seeds["signed-detached"]
    parsed = mime.parse_entity(seed.message[len(OUTER):])
    content, der, _micalg = mime.split_multipart_signed(parsed)
    mutated = mutate(data, content)
    try:
        entity = mime.build_multipart_signed(mutated, der, "sha-256")
    except TYPED:
        return
    check(OUTER + entity, w.keys)


def test_base64_reencoding_is_what_the_der_tests_rely_on() -> None:
    # rebuild() of an unmutated DER gives back a message that unwraps to the original content:
    # the DER mutation tests exercise the DER, not a broken re-encoding.
    w = world()
    for name in SEED_NAMES:
        seed = w.seeds[name]
        result = unwrap(rebuild(seed, seed.der), w.keys)
        assert mime.canonicalize(result.content) == INNER, name
        assert binascii.b2a_base64(seed.der)  # the DER is non-empty
