"""The built-in CA: a self-signed root and an intermediate that issues end-entity certificates.

Pure functions over cryptography; the CLI stores the result (smimegate.cli.ca).

Profile (RFC 5280 4.2.1 and the CA/Browser Forum S/MIME BR 7.1.2.1 / 7.1.2.2):
- root: basicConstraints cA TRUE (critical, no path length), keyUsage keyCertSign + cRLSign
  (critical), subjectKeyIdentifier;
- intermediate: basicConstraints cA TRUE pathLenConstraint 0 (critical: it signs end entities
  only), keyUsage keyCertSign + cRLSign (critical), extKeyUsage emailProtection (BR 7.1.2.2 g:
  an S/MIME subordinate CA is restricted to it; OpenSSL's smime purposes accept it), SKI, and
  an authorityKeyIdentifier naming the root's key.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smimegate.pki.signing import PrivateKey, check_pair, new_key, signature_params

DEFAULT_DAYS = 1825
# Backdate notBefore a little so that clients whose clocks lag do not see "not yet valid".
BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class CaPair:
    """A root and the intermediate it certified, with both private keys."""

    root: x509.Certificate
    root_key: PrivateKey
    intermediate: x509.Certificate
    intermediate_key: PrivateKey

    def chain_pem(self) -> bytes:
        """The intermediate then the root, PEM (what ``ca export`` writes)."""
        return chain_pem(self.intermediate, self.root)


def chain_pem(*certs: x509.Certificate) -> bytes:
    """Certificates as concatenated PEM, in the order given."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def random_serial() -> int:
    """A positive serial from 158 random bits with the top one set: 20 DER bytes, < 2^159.

    RFC 5280 4.1.2.2 allows at most 20 octets; BR 7.1 wants at least 64 bits from a CSPRNG.
    Fixing bit 158 keeps the length constant and the value positive.
    """
    return secrets.randbits(158) | (1 << 158)


def ca_name(cn: str, org: str | None = None, email: str | None = None) -> x509.Name:
    """A CA subject in the usual X.509 order, from the root of the name down (X.501: the RDN
    sequence starts at the top of the tree): O when given, CN, then emailAddress when given.
    `openssl x509 -subject` then reads "O = ..., CN = ..." and the RFC 4514 string, most
    specific first, "CN=..., O=...". Raises ValueError for an empty CN."""
    if not cn.strip():
        raise ValueError("CA common name: must not be empty")
    attrs = []
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    if email:
        attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    return x509.Name(attrs)


def aki_for(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI of what ``issuer`` signs (certificates, CRLs): its SKI as keyIdentifier (RFC 5280
    4.2.1.1), computed from its public key when it has none."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer.public_key()  # type: ignore[arg-type]
        )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def create_ca(
    root_cn: str,
    intermediate_cn: str,
    *,
    days: int = DEFAULT_DAYS,
    key_type: str = "rsa2048",
    signature_algorithm: str | None = None,
    email: str | None = None,
    org: str | None = None,
    now: dt.datetime | None = None,
) -> CaPair:
    """Make a root and an intermediate, both with fresh keys of key_type, valid for days.

    signature_algorithm (None: the default for key_type) signs both certificates and must fit
    key_type. Raises ValueError for a bad key type, signature algorithm, day count or name.
    """
    if days < 1:
        raise ValueError(f"days: must be at least 1, got {days}")
    sig_name = check_pair(key_type, signature_algorithm)
    start = (now or dt.datetime.now(dt.UTC)) - BACKDATE
    end = start + dt.timedelta(days=days)

    root_key = new_key(key_type)
    root_subject = ca_name(root_cn, org, email)
    sig = signature_params(sig_name, root_key)
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (
        x509.CertificateBuilder()
        .subject_name(root_subject)
        .issuer_name(root_subject)
        .public_key(root_key.public_key())
        .serial_number(random_serial())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(root_ski, critical=False)
        .sign(root_key, sig.hash, rsa_padding=sig.rsa_padding)
    )

    inter_key = new_key(key_type)
    inter = (
        x509.CertificateBuilder()
        .subject_name(ca_name(intermediate_cn, org, email))
        .issuer_name(root_subject)
        .public_key(inter_key.public_key())
        .serial_number(random_serial())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
            critical=False,
        )
        .sign(root_key, sig.hash, rsa_padding=sig.rsa_padding)
    )
    return CaPair(root=root, root_key=root_key, intermediate=inter, intermediate_key=inter_key)
