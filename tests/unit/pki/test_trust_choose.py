"""choose_encryption_certificate (issue 4, item 2) and apply_trust on hand-made layers."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from smimegate.pki.trust import TrustAnchors, apply_trust, choose_encryption_certificate
from smimegate.smime.results import CertId, Layer, RecipientResult, SignerResult
from tests.unit.pki import pkibuild as pb
from tests.unit.pki.pkibuild import NOW, key_usage

DAY = dt.timedelta(days=1)
PKI = dict[str, pb.Issued]


@pytest.fixture(scope="module")
def pki() -> PKI:
    root = pb.root()
    return {"root": root, "inter": pb.ca(root)}


def anchors(pki: PKI, *crls: x509.CertificateRevocationList) -> TrustAnchors:
    return TrustAnchors(roots=(pki["root"].cert,), intermediates=(pki["inter"].cert,), crls=crls)


def test_newest_good_certificate_wins_and_the_others_are_listed(pki: PKI) -> None:
    inter = pki["inter"]
    oldest_good = pb.ee(inter, not_before=NOW - 200 * DAY).cert
    good = pb.ee(inter, not_before=NOW - 100 * DAY).cert
    revoked = pb.ee(inter, not_before=NOW - 50 * DAY).cert
    sign_only = pb.ee(inter, not_before=NOW - 40 * DAY, usage=key_usage("digital_signature")).cert
    expired = pb.ee(inter, not_before=NOW - 400 * DAY, days=100).cert
    future = pb.ee(inter, not_before=NOW + 10 * DAY).cert
    stranger = pb.ee(pb.root("Elsewhere"), not_before=NOW - 5 * DAY).cert
    crl = pb.crl(inter, [(revoked, NOW - 10 * DAY, x509.ReasonFlags.superseded)])

    certs = [expired, oldest_good, stranger, good, future, sign_only, revoked, good]
    chosen, skipped = choose_encryption_certificate(certs, anchors(pki, crl), NOW)

    assert chosen == good
    when = f"{NOW - 10 * DAY:%Y-%m-%d}"
    assert skipped == [
        (future, "not yet valid"),
        (stranger, "no path to a trusted root"),
        (sign_only, "wrong key usage"),
        (revoked, f"revoked (superseded) {when}"),
        (oldest_good, "a newer certificate was chosen"),
        (expired, "a newer certificate was chosen"),
    ]


def test_nothing_usable(pki: PKI) -> None:
    expired = pb.ee(pki["inter"], not_before=NOW - 400 * DAY, days=100).cert
    chosen, skipped = choose_encryption_certificate([expired], anchors(pki), NOW)
    assert chosen is None and skipped == [(expired, "expired")]
    assert choose_encryption_certificate([], anchors(pki), NOW) == (None, [])


def test_same_start_prefers_the_longer_lived(pki: PKI) -> None:
    start = NOW - 10 * DAY
    short = pb.ee(pki["inter"], not_before=start, days=100).cert
    long = pb.ee(pki["inter"], not_before=start, days=300).cert
    chosen, skipped = choose_encryption_certificate([short, long], anchors(pki), NOW)
    assert chosen == long and skipped == [(short, "a newer certificate was chosen")]


# --- apply_trust ------------------------------------------------------------------------------

def signer(cert: x509.Certificate | None, valid: bool = True) -> SignerResult:
    return SignerResult(
        signer_id=CertId("CN=x", 1, None),
        certificate=cert,
        valid=valid,
        reason=None if valid else "message digest mismatch",
        digest_algorithm="sha256",
        signature_algorithm="ecdsa",
    )


def test_apply_trust_judges_each_signer(pki: PKI) -> None:
    inter = pki["inter"]
    good = pb.ee(inter).cert
    encrypt_only = pb.ee(inter, usage=key_usage("key_agreement")).cert
    layer = Layer(kind="signed", signers=(
        signer(good), signer(encrypt_only), signer(good, valid=False), signer(None),
    ))
    judged = apply_trust(layer, TrustAnchors(roots=(pki["root"].cert,)), NOW)
    assert [(s.trusted, s.trust_info) for s in judged.signers] == [
        (False, "no path to a trusted root"),  # the intermediate is neither held nor attached
        (False, "no path to a trusted root"),
        (False, "signature not valid"),
        (False, "signer certificate missing"),
    ]
    # the certificates the message carries complete the path
    with_certs = Layer(kind="signed", signers=layer.signers, certificates=(inter.cert,))
    judged = apply_trust(with_certs, TrustAnchors(roots=(pki["root"].cert,)), NOW)
    assert [(s.trusted, s.trust_info) for s in judged.signers] == [
        (True, None),
        (False, "wrong key usage"),
        (False, "signature not valid"),
        (False, "signer certificate missing"),
    ]
    # everything else about the signers is kept
    assert [s.valid for s in judged.signers] == [True, True, False, True]
    assert judged.certificates == (inter.cert,)


def test_apply_trust_leaves_encrypted_layers_alone(pki: PKI) -> None:
    layer = Layer(kind="enveloped", cipher="AES256", key_size=256, decrypted=True,
                  recipients=(RecipientResult(CertId("CN=x", 5, None), "1.2.840.113549.1.1.1"),))
    assert apply_trust(layer, anchors(pki), NOW) is layer


def test_apply_trust_refuses_a_naive_time(pki: PKI) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        apply_trust(Layer(kind="signed"), anchors(pki), dt.datetime(2026, 1, 1))
