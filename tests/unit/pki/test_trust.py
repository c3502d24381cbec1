"""smimegate.pki.trust.check against chains built in the test (issue 4, items 1 and 9)."""

from __future__ import annotations

import asyncio
import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from smimegate.pki.trust import Purpose, TrustAnchors, TrustResult, check
from tests.unit.pki import pkibuild as pb
from tests.unit.pki.pkibuild import NOW, key_usage

DAY = dt.timedelta(days=1)
PKI = dict[str, pb.Issued]


@pytest.fixture(scope="module")
def pki() -> PKI:
    """root -> intermediate -> alice (EC, mailbox profile)."""
    root = pb.root()
    inter = pb.ca(root)
    return {"root": root, "inter": inter, "alice": pb.ee(inter)}


def anchors_for(pki: PKI, *crls: x509.CertificateRevocationList,
                intermediates: bool = True) -> TrustAnchors:
    return TrustAnchors(
        roots=(pki["root"].cert,),
        intermediates=(pki["inter"].cert,) if intermediates else (),
        crls=crls,
    )


def verdict(result: TrustResult) -> tuple[bool, str | None]:
    return result.trusted, result.reason


# --- good paths -------------------------------------------------------------------------------

@pytest.mark.parametrize("purpose", ["sign", "encrypt"])
def test_good_path_is_trusted_with_the_whole_path(pki: PKI, purpose: Purpose) -> None:
    result = check(pki["alice"].cert, anchors_for(pki), purpose=purpose, at=NOW)
    assert verdict(result) == (True, None)
    assert result.path == (pki["alice"].cert, pki["inter"].cert, pki["root"].cert)
    assert result.revocation == "unknown"  # no CRL held: soft-fail


@pytest.mark.parametrize("kind", ["rsa2048", "ec-p384"])
def test_rsa_and_p384_mailbox_certificates_sign_and_encrypt(pki: PKI, kind: str) -> None:
    cert = pb.ee(pki["inter"], key_kind=kind).cert
    for purpose in ("sign", "encrypt"):
        assert verdict(check(cert, anchors_for(pki), purpose=purpose, at=NOW)) == (True, None)


def test_certificate_issued_by_the_root_directly(pki: PKI) -> None:
    cert = pb.ee(pki["root"]).cert
    result = check(cert, anchors_for(pki), purpose="sign", at=NOW)
    assert result.trusted and result.path == (cert, pki["root"].cert)


def test_default_time_is_now() -> None:
    root = pb.root(not_before=dt.datetime.now(dt.UTC) - 10 * DAY)
    cert = pb.ee(root, not_before=dt.datetime.now(dt.UTC) - DAY, days=30).cert
    assert check(cert, TrustAnchors(roots=(root.cert,)), purpose="sign").trusted


def test_works_when_called_from_inside_an_event_loop(pki: PKI) -> None:
    async def caller() -> TrustResult:
        return check(pki["alice"].cert, anchors_for(pki), purpose="sign", at=NOW)

    assert asyncio.run(caller()).trusted


def test_threads_share_one_trust_anchors_value(pki: PKI) -> None:
    # The milter checks from one thread per SMTP connection against one TrustAnchors.
    shared = anchors_for(pki, pb.crl(pki["inter"]), pb.crl(pki["root"]))
    certs = [pki["alice"].cert, pb.ee(pki["inter"], not_before=NOW - 400 * DAY).cert] * 20
    with ThreadPoolExecutor(max_workers=8) as pool:
        reasons = list(pool.map(
            lambda c: check(c, shared, purpose="sign", at=NOW).reason, certs))
    assert reasons == [None, "expired"] * 20


# --- validity ---------------------------------------------------------------------------------

def test_expired(pki: PKI) -> None:
    cert = pb.ee(pki["inter"], not_before=NOW - 400 * DAY, days=365).cert
    assert verdict(check(cert, anchors_for(pki), purpose="sign", at=NOW)) == (False, "expired")


def test_not_yet_valid(pki: PKI) -> None:
    cert = pb.ee(pki["inter"], not_before=NOW + 2 * DAY).cert
    assert verdict(check(cert, anchors_for(pki), purpose="encrypt", at=NOW)) == (
        False, "not yet valid")


def test_the_same_certificate_is_good_inside_its_validity_and_expired_after(pki: PKI) -> None:
    cert = pki["alice"].cert
    assert check(cert, anchors_for(pki), purpose="sign", at=NOW + 300 * DAY).trusted
    assert check(cert, anchors_for(pki), purpose="sign", at=NOW + 400 * DAY).reason == "expired"


