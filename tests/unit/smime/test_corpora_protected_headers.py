"""autocrypt/protected-headers S/MIME samples: header protection in the "v1" style (From,
Subject ... in the header block of the protected entity) through unwrap and delivered_message.
"""

from __future__ import annotations

import warnings

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from smimegate.smime import mime
from smimegate.smime.unwrap import delivered_message, unwrap
from tests.conftest import VECTORS

PH = VECTORS / "protected-headers"


@pytest.fixture(scope="module")
def bob():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # this PKCS#12 is DER: no fallback warning expected
        key, cert, _chain = pkcs12.load_key_and_certificates(
            (PH / "bob.der.p12").read_bytes(), b"bob"
        )
    assert key is not None and cert is not None
    return cert, key


# file -> (layer kinds outermost first, the upstream file that holds the innermost content)
SAMPLES = {
    "smime-onepart-signed.eml": (["signed"], "smime-onepart-signed.inner"),
    "smime-multipart-signed.eml": (["signed"], None),
    "smime-sign+enc.eml": (["enveloped", "signed"], "smime-sign+enc.inner.inner"),
    "smime-sign+enc+legacy-disp.eml": (["enveloped", "signed"],
                                       "smime-sign+enc+legacy-disp.inner.inner"),
    "smime-enc+legacy-disp.eml": (["enveloped"], "smime-enc+legacy-disp.inner"),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_unwraps(name, bob):
    kinds, inner = SAMPLES[name]
    result = unwrap((PH / name).read_bytes(), [bob])
    assert result.error is None
    assert [layer.kind for layer in result.layers] == kinds
    for layer in result.layers:
        if layer.kind == "signed":
            (signer,) = layer.signers
            assert signer.valid is True, signer.reason
            assert "Alice Lovelace" in str(signer.certificate.subject.rfc4514_string())
        else:
            assert layer.decrypted is True and layer.cipher == "3DES"
            assert len(layer.recipients) == 2  # Alice and Bob
    if inner is not None:
        # The upstream .inner files are LF; what we unwrap is the CRLF the sender signed.
        assert mime.canonicalize(result.content) == mime.canonicalize((PH / inner).read_bytes())
    protected, _entity = mime.split_message(result.content)
    assert "From" in dict(protected)
    assert b"Alice Lovelace" in dict(protected)["From"]


def test_protected_subject_is_inside_and_outer_subject_kept_on_delivery(bob):
    original = (PH / "smime-sign+enc.eml").read_bytes()
    result = unwrap(original, [bob])
    protected, _entity = mime.split_message(result.content)
    assert dict(protected)["Subject"] == b"BarCorp contract signed, let's go!"
    delivered = delivered_message(original, result)
    outer, entity = mime.split_message(delivered)
    # The outer Subject stays "..." (the caller decides about merging, RFC 8551 3.1) and the
    # protected fields are not duplicated into the delivered entity.
    assert dict(outer)["Subject"] == b"..."
    assert [name for name, _ in outer].count("From") == 1
    assert mime.content_type(mime.parse_entity(entity)) == (
        "text/plain", {"charset": "us-ascii", "protected-headers": "v1"}
    )
    assert b"correct-horse-battery-staple" in entity
