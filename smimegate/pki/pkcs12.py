"""PKCS#12 (PFX) files for handing a user their key and certificate chain, in two profiles.

- ``modern``: PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC for key and certificates, SHA-256
  MAC (RFC 8018 6.2; the MAC key from the RFC 7292 appendix B KDF with SHA-256): what OpenSSL 3
  writes by default and NSS, Windows 10+ and current macOS read.
- ``legacy``: pbeWithSHAAnd3-KeyTripleDES-CBC for key and certificates and a SHA-1 MAC
  (RFC 7292 appendix C): for older Windows and macOS, and for gpgsm 2.2, which cannot read
  PBES2 (INTEROP.md).

Each file holds the key and the end-entity certificate under the friendly name (the address,
what Outlook, Thunderbird and Keychain show) and the whole chain up to the root.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from smimegate.pki import pfxwrite
from smimegate.pki.signing import EndEntityKey, key_type_of
from smimegate.smime import mlkem512


@dataclass(frozen=True)
class Pkcs12Profile:
    """How a PFX is protected."""

    name: str
    pbes: pkcs12.PBES
    mac_hash: type[hashes.HashAlgorithm]
    kdf_rounds: int


PROFILES: dict[str, Pkcs12Profile] = {
    # PBKDF2 rounds: OpenSSL 3's pkcs12 default is 2048; more costs an attacker more while an
    # import still takes well under a second.
    "modern": Pkcs12Profile("modern", pkcs12.PBES.PBESv2SHA256AndAES256CBC, hashes.SHA256, 100_000),
    # The RFC 7292 KDF is slower per round; 10000 is what Windows itself writes.
    "legacy": Pkcs12Profile("legacy", pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC, hashes.SHA1, 10_000),
}
DEFAULT_PROFILE = "modern"


def profile(name: str) -> Pkcs12Profile:
    """The profile called name. Raises ValueError naming the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"PKCS#12 profile {name!r}: expected one of {', '.join(PROFILES)}") from None


def make_pkcs12(
    key: EndEntityKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    password: str,
    *,
    profile_name: str = DEFAULT_PROFILE,
    friendly_name: str | None = None,
) -> bytes:
    """The DER of a PFX holding key, cert (named friendly_name) and chain (issuer first).

    CA certificates are named by their common name. ML-DSA and ML-KEM keys are written by
    smimegate.pki.pfxwrite (modern profile only). Raises ValueError for an empty password, an
    unknown profile, the legacy profile with an ML-DSA or ML-KEM key, or a key that does not
    belong to cert.
    """
    if not password:
        raise ValueError("PKCS#12 password: must not be empty")
    prof = profile(profile_name)
    if mlkem512.certificate_public_key(cert) != key.public_key():
        raise ValueError("PKCS#12: the private key does not belong to the certificate")
    name = (friendly_name or "").encode("utf-8") or None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        # cryptography 50's PKCS#12 writer takes RSA, DSA, EC and EdDSA keys only; ML-DSA and
        # ML-KEM keys go into the container through their PKCS#8 form (pfxwrite.py).
        if prof.name != "modern":
            raise ValueError(f"PKCS#12: an {key_type_of(key)} key is written with the modern "
                             "profile only (no reader of the legacy one knows the key type)")
        pkcs8 = key.private_bytes(serialization.Encoding.DER,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        return pfxwrite.write_pkcs12(pkcs8, cert, chain, password, friendly_name=name,
                                     rounds=prof.kdf_rounds)
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(prof.kdf_rounds)
        .key_cert_algorithm(prof.pbes)
        .hmac_hash(prof.mac_hash())
        .build(password.encode("utf-8"))
    )
    cas = [pkcs12.PKCS12Certificate(c, _cn(c)) for c in chain]
    return pkcs12.serialize_key_and_certificates(name, key, cert, cas, encryption)


def _cn(cert: x509.Certificate) -> bytes | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value.encode("utf-8") if isinstance(value, str) else None