def test_expired_intermediate(pki: PKI) -> None:
    old = pb.ca(pki["root"], not_before=NOW - 400 * DAY, days=365)
    cert = pb.ee(old, not_before=NOW - 10 * DAY).cert
    anchors = TrustAnchors(roots=(pki["root"].cert,), intermediates=(old.cert,))
    assert verdict(check(cert, anchors, purpose="sign", at=NOW)) == (
        False, "CA certificate expired")


# --- key usage and EKU ------------------------------------------------------------------------

def test_server_auth_only_eku_is_refused(pki: PKI) -> None:
    cert = pb.ee(pki["inter"], eku=[ExtendedKeyUsageOID.SERVER_AUTH]).cert
    for purpose in ("sign", "encrypt"):
        assert verdict(check(cert, anchors_for(pki), purpose=purpose, at=NOW)) == (
            False, "no emailProtection EKU")


@pytest.mark.parametrize("eku", [
    None,  # RFC 8550 4.4.4: no EKU at all is fine
    [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE],
    [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION],
])
def test_acceptable_ekus(pki: PKI, eku: list[x509.ObjectIdentifier] | None) -> None:
    cert = pb.ee(pki["inter"], eku=eku).cert
    assert check(cert, anchors_for(pki), purpose="sign", at=NOW).trusted


def test_signing_only_certificate_cannot_encrypt(pki: PKI) -> None:
    for kind in ("rsa2048", "ec-p256"):
        cert = pb.ee(pki["inter"], key_kind=kind, usage=key_usage("digital_signature")).cert
        assert check(cert, anchors_for(pki), purpose="sign", at=NOW).trusted
        assert verdict(check(cert, anchors_for(pki), purpose="encrypt", at=NOW)) == (
            False, "wrong key usage")


def test_encryption_only_certificate_cannot_sign(pki: PKI) -> None:
    rsa_cert = pb.ee(pki["inter"], key_kind="rsa2048", usage=key_usage("key_encipherment")).cert
    ec_cert = pb.ee(pki["inter"], usage=key_usage("key_agreement")).cert
    for cert in (rsa_cert, ec_cert):
        assert check(cert, anchors_for(pki), purpose="encrypt", at=NOW).trusted
        assert verdict(check(cert, anchors_for(pki), purpose="sign", at=NOW)) == (
            False, "wrong key usage")


def test_non_repudiation_alone_allows_signing(pki: PKI) -> None:
    cert = pb.ee(pki["inter"], usage=key_usage("content_commitment")).cert
    assert check(cert, anchors_for(pki), purpose="sign", at=NOW).trusted


def test_key_usage_must_fit_the_key_type_for_encryption(pki: PKI) -> None:
    # keyEncipherment means RSA key transport; an EC key encrypts by key agreement (RFC 5480 3).
    ec_wrong = pb.ee(pki["inter"], usage=key_usage("digital_signature", "key_encipherment")).cert
    rsa_wrong = pb.ee(pki["inter"], key_kind="rsa2048",
                      usage=key_usage("digital_signature", "key_agreement")).cert
    for cert in (ec_wrong, rsa_wrong):
        assert verdict(check(cert, anchors_for(pki), purpose="encrypt", at=NOW)) == (
            False, "wrong key usage")


def test_no_key_usage_extension_allows_both(pki: PKI) -> None:
    cert = pb.ee(pki["inter"], key_kind="rsa2048", usage=None).cert
    for purpose in ("sign", "encrypt"):
        assert check(cert, anchors_for(pki), purpose=purpose, at=NOW).trusted


def test_key_types_that_cannot_do_the_job(pki: PKI) -> None:
    ed = pb.ee(pki["inter"], key_kind="ed25519").cert
    xdh = pb.ee(pki["inter"], key_kind="x25519").cert
    assert check(ed, anchors_for(pki), purpose="sign", at=NOW).trusted
    assert check(xdh, anchors_for(pki), purpose="encrypt", at=NOW).trusted
    assert verdict(check(ed, anchors_for(pki), purpose="encrypt", at=NOW)) == (
        False, "key type cannot encrypt")
    assert verdict(check(xdh, anchors_for(pki), purpose="sign", at=NOW)) == (
        False, "key type cannot sign")


