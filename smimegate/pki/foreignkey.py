"""Certificates for a public key that cryptography's CertificateBuilder cannot take (ML-KEM-512).

cryptography 50 has no ML-KEM-512 key class, so ``CertificateBuilder.public_key`` refuses one.
Everything else in such a certificate is what the builder writes for any other key (names,
validity, the extensions of smimegate.pki.issue). So the builder signs a template with a
stand-in key, and the TBSCertificate (RFC 5280 4.1) is assembled again with asn1crypto: every
field of the template as it is, with subjectPublicKeyInfo replaced by the real key's, then
signed once with the CA key, as smimegate.pki.crlder does for large CRLs. The SKI is not the
stand-in's: the caller puts the real key's into the builder.

cryptography reads the result back (x509.load_der_x509_certificate takes any key type; only
``public_key()`` needs smimegate.smime.mlkem512.certificate_public_key).
"""

from __future__ import annotations

from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.pki.signing import PrivateKey, SignatureParams, sign_bytes
from smimegate.smime.ber import der_header

# TBSCertificate (RFC 5280 4.1) in order; absent OPTIONAL fields dump as b"".
_TBS_FIELDS = ("version", "serial_number", "signature", "issuer", "validity", "subject",
               "subject_public_key_info", "issuer_unique_id", "subject_unique_id", "extensions")


def _tlv(tag: int, contents: bytes) -> bytes:
    return der_header(tag, len(contents)) + contents


def sign_for_spki(builder: x509.CertificateBuilder, spki_der: bytes, issuer_key: PrivateKey,
                  sig: SignatureParams) -> x509.Certificate:
    """The certificate builder describes (without a public key set) for the key whose
    SubjectPublicKeyInfo DER is spki_der, signed by issuer_key as sig says."""
    # Ed25519: a stand-in that costs nothing to make; it never leaves this function.
    stand_in = ed25519.Ed25519PrivateKey.generate().public_key()
    template = builder.public_key(stand_in).sign(issuer_key, sig.hash,
                                                 rsa_padding=sig.rsa_padding)
    tbs = ax509.TbsCertificate.load(template.tbs_certificate_bytes)
    parts = [spki_der if name == "subject_public_key_info" else tbs[name].dump()
             for name in _TBS_FIELDS]
    tbs_der = _tlv(0x30, b"".join(parts))
    outer = ax509.Certificate.load(template.public_bytes(Encoding.DER))
    signature = _tlv(0x03, b"\x00" + sign_bytes(issuer_key, tbs_der, sig))  # no unused bits
    return x509.load_der_x509_certificate(
        _tlv(0x30, tbs_der + outer["signature_algorithm"].dump() + signature))
