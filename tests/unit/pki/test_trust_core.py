"""The trust core of issue 10: CRLs parsed once (smimegate.pki.crlindex), revocation_mode,
the OCSP hook, CRLs of unknown issuers, signatures checked by us (pyhanko 0.33 work-around),
and a check that only touches the CRLs of the path's own issuers."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from smimegate.pki.crlindex import SignatureMemo, parse_crl, serial_key
from smimegate.pki.trust import TrustAnchors, check
from tests.unit.pki import pkibuild as pb
from tests.unit.pki.pkibuild import NOW

PKI = dict[str, pb.Issued]
REVOKED_AT = dt.datetime(2026, 1, 2, 9, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def pki() -> PKI:
    root = pb.root()
    inter = pb.ca(root)
    return {
        "root": root,
        "inter": inter,
        "dp": pb.ee(inter, "dp@example.test", crl_dp="http://crl.example.test/inter.crl"),
        "nodp": pb.ee(inter, "nodp@example.test"),
    }


def anchors(pki: PKI, *crls: Any, **kw: Any) -> TrustAnchors:
    return TrustAnchors(roots=(pki["root"].cert,), intermediates=(pki["inter"].cert,),
                        crls=crls, **kw)


# --- parsing once -----------------------------------------------------------------------------

def _crl_with_serials(issuer: pb.Issued, serials: list[int],
                      entry_ext: x509.ExtensionType | None = None,
                      critical: bool = False) -> x509.CertificateRevocationList:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.name)
               .last_update(NOW - dt.timedelta(days=1)).next_update(NOW + dt.timedelta(days=1)))
    for serial in serials:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(REVOKED_AT)
        if entry_ext is not None:
            entry = entry.add_extension(entry_ext, critical=critical)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(issuer.key, hashes.SHA256())


def test_parse_keeps_every_serial_and_finds_date_and_reason(pki: PKI) -> None:
    # Short, long (20 octets, PKITS 4.4.16) and high-bit serials (a leading 00 octet in DER).
    serials = [1, 127, 128, 255, 256, 2 ** 159 - 1, 0x80 << 64, *range(1000, 1300)]
    crl = _crl_with_serials(pki["inter"], serials,
                            x509.CRLReason(x509.ReasonFlags.key_compromise))
    parsed = parse_crl(crl)
    assert parsed.entries == len(serials) and len(parsed.serials) == len(serials)
    for serial in serials:
        assert parsed.lists(serial, parsed.issuer_key)
        listing = parsed.listing(serial)
        assert (listing.revoked_at, listing.reason) == (REVOKED_AT, "keyCompromise")
    for absent in (2, 129, 999, 1300, 2 ** 159):
        assert not parsed.lists(absent, parsed.issuer_key)
    assert parsed.unusable is None and parsed.simple
    assert serial_key(-1) == b"\xff" and serial_key(-128) == b"\x80" and serial_key(128) == b"\x00\x80"


def test_unknown_critical_entry_extension_makes_the_crl_unusable(pki: PKI) -> None:
    # RFC 5280 5.3 (PKITS 4.4.8): a CRL with a critical entry extension we cannot process is
    # not used at all; a known critical one (reasonCode) is fine.
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    bad = parse_crl(_crl_with_serials(pki["inter"], [5, 6], unknown, critical=True))
    assert bad.unusable is not None and "1.3.6.1.4.1.99999.1" in bad.unusable
    known = parse_crl(_crl_with_serials(
        pki["inter"], [5, 6], x509.CRLReason(x509.ReasonFlags.superseded), critical=True))
    assert known.unusable is None
    cert = pki["nodp"].cert
    result = check(cert, anchors(pki, bad.crypto(), revocation_mode="require"), purpose="sign",
                   at=NOW)
    assert not result.trusted and "not usable" in (result.reason or "")


# --- revocation_mode --------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "who", "trusted"), [
    ("soft-fail", "dp", True), ("soft-fail", "nodp", True),
    ("hard-fail", "dp", False),  # names a distribution point that gave nothing
    ("hard-fail", "nodp", True),  # names none: nothing is unavailable
    ("require", "dp", False), ("require", "nodp", False),
])
def test_revocation_mode_without_any_crl(pki: PKI, mode: str, who: str, trusted: bool) -> None:
    result = check(pki[who].cert, anchors(pki, revocation_mode=mode), purpose="sign", at=NOW)
    assert (result.trusted, result.revocation) == (trusted, "unknown")
    if not trusted:
        assert result.reason == "revocation status unknown: no CRL"


def test_require_needs_a_current_crl_for_every_link(pki: PKI) -> None:
    cert = pki["nodp"].cert
    leaf_only = anchors(pki, pb.crl(pki["inter"]), revocation_mode="require")
    result = check(cert, leaf_only, purpose="sign", at=NOW)
    assert not result.trusted and result.reason == "CA revocation status unknown: no CRL"
    both = anchors(pki, pb.crl(pki["inter"]), pb.crl(pki["root"]), revocation_mode="require")
    result = check(cert, both, purpose="sign", at=NOW)
    assert (result.trusted, result.revocation) == (True, "good")
    stale = anchors(pki, pb.crl(pki["inter"], next_update=NOW - dt.timedelta(hours=1)),
                    pb.crl(pki["root"]), revocation_mode="require")
    result = check(cert, stale, purpose="sign", at=NOW)
    assert not result.trusted and result.reason == (
        "revocation status unknown: CRL past its next update")


def test_unknown_mode_is_refused(pki: PKI) -> None:
    with pytest.raises(ValueError, match="revocation_mode"):
        anchors(pki, revocation_mode="strict")


# --- the OCSP hook ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Answer:
    status: str
    reason: str = "responder said so"
    named: bool = True
    revoked_at: dt.datetime | None = None
    revocation_reason: str | None = None


def test_ocsp_is_asked_only_where_no_current_crl_answers(pki: PKI) -> None:
    asked: list[x509.Name] = []

    def lookup(cert: x509.Certificate, issuer: x509.Certificate) -> Answer:
        asked.append(cert.subject)
        return Answer("good")

    cert = pki["dp"].cert
    result = check(cert, anchors(pki, pb.crl(pki["root"]), ocsp=lookup,
                                 revocation_mode="require"), purpose="sign", at=NOW)
    assert (result.trusted, result.revocation) == (True, "good")
    assert asked == [cert.subject]  # the intermediate has a current CRL of the root

    def revoked(cert: x509.Certificate, issuer: x509.Certificate) -> Answer:
        return Answer("revoked", revoked_at=REVOKED_AT, revocation_reason="keyCompromise")

    result = check(cert, anchors(pki, ocsp=revoked), purpose="sign", at=NOW)
    assert (result.trusted, result.reason, result.revocation) == (
        False, "revoked (keyCompromise) 2026-01-02", "revoked")

    def down(cert: x509.Certificate, issuer: x509.Certificate) -> Answer:
        return Answer("unavailable", reason="connection refused")

    result = check(cert, anchors(pki, pb.crl(pki["root"]), ocsp=down,
                                 revocation_mode="hard-fail"), purpose="sign", at=NOW)
    assert not result.trusted
    assert result.reason == "revocation status unknown: no CRL; OCSP: connection refused"


# --- CRLs we check ourselves ------------------------------------------------------------------

def test_a_crl_listing_the_certificate_but_signed_by_another_key_never_counts(pki: PKI) -> None:
    # pyhanko 0.33 can accept a CRL whose signature it never checked (PKITS 4.4.4): ours is
    # checked against the path's issuer; an impostor's CRL (same name, other key) is ignored,
    # and under require it leaves the status unknown instead of making it good.
    cert = pki["nodp"].cert
    impostor = pb.crl(pki["inter"], [(cert, REVOKED_AT, None)], signer=ec.generate_private_key(
        ec.SECP256R1()))
    result = check(cert, anchors(pki, impostor, pb.crl(pki["root"])), purpose="sign", at=NOW)
    assert (result.trusted, result.revocation) == (True, "unknown")
    forged_good = pb.crl(pki["inter"], signer=ec.generate_private_key(ec.SECP256R1()))
    result = check(cert, anchors(pki, forged_good, pb.crl(pki["root"]),
                                 revocation_mode="require"), purpose="sign", at=NOW)
    assert not result.trusted and result.revocation == "unknown"


def test_a_crl_of_an_issuer_unknown_at_import_is_used_once_the_path_needs_it(pki: PKI) -> None:
    # The intermediate is not among the anchors (its CRL came first); a message brings it.
    cert = pki["nodp"].cert
    crl = pb.crl(pki["inter"], [(cert, REVOKED_AT, None)])
    only_root = TrustAnchors(roots=(pki["root"].cert,), crls=(crl,))
    assert check(cert, only_root, purpose="sign", at=NOW).reason == "no path to a trusted root"
    result = check(cert, only_root, purpose="sign", at=NOW, extra_certs=[pki["inter"].cert])
    assert (result.trusted, result.revocation) == (False, "revoked")


def test_a_check_touches_only_the_crls_of_its_own_issuers(pki: PKI) -> None:
    # Issue 10 item 2: 200 CRLs of other CAs in the store; a check verifies no signature of
    # theirs, and a second check verifies no signature at all (SignatureMemo).
    others = [pb.ca(pki["root"], cn=f"Other CA {i}") for i in range(5)]
    crls = [pb.crl(o, next_update=NOW + dt.timedelta(days=d))
            for o in others for d in range(1, 41)]

    class Counting(SignatureMemo):
        def __init__(self) -> None:
            super().__init__()
            self.verified: list[str] = []

        def put(self, key: tuple[str, str], value: bool) -> None:
            self.verified.append(key[0])
            super().put(key, value)

    memo = Counting()
    held = anchors(pki, pb.crl(pki["inter"]), pb.crl(pki["root"]), *crls, memo=memo)
    other_fps = {c.fingerprint for c in held.crls[2:]}
    assert len(other_fps) == 200
    result = check(pki["nodp"].cert, held, purpose="sign", at=NOW)
    assert (result.trusted, result.revocation) == (True, "good")
    assert memo.verified and not other_fps & set(memo.verified)
    memo.verified.clear()
    assert check(pki["nodp"].cert, held, purpose="sign", at=NOW).revocation == "good"
    assert memo.verified == []


def _partition(issuer: pb.Issued, url: str, revoked: Sequence[x509.Certificate] = ()
               ) -> x509.CertificateRevocationList:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.name)
               .last_update(NOW - dt.timedelta(days=1)).next_update(NOW + dt.timedelta(days=1))
               .add_extension(x509.CRLNumber(3), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer.key.public_key()), critical=False)
               .add_extension(x509.IssuingDistributionPoint(
                   full_name=[x509.UniformResourceIdentifier(url)], relative_name=None,
                   only_contains_user_certs=False, only_contains_ca_certs=False,
                   only_some_reasons=None, indirect_crl=False,
                   only_contains_attribute_certs=False), critical=True))
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
            .revocation_date(REVOKED_AT).build())
    return builder.sign(issuer.key, hashes.SHA256())


def test_a_partitioned_crl_goes_to_rfc5280_scope_processing(pki: PKI) -> None:
    # RFC 5280 5.2.5: a CRL whose issuingDistributionPoint names a partition covers only the
    # certificates that name that point; our index leaves that decision to pyhanko's 6.3.3.
    cert = pki["dp"].cert  # names http://crl.example.test/inter.crl
    root_crl = pb.crl(pki["root"])
    mine = _partition(pki["inter"], "http://crl.example.test/inter.crl")
    other = _partition(pki["inter"], "http://crl.example.test/other.crl")
    held = anchors(pki, other, root_crl, revocation_mode="require")
    result = check(cert, held, purpose="sign", at=NOW)
    assert not result.trusted and result.revocation == "unknown"  # the wrong partition only
    result = check(cert, anchors(pki, mine, other, root_crl, revocation_mode="require"),
                   purpose="sign", at=NOW)
    assert (result.trusted, result.revocation) == (True, "good")
    listed = _partition(pki["inter"], "http://crl.example.test/inter.crl", [cert])
    result = check(cert, anchors(pki, listed, root_crl), purpose="sign", at=NOW)
    assert (result.trusted, result.revocation) == (False, "revoked")
