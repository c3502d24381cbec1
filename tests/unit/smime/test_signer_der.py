"""smimegate.smime.signer_der against the asn1crypto reading it stands in for (differential).

verify reads a SignerInfo with signer_der when it has the plain DER shape and with asn1crypto
(_parse_signer_asn1) otherwise. Wherever signer_der does not decline, both readings must agree:
asn1crypto must not have refused the SignerInfo, every value must be the same, and verifying
with either (_verify_signer, which runs _check for every content candidate, and _check against
the other certificates carried) must give the same result or the same error. The same for a
whole SignedData (_frame_der against _frame_asn1): asn1crypto read it too, the same content
type, eContent, digest list, certificates and CRLs, and verify_der's whole answer (content and
Layer, or the same Malformed) is the same. Fed with:

- every SignedData of the corpora (tests/vectors and /work/shared/corpora: messages and DER
  files, encrypted ones opened with the corpora's keys), detached content included;
- SignedData we make in every shape sign.py writes (RSA, RSA-PSS, ECDSA, Ed25519, SKI, no
  signed attributes, no capabilities, parallel signers, a countersignature);
- the seeds of test_fuzz.py;
- mutants: every single-byte change (a set of values) in the SignerInfos of several seeds and
  in the whole SignedData of two fuzz seeds, and hypothesis's structure-aware mutants
  (test_fuzz.mutate_tree, lengths re-encoded) and byte mutants of the SignerInfos and of the
  whole SignedData of the corpus and the seeds.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms as acms
from asn1crypto import core
from cryptography.hazmat.primitives.serialization import load_pem_private_key, pkcs12
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smimegate.smime import ber, decrypt, mime, signer_der, verify
from smimegate.smime.cms import definite_der, guard, load_content_info, oid_dotted
from smimegate.smime.errors import Malformed, SmimeError
from smimegate.smime.sign import (
    Signer,
    assemble,
    build_signer_info,
    sign_der,
    sign_several_der,
)
from tests.conftest import VECTORS
from tests.helpers.testpki import TestCA
from tests.unit.smime.test_fuzz import _encode, _parse_tree, mutate, mutate_tree, world

SHARED = Path("/work/shared/corpora")
# Mutants make certificates with a serial number of zero or below, or a name attribute of a
# length its type forbids, which cryptography still loads with a warning: what the test
# compares is unchanged by it.
pytestmark = [pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive"),
              pytest.mark.filterwarnings("ignore:Attribute's length must be")]
CONTENT = b"Content-Type: text/plain\r\n\r\nThe quick brown fox.\r\n"
FIELDS = ("signer_id", "digest_oid", "digest_label", "signature_oid", "signature_label",
          "signed_attrs", "signature", "signing_time", "capabilities")


@dataclass(frozen=True)
class Sample:
    name: str
    der: bytes
    detached: bytes | None


# --- the corpus ------------------------------------------------------------------------------


def _keys() -> list[tuple[Any, Any]]:
    """The corpora's decryption keys whose passwords tests/vectors/README.md gives."""
    out: list[tuple[Any, Any]] = []
    for path, password in ((VECTORS / "thunderbird-smime" / "Bob.p12", b"nss"),
                           (VECTORS / "thunderbird-smime-interop" / "Fran.p12", b"nss"),
                           (VECTORS / "thunderbird-smime-interop" / "Fran-ec.p12", b"nss"),
                           (VECTORS / "rfc9216" / "bob.p12", b"bob")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                key, cert, _ = pkcs12.load_key_and_certificates(path.read_bytes(), password)
            except ValueError:
                continue
        if key is not None and cert is not None:
            out.append((cert, key))
    from cryptography import x509

    for cert_name, key_name in (("BobRSASignByCarl.pem", "BobPrivRSAEncrypt.key.pem"),):
        cert = x509.load_pem_x509_certificate((VECTORS / "rfc4134" / cert_name).read_bytes())
        key = load_pem_private_key((VECTORS / "rfc4134" / key_name).read_bytes(), None)
        out.append((cert, key))
    return out


def _from_entity(entity: bytes, keys: list[tuple[Any, Any]], depth: int = 0) -> list[
        tuple[bytes, bytes | None]]:
    """The SignedData DER (and detached content) in a message, through encrypted layers."""
    if depth > 6:
        return []
    try:
        parsed = mime.parse_entity(entity)
        kind = mime.classify(parsed)
        if kind == "signed":
            content, signature, _ = mime.split_multipart_signed(parsed)
            return [(signature, content), *_from_entity(content, keys, depth + 1)]
        if kind in ("opaque-signed", "certs-only"):
            der = mime.decode_smime_body(parsed)
            inner = _econtent(der)
            return [(der, None), *(_from_entity(inner, keys, depth + 1) if inner else [])]
        if kind in ("enveloped", "auth-enveloped"):
            plain, _ = decrypt.decrypt(entity, keys)
            return _from_entity(plain, keys, depth + 1)
    except SmimeError:
        return []
    return []


def _econtent(der: bytes) -> bytes | None:
    try:
        with guard("test"):
            econtent = load_content_info(der)["content"]["encap_content_info"]["content"]
            return None if isinstance(econtent, core.Void) else bytes(econtent)
    except SmimeError:
        return None


def _from_file(data: bytes, keys: list[tuple[Any, Any]]) -> list[tuple[bytes, bytes | None]]:
    found = _from_entity(data, keys)
    candidates = [data]
    if b"-----BEGIN" in data:
        import base64

        for block in data.split(b"-----BEGIN")[1:]:
            body = block.split(b"-----", 1)[-1].split(b"-----END")[0]
            try:
                candidates.append(base64.b64decode(body))
            except ValueError:
                pass
    for der in candidates:
        try:
            with guard("test"):
                info = load_content_info(der)
                if oid_dotted(info["content_type"]) == "1.2.840.113549.1.7.2":
                    found.append((der, None))
                    inner = _econtent(der)
                    if inner:
                        found += _from_entity(inner, keys)
        except SmimeError:
            pass
    return found


@functools.cache
def corpus() -> tuple[Sample, ...]:
    keys = _keys()
    out: list[Sample] = []
    seen: set[bytes] = set()
    for root in (VECTORS, SHARED):
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.stat().st_size > 2_000_000:
                continue
            for der, detached in _from_file(path.read_bytes(), keys):
                if der not in seen:
                    seen.add(der)
                    out.append(Sample(str(path.relative_to(root)), der, detached))
    return tuple(out)


@functools.cache
def made() -> tuple[Sample, ...]:
    """SignedData in every shape sign.py writes."""
    ca = TestCA()
    rsa = ca.issue("rsa@x.test", "rsa2048")
    ec = ca.issue("ec@x.test", "ec-p256")
    ed = ca.issue("ed@x.test", "ed25519")
    out = [
        Sample("rsa", sign_der(CONTENT, rsa.key, rsa.cert, (ca.cert,)), CONTENT),
        Sample("rsa-opaque", sign_der(CONTENT, rsa.key, rsa.cert, detached=False), None),
        Sample("rsa-pss", sign_der(CONTENT, rsa.key, rsa.cert, pss=True), CONTENT),
        Sample("rsa-sha512", sign_der(CONTENT, rsa.key, rsa.cert, digest="sha512"), CONTENT),
        Sample("rsa-no-caps", sign_der(CONTENT, rsa.key, rsa.cert, capabilities=()), CONTENT),
        Sample("ec", sign_der(CONTENT, ec.key, ec.cert), CONTENT),
        Sample("ed25519", sign_der(CONTENT, ed.key, ed.cert), CONTENT),
        Sample("parallel", sign_several_der(
            CONTENT, [Signer(rsa.key, rsa.cert), Signer(ec.key, ec.cert)]), CONTENT),
        Sample("countersigned", sign_several_der(
            CONTENT, [Signer(rsa.key, rsa.cert), Signer(ec.key, ec.cert)],
            arrangement="countersignature"), CONTENT),
    ]
    for name, kwargs in (("ski", {"use_ski": True}), ("no-attrs", {"with_signed_attributes": False}),
                         ("other-type", {"content_type": "signed_data"})):
        info = build_signer_info(CONTENT, rsa.key, rsa.cert, **kwargs)
        out.append(Sample(name, assemble(CONTENT, [info], [rsa.cert]), CONTENT))
    w = world()
    for seed in w.seeds.values():
        if seed.smime_type in (None, "signed-data"):
            detached = None
            if seed.smime_type is None:
                content, _, _ = mime.split_multipart_signed(mime.parse_entity(
                    mime.split_message(seed.message)[1]))
                detached = content
            out.append(Sample(f"fuzz-{seed.name}", seed.der, detached))
    out.append(Sample("fuzz-signed-inner", mime.decode_smime_body(
        mime.parse_entity(w.signed_inner)), None))
    return tuple(out)


# --- the comparison ---------------------------------------------------------------------------


def _outcome(run: Callable[..., object], *args: object) -> tuple[str, object]:
    try:
        return "ok", run(*args)
    except (SmimeError, verify._Invalid) as exc:
        return type(exc).__name__, str(exc)


def _signer_infos(signed: acms.SignedData) -> list[tuple[acms.SignerInfo, str | None]]:
    """Each SignerInfo with the content type it signs, and each countersignature (None)."""
    out: list[tuple[acms.SignerInfo, str | None]] = []
    content_type = oid_dotted(signed["encap_content_info"]["content_type"])
    for info in signed["signer_infos"]:
        out.append((info, content_type))
        try:
            with guard("test"):
                unsigned = info["unsigned_attrs"]
                if isinstance(unsigned, core.Void):
                    continue
                for attr in unsigned:
                    if oid_dotted(attr["type"]) == "1.2.840.113549.1.9.6":
                        values = verify._CounterAttribute.load(attr.dump())["values"]
                        out += [(counter, None) for counter in values]
        except SmimeError:
            continue
    return out


def _verify_asn1(der: bytes, detached: bytes | None) -> tuple[bytes, Any]:
    return verify._verify_frame(verify._frame_asn1(der), detached)


def compare_frame(der: bytes, detached: bytes | None) -> bool:
    """Both readings of the whole SignedData: whether signer_der read it."""
    old = _outcome(_verify_asn1, der, detached)  # first: it reads the certificates in
    frame = verify._frame_der(der)
    if frame is None:
        return False
    read = _outcome(verify._frame_asn1, der)  # never read where asn1crypto refuses
    assert read[0] == "ok", (read, der.hex())
    reference = read[1]
    assert isinstance(reference, verify._Frame)
    assert (frame.content_type, frame.embedded, frame.listed) == (
        reference.content_type, reference.embedded, reference.listed)
    assert frame.certificates() == reference.certificates()
    assert frame.crls() == reference.crls() == ()
    assert _outcome(verify._verify_frame, frame, detached) == old
    return True


def compare(der: bytes, detached: bytes | None) -> tuple[int, int]:
    """Both readings of every SignerInfo of ``der`` and of the whole SignedData; (signers read
    by signer_der, declined)."""
    compare_frame(der, detached)
    try:
        with guard("test"):
            signed = load_content_info(der)["content"]
            econtent = signed["encap_content_info"]["content"]
            embedded = None if isinstance(econtent, core.Void) else bytes(econtent)
            infos = _signer_infos(signed)
        certs = verify._certificates(signed)
    except SmimeError:
        return 0, 0  # refused before any SignerInfo is read: the same code either way
    contents = [detached] if detached is not None else []
    if detached is not None and mime.canonicalize(detached) != detached:
        contents.append(mime.canonicalize(detached))
    if embedded is not None:
        contents.append(embedded)
    contents = contents or [b""]
    taken = declined = 0
    for info, content_type in infos:
        old = _outcome(verify._parse_signer_asn1, info)
        exact = definite_der(info)
        new = verify._parse_signer_der(exact) if exact is not None else None
        if new is None:
            declined += 1
            continue
        taken += 1
        # Never accepted where asn1crypto refuses, and the same values.
        assert old[0] == "ok", (old, exact)
        parsed = old[1]
        assert isinstance(parsed, verify._Parsed)
        for field in FIELDS:
            assert getattr(parsed, field) == getattr(new, field), field
        assert verify._countersigners(info, parsed, certs) == []
        assert new.known is not None and new.unsigned_absent
        # The same verification, with the signer's certificate and with the others.
        assert (_outcome(verify._verify_signer, parsed, certs, contents, content_type)
                == _outcome(verify._verify_signer, new, certs, contents, content_type))
        for cert in certs.loaded[:3]:
            for content in contents[:2]:
                assert (_outcome(verify._check, parsed, cert, content, content_type)
                        == _outcome(verify._check, new, cert, content, content_type))
    return taken, declined


def _signer_infos_span(der: bytes) -> tuple[int, int] | None:
    """Where the signerInfos SET lies in a definite-length SignedData ContentInfo."""
    try:
        with guard("test"):
            signed = load_content_info(der)["content"]
            infos = signed["signer_infos"]
            exact = definite_der(infos)
    except SmimeError:
        return None
    if exact is None:
        return None
    at = der.rfind(exact)
    return (at, at + len(exact)) if at >= 0 else None


# --- the tests --------------------------------------------------------------------------------


def test_corpus_reads_the_same() -> None:
    samples = corpus()
    assert len(samples) >= 60, len(samples)  # the corpora are there
    taken = declined = frames = 0
    for sample in samples:
        t, d = compare(sample.der, sample.detached)
        taken, declined = taken + t, declined + d
        frames += compare_frame(sample.der, sample.detached)  # the second time: cached certs
    # The plain shape is what mail clients write: most signers take the fast way. Whole
    # frames less often: NSS (Thunderbird) writes SignedData with indefinite lengths (BER).
    assert taken >= 40 and taken > declined, (taken, declined)
    assert frames >= 12, frames


def test_made_signatures_read_the_same() -> None:
    declined_by_name = {}
    for sample in made():
        taken, declined = compare(sample.der, sample.detached)
        assert taken + declined >= 1, sample.name
        declined_by_name[sample.name] = declined
        # The second reading finds the certificates: the whole frame goes the fast way
        # unless a signer declines.
        assert compare_frame(sample.der, sample.detached) == (declined == 0), sample.name
    # What signer_der leaves to asn1crypto: RSASSA-PSS parameters, unsignedAttrs.
    assert declined_by_name["rsa-pss"] == 1
    assert declined_by_name["countersigned"] == 1  # the parent; its countersignature is read
    for name in ("rsa", "rsa-opaque", "ec", "ed25519", "ski", "no-attrs", "parallel",
                 "fuzz-signed-detached"):
        assert declined_by_name[name] == 0, name


def test_declines_ber_and_odd_shapes() -> None:
    """Shapes signer_der leaves to asn1crypto, whatever asn1crypto then says of them."""
    sample = made()[0]
    signed = load_content_info(sample.der)["content"]
    info = definite_der(signed["signer_infos"][0])
    assert info is not None and signer_der.read(info) is not None
    assert info[1] == 0x82  # an RSA-2048 SignerInfo: a two-octet length
    # An indefinite length (BER, X.690 8.1.3.6), a long-form length that was not needed, a
    # trailing byte, a high tag number form, a truncation, a version 2, an unsignedAttrs.
    body = info[4:]
    assert signer_der.read(b"\x30\x80" + body + b"\x00\x00") is None
    assert signer_der.read(b"\x30\x83\x00" + info[2:]) is None
    assert signer_der.read(info + b"\x00") is None
    assert signer_der.read(b"\x3f\x10" + info[1:]) is None
    assert signer_der.read(info[:-1]) is None
    version_at = len(info) - len(body)
    assert signer_der.read(info[:version_at + 2] + b"\x02" + info[version_at + 3:]) is None
    with_unsigned = core.Sequence.load(info).contents + b"\xa1\x00"
    assert signer_der.read(_encode([(b"\x30", None, with_unsigned)])) is None


# Tags and length octets that mean something to both readers.
VALUES = (0x00, 0x02, 0x04, 0x06, 0x30, 0x31, 0x80, 0x81, 0xA0, 0xFF)


@pytest.mark.parametrize("name", ["rsa", "ski", "no-attrs", "ec", "fuzz-signed-opaque"])
def test_every_single_byte_mutant_reads_the_same(name: str) -> None:
    sample = next(s for s in made() if s.name == name)
    span = _signer_infos_span(sample.der)
    assert span is not None
    taken = 0
    for pos in range(*span):
        original = sample.der[pos]
        for value in {*VALUES, original ^ 0x01, original ^ 0x80}:
            if value == original:
                continue
            mutant = sample.der[:pos] + bytes((value,)) + sample.der[pos + 1:]
            taken += compare(mutant, sample.detached)[0]
    assert taken > 100, taken  # most mutants of the signature and digest still take the fast way


@functools.cache
def _samples() -> tuple[tuple[Sample, tuple[int, int]], ...]:
    """Every sample whose signerInfos can be found, with where they are."""
    found = ((s, _signer_infos_span(s.der)) for s in (*made(), *corpus()))
    return tuple((s, span) for s, span in found if span is not None)


def _draw(data: st.DataObject) -> tuple[Sample, tuple[int, int]]:
    samples = _samples()
    return samples[data.draw(st.integers(0, len(samples) - 1), label="sample")]


FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(st.data())
def test_tree_mutants_read_the_same(data: st.DataObject) -> None:
    sample, (start, end) = _draw(data)
    mutated = mutate_tree(data, sample.der[start:end])
    # Splice the mutated SET back, re-encoding the lengths around it where the SignedData is
    # plain DER and the mutant one element (else as it is: the outer lengths then disagree).
    der = sample.der[:start] + mutated + sample.der[end:]
    try:
        if _encode(_parse_tree(sample.der)) == sample.der:
            der = _encode(_relength(sample.der, start, end, mutated))
    except ValueError:
        pass
    compare(der, sample.detached)


@FUZZ
@given(st.data())
def test_byte_mutants_read_the_same(data: st.DataObject) -> None:
    sample, span = _draw(data)
    compare(mutate(data, sample.der, *span), sample.detached)


def _relength(der: bytes, start: int, end: int, replacement: bytes) -> list[Any]:
    """The DER tree of ``der`` with the element at [start, end) replaced by ``replacement``
    (kept as opaque contents of its own tag), so that every enclosing length is re-encoded."""
    nodes = _parse_tree(replacement)
    if len(nodes) != 1:
        raise ValueError("not one element")

    def walk(tree: list[Any], pos: int) -> list[Any]:
        out = []
        for identifier, children, contents in tree:
            size = len(_encode([(identifier, children, contents)]))
            if pos == start and pos + size == end:
                out.append(nodes[0])
            elif children is not None and pos < start < pos + size:
                header = size - len(_encode(children))
                out.append((identifier, walk(children, pos + header), contents))
            else:
                out.append((identifier, children, contents))
            pos += size
        return out

    return walk(_parse_tree(der), 0)


@pytest.mark.parametrize("name", ["fuzz-signed-detached", "fuzz-signed-inner"])
def test_every_single_byte_mutant_of_a_whole_signed_data_reads_the_same(name: str) -> None:
    sample = next(s for s in made() if s.name == name)
    compare_frame(sample.der, sample.detached)  # its certificates are known from here on
    taken = sum(compare_frame(mutant, sample.detached) for mutant in _byte_mutants(
        sample.der, lambda original: {0x00, 0x30, 0xA0, 0xFF, original ^ 0x01, original ^ 0x80}))
    assert taken > 100, taken


def _byte_mutants(der: bytes, values: Callable[[int], set[int]]) -> Iterator[bytes]:
    """``der`` with one byte changed, at every position, to each of values(original byte)
    other than the original."""
    for pos, original in enumerate(der):
        for value in values(original) - {original}:
            yield der[:pos] + bytes((value,)) + der[pos + 1:]


@FUZZ
@given(st.data())
def test_whole_signed_data_mutants_read_the_same(data: st.DataObject) -> None:
    sample, _ = _draw(data)
    compare_frame(sample.der, sample.detached)
    if data.draw(st.booleans(), label="tree"):
        mutant = mutate_tree(data, sample.der)
    else:
        mutant = mutate(data, sample.der)
    compare(mutant, sample.detached)


# --- BER frames (NSS): definite_signed_data ----------------------------------------------------


def _ber_samples() -> list[Sample]:
    """The corpus's SignedData whose frame is BER (indefinite lengths: Thunderbird, NSS)."""
    return [s for s in corpus() if s.der[1:2] == b"\x80"]


def compare_definite(der: bytes, detached: bytes | None) -> bool:
    """verify_der of ``der`` (which reads a BER frame as definite_signed_data rewrites it) gives
    what asn1crypto's reading of ``der`` itself gives, answer or error; whether it rewrote."""
    assert _outcome(verify.verify_der, der, detached) == _outcome(_verify_asn1, der, detached)
    return signer_der.definite_signed_data(der) is not None


def test_ber_frames_read_the_same_and_take_the_fast_way() -> None:
    samples = _ber_samples()
    assert len(samples) >= 20, len(samples)  # Thunderbird's messages are there
    fast = 0
    for sample in samples:
        definite = signer_der.definite_signed_data(sample.der)
        assert definite is not None, sample.name
        assert definite != sample.der and definite[1] != 0x80
        # asn1crypto reads the rewritten SignedData exactly as the original.
        assert _outcome(_verify_asn1, definite, sample.detached) == _outcome(
            _verify_asn1, sample.der, sample.detached), sample.name
        assert compare_definite(sample.der, sample.detached)
        # Its certificates known (the line above), the rewritten frame reads the fast way.
        fast += compare_frame(definite, sample.detached)
    assert fast >= len(samples) // 2, (fast, len(samples))


def test_definite_signed_data_leaves_der_as_it_is() -> None:
    for sample in (*made(), *(s for s in corpus() if s.der[1:2] != b"\x80")):
        definite = signer_der.definite_signed_data(sample.der)
        if definite is not None:  # None: not a SignedData frame it can read (fuzz seeds)
            assert definite == sample.der, sample.name


def test_definite_signed_data_declines_what_is_not_a_ber_signed_data() -> None:
    sample = _ber_samples()[0]
    der = sample.der
    for bad in (b"", b"\x30\x80", der[:-2], der[:-1], der + b"\x00",
                b"\x31" + der[1:], der[:2] + b"\x06\x03\x2a\x03\x04" + der[13:]):
        assert signer_der.definite_signed_data(bad) is None
        assert compare_definite(bad, sample.detached) is False


@pytest.mark.parametrize("index", [0, 7])
def test_every_single_byte_mutant_of_a_ber_frame_reads_the_same(index: int) -> None:
    samples = _ber_samples()
    sample = samples[index % len(samples)]
    rewritten = sum(compare_definite(mutant, sample.detached) for mutant in _byte_mutants(
        sample.der, lambda original: {0x00, 0x04, 0x24, 0x30, 0x80, 0xA0, original ^ 0x01}))
    assert rewritten > 100, rewritten


@FUZZ
@given(st.data())
def test_ber_frame_mutants_read_the_same(data: st.DataObject) -> None:
    samples = _ber_samples()
    sample = samples[data.draw(st.integers(0, len(samples) - 1), label="sample")]
    mutant = (mutate_tree(data, sample.der) if data.draw(st.booleans(), label="tree")
              else mutate(data, sample.der))
    compare_definite(mutant, sample.detached)


def _walk(der: bytes, memo: ber.Memo | None) -> list[object]:
    """Every element of ``der`` down to six levels, as ber reads it (or the error it raises)."""
    buf = memoryview(der)
    out: list[object] = []

    def down(tlv: ber.Tlv, level: int) -> None:
        out.append(tlv)
        if tlv.constructed and level < 6:
            for child in ber.children(buf, tlv, "walk", memo):
                down(child, level + 1)

    try:
        down(ber.read(buf, 0, len(buf), "walk", memo=memo), 0)
    except Malformed as exc:
        out.append(str(exc))
    return out


def test_a_memo_changes_nothing_ber_reads() -> None:
    """ber's memo (each indefinite-length element walked once) gives the elements, and the
    errors, that reading without it gives: the BER samples and single-byte mutants of one."""
    samples = _ber_samples()
    for sample in samples:
        assert _walk(sample.der, {}) == _walk(sample.der, None), sample.name
    for mutant in _byte_mutants(samples[0].der, lambda original: {0x00, 0x80, original ^ 0x01}):
        assert _walk(mutant, {}) == _walk(mutant, None), mutant.hex()
