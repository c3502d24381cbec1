"""envelope.plain_ktris against envelope.recipient_infos_asn1 (differential).

envelope.read reads a RecipientInfos SET with plain_ktris when every RecipientInfo is a plain
DER KeyTransRecipientInfo and with asn1crypto otherwise. Wherever plain_ktris does not
decline, asn1crypto must have read the SET too, and decrypt must see the same recipients: the
same encrypted keys, recipient identifiers, key encryption OIDs and paddings (or the same
refusal), and unwrapping with a real key gives the same content key. RFC 3218 2.3 behaviour
(a failed unwrap goes on with a random key) is decrypt's and is fed the same values either way.

Fed with every EnvelopedData / AuthEnvelopedData at the top of the corpora's messages and DER
files (tests/vectors, /work/shared/corpora), the ones we make (RSA PKCS #1 v1.5 and OAEP, two
RSA recipients, an RSA and an EC recipient, AES-GCM), the fuzz seeds, every single-byte
mutant (a set of values) of the RecipientInfos of two of them, and hypothesis's structure-aware
and byte mutants of all of them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms as acms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smimegate.smime import decrypt, envelope, keytrans, mime
from smimegate.smime.cms import definite_der, guard
from smimegate.smime.encrypt import Recipient, encrypt
from smimegate.smime.errors import SmimeError
from tests.conftest import VECTORS
from tests.helpers.testpki import TestCA
from tests.unit.smime.test_fuzz import mutate, mutate_tree, world

SHARED = Path("/work/shared/corpora")
CONTENT = b"Content-Type: text/plain\r\n\r\nThe quick brown fox.\r\n"
pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")


def _infos(der: bytes) -> bytes | None:
    """The DER of the RecipientInfos SET of an (Auth)EnvelopedData ContentInfo."""
    try:
        with guard("test"):
            infos = acms.ContentInfo.load(der)["content"]["recipient_infos"]
            return definite_der(infos)
    except (SmimeError, ValueError):
        return None


def _enveloped(data: bytes) -> list[bytes]:
    found = []
    try:
        parsed = mime.parse_entity(data)
        if mime.classify(parsed) in ("enveloped", "auth-enveloped"):
            found.append(mime.decode_smime_body(parsed))
    except SmimeError:
        pass
    found.append(data)  # a DER file
    return found


@functools.cache
def made() -> tuple[tuple[str, bytes, Any], ...]:
    """(name, RecipientInfos DER, the first recipient's key)."""
    ca = TestCA()
    bob = ca.issue("bob@x.test", "rsa2048")
    carol = ca.issue("carol@x.test", "rsa2048")
    dave = ca.issue("dave@x.test", "ec-p256")
    out = []
    for name, recipients, cipher in (
            ("pkcs1", [Recipient(bob.cert)], "aes256-cbc"),
            ("oaep", [Recipient(bob.cert, "rsa-oaep")], "aes256-cbc"),
            ("two", [Recipient(bob.cert), Recipient(carol.cert, "rsa-oaep")], "aes128-cbc"),
            ("rsa-and-ec", [Recipient(bob.cert), Recipient(dave.cert)], "aes256-cbc"),
            ("gcm", [Recipient(bob.cert)], "aes128-gcm")):
        der = mime.decode_smime_body(mime.parse_entity(encrypt(CONTENT, recipients,
                                                               cipher=cipher)))
        infos = _infos(der)
        assert infos is not None
        out.append((name, infos, bob.key))
    w = world()
    for seed in w.seeds.values():
        infos = _infos(seed.der)
        if infos is not None:
            out.append((f"fuzz-{seed.name}", infos, w.bob.key))
    return tuple(out)


@functools.cache
def corpus() -> tuple[bytes, ...]:
    seen: dict[bytes, None] = {}
    for root in (VECTORS, SHARED):
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.stat().st_size < 2_000_000:
                for der in _enveloped(path.read_bytes()):
                    infos = _infos(der)
                    if infos is not None:
                        seen[infos] = None
    return tuple(seen)


def _outcome(run: Any, *args: Any) -> tuple[str, object]:
    try:
        return "ok", run(*args)
    except SmimeError as exc:
        return type(exc).__name__, str(exc)


def _padding(candidate: Any) -> object:
    """What keytrans makes of the candidate's keyEncryptionAlgorithm, comparably."""
    if isinstance(candidate.info, envelope.Ktri):
        pad = keytrans.padding_for_der(candidate.info.key_encryption_algorithm)
    else:
        pad = keytrans.padding_for(candidate.info.chosen["key_encryption_algorithm"])
    described = [type(pad).__name__]
    for part in ("_algorithm", "_label"):
        value = getattr(pad, part, None)
        described.append(getattr(value, "name", value))
    mgf = getattr(pad, "_mgf", None)
    described.append(getattr(getattr(mgf, "_algorithm", None), "name", None))
    return tuple(described)


def compare(infos: bytes, key: Any = None) -> bool:
    """Both readings of one RecipientInfos SET: whether plain_ktris read it."""
    old = _outcome(envelope.recipient_infos_asn1, infos, "EnvelopedData")
    new = envelope.plain_ktris(infos)
    if new is None:
        return False
    assert old[0] == "ok", (old, infos.hex())  # never read where asn1crypto refuses
    old_candidates = decrypt._candidates(old[1])
    new_candidates = decrypt._candidates(new)
    assert len(old_candidates) == len(new_candidates) == len(new)
    for a, b in zip(old_candidates, new_candidates, strict=True):
        assert (a.encrypted_key, a.cert_id) == (b.encrypted_key, b.cert_id)
        assert _outcome(decrypt._kea_oid, a) == _outcome(decrypt._kea_oid, b)
        assert _outcome(_padding, a) == _outcome(_padding, b)
        if key is not None:
            assert _outcome(decrypt._unwrap, a, key) == _outcome(decrypt._unwrap, b, key)
    return True


def test_corpus_reads_the_same() -> None:
    samples = corpus()
    assert len(samples) >= 20, len(samples)
    taken = sum(compare(infos) for infos in samples)
    assert taken >= 10, taken  # most mail to RSA recipients is plain ktri


def test_made_read_the_same() -> None:
    taken = {name: compare(infos, key) for name, infos, key in made()}
    for name in ("pkcs1", "oaep", "two", "gcm"):
        assert taken[name], name
    assert not taken["rsa-and-ec"]  # a kari (EC recipient) is left to asn1crypto


@pytest.mark.parametrize("name", ["two", "oaep"])
def test_every_single_byte_mutant_reads_the_same(name: str) -> None:
    _, infos, key = next(m for m in made() if m[0] == name)
    taken = 0
    for pos in range(len(infos)):
        original = infos[pos]
        for value in {0x00, 0x02, 0x04, 0x06, 0x30, 0x31, 0x80, 0x81, 0xA0, 0xFF,
                      original ^ 0x01, original ^ 0x80}:
            if value != original:
                taken += compare(infos[:pos] + bytes((value,)) + infos[pos + 1:], key)
    assert taken > 100, taken


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_mutants_read_the_same(data: st.DataObject) -> None:
    samples = [infos for _, infos, _ in made()] + list(corpus())
    infos = samples[data.draw(st.integers(0, len(samples) - 1), label="sample")]
    if data.draw(st.booleans(), label="tree"):
        compare(mutate_tree(data, infos))
    else:
        compare(mutate(data, infos))
