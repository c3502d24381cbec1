"""Trust over certificates nobody on this project made: RFC 9216, RFC 4134, Thunderbird (NSS).

Origins of the files: tests/vectors/README.md.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from smimegate.pki.trust import Purpose, TrustAnchors, address_match, apply_trust, check
from smimegate.smime.results import Layer, result_headers
from smimegate.smime.unwrap import unwrap
from tests.conftest import VECTORS

RFC9216 = VECTORS / "rfc9216"
RFC4134 = VECTORS / "rfc4134"
TB = VECTORS / "thunderbird-smime"
Lamps = dict[str, x509.Certificate]
Keys = tuple[x509.Certificate, Any]
AT = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def pem(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# --- RFC 9216: two example CAs that cross-certify each other ----------------------------------

@pytest.fixture(scope="module")
def lamps() -> dict[str, x509.Certificate]:
    names = ("ca.rsa", "ca.25519", "ca.rsa.cross", "ca.25519.cross", "alice.sign",
             "alice.encrypt", "carlos.sign", "carlos.encrypt")
    return {name: pem(RFC9216 / f"{name}.crt") for name in names}


def test_rfc9216_cross_certificates_are_what_rfc9216_says(lamps: Lamps) -> None:
    # RFC 9216 3.3: the RSA CA's key, certified by the Ed25519 CA (and 6.3 the other way round).
    assert lamps["ca.rsa.cross"].subject == lamps["ca.rsa"].subject
    assert lamps["ca.rsa.cross"].issuer == lamps["ca.25519"].subject
    assert lamps["ca.rsa.cross"].public_key() == lamps["ca.rsa"].public_key()
    assert lamps["ca.25519.cross"].issuer == lamps["ca.rsa"].subject


def test_rfc9216_alice_chains_to_her_own_root(lamps: Lamps) -> None:
    anchors = TrustAnchors(roots=(lamps["ca.rsa"],))
    result = check(lamps["alice.sign"], anchors, purpose="sign", at=AT)
    assert result.trusted and result.path == (lamps["alice.sign"], lamps["ca.rsa"])
    assert check(lamps["alice.encrypt"], anchors, purpose="encrypt", at=AT).trusted


def test_rfc9216_alice_chains_to_the_ed25519_root_through_the_cross_certificate(
    lamps: Lamps,
) -> None:
    # RFC 9216 2.5, figure 2: ca.25519.crt -> ca.rsa.cross.crt -> alice
    anchors = TrustAnchors(roots=(lamps["ca.25519"],), intermediates=(lamps["ca.rsa.cross"],))
    pairs: tuple[tuple[str, Purpose], ...] = (("alice.sign", "sign"), ("alice.encrypt", "encrypt"))
    for name, purpose in pairs:
        result = check(lamps[name], anchors, purpose=purpose, at=AT)
        assert (result.trusted, result.reason) == (True, None)
        assert result.path == (lamps[name], lamps["ca.rsa.cross"], lamps["ca.25519"])


def test_rfc9216_without_the_cross_certificate_there_is_no_path(lamps: Lamps) -> None:
    # RFC 9216 2.5: omitting the cross certificate gives a "transvalid" certificate.
    anchors = TrustAnchors(roots=(lamps["ca.25519"],))
    result = check(lamps["alice.sign"], anchors, purpose="sign", at=AT)
    assert (result.trusted, result.reason) == (False, "no path to a trusted root")


def test_rfc9216_cross_certificate_from_the_message_works_too(lamps: Lamps) -> None:
    anchors = TrustAnchors(roots=(lamps["ca.25519"],))
    result = check(lamps["alice.sign"], anchors, purpose="sign", at=AT,
                   extra_certs=[lamps["ca.rsa.cross"]])
    assert result.trusted


def test_rfc9216_carlos_ed25519_and_x25519_through_the_other_cross_certificate(
    lamps: Lamps,
) -> None:
    anchors = TrustAnchors(roots=(lamps["ca.rsa"],), intermediates=(lamps["ca.25519.cross"],))
    sign = check(lamps["carlos.sign"], anchors, purpose="sign", at=AT)
    assert sign.trusted and sign.path[1] == lamps["ca.25519.cross"]
    assert check(lamps["carlos.encrypt"], anchors, purpose="encrypt", at=AT).trusted


def test_rfc9216_separate_sign_and_encrypt_certificates_are_told_apart(lamps: Lamps) -> None:
    anchors = TrustAnchors(roots=(lamps["ca.rsa"], lamps["ca.25519"]))
    assert check(lamps["alice.sign"], anchors, purpose="encrypt", at=AT).reason == (
        "wrong key usage")
    assert check(lamps["alice.encrypt"], anchors, purpose="sign", at=AT).reason == (
        "wrong key usage")
    assert check(lamps["carlos.sign"], anchors, purpose="encrypt", at=AT).reason == (
        "key type cannot encrypt")
    assert check(lamps["carlos.encrypt"], anchors, purpose="sign", at=AT).reason == (
        "key type cannot sign")


def test_rfc9216_addresses(lamps: Lamps) -> None:
    assert address_match(lamps["alice.sign"], "Alice Lovelace <alice@smime.example>")
    assert not address_match(lamps["alice.sign"], "carlos@smime.example")


# --- RFC 4134: SHA-1 signed certificates ------------------------------------------------------

def test_rfc4134_sha1_chain_is_refused_as_weak() -> None:
    carl = pem(RFC4134 / "CarlRSASelf.pem")
    bob = pem(RFC4134 / "BobRSASignByCarl.pem")
    result = check(bob, TrustAnchors(roots=(carl,)), purpose="encrypt", at=AT)
    assert (result.trusted, result.reason) == (False, "weak signature algorithm in chain")


# --- Thunderbird / NSS: TestCA.pem and the messages Alice signed ------------------------------

@pytest.fixture(scope="module")
def nss_anchors() -> TrustAnchors:
    return TrustAnchors(roots=(pem(TB / "TestCA.pem"),))


@pytest.fixture(scope="module")
def bob() -> tuple[x509.Certificate, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # NSS writes BER; cryptography warns
        p12 = pkcs12.load_pkcs12((TB / "Bob.p12").read_bytes(), b"nss")
    assert p12.cert is not None and p12.key is not None
    return p12.cert.certificate, p12.key


def signed_layers(name: str, keys: tuple[x509.Certificate, Any]) -> tuple[Layer, ...]:
    unwrapped = unwrap((TB / name).read_bytes(), [keys])
    return tuple(layer for layer in unwrapped.layers if layer.kind == "signed")


@pytest.mark.parametrize("name", [
    "alice.dsig.SHA256.multipart.eml",
    "alice.sig.SHA512.opaque.eml",
    "alice.dsig.SHA384.multipart.env.eml",
    "alice.sig.SHA256.opaque.env.eml",
])
def test_thunderbird_alice_is_trusted_under_the_nss_test_ca(
    name: str, nss_anchors: TrustAnchors, bob: Keys,
) -> None:
    (layer,) = signed_layers(name, bob)
    (signer,) = layer.signers
    assert signer.valid
    assert (signer.trusted, signer.trust_info) == (False, "trust not evaluated")
    judged = apply_trust(layer, nss_anchors, AT)
    (signer,) = judged.signers
    assert (signer.trusted, signer.trust_info) == (True, None)
    assert signer.certificate is not None
    # NSS's test certificates are X.509 v3 without any extension: no key usage and no EKU
    # mean no restriction (RFC 5280 4.2.1.3, RFC 8550 4.4.4); the address is in the DN only.
    assert len(signer.certificate.extensions) == 0
    assert address_match(signer.certificate, "alice@example.com")
    headers = dict(result_headers([judged]))
    assert headers["X-Smimegate-Info-Signer-Trusted-0-0"] == "True"
    assert "X-Smimegate-Info-Signer-Trusted-Info-0-0" not in headers


def test_thunderbird_alice_after_2031_is_expired(nss_anchors: TrustAnchors, bob: Keys) -> None:
    (layer,) = signed_layers("alice.dsig.SHA256.multipart.eml", bob)
    later = dt.datetime(2031, 6, 1, tzinfo=dt.UTC)
    (signer,) = apply_trust(layer, nss_anchors, later).signers
    assert (signer.trusted, signer.trust_info) == (False, "expired")


def test_thunderbird_alice_without_the_test_ca_has_no_path(bob: Keys) -> None:
    (layer,) = signed_layers("alice.dsig.SHA256.multipart.eml", bob)
    stranger = pem(RFC9216 / "ca.rsa.crt")
    (signer,) = apply_trust(layer, TrustAnchors(roots=(stranger,)), AT).signers
    assert (signer.trusted, signer.trust_info) == (False, "no path to a trusted root")
    headers = dict(result_headers([apply_trust(layer, TrustAnchors(roots=(stranger,)), AT)]))
    assert headers["X-Smimegate-Info-Signer-Trusted-Info-0-0"] == "no path to a trusted root"


def test_thunderbird_tampered_message_is_not_trusted(nss_anchors: TrustAnchors, bob: Keys) -> None:
    (layer,) = signed_layers("alice.dsig.SHA256.multipart.bad.eml", bob)
    (signer,) = layer.signers
    assert not signer.valid
    judged = apply_trust(layer, nss_anchors, AT)
    (signer,) = judged.signers
    assert (signer.trusted, signer.trust_info) == (False, "signature not valid")
    info = dict(result_headers([judged]))["X-Smimegate-Info-Signer-Trusted-Info-0-0"]
    assert info.startswith("signature not valid; signature: ")


def test_thunderbird_two_signers_each_judged(nss_anchors: TrustAnchors, bob: Keys) -> None:
    # Dave signs outside, Alice inside: two signed layers, both under the NSS test CA.
    layers = signed_layers("alice.plain.sig.SHA256.opaque.dave.sig.SHA256.opaque.eml", bob)
    assert len(layers) == 2
    judged = [apply_trust(layer, nss_anchors, AT) for layer in layers]
    assert [s.trusted for layer in judged for s in layer.signers] == [True, True]
    emails = ["dave@example.com", "alice@example.com"]
    for layer, email in zip(judged, emails, strict=True):
        (signer,) = layer.signers
        assert signer.certificate is not None and address_match(signer.certificate, email)


def test_thunderbird_bob_can_be_encrypted_to(nss_anchors: TrustAnchors, bob: Keys) -> None:
    cert, _key = bob
    result = check(cert, nss_anchors, purpose="encrypt", at=AT)
    assert result.trusted and result.path == (cert, nss_anchors.roots[0])
