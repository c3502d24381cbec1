"""Classic clients and what `pqc = prefer` writes (issue 14 point 3): Debian 12's gpgsm 2.2
(KMail, Mutt, Kleopatra) and NSS cmsutil (Thunderbird's library), besides OpenSSL 3.0 (checked
in tests/milter/test_gateway_pqc.py). None of them knows ML-DSA or ML-KEM.

What they do is asserted as found, so a change in them shows here:
- the ML-DSA signature as a countersignature (pqc_signature's default): both verify the RSA
  signature as good;
- as a parallel SignerInfo: NSS checks signer 0 (the RSA one, first in DER order) and calls it
  good; gpgsm reports the RSA signature good but fails the message over the other signer;
- an EnvelopedData with an ML-KEM (ori) RecipientInfo beside the RSA one: gpgsm decrypts it
  with the RSA key; NSS refuses the whole message as bad DER. That is why the gateway gives
  classic-only recipients a copy without ML-KEM RecipientInfos (policy.decide, Treatment.kem).
"""

from __future__ import annotations

import pytest

from smimegate.smime import encrypt, sign
from tests.e2e.clients import ClientError, Gpgsm, Nss, Pki, crlf

pytestmark = pytest.mark.e2e

PART = crlf(b"Content-Type: text/plain\r\n\r\nRead by a classic client.\r\n")


def dual(pki: Pki, arrangement: sign.Arrangement) -> bytes:
    pq = pki.ca.issue("alice@a.test", "ml-dsa-65")
    return sign.sign_several_der(PART, [sign.Signer(pki.alice.identity.key, pki.alice.identity.cert),
                                        sign.Signer(pq.key, pq.cert)], arrangement=arrangement)


def test_countersignature_verifies_in_gpgsm_and_nss(pki: Pki, gpgsm: Gpgsm, nss: Nss) -> None:
    der = dual(pki, "countersignature")
    for client in (gpgsm, nss):
        result = client.verify_detached(der, PART)
        assert result.good, result.detail


def test_parallel_signer_infos(pki: Pki, gpgsm: Gpgsm, nss: Nss) -> None:
    der = dual(pki, "parallel")
    result = nss.verify_detached(der, PART)
    assert result.good and "signer1.status=ProcessingError" in result.detail, result.detail
    result = gpgsm.verify_detached(der, PART)
    assert not result.good and "[GNUPG:] GOODSIG" in result.detail, result.detail


def test_an_ml_kem_recipient_info_beside_rsa(pki: Pki, gpgsm: Gpgsm, nss: Nss) -> None:
    kem = pki.ca.issue("bob@b.test", "ml-kem-768")
    der = encrypt.encrypt_der(PART, [pki.bob.identity.cert, kem.cert], cipher="aes256-cbc")
    assert gpgsm.decrypt(der) == PART
    with pytest.raises(ClientError, match="SEC_ERROR_BAD_DER"):
        nss.decrypt(der)
    # The copy a classic-only recipient gets has no ori: NSS reads it.
    classic = encrypt.encrypt_der(PART, [pki.bob.identity.cert], cipher="aes256-cbc")
    assert nss.decrypt(classic) == PART
