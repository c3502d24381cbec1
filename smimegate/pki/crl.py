"""Certificate revocation lists: build ours, read entries back, check ones we are given.

Pure functions over cryptography; the CLI keeps CRLs and revocations in the store.

Our CRLs (RFC 5280 5): version 2, signed by the issuing CA (the intermediate), with an
authorityKeyIdentifier (5.2.1, required) and an increasing cRLNumber (5.2.3, required);
thisUpdate now, nextUpdate after the given days (5.1.2.5). Entries carry their revocation date
and a reasonCode extension unless the reason is unspecified (5.3.1: absent rather than 0).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from smimegate import dn
from smimegate.pki import crlder
from smimegate.pki.ca import aki_for
from smimegate.pki.signing import PrivateKey, default_signature_algorithm, signature_params

DEFAULT_NEXT_UPDATE_DAYS = 365

# CLI spellings of RFC 5280 5.3.1 CRLReason (certificateHold and removeFromCRL are left out:
# we only ever revoke for good).
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key-compromise": x509.ReasonFlags.key_compromise,
    "ca-compromise": x509.ReasonFlags.ca_compromise,
    "affiliation-changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
    "privilege-withdrawn": x509.ReasonFlags.privilege_withdrawn,
}


def parse_reason(text: str | None) -> str | None:
    """A reason in our spelling ("key-compromise"); keyCompromise and key_compromise work too.

    None and "unspecified" give None. Raises ValueError naming the allowed reasons.
    """
    if text is None:
        return None
    spelled = "".join("-" + c.lower() if c.isupper() else c for c in text.strip())
    spelled = spelled.replace("_", "-").strip("-")
    if spelled not in REASONS:
        raise ValueError(f"reason {text!r}: expected one of {', '.join(REASONS)}")
    return None if spelled == "unspecified" else spelled


@dataclass(frozen=True)
class Entry:
    """One revoked serial."""

    serial: int
    revoked_at: dt.datetime
    reason: str | None = None  # a REASONS key; None: unspecified

    def __post_init__(self) -> None:
        if self.serial <= 0:
            raise ValueError(f"serial: must be positive, got {self.serial}")
        if self.reason is not None and self.reason not in REASONS:
            raise ValueError(f"reason {self.reason!r}: expected one of {', '.join(REASONS)}")


def entries_of(crl: x509.CertificateRevocationList) -> list[Entry]:
    """The entries of a CRL, in its order."""
    found: list[Entry] = []
    names = {flag: name for name, flag in REASONS.items()}
    for revoked in crl:
        try:
            flag = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            flag = x509.ReasonFlags.unspecified
        reason = names.get(flag)
        found.append(
            Entry(
                revoked.serial_number,
                revoked.revocation_date_utc,
                None if reason in (None, "unspecified") else reason,
            )
        )
    return found


def merge(*lists: Iterable[Entry]) -> list[Entry]:
    """Entries of all lists, one per serial (the first seen wins: keep the earliest record)."""
    merged: dict[int, Entry] = {}
    for entries in lists:
        for entry in entries:
            merged.setdefault(entry.serial, entry)
    return sorted(merged.values(), key=lambda e: (e.revoked_at, e.serial))


def build_crl(
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    entries: Sequence[Entry],
    crl_number: int,
    *,
    next_update_days: int = DEFAULT_NEXT_UPDATE_DAYS,
    signature_algorithm: str | None = None,
    now: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL of issuer listing entries, numbered crl_number.

    Raises ValueError for a non-positive next_update_days or crl_number, or a signature
    algorithm that does not fit the issuer's key.
    """
    if next_update_days < 1:
        raise ValueError(f"next update days: must be at least 1, got {next_update_days}")
    if crl_number < 0:
        raise ValueError(f"CRL number: must not be negative, got {crl_number}")
    sig = signature_params(signature_algorithm or default_signature_algorithm(issuer_key),
                           issuer_key)
    this_update = now or dt.datetime.now(dt.UTC)
    template = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(this_update + dt.timedelta(days=next_update_days))
        .add_extension(aki_for(issuer), critical=False)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .sign(issuer_key, sig.hash, rsa_padding=sig.rsa_padding)
    )
    if not entries:
        return template
    # The entries are encoded by crlder (cryptography's per-entry builders made a
    # 100,000-entry CRL take seconds); the CRL is signed once more with them in.
    der = crlder.assemble(
        template,
        (crlder.entry_der(e.serial, min(e.revoked_at, this_update),
                          REASONS[e.reason] if e.reason is not None else None)
         for e in merge(entries)),
        issuer_key, sig,
    )
    return x509.load_der_x509_crl(der)


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from PEM or DER bytes. Raises ValueError when it is neither."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def crl_number(crl: x509.CertificateRevocationList) -> int | None:
    """The cRLNumber extension's value, None when absent."""
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def authority_key_id(crl: x509.CertificateRevocationList) -> bytes | None:
    """The keyIdentifier of the CRL's authorityKeyIdentifier, None when absent."""
    try:
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    return aki.key_identifier


def subject_key_id(cert: x509.Certificate) -> bytes | None:
    """The certificate's subjectKeyIdentifier, None when absent."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


class CrlIssuerError(ValueError):
    """A CRL that none of the candidate CA certificates issued; the message says why."""


def find_issuer(
    crl: x509.CertificateRevocationList, candidates: Iterable[x509.Certificate]
) -> x509.Certificate:
    """The CA certificate among candidates that signed crl.

    A candidate qualifies when its subject is the CRL's issuer, its key identifier matches the
    CRL's AKI (when both exist), it is a CA allowed to sign CRLs (RFC 5280 4.2.1.3 cRLSign,
    4.2.1.9 cA), and the signature verifies with its key. Raises CrlIssuerError saying why no
    candidate qualified.
    """
    aki = authority_key_id(crl)
    named = [c for c in candidates if c.subject == crl.issuer]
    if not named:
        raise CrlIssuerError(f"CRL issuer {dn.name_string(crl.issuer)} is not a CA we know")
    problem = "its signature does not verify with the key of any known CA of that name"
    for cert in named:
        ski = subject_key_id(cert)
        if aki is not None and ski is not None and aki != ski:
            continue
        if not _may_sign_crls(cert):
            problem = "the CA certificate of that name may not sign CRLs"
            continue
        key = cert.public_key()
        if not isinstance(
            key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey
            | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
        ):
            continue
        if crl.is_signature_valid(key):
            return cert
    raise CrlIssuerError(f"CRL of {dn.name_string(crl.issuer)}: {problem}")


def _may_sign_crls(cert: x509.Certificate) -> bool:
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        # RFC 5280 4.2.1.9: version 1 roots have no extensions and still act as CAs.
        if cert.version != x509.Version.v1:
            return False
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value.crl_sign
    except x509.ExtensionNotFound:
        return True
