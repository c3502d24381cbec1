"""The store's private keys for the recipients an encrypted message names.

A RecipientInfo names the recipient's certificate by issuer and serial number or by subject
key identifier (RFC 5652 6.2.1, RFC 8551 2.3); the store indexes its certificates by both, and
holds the private keys wrapped with the master key. ``message inspect`` uses this to open a
message with the store's keys when no key is given on the command line. An issuer and serial
lookup reads the list of stored certificates once per call: fine for a command, not meant for
the milter's per-message path (which looks keys up by the recipients' addresses).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from cryptography import x509

from smimegate.smime.cms import name_to_str, to_asn1
from smimegate.store.base import CertificateRecord, Store
from smimegate.store.certinfo import serial_hex


class RecipientId(Protocol):
    """How a RecipientInfo names a certificate (smimegate.smime.results.CertId fits)."""

    @property
    def issuer(self) -> str: ...  # RFC 4514, empty when named by SKI only

    @property
    def serial(self) -> int | None: ...

    @property
    def ski(self) -> bytes | None: ...


def _issuer(record: CertificateRecord) -> str:
    """The record's issuer as smimegate.smime renders a RecipientInfo's issuer."""
    return name_to_str(to_asn1(record.certificate()).issuer)


class _Finder:
    """Stored certificates with a private key, by issuer and serial or by SKI."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._keyed: list[CertificateRecord] | None = None

    def records(self, rid: RecipientId) -> list[CertificateRecord]:
        found: list[CertificateRecord] = []
        if rid.ski is not None:
            found += [r for r in self._store.find_by_ski(rid.ski) if r.has_key]
        if rid.serial is not None and rid.issuer:
            # The store indexes issuers as cryptography renders them (RFC 4514, "," between
            # RDNs); a RecipientInfo's issuer comes from smime.cms (", ", other labels). So the
            # serial is matched in the store's form and the issuer by the same rendering.
            serial = serial_hex(rid.serial)
            found += [r for r in self._with_keys()
                      if r.serial == serial and _issuer(r) == rid.issuer]
        return found

    def _with_keys(self) -> list[CertificateRecord]:
        if self._keyed is None:  # read once per keys_for_recipients call
            self._keyed = [r for r in self._store.list_certificates() if r.has_key]
        return self._keyed


def keys_for_recipients(
    store: Store, recipient_ids: Iterable[RecipientId]
) -> list[tuple[x509.Certificate, Any]]:
    """(certificate, private key) for every stored certificate with a key that one of the
    recipient ids names, each once, in the order of the ids.

    Raises StoreError: MasterKeyError when the store was opened without the master key (or
    with another one), StoreUnavailable ...
    """
    finder = _Finder(store)
    out: dict[str, tuple[x509.Certificate, Any]] = {}
    for rid in recipient_ids:
        for record in finder.records(rid):
            if record.fingerprint not in out:
                out[record.fingerprint] = (record.certificate(),
                                           store.get_private_key(record.fingerprint))
    return list(out.values())
