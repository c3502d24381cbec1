"""sign.build_signer_info and sign.assemble write DER directly (issue 5 item 12: per-message
CPU). These tests pin their bytes to what asn1crypto builds from the same values: the
reference functions below are the asn1crypto versions they replaced. RSA PKCS#1 v1.5 and
Ed25519 signatures are deterministic, so whole SignerInfos compare equal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
from asn1crypto import cms as acms
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smimegate.smime import sign as S
from smimegate.smime.ber import der_header
from smimegate.smime.cms import subject_key_identifier, to_asn1
from smimegate.smime.verify import verify_der
from tests.helpers.testpki import Identity, TestCA

WHEN = datetime(2026, 11, 29, 1, 2, 3, tzinfo=UTC)
CONTENT = b"Content-Type: text/plain\r\n\r\nhello\r\n"


def reference_signer_info(info: acms.SignerInfo, cert: x509.Certificate,
                          use_ski: bool) -> bytes:
    """The same SignerInfo, rebuilt field by field with asn1crypto."""
    asn_cert = to_asn1(cert)
    if use_ski:
        sid = acms.SignerIdentifier({"subject_key_identifier": subject_key_identifier(cert)})
    else:
        sid = acms.SignerIdentifier({"issuer_and_serial_number": acms.IssuerAndSerialNumber(
            {"issuer": asn_cert.issuer, "serial_number": asn_cert.serial_number})})
    fields: dict[str, object] = {
        "version": "v3" if use_ski else "v1",
        "sid": sid,
        "digest_algorithm": acms.DigestAlgorithm.load(info["digest_algorithm"].dump()),
    }
    signed_attrs = info["signed_attrs"].dump()
    if signed_attrs:
        # The attributes themselves come from sign.signed_attributes (not rewritten); their
        # bytes are taken as they are, the framing around them is rebuilt.
        fields["signed_attrs"] = acms.CMSAttributes.load(b"\x31" + signed_attrs[1:])
    fields["signature_algorithm"] = acms.SignedDigestAlgorithm.load(
        info["signature_algorithm"].dump())
    fields["signature"] = info["signature"].native
    return bytes(acms.SignerInfo(fields).dump())


def reference_assemble(content: bytes, signer_infos: Sequence[acms.SignerInfo],
                       certificates: Sequence[x509.Certificate], *, detached: bool = True,
                       content_type: str = "data") -> bytes:
    """sign.assemble as it was, with asn1crypto."""
    digests, seen_digests = [], set()
    for info in signer_infos:
        encoded = info["digest_algorithm"].dump()
        if encoded not in seen_digests:
            seen_digests.add(encoded)
            digests.append(info["digest_algorithm"])
    certs, seen_certs = [], set()
    for cert in certificates:
        der = cert.public_bytes(serialization.Encoding.DER)
        if der not in seen_certs:
            seen_certs.add(der)
            certs.append(acms.CertificateChoices({"certificate": to_asn1(cert)}))
    encap: dict[str, object] = {"content_type": content_type}
    if not detached:
        encap["content"] = content
    v3 = content_type != "data" or any(info["version"].native == "v3" for info in signer_infos)
    signed = acms.SignedData({
        "version": "v3" if v3 else "v1",
        "digest_algorithms": digests,
        "encap_content_info": encap,
        "certificates": certs,
        "signer_infos": list(signer_infos),
    })
    return bytes(acms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def rsa_id(ca: TestCA) -> Identity:
    return ca.issue("rsa@example.test", "rsa2048")


@pytest.fixture(scope="module")
def ed_id(ca: TestCA) -> Identity:
    return ca.issue("ed@example.test", "ed25519")


@pytest.mark.parametrize("use_ski", [False, True])
@pytest.mark.parametrize("attrs", [True, False])
@pytest.mark.parametrize("who", ["rsa_id", "ed_id"])
def test_signer_info_bytes_as_asn1crypto_builds_them(
        who: str, attrs: bool, use_ski: bool, request: pytest.FixtureRequest) -> None:
    ident: Identity = request.getfixturevalue(who)
    info = S.build_signer_info(CONTENT, ident.key, ident.cert, signing_time=WHEN,
                               with_signed_attributes=attrs, use_ski=use_ski)
    assert bytes(info.dump()) == reference_signer_info(info, ident.cert, use_ski)
    assert info["version"].native == ("v3" if use_ski else "v1")


def test_signer_info_pss_and_other_digest(rsa_id: Identity) -> None:
    info = S.build_signer_info(CONTENT, rsa_id.key, rsa_id.cert, signing_time=WHEN,
                               digest="sha384", pss=True, content_type="signed_data")
    assert bytes(info.dump()) == reference_signer_info(info, rsa_id.cert, False)
    assert info["digest_algorithm"]["algorithm"].native == "sha384"


@pytest.mark.parametrize("detached", [True, False])
def test_assemble_bytes_as_asn1crypto_builds_them(ca: TestCA, rsa_id: Identity,
                                                  ed_id: Identity, detached: bool) -> None:
    one = S.build_signer_info(CONTENT, rsa_id.key, rsa_id.cert, signing_time=WHEN)
    two = S.build_signer_info(CONTENT, ed_id.key, ed_id.cert, signing_time=WHEN, use_ski=True)
    certs = [rsa_id.cert, ca.cert, ed_id.cert, rsa_id.cert]  # a duplicate, left out
    for infos in ([one], [one, two], [two, one]):
        got = S.assemble(CONTENT, infos, certs, detached=detached)
        assert got == reference_assemble(CONTENT, infos, certs, detached=detached)


def test_assemble_large_content_and_other_types(rsa_id: Identity) -> None:
    big = b"x" * 70000  # multi-byte lengths at every level
    info = S.build_signer_info(big, rsa_id.key, rsa_id.cert, signing_time=WHEN)
    got = S.assemble(big, [info], [rsa_id.cert], detached=False)
    assert got == reference_assemble(big, [info], [rsa_id.cert], detached=False)
    assert S.assemble(b"", [info], []) == reference_assemble(b"", [info], [])
    other = S.build_signer_info(big, rsa_id.key, rsa_id.cert, signing_time=WHEN,
                                content_type="signed_data")
    got = S.assemble(big, [other], [rsa_id.cert], content_type="signed_data")
    assert got == reference_assemble(big, [other], [rsa_id.cert], content_type="signed_data")
    assert b"\x02\x01\x03" in got[:40]  # SignedData version 3 for another eContentType


def test_signed_der_still_verifies(ca: TestCA, rsa_id: Identity) -> None:
    der = S.sign_der(CONTENT, rsa_id.key, rsa_id.cert, (ca.cert,), detached=False)
    content, layer = verify_der(der)
    assert [s.valid for s in layer.signers] == [True]
    assert content == CONTENT



def reference_signed_attributes(digest: bytes, when: datetime,
                                capabilities: Sequence[str] | None) -> bytes:
    """sign.signed_attributes as it was, with asn1crypto building each attribute."""
    when = when.astimezone(UTC).replace(microsecond=0)
    utc = datetime(1950, 1, 1, tzinfo=UTC) <= when < datetime(2050, 1, 1, tzinfo=UTC)
    time_value = acms.Time({"utc_time": when} if utc else {"generalized_time": when})
    encoded = [
        acms.CMSAttribute({"type": "content_type", "values": ["data"]}).dump(),
        acms.CMSAttribute({"type": "signing_time", "values": [time_value]}).dump(),
        acms.CMSAttribute({"type": "message_digest", "values": [digest]}).dump(),
    ]
    caps = S.alg.DEFAULT_CAPABILITIES if capabilities is None else tuple(capabilities)
    if caps:
        encoded.append(S._capabilities_attribute(caps))
    return bytes(acms.CMSAttributes.load(der_header(
        0x31, sum(len(e) for e in encoded)) + b"".join(sorted(encoded))).dump())


@pytest.mark.parametrize("when", [
    WHEN, WHEN.replace(microsecond=999_999),
    datetime(1950, 1, 1, tzinfo=UTC), datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(2050, 1, 1, tzinfo=UTC), datetime(1949, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(2026, 6, 1, 3, 4, 5, tzinfo=timezone(timedelta(hours=-7))),
])
@pytest.mark.parametrize("capabilities", [None, (), ("aes128-cbc",)])
def test_signed_attributes_bytes_as_asn1crypto_builds_them(
        when: datetime, capabilities: Sequence[str] | None) -> None:
    digest = bytes(range(32))
    got = S.signed_attributes(digest, signing_time=when, capabilities=capabilities)
    assert bytes(got.dump()) == reference_signed_attributes(digest, when, capabilities)
    times = [a["values"][0].native for a in got if a["type"].native == "signing_time"]
    assert times == [when.astimezone(UTC).replace(microsecond=0)]


def test_signed_attributes_refuse_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        S.signed_attributes(b"\0" * 32, signing_time=datetime(2026, 1, 1))