def test_unknown_critical_extension_is_refused(pki: PKI) -> None:
    odd = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    cert = pb.ee(pki["inter"], extra=[(odd, True)]).cert
    assert verdict(check(cert, anchors_for(pki), purpose="sign", at=NOW)) == (
        False, "unsupported critical extension 1.3.6.1.4.1.99999.1")
    harmless = pb.ee(pki["inter"], extra=[(odd, False)]).cert
    assert check(harmless, anchors_for(pki), purpose="sign", at=NOW).trusted


# --- paths ------------------------------------------------------------------------------------

def test_missing_intermediate(pki: PKI) -> None:
    result = check(pki["alice"].cert, anchors_for(pki, intermediates=False), purpose="sign",
                   at=NOW)
    assert verdict(result) == (False, "no path to a trusted root")
    assert result.path == ()


def test_intermediate_from_the_message_completes_the_path(pki: PKI) -> None:
    result = check(pki["alice"].cert, anchors_for(pki, intermediates=False), purpose="sign",
                   at=NOW, extra_certs=[pki["inter"].cert])
    assert result.trusted and result.path[1] == pki["inter"].cert


def test_intermediate_with_a_bad_signature(pki: PKI) -> None:
    broken = pb.corrupt_signature(pki["inter"].cert)
    assert broken.subject == pki["inter"].cert.subject
    anchors = TrustAnchors(roots=(pki["root"].cert,), intermediates=(broken,))
    assert verdict(check(pki["alice"].cert, anchors, purpose="sign", at=NOW)) == (
        False, "bad signature in chain")


def test_end_entity_with_a_bad_signature(pki: PKI) -> None:
    broken = pb.corrupt_signature(pki["alice"].cert)
    assert verdict(check(broken, anchors_for(pki), purpose="sign", at=NOW)) == (
        False, "bad signature in chain")


def test_untrusted_root(pki: PKI) -> None:
    stranger = pb.root("Some Other Root")
    anchors = TrustAnchors(roots=(stranger.cert,), intermediates=(pki["inter"].cert,))
    assert verdict(check(pki["alice"].cert, anchors, purpose="sign", at=NOW)) == (
        False, "no path to a trusted root")


def test_same_name_different_key_is_not_the_root(pki: PKI) -> None:
    impostor = pb.root("Trust Test Root")  # same subject as pki["root"], other key
    anchors = TrustAnchors(roots=(impostor.cert,), intermediates=(pki["inter"].cert,))
    assert not check(pki["alice"].cert, anchors, purpose="sign", at=NOW).trusted


def test_no_roots_at_all(pki: PKI) -> None:
    result = check(pki["alice"].cert, TrustAnchors(intermediates=(pki["inter"].cert,)),
                   purpose="sign", at=NOW)
    assert verdict(result) == (False, "no path to a trusted root")


def test_self_signed_end_entity(pki: PKI) -> None:
    lonely = pb.root("lonely@example.test")
    assert verdict(check(lonely.cert, anchors_for(pki), purpose="sign", at=NOW)) == (
        False, "self-signed, not a trusted root")


def test_intermediate_that_is_not_a_ca(pki: PKI) -> None:
    not_ca = pb.ee(pki["root"], email="ca@example.test", usage=None, eku=None)
    cert = pb.ee(not_ca).cert
    anchors = TrustAnchors(roots=(pki["root"].cert,), intermediates=(not_ca.cert,))
    result = check(cert, anchors, purpose="sign", at=NOW)
    assert not result.trusted
    assert result.reason is not None and result.reason.startswith("invalid certificate chain")


# --- arguments --------------------------------------------------------------------------------

def test_naive_time_and_unknown_purpose_are_refused(pki: PKI) -> None:
    with pytest.raises(ValueError, match="at must be timezone-aware"):
        check(pki["alice"].cert, anchors_for(pki), purpose="sign", at=dt.datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="purpose"):
        check(pki["alice"].cert, anchors_for(pki), purpose="verify", at=NOW)  # type: ignore[arg-type]


def test_trust_anchors_validate_and_freeze_their_fields(pki: PKI) -> None:
    anchors = TrustAnchors(roots=[pki["root"].cert])  # type: ignore[arg-type]
    assert anchors.roots == (pki["root"].cert,)
    with pytest.raises(TypeError, match="TrustAnchors.crls holds a Certificate"):
        TrustAnchors(crls=(pki["root"].cert,))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TrustAnchors.roots must be"):
        TrustAnchors(roots=pki["root"].cert)  # type: ignore[arg-type]
