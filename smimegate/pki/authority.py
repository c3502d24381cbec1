"""The built-in CA over the store: create CAs, issue, revoke, make and import CRLs.

This joins the pure builders (ca, issue, crl) to smimegate.store: certificates and wrapped keys
go in with ``add_certificate``, the root becomes trusted with ``add_root``, CRLs and revocations
are kept per CA. Each CA is a root and the intermediate that signs end entities and CRLs.

Every function may raise StoreError (StoreUnavailable, MasterKeyError, ...) from the store,
PkiError when the request cannot be met, and ValueError for a bad argument.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from smimegate.pki.ca import CaPair, chain_pem
from smimegate.pki.crl import (
    DEFAULT_NEXT_UPDATE_DAYS,
    Entry,
    build_crl,
    crl_number,
    entries_of,
    load_crl,
    merge,
)
from smimegate.pki.crlstore import CrlKeeper
from smimegate.pki.errors import PkiError
from smimegate.pki.issue import IssueRequest, issue_certificate
from smimegate.pki.signing import EndEntityKey, PrivateKey, new_end_entity_key
from smimegate.store.base import (
    CaRecord,
    CertificateRecord,
    Conflict,
    CrlRecord,
    NotFound,
    Store,
)
from smimegate.store.certinfo import parse_serial, serial_hex
from smimegate.x509errors import X509_ERRORS

CA_SOURCE = "ca"
ISSUED_SOURCE = "issued"


@dataclass(frozen=True)
class LoadedCa:
    """A built-in CA from the store with both certificates parsed."""

    record: CaRecord
    root: x509.Certificate
    intermediate: x509.Certificate

    @property
    def name(self) -> str:
        return self.record.name

    def chain(self) -> list[x509.Certificate]:
        """Issuer first: the intermediate, then the root."""
        return [self.intermediate, self.root]

    def chain_pem(self) -> bytes:
        return chain_pem(*self.chain())


@dataclass(frozen=True)
class Issued:
    """A certificate issued and stored with its key."""

    ca: LoadedCa
    record: CertificateRecord
    cert: x509.Certificate
    key: EndEntityKey
    user_created: bool


def load_ca(store: Store, name: str | None = None) -> LoadedCa:
    """The named CA, or the default one when name is None. Raises PkiError when absent."""
    try:
        record = store.get_ca(name)
    except NotFound:
        if name is None:
            raise PkiError("no default CA: create one with `smimegate ca create` or name one "
                           "with --ca") from None
        raise PkiError(f"no CA named {name!r} (see `smimegate ca list`)") from None
    return LoadedCa(
        record=record,
        root=store.get_certificate(record.root_fingerprint).certificate(),
        intermediate=store.get_certificate(record.intermediate_fingerprint).certificate(),
    )


def _intermediate_key(store: Store, ca: LoadedCa) -> PrivateKey:
    try:
        key: PrivateKey = store.get_private_key(ca.record.intermediate_fingerprint)
    except NotFound:
        raise PkiError(f"CA {ca.name}: the intermediate's private key is not in the store") \
            from None
    return key


def store_ca(store: Store, name: str, pair: CaPair, *, default: bool = False) -> LoadedCa:
    """Store a new CA: both certificates with their keys, the root as trusted, a first CRL.

    The first CA becomes the default one even without default. Raises PkiError when a CA of
    that name exists.
    """
    if not name.strip():
        raise ValueError("CA name: must not be empty")
    if any(r.name == name for r in store.list_cas()):
        raise PkiError(f"a CA named {name!r} exists already")
    root = store.add_certificate(pair.root, source=CA_SOURCE, key=pair.root_key)
    store.add_root(pair.root)
    inter = store.add_certificate(pair.intermediate, source=CA_SOURCE, key=pair.intermediate_key)
    make_default = default or not any(r.is_default for r in store.list_cas())
    try:
        store.add_ca(name, root.fingerprint, inter.fingerprint, default=make_default)
    except Conflict as exc:  # another admin was quicker
        raise PkiError(str(exc)) from None
    ca = load_ca(store, name)
    # An empty CRL from the start: a client that follows a distribution point finds one, and a
    # relying party with CRL checking on sees "not revoked" rather than "unknown".
    create_crl(store, name)
    return ca


def issue(
    store: Store,
    request: IssueRequest,
    *,
    ca_name: str | None = None,
    key_type: str = "rsa2048",
) -> Issued:
    """Make a key of key_type, issue its certificate from the CA, keep both (key in escrow).

    The user is created in the store when missing. Raises PkiError for an unknown CA,
    ValueError for a bad key type or a signature algorithm that does not fit the CA key.
    """
    ca = load_ca(store, ca_name)
    key = new_end_entity_key(key_type)
    cert = issue_certificate(request, key.public_key(), ca.intermediate,
                             _intermediate_key(store, ca))
    record = store.add_certificate(cert, source=ISSUED_SOURCE, key=key)
    created = False
    try:
        store.get_user(request.subject.email)
    except NotFound:
        try:
            store.add_user(request.subject.email)
            created = True
        except Conflict:  # created meanwhile by someone else: what we wanted
            pass
    return Issued(ca=ca, record=record, cert=cert, key=key, user_created=created)


def current_crl_record(store: Store, ca: LoadedCa) -> CrlRecord | None:
    """The newest stored CRL signed by the CA's intermediate key, or None.

    The store keys CRLs by issuer name; a CA re-created under the same name has another key,
    so the signature decides which CRLs are this CA's.
    """
    public = ca.intermediate.public_key()
    for record in store.crls_for_issuer(ca.intermediate.subject):  # newest first
        if x509.load_der_x509_crl(record.der).is_signature_valid(public):  # type: ignore[arg-type]
            return record
    return None


def current_crl(store: Store, ca: LoadedCa) -> x509.CertificateRevocationList | None:
    """current_crl_record, parsed."""
    record = current_crl_record(store, ca)
    return x509.load_der_x509_crl(record.der) if record is not None else None


def create_crl(
    store: Store,
    ca_name: str | None = None,
    *,
    revoke: Sequence[int] = (),
    reason: str | None = None,
    update_existing: bool = False,
    next_update_days: int = DEFAULT_NEXT_UPDATE_DAYS,
    signature_algorithm: str | None = None,
    now: dt.datetime | None = None,
) -> CrlRecord:
    """Issue and store a new CRL of the CA listing every revocation recorded for it.

    The serials in revoke are recorded first as revocations of the CA. The CRL then lists
    every recorded revocation of the CA (see _recorded_entries for when an expired one is
    left out), so a new CRL never un-revokes a certificate. With update_existing the entries
    of the CA's current CRL that the store has no record of (e.g. from an imported CRL) are
    kept too. The CRL number comes from the store's per-CA counter, so it always increases
    (RFC 5280 5.2.3). Raises PkiError for an unknown CA, ValueError for bad days, reason or
    algorithm.
    """
    ca = load_ca(store, ca_name)
    key = _intermediate_key(store, ca)
    if revoke:
        # One transaction; an earlier revocation of the same serial keeps its date and reason.
        store.add_revocations(ca.name, revoke, reason, now)
    previous = current_crl(store, ca)
    recorded = _recorded_entries(store, ca, previous)
    kept: list[Entry] = []
    if update_existing and previous is not None:
        kept = entries_of(previous)
    number = store.allocate_crl_number(ca.name)
    if previous is not None:
        # An imported CRL of this CA may carry a higher number than our counter; ours must
        # still be greater (RFC 5280 5.2.3), or the store would keep the older one as newest.
        number = max(number, (crl_number(previous) or 0) + 1)
    # The store's record wins over the previous CRL for a serial in both (merge keeps the
    # first): the record is where the date and reason were set.
    crl = build_crl(ca.intermediate, key, merge(recorded, kept), number,
                    next_update_days=next_update_days,
                    signature_algorithm=signature_algorithm, now=now)
    # Signed just now by the CA's own key: verified.
    return store.add_crl(crl, source=f"{CA_SOURCE}:{ca.name}", verified=True)


def _recorded_entries(
    store: Store, ca: LoadedCa, previous: x509.CertificateRevocationList | None
) -> list[Entry]:
    """The CA's recorded revocations as CRL entries, leaving out long-expired certificates.

    RFC 5280 3.3: an entry may go once it has appeared on one regular CRL issued after the
    certificate expired. So a serial is left out only when every certificate of the store
    with that issuer and serial expired before the previous CRL's thisUpdate (that CRL, made
    after the expiry, listed it). A serial the store holds no certificate for stays: we
    cannot tell when it expires.
    """
    # One query for the expiry of every certificate of the CA, not one per revocation.
    expiry = (store.latest_expiry_by_serial(ca.intermediate.subject)
              if previous is not None else {})
    entries: list[Entry] = []
    for rec in store.revocations(ca.name):
        if previous is not None:
            expired = expiry.get(rec.serial)
            if expired is not None and expired < previous.last_update_utc:
                continue
        entries.append(Entry(parse_serial(rec.serial), rec.revoked_at, rec.reason))
    return entries


def revoke(
    store: Store,
    serial: int,
    *,
    ca_name: str | None = None,
    reason: str | None = None,
    next_update_days: int = DEFAULT_NEXT_UPDATE_DAYS,
) -> CrlRecord:
    """Revoke a certificate the CA issued and publish a new CRL that keeps earlier entries.

    Raises PkiError when the CA is unknown or the store has no certificate with that serial
    from the CA (use create_crl with revoke= for one the store does not hold).
    """
    ca = load_ca(store, ca_name)
    if not store.find_by_issuer_serial(ca.intermediate.subject, serial):
        raise PkiError(
            f"CA {ca.name} has issued no certificate with serial {serial_hex(serial)} that the "
            "store knows (for one it does not hold: smimegate crl create --revoke SERIAL)"
        )
    return create_crl(store, ca.name, revoke=[serial], reason=reason, update_existing=True,
                      next_update_days=next_update_days)


def import_crl(store: Store, data: bytes, *, source: str = "import") -> CrlRecord:
    """Store one CRL (PEM or DER) as ``crl import`` does: every well-formed CRL is kept, also
    one whose issuer is not a CA of the store yet (smimegate.pki.crlstore; issue 10 item 1).

    Raises PkiError when it is no CRL.
    """
    try:
        crl = load_crl(data)
    except X509_ERRORS as exc:
        raise PkiError(f"not a CRL in PEM or DER: {exc}") from None
    return CrlKeeper(store).keep(crl, source=source)
