"""The stored CRLs as ``crl list --json`` and ``GET /api/v1/crls`` show them (CONTRACT.md):
one object per CRL with at least issuer, this_update, next_update, number, entries, verified
(true, false, or null while its issuer is unknown) and source; also fingerprint, the authority
key id, scope (complete, delta, or which partition) and the built-in CA whose current CRL it
is. ``crl_number`` and ``revoked`` repeat number and entries under their earlier names.

Also the changes (``crl create``, ``crl import``, ``crl fetch``; the CRLs tab's forms): each
with its audit-log row in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from smimegate.pki import authority
from smimegate.pki.crl import DEFAULT_NEXT_UPDATE_DAYS
from smimegate.pki.errors import PkiError
from smimegate.service import audit
from smimegate.service.actor import Actor
from smimegate.service.errors import InvalidInput, OperationFailed
from smimegate.store.base import CrlRecord, Store

__all__ = ["create", "crl_rows", "describe", "export", "fetch", "import_data"]


def describe(record: CrlRecord, ours: dict[str, str]) -> dict[str, Any]:
    """One CRL as an object (see the module docstring); ``ours``: fingerprint -> CA name."""
    entries = record.entries
    if entries is None:  # stored before migration 0005
        entries = len(x509.load_der_x509_crl(record.der))
    return {
        "fingerprint": record.fingerprint,
        "issuer": record.issuer,
        "authority_key_id": record.authority_key_id,
        "number": record.crl_number,
        "crl_number": record.crl_number,
        "this_update": record.this_update.isoformat(),
        "next_update": record.next_update.isoformat() if record.next_update else None,
        "entries": entries,
        "revoked": entries,
        "verified": record.verified,
        "scope": record.scope or "complete",
        "delta_base": record.delta_base,
        "source": record.source,
        "ca": ours.get(record.fingerprint),
    }


def crl_rows(store: Store) -> list[dict[str, Any]]:
    """Every stored CRL, described, in the store's order (issuer, newest first). Raises
    StoreError from the store, PkiError for a built-in CA that cannot be loaded."""
    ours: dict[str, str] = {}
    for ca_record in store.list_cas():
        current = authority.current_crl_record(store, authority.load_ca(store, ca_record.name))
        if current is not None:
            ours[current.fingerprint] = ca_record.name
    return [describe(r, ours) for r in store.list_crls()]


# -- changes: create, import, download now ----------------------------------------------------

@audit.atomic
def create(store: Store, actor: Actor, ca: str | None = None, *, revoke: Sequence[int] = (),
           reason: str | None = None, update_existing: bool = False,
           next_update_days: int = DEFAULT_NEXT_UPDATE_DAYS,
           signature_algorithm: str | None = None) -> CrlRecord:
    """Record the serials of revoke and issue a new CRL of a built-in CA listing every
    revocation recorded for it, in one transaction with its audit row. Raises InvalidInput,
    Forbidden, OperationFailed (PkiError)."""
    actor.require_change()
    if next_update_days < 1:
        raise InvalidInput(f"must be at least 1, got {next_update_days}", "next_update_days")
    try:
        record = authority.create_crl(
            store, ca or None, revoke=revoke, reason=reason, update_existing=update_existing,
            next_update_days=next_update_days, signature_algorithm=signature_algorithm or None)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    except PkiError as exc:
        raise OperationFailed(str(exc)) from None
    audit.record(store, actor, "crl.create", record.issuer,
                 f"number {record.crl_number}, {len(revoke)} serial(s) revoked")
    return record


_IMPORT_NOTE = {
    True: "",
    False: " (its signature does not verify with the CA certificates of that name: kept, "
           "not used)",
    None: " (issuer not a CA of the store yet: checked when a certificate path needs it)",
}


@dataclass(frozen=True)
class ImportedCrl:
    label: str  # the file, or "FILE: CRL n" in a bundle
    record: CrlRecord | None
    note: str  # after the summary line, or the problem when record is None


def import_data(store: Store, actor: Actor, data: bytes, name: str) -> list[ImportedCrl]:
    """Store every CRL of a DER, PEM or PEM-bundle file that can be read, also one whose
    issuer is not (yet) a CA of the store. Each CRL with its audit row is one transaction.
    Raises Forbidden."""
    from smimegate.pki.crlstore import CrlKeeper, read_bundle
    from smimegate.store.base import InvalidData
    from smimegate.store.certinfo import crl_info

    actor.require_change()
    items = read_bundle(data)
    keeper = CrlKeeper(store)
    source = f"import:{name.rsplit('/', 1)[-1]}"
    done = []
    for item in items:
        label = f"{name}: CRL {item.index}" if len(items) > 1 else name
        if item.crl is None:
            done.append(ImportedCrl(label, None, item.problem or "not readable"))
            continue
        try:
            with store.atomic():
                record = keeper.keep(item.crl, source=source)
                audit.record(store, actor, "crl.import", record.issuer,
                             f"{label}: number {record.crl_number}")
        except InvalidData as exc:
            done.append(ImportedCrl(label, None, str(exc)))
            continue
        own = record.fingerprint == crl_info(item.crl).fingerprint
        done.append(ImportedCrl(label, record, _IMPORT_NOTE[record.verified] if own
                                else " (the store holds this newer one)"))
    return done


def fetch(store: Store, actor: Actor, timeout: float, urls: Sequence[str] | None = None) -> Any:
    """Download the CRLs of the stored certificates' distribution points (or urls) now; one
    audit row naming how it went, and each URL's outcome kept for the Dashboard and /metrics.
    Returns smimegate.pki.fetch's report. Raises Forbidden, InvalidInput (a URL that is not
    http, https or ldap)."""
    from smimegate.pki.fetch import SCHEMES, fetch_all
    from smimegate.service.monitoring import record_crl_report

    actor.require_change()
    for url in urls or ():
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme not in SCHEMES:
            raise InvalidInput(f"{url!r}: expected an {', '.join(SCHEMES)} URL", "url")
    report = fetch_all(store, timeout=timeout, urls=list(urls) if urls else None)
    record_crl_report(store, report)
    audit.record(store, actor, "crl.fetch", ",".join(urls or ()) or "distribution points",
                 report.summary() if report.outcomes else "no URLs")
    return report


def export(store: Store, ca: str | None = None, fmt: str = "der") -> tuple[str, bytes]:
    """(CA name, the current CRL of a built-in CA as DER or PEM). Raises InvalidInput,
    OperationFailed (no such CA, no CRL yet)."""
    from cryptography.hazmat.primitives import serialization

    if fmt not in ("der", "pem"):
        raise InvalidInput(f"bad format {fmt!r}: der or pem", "format")
    try:
        loaded = authority.load_ca(store, ca or None)
    except PkiError as exc:
        raise OperationFailed(str(exc)) from None
    crl = authority.current_crl(store, loaded)
    if crl is None:
        raise OperationFailed(f"CA {loaded.name} has no CRL yet (smimegate crl create --ca ...)")
    encoding = serialization.Encoding.PEM if fmt == "pem" else serialization.Encoding.DER
    return loaded.name, crl.public_bytes(encoding)
