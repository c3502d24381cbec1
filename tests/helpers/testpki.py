"""A throwaway PKI for tests: a root CA and end-entity certificates of every key type we support.

Made with cryptography's builders, so tests of our own CMS code do not depend on our own CA.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import (
    ec,
    ed25519,
    mldsa,
    mlkem,
    padding,
    rsa,
    x25519,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC)


class _Spki(core.Sequence):  # type: ignore[misc]
    # RFC 5280 4.1; asn1crypto's own refuses key OIDs it does not know (ML-KEM among them).
    _fields = [("algorithm", core.Any), ("public_key", core.OctetBitString)]


@dataclass(frozen=True)
class Identity:
    email: str
    key: Any
    cert: x509.Certificate

    def key_pem(self) -> bytes:
        pem: bytes = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return pem

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, folder: Path, stem: str) -> tuple[Path, Path]:
        """Write STEM.key and STEM.crt (PEM) into folder; return their paths."""
        key_path, crt_path = folder / f"{stem}.key", folder / f"{stem}.crt"
        key_path.write_bytes(self.key_pem())
        crt_path.write_bytes(self.cert_pem())
        return key_path, crt_path


def new_key(kind: str) -> Any:
    """rsa2048 | rsa3072 | ec-p256 | ec-p384 | ed25519 | x25519 | ml-dsa-44 | ml-dsa-65 |
    ml-dsa-87 | ml-kem-512 | ml-kem-768 | ml-kem-1024."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    if kind == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "x25519":
        return x25519.X25519PrivateKey.generate()
    ml_dsa = {"ml-dsa-44": mldsa.MLDSA44PrivateKey, "ml-dsa-65": mldsa.MLDSA65PrivateKey,
              "ml-dsa-87": mldsa.MLDSA87PrivateKey}.get(kind)
    if ml_dsa is not None:
        return ml_dsa.generate()
    if kind == "ml-kem-512":  # cryptography has none: smimegate's kyber-py backed class
        from smimegate.smime.mlkem512 import MLKEM512PrivateKey

        return MLKEM512PrivateKey.generate()
    if kind == "ml-kem-768":
        return mlkem.MLKEM768PrivateKey.generate()
    if kind == "ml-kem-1024":
        return mlkem.MLKEM1024PrivateKey.generate()
    raise ValueError(kind)


def _sign_hash(key: Any) -> hashes.SHA256 | None:
    # Ed25519 and ML-DSA sign the TBS bytes themselves (RFC 8410 6, RFC 9881 3): no hash.
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return hashes.SHA256()
    return None


class TestCA:
    """A root CA (RSA 2048 by default) that issues S/MIME end-entity certificates."""

    __test__ = False  # not a pytest class

    def __init__(self, cn: str = "smimegate Test Root", key_kind: str = "rsa2048") -> None:
        self.key = new_key(key_kind)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smimegate tests")])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self.key, _sign_hash(self.key))
        )

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def crl_der(self, *revoked: int, number: int | None = None) -> bytes:
        """A CRL of this CA valid for a week from now, listing the ``revoked`` serials."""
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
                   .last_update(now).next_update(now + dt.timedelta(days=7)))
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now)
                .build())
        if number is not None:
            builder = builder.add_extension(x509.CRLNumber(number), critical=False)
        return builder.sign(self.key, _sign_hash(self.key)).public_bytes(
            serialization.Encoding.DER)

    def issue(
        self,
        email: str,
        key_kind: str = "rsa2048",
        *,
        days: int = 365,
        not_before: dt.datetime | None = None,
        eku: bool = True,
        key_usage: x509.KeyUsage | None = None,
        with_ski: bool = True,
        key: Any = None,
    ) -> Identity:
        """A certificate for a fresh key of key_kind, or for key (of that kind) when given."""
        if key is None:
            key = new_key(key_kind)
        public = key.public_key()
        if key_usage is None:
            agreement = key_kind.startswith("ec") or key_kind == "x25519"
            key_usage = x509.KeyUsage(
                digital_signature=key_kind != "x25519" and not key_kind.startswith("ml-kem"),
                content_commitment=False,
                # RFC 9936 4: an ML-KEM certificate asserts keyEncipherment only.
                key_encipherment=key_kind.startswith(("rsa", "ml-kem")),
                data_encipherment=False,
                key_agreement=agreement,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            )
        start = not_before or (NOW - dt.timedelta(hours=1))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, email),
                                     x509.NameAttribute(NameOID.EMAIL_ADDRESS, email)]))
            .issuer_name(self.cert.subject)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage, critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        spki = public.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        if with_ski:  # RFC 5280 4.2.1.2 method 1, written out for ML-KEM-512's sake
            raw = _Spki.load(spki)["public_key"].native
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier(hashlib.sha1(raw).digest()), critical=False)
        if eku:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            )
        if key_kind == "ml-kem-512":
            # cryptography's builder takes no ML-KEM-512 key: the one place the test PKI uses
            # smimegate's own code (the TBS with the real SubjectPublicKeyInfo put in).
            from smimegate.pki.foreignkey import sign_for_spki
            from smimegate.pki.signing import SignatureParams

            hash_ = _sign_hash(self.key)
            params = SignatureParams("test", hash_, padding.PKCS1v15()
                                     if isinstance(self.key, rsa.RSAPrivateKey) else None)
            cert = sign_for_spki(builder, spki, self.key, params)
        else:
            cert = builder.public_key(public).sign(self.key, _sign_hash(self.key))
        return Identity(email=email, key=key, cert=cert)
