"""The stored CRLs as ``crl list --json`` and ``GET /api/v1/crls`` show them (CONTRACT.md):
one object per CRL with at least issuer, this_update, next_update, number, entries, verified
(true, false, or null while its issuer is unknown) and source; also fingerprint, the authority
key id, scope (complete, delta, or which partition) and the built-in CA whose current CRL it
is. ``crl_number`` and ``revoked`` repeat number and entries under their earlier names."""

from __future__ import annotations

from typing import Any

from cryptography import x509

from smimegate.pki import authority
from smimegate.store.base import CrlRecord, Store

__all__ = ["crl_rows", "describe"]


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
