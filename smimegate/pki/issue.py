"""End-entity S/MIME certificates, shaped like the CA/Browser Forum S/MIME BR "strict" profiles.

Pure: issuer certificate and key in, certificate out; the CLI stores it with its key in escrow.

What every certificate gets (S/MIME BR 7.1.2.3, RFC 8550 4.4):
- subjectAltName with the rfc822Name (BR 7.1.2.3 h), not critical as the subject is not empty;
- extKeyUsage emailProtection only (strict profiles, BR 7.1.2.3 f);
- keyUsage, critical (BR 7.1.2.3 e, dual use): digitalSignature + keyEncipherment for RSA,
  digitalSignature + keyAgreement for EC (RFC 8550 4.4.2: ECDH is key agreement);
  digitalSignature alone for ML-DSA, a signing-only certificate (RFC 9881 5: an ML-DSA end
  entity may assert digitalSignature and nonRepudiation, never an encipherment bit; BR 7.1.2.3 e
  signing-only profile); keyEncipherment alone for ML-KEM, an encryption-only certificate
  (RFC 9936 4: "MUST only contain keyEncipherment"; BR 7.1.2.3 e encryption-only profile);
- basicConstraints cA FALSE (critical), SKI (RFC 5280 4.2.1.2 method 1), AKI (the issuer's key
  identifier);
- a random serial (64 bits or more of CSPRNG output: BR 7.1, here 158);
- certificatePolicies with the BR reserved OID of the profile (BR 7.1.6.1);
- cRLDistributionPoints with the given URLs (BR 7.1.2.3 b).

The profile follows from the subject attributes asked for (BR 7.1.4.2.2 table): a subject with
only the address (CN = the address, emailAddress) is mailbox-validated; a personal name
(givenName, surname or a CN that is not the address) makes it individual-validated; an
organization alone organization-validated; an organization and a personal name
sponsor-validated. Each then carries that profile's strict OID, so the certificate never claims a
profile its subject breaks. (The BR validation duties behind those profiles are the operator's.)
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smimegate.pki import foreignkey
from smimegate.pki.ca import BACKDATE, DEFAULT_DAYS, aki_for, random_serial
from smimegate.pki.signing import (
    EndEntityPublicKey,
    PrivateKey,
    default_signature_algorithm,
    ml_dsa_type,
    ml_kem_type,
    signature_params,
)
from smimegate.smime.mlkem512 import MLKEM512PublicKey


class Profile(Enum):
    """S/MIME BR certificate profiles, strict generation, by reserved policy OID (BR 7.1.6.1)."""

    MAILBOX = "2.23.140.1.5.1.3"
    ORGANIZATION = "2.23.140.1.5.2.3"
    SPONSOR = "2.23.140.1.5.3.3"
    INDIVIDUAL = "2.23.140.1.5.4.3"


@dataclass(frozen=True)
class Subject:
    """Who the certificate is for. Only email is required; cn defaults to it."""

    email: str
    cn: str | None = None
    org: str | None = None
    given_name: str | None = None
    surname: str | None = None

    def __post_init__(self) -> None:
        local, at, domain = self.email.rpartition("@")
        if not at or not local or not domain or any(c.isspace() for c in self.email):
            raise ValueError(f"email: not a mailbox address: {self.email!r}")
        for name in ("cn", "org", "given_name", "surname"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise ValueError(f"{name}: must not be empty")

    @property
    def profile(self) -> Profile:
        """The BR profile this subject fits (see the module doc)."""
        personal = bool(self.given_name or self.surname or (self.cn and self.cn != self.email))
        if self.org:
            return Profile.SPONSOR if personal else Profile.ORGANIZATION
        return Profile.INDIVIDUAL if personal else Profile.MAILBOX

    def name(self) -> x509.Name:
        """The subject DN in the usual X.509 order, from the root of the name down: O, then
        the person (CN, givenName, surname), then emailAddress, as the CA's own names
        (smimegate.pki.ca.ca_name).

        emailAddress is allowed by every profile (BR 7.1.4.2.2 h) and still read by older
        clients that ignore subjectAltName.
        """
        attrs = []
        if self.org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.org))
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, self.cn or self.email))
        if self.given_name:
            attrs.append(x509.NameAttribute(NameOID.GIVEN_NAME, self.given_name))
        if self.surname:
            attrs.append(x509.NameAttribute(NameOID.SURNAME, self.surname))
        attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, self.email))
        return x509.Name(attrs)


@dataclass(frozen=True)
class IssueRequest:
    """Everything about a certificate to issue except the keys."""

    subject: Subject
    days: int = DEFAULT_DAYS
    signature_algorithm: str | None = None  # None: the default for the issuer's key
    crl_urls: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"days: must be at least 1, got {self.days}")
        for url in self.crl_urls:
            if "://" not in url:
                raise ValueError(f"CRL distribution point: not a URL: {url!r}")


def key_usage_for(public_key: EndEntityPublicKey) -> x509.KeyUsage:
    """Dual-use key usage for RSA and EC keys, signing only for ML-DSA, encryption only for
    ML-KEM (BR 7.1.2.3 e, RFC 9881 5, RFC 9936 4). Raises ValueError for another key type."""
    rsa_key = isinstance(public_key, rsa.RSAPublicKey)
    ec_key = isinstance(public_key, ec.EllipticCurvePublicKey)
    kem_key = ml_kem_type(public_key) is not None
    if not rsa_key and not ec_key and not kem_key and ml_dsa_type(public_key) is None:
        raise ValueError(f"unsupported key {type(public_key).__name__}")
    return x509.KeyUsage(
        digital_signature=not kem_key,
        content_commitment=False,
        key_encipherment=rsa_key or kem_key,
        data_encipherment=False,
        key_agreement=ec_key,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def issue_certificate(
    request: IssueRequest,
    public_key: EndEntityPublicKey,
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    *,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """Sign an end-entity certificate for public_key with the issuing CA's key.

    The validity ends at request.days or at the issuer's own notAfter, whichever comes first
    (a certificate outliving its issuer would stop validating early anyway, RFC 5280 6.1.3).
    Raises ValueError when the signature algorithm does not fit the issuer key or the key type
    is unsupported.
    """
    sig = signature_params(
        request.signature_algorithm or default_signature_algorithm(issuer_key), issuer_key
    )
    start = (now or dt.datetime.now(dt.UTC)) - BACKDATE
    end = min(start + dt.timedelta(days=request.days), issuer.not_valid_after_utc)
    if end <= start:
        raise ValueError("the issuing CA has expired")
    subject = request.subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject.name())
        .issuer_name(issuer.subject)
        .serial_number(random_serial())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage_for(public_key), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(subject.email)]), critical=False
        )
        .add_extension(_ski(public_key), critical=False)
        .add_extension(aki_for(issuer), critical=False)
        .add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(subject.profile.value), None)]
            ),
            critical=False,
        )
    )
    if request.crl_urls:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(url) for url in request.crl_urls],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
    if isinstance(public_key, MLKEM512PublicKey):
        # cryptography has no ML-KEM-512 key to put into the builder (foreignkey.py).
        spki = public_key.public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
        return foreignkey.sign_for_spki(builder, spki, issuer_key, sig)
    return builder.public_key(public_key).sign(issuer_key, sig.hash, rsa_padding=sig.rsa_padding)


def _ski(public_key: EndEntityPublicKey) -> x509.SubjectKeyIdentifier:
    """RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's bytes, as
    cryptography's from_public_key computes it for the keys it knows."""
    if isinstance(public_key, MLKEM512PublicKey):
        return x509.SubjectKeyIdentifier(hashlib.sha1(public_key.public_bytes_raw()).digest())
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


