"""Revocation in smimegate.pki.trust.check: CRLs held, soft-fail, stale CRLs, the fetcher."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from smimegate.pki.trust import TrustAnchors, check
from tests.unit.pki import pkibuild as pb
from tests.unit.pki.pkibuild import NOW

DAY = dt.timedelta(days=1)
PKI = dict[str, pb.Issued]
REVOKED_AT = dt.datetime(2026, 1, 2, 9, 30, tzinfo=dt.UTC)
KEY_COMPROMISE = x509.ReasonFlags.key_compromise


@pytest.fixture(scope="module")
def pki() -> PKI:
    root = pb.root()
    inter = pb.ca(root)
    return {
        "root": root,
        "inter": inter,
        # one certificate that names a distribution point, one that does not: a CRL that is
        # held must count for both (pyhanko's own soft-fail mode would skip the second)
        "dp": pb.ee(inter, "dp@example.test", crl_dp="http://crl.example.test/inter.crl"),
        "nodp": pb.ee(inter, "nodp@example.test"),
    }


def anchors(pki: PKI, *crls: x509.CertificateRevocationList) -> TrustAnchors:
    return TrustAnchors(roots=(pki["root"].cert,), intermediates=(pki["inter"].cert,), crls=crls)


@pytest.mark.parametrize("who", ["dp", "nodp"])
def test_revoked_by_a_crl_the_store_holds(pki: PKI, who: str) -> None:
    cert = pki[who].cert
    crl = pb.crl(pki["inter"], [(cert, REVOKED_AT, KEY_COMPROMISE)])
    for purpose in ("sign", "encrypt"):
        result = check(cert, anchors(pki, crl), purpose=purpose, at=NOW)
        assert (result.trusted, result.reason, result.revocation) == (
            False, "revoked (keyCompromise) 2026-01-02", "revoked")
        assert result.path == ()


@pytest.mark.parametrize("who", ["dp", "nodp"])
def test_no_crl_is_soft_fail(pki: PKI, who: str) -> None:
    result = check(pki[who].cert, anchors(pki), purpose="sign", at=NOW)
    assert (result.trusted, result.reason, result.revocation) == (True, None, "unknown")


def test_revocation_without_reason_code_is_unspecified(pki: PKI) -> None:
    cert = pki["nodp"].cert
    crl = pb.crl(pki["inter"], [(cert, REVOKED_AT, None)])
    assert check(cert, anchors(pki, crl), purpose="sign", at=NOW).reason == (
        "revoked (unspecified) 2026-01-02")


def test_crl_listing_someone_else_leaves_the_certificate_trusted(pki: PKI) -> None:
    crl = pb.crl(pki["inter"], [(pki["dp"].cert, REVOKED_AT, KEY_COMPROMISE)])
    result = check(pki["nodp"].cert, anchors(pki, crl), purpose="sign", at=NOW)
    assert result.trusted
    # the intermediate itself has no CRL from the root: the path is not fully covered
    assert result.revocation == "unknown"


def test_current_crls_for_every_link_make_it_good(pki: PKI) -> None:
    inter_crl = pb.crl(pki["inter"])
    root_crl = pb.crl(pki["root"])
    for who in ("dp", "nodp"):
        result = check(pki[who].cert, anchors(pki, inter_crl, root_crl), purpose="encrypt",
                       at=NOW)
        assert (result.trusted, result.revocation) == (True, "good")


def test_revoked_intermediate(pki: PKI) -> None:
    crl = pb.crl(pki["root"], [(pki["inter"].cert, REVOKED_AT, x509.ReasonFlags.ca_compromise)])
    result = check(pki["nodp"].cert, anchors(pki, crl), purpose="sign", at=NOW)
    assert (result.trusted, result.reason, result.revocation) == (
        False, "CA certificate revoked (cACompromise) 2026-01-02", "revoked")


def test_stale_crl_that_lists_the_certificate_still_revokes(pki: PKI) -> None:
    cert = pki["nodp"].cert
    stale = pb.crl(pki["inter"], [(cert, REVOKED_AT, KEY_COMPROMISE)],
                   last_update=NOW - 60 * DAY, next_update=NOW - 30 * DAY)
    result = check(cert, anchors(pki, stale), purpose="sign", at=NOW)
    assert (result.trusted, result.reason) == (False, "revoked (keyCompromise) 2026-01-02")


def test_stale_crl_that_does_not_list_it_is_soft_fail(pki: PKI) -> None:
    # Documented behaviour: a CRL past its nextUpdate says nothing about today, so the status is
    # "unknown" and, as with no CRL at all, the certificate stays trusted.
    stale_inter = pb.crl(pki["inter"], last_update=NOW - 60 * DAY, next_update=NOW - 30 * DAY)
    root_crl = pb.crl(pki["root"])
    result = check(pki["dp"].cert, anchors(pki, stale_inter, root_crl), purpose="sign", at=NOW)
    assert (result.trusted, result.reason, result.revocation) == (True, None, "unknown")


def test_revocation_dated_after_the_time_of_use_does_not_count(pki: PKI) -> None:
    cert = pki["nodp"].cert
    revoked_at = NOW - 5 * DAY
    crl = pb.crl(pki["inter"], [(cert, revoked_at, KEY_COMPROMISE)])
    assert check(cert, anchors(pki, crl), purpose="sign", at=revoked_at - DAY).trusted
    assert not check(cert, anchors(pki, crl), purpose="sign", at=revoked_at + DAY).trusted


def test_crl_not_signed_by_the_issuer_is_ignored(pki: PKI) -> None:
    # Same issuer name, signed by another key: a forgery must neither revoke nor vouch.
    cert = pki["nodp"].cert
    forged = pb.crl(pki["inter"], [(cert, REVOKED_AT, KEY_COMPROMISE)],
                    signer=pb.root().key)
    result = check(cert, anchors(pki, forged, pb.crl(pki["root"])), purpose="sign", at=NOW)
    assert (result.trusted, result.revocation) == (True, "unknown")


def test_crl_of_another_ca_with_the_same_serial_is_ignored(pki: PKI) -> None:
    cert = pki["nodp"].cert
    other = pb.ca(pki["root"], cn="Other Intermediate")
    crl = pb.crl(other, [(cert, REVOKED_AT, KEY_COMPROMISE)])  # lists the serial, wrong issuer
    assert check(cert, anchors(pki, crl), purpose="sign", at=NOW).trusted


# --- the fetcher ------------------------------------------------------------------------------

def test_fetcher_supplies_a_crl_that_revokes(pki: PKI) -> None:
    cert = pki["dp"].cert
    asked: list[x509.Name] = []

    def fetcher(which: x509.Certificate) -> list[x509.CertificateRevocationList]:
        asked.append(which.subject)
        if which == cert:
            return [pb.crl(pki["inter"], [(cert, REVOKED_AT, KEY_COMPROMISE)])]
        return []

    result = check(cert, anchors(pki), purpose="encrypt", at=NOW, fetcher=fetcher)
    assert (result.trusted, result.revocation) == (False, "revoked")
    # asked for the certificate only: its revocation decides, the intermediate's status is
    # not needed (and never for the root, an anchor)
    assert asked == [cert.subject]


def test_fetcher_is_not_asked_when_a_current_crl_is_held(pki: PKI) -> None:
    asked: list[x509.Certificate] = []

    def fetcher(which: x509.Certificate) -> list[x509.CertificateRevocationList]:
        asked.append(which)
        return []

    held = anchors(pki, pb.crl(pki["inter"]), pb.crl(pki["root"]))
    result = check(pki["dp"].cert, held, purpose="sign", at=NOW, fetcher=fetcher)
    assert (result.trusted, result.revocation, asked) == (True, "good", [])


def test_fetcher_failure_is_soft_fail(pki: PKI) -> None:
    def fetcher(which: x509.Certificate) -> list[x509.CertificateRevocationList]:
        raise ConnectionRefusedError("crl.example.test:80")

    result = check(pki["dp"].cert, anchors(pki), purpose="sign", at=NOW, fetcher=fetcher)
    assert (result.trusted, result.revocation) == (True, "unknown")


def test_pyhankos_own_revocation_answer_reads_the_same(pki: PKI,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # With our own decision switched off (as for a CRL it leaves to pyhanko: partitions, deltas,
    # indirect CRLs), pyhanko's RFC 5280 6.3 processing of the issuer's CRLs finds the
    # revocation itself; its answer must read exactly like ours.
    from smimegate.pki import crlindex, revocation

    cert = pki["dp"].cert
    inter_crl = pb.crl(pki["inter"], [(cert, REVOKED_AT, KEY_COMPROMISE)])
    ours = check(cert, anchors(pki, inter_crl, pb.crl(pki["root"])), purpose="sign", at=NOW)
    monkeypatch.setattr(revocation, "_direct", lambda *args: (None, "no CRL"))
    monkeypatch.setattr(crlindex.IndexedCrl, "simple", property(lambda self: False))
    theirs = check(cert, anchors(pki, inter_crl, pb.crl(pki["root"])), purpose="sign", at=NOW)
    assert (theirs.trusted, theirs.reason, theirs.revocation) == (
        ours.trusted, ours.reason, ours.revocation) == (
        False, "revoked (keyCompromise) 2026-01-02", "revoked")
