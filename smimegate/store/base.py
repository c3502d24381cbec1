"""The Store protocol, its errors and the immutable records it returns.

The store is generic: properties are plain name/value text rows at three scopes (global, domain,
user) that smimegate.policy names and validates. Times are aware UTC datetimes. Email addresses
and domain names are compared lower-case.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography import x509


class StoreError(Exception):
    """Base of every error the store raises."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or did not answer within the configured timeout.

    Transient: the caller should tempfail and try again later.
    """


class NotFound(StoreError, KeyError):
    """The named row does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "not found"


class Conflict(StoreError):
    """The row already exists or another row depends on it."""


class SchemaError(StoreError):
    """The database schema is missing, older or newer than this smimegate."""


class InvalidData(StoreError, ValueError):
    """An argument cannot be stored (malformed certificate, CRL, address ...)."""


class MasterKeyError(StoreError):
    """The master key file is missing, malformed, unsafe or does not match the store."""


@dataclass(frozen=True)
class Domain:
    name: str
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class User:
    email: str
    enabled: bool = True
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyRows:
    """The rows policy needs for a set of addresses, fetched in three queries.

    domains holds every stored domain rule that may apply: for ``a@mx.example.com`` the rules
    ``mx.example.com``, ``example.com``, ``com``, ``*.example.com`` and ``*.com`` when they
    exist (smimegate.policy decides precedence). users holds the stored users among the
    addresses.
    """

    settings: Mapping[str, str]
    domains: Mapping[str, Domain]
    users: Mapping[str, User]


@dataclass(frozen=True)
class CertificateRecord:
    fingerprint: str  # SHA-256 of the DER, lower-case hex
    der: bytes
    subject: str  # RFC 4514
    issuer: str  # RFC 4514
    serial: str  # upper-case hex, no leading zeros
    ski: str | None  # lower-case hex
    not_before: dt.datetime
    not_after: dt.datetime
    is_ca: bool
    emails: tuple[str, ...]
    source: str
    blocked: bool
    has_key: bool
    trusted_root: bool

    def certificate(self) -> x509.Certificate:
        """The parsed certificate (cryptography)."""
        return x509.load_der_x509_certificate(self.der)


@dataclass(frozen=True)
class Capabilities:
    """What a certificate's holder announced in the SMIMECapabilities signed attribute of a
    message it signed (RFC 8551 2.5.2): algorithm names as smimegate.smime.verify reports them
    (``aes256-gcm``, ``rsaes-oaep`` ..., dotted OIDs for unknown ones), most preferred first,
    and the signingTime of that message (the newest message's list is kept)."""

    fingerprint: str
    names: tuple[str, ...]
    signing_time: dt.datetime


@dataclass(frozen=True)
class CrlRecord:
    fingerprint: str
    issuer: str
    authority_key_id: str | None
    der: bytes
    this_update: dt.datetime
    next_update: dt.datetime | None
    crl_number: int | None
    source: str | None
    # Issue 10: True / False: a stored CA certificate of the issuer's name did / did not sign
    # it; None: no CA of that name known yet. scope and delta_base: see
    # smimegate.store.certinfo.crl_scope. entries: how many certificates it lists.
    verified: bool | None = None
    scope: str = ""
    delta_base: int | None = None
    entries: int | None = None


@dataclass(frozen=True)
class CaRecord:
    name: str
    root_fingerprint: str
    intermediate_fingerprint: str
    is_default: bool
    next_crl_number: int


@dataclass(frozen=True)
class Revocation:
    ca: str
    serial: str
    reason: str | None
    revoked_at: dt.datetime


@dataclass(frozen=True)
class QueueItem:
    id: int
    kind: str
    payload: bytes
    status: str  # pending | running | failed
    attempts: int
    next_attempt: dt.datetime
    last_error: str | None
    created: dt.datetime


class Store(Protocol):
    """What the milter, the CLI and the delivery queue need from a store.

    Every method may raise StoreUnavailable (connection trouble, timeout). Methods that name a
    row raise NotFound when it is absent; ``add_*`` raise Conflict when it exists, except
    certificates, CRLs and roots, which are idempotent.
    """

    # -- schema ---------------------------------------------------------------------------
    def schema_version(self) -> int:
        """The applied schema version, 0 for an empty database."""
        ...

    def migrate(self, target: int | None = None) -> list[int]:
        """Apply pending migrations up to target (default: all); return the versions applied.

        Raises SchemaError when the database is newer than this smimegate.
        """
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...

    def atomic(self) -> contextlib.AbstractContextManager[object]:
        """A block whose store calls (in this thread) are one transaction: all of them
        commit at its end, none if it raises (a change and its audit-log row together)."""
        ...

    # -- properties -----------------------------------------------------------------------
    def settings(self) -> dict[str, str]: ...
    def set_setting(self, name: str, value: str) -> None: ...
    def delete_setting(self, name: str) -> None:
        """Raises NotFound."""
        ...

    def add_domain(self, name: str, properties: Mapping[str, str] | None = None) -> Domain:
        """Raises Conflict when the domain exists."""
        ...

    def get_domain(self, name: str) -> Domain: ...
    def list_domains(self) -> list[Domain]: ...
    def set_domain_property(self, domain: str, name: str, value: str) -> None: ...
    def delete_domain_property(self, domain: str, name: str) -> None: ...
    def remove_domain(self, name: str) -> None: ...

    def add_user(
        self, email: str, properties: Mapping[str, str] | None = None, enabled: bool = True
    ) -> User:
        """Raises Conflict when the user exists, InvalidData for a malformed address."""
        ...

    def get_user(self, email: str) -> User: ...
    def list_users(self, domain: str | None = None) -> list[User]: ...
    def set_user_property(self, email: str, name: str, value: str) -> None: ...
    def delete_user_property(self, email: str, name: str) -> None: ...
    def set_user_enabled(self, email: str, enabled: bool) -> None: ...
    def remove_user(self, email: str) -> None: ...

    def policy_rows(self, addresses: Sequence[str]) -> PolicyRows:
        """Settings, candidate domain rules and users for addresses (e.g. sender + recipient)."""
        ...

    # -- certificates and keys ------------------------------------------------------------
    def add_certificate(
        self, cert: x509.Certificate | bytes, source: str = "import", key: Any = None
    ) -> CertificateRecord:
        """Store a certificate (and its private key, if given) once; return its record.

        Idempotent: storing it again returns the existing record (adding the key if it was
        missing). Raises InvalidData for a malformed certificate or a key that does not belong
        to it, MasterKeyError when a key is given and no master key is configured.
        """
        ...

    def get_certificate(self, fingerprint: str) -> CertificateRecord: ...
    def find_certificates(self, email: str) -> list[CertificateRecord]:
        """Certificates for an address (SAN or subject emailAddress), newest first."""
        ...

    def find_by_issuer_serial(
        self, issuer: x509.Name | str, serial: int
    ) -> list[CertificateRecord]: ...
    def find_by_ski(self, ski: bytes) -> list[CertificateRecord]: ...
    def list_certificates(self, email: str | None = None) -> list[CertificateRecord]: ...
    def set_certificate_blocked(self, fingerprint: str, blocked: bool) -> None: ...
    def remove_certificate(self, fingerprint: str) -> None:
        """Removes its key too. Raises Conflict when a CA uses it."""
        ...

    def get_private_key(self, fingerprint: str) -> Any:
        """The unwrapped private key (cryptography). Raises NotFound, MasterKeyError."""
        ...

    def keys_for_email(self, email: str) -> list[tuple[CertificateRecord, Any]]:
        """Every (certificate, private key) for an address, current and older, newest first."""
        ...

    def verify_master_key(self) -> None:
        """Raise MasterKeyError when stored keys were sealed with another master key."""
        ...

    def set_certificate_capabilities(
        self, fingerprint: str, names: Sequence[str], signing_time: dt.datetime
    ) -> bool:
        """Record the SMIMECapabilities a stored certificate's holder announced in a message
        signed at signing_time, unless a message signed later already gave them (at an equal
        time the call made last wins). Returns
        whether the record changed. Raises InvalidData for an unknown certificate or a naive
        time."""
        ...

    def certificate_capabilities(self, fingerprints: Sequence[str]) -> dict[str, Capabilities]:
        """The recorded capabilities of those certificates that have some, by fingerprint."""
        ...

    # -- trust ----------------------------------------------------------------------------
    def add_root(self, cert: x509.Certificate | bytes) -> CertificateRecord: ...
    def list_roots(self) -> list[CertificateRecord]: ...
    def remove_root(self, fingerprint: str) -> None: ...

    def add_crl(
        self, crl: x509.CertificateRevocationList | bytes, source: str | None = None,
        verified: bool | None = None,
    ) -> CrlRecord:
        """Store a CRL once (idempotent by fingerprint) with what is known of its signature.

        A verified CRL replaces the older verified CRLs of the same issuer, key and scope (a
        later thisUpdate, then a higher cRLNumber, supersedes: RFC 5280 5.1.2.4, 5.2.3) and
        the newest of that group is returned; unverified CRLs are only added (they cannot
        prove they supersede anything), and the added one is returned.
        """
        ...

    def crls_for_issuer(self, issuer: x509.Name | str) -> list[CrlRecord]: ...
    def list_crls(self) -> list[CrlRecord]: ...
    def crl_fingerprints(self) -> list[str]:
        """The fingerprints of every stored CRL (cheap: no DER), for incremental reloads."""
        ...

    def get_crls(self, fingerprints: Sequence[str]) -> list[CrlRecord]:
        """The stored CRLs among ``fingerprints`` (absent ones are left out)."""
        ...

    def set_crls_verified(self, results: Mapping[str, bool]) -> None:
        """Record the outcomes of checking CRL signatures (fingerprint -> verified), in one
        transaction; absent CRLs are left out."""
        ...

    def remove_crl(self, fingerprint: str) -> None:
        """Delete a stored CRL. Raises NotFound when absent."""
        ...

    def ca_certificates(self) -> list[CertificateRecord]:
        """Trusted roots and certificates that are CAs (basicConstraints cA), blocked ones
        included (the caller decides), without reading the end-entity certificates."""
        ...

    # -- built-in CAs ---------------------------------------------------------------------
    def add_ca(
        self, name: str, root_fingerprint: str, intermediate_fingerprint: str,
        default: bool = False,
    ) -> CaRecord: ...
    def get_ca(self, name: str | None = None) -> CaRecord:
        """The named CA, or the default one when name is None. Raises NotFound."""
        ...

    def list_cas(self) -> list[CaRecord]: ...
    def set_default_ca(self, name: str) -> None: ...
    def allocate_crl_number(self, ca: str) -> int:
        """Atomically take the CA's next CRL number."""
        ...

    def add_revocation(
        self, ca: str, serial: int, reason: str | None = None, when: dt.datetime | None = None
    ) -> Revocation: ...
    def add_revocations(
        self, ca: str, serials: Sequence[int], reason: str | None = None,
        when: dt.datetime | None = None,
    ) -> int:
        """Record many revocations of the CA at once, in one transaction (all or none).
        A serial already recorded keeps its date and reason. Returns how many were new.
        Raises NotFound for an unknown CA."""
        ...

    def latest_expiry_by_serial(self, issuer: x509.Name | str) -> dict[str, dt.datetime]:
        """For each serial (stored form) of a stored certificate that issuer issued, the
        latest notAfter among those certificates (a CRL leaves out expired ones)."""
        ...

    def revocations(self, ca: str) -> list[Revocation]: ...

    # -- delivery queue -------------------------------------------------------------------
    def enqueue(self, kind: str, payload: bytes, at: dt.datetime | None = None) -> int:
        """Queue an item; its payload is sealed with the master key. Returns its id."""
        ...

    def claim(
        self, limit: int = 10, lease: float = 300.0, kinds: Sequence[str] | None = None
    ) -> list[QueueItem]:
        """Take due items for this worker; another worker cannot take them for lease seconds."""
        ...

    def claim_item(self, item_id: int, lease: float = 300.0) -> QueueItem | None:
        """Take one item for this caller now, due or not, pending or failed, as claim() takes
        due ones (`queue retry`). Returns None when a worker holds it (a lease not yet run
        out, or claiming it at this moment). Raises NotFound when there is no such item."""
        ...

    def complete(self, item_id: int) -> None: ...
    def fail(self, item_id: int, error: str, retry_at: dt.datetime | None) -> None:
        """Record a failed attempt: retry at retry_at, or give up (status failed) when None."""
        ...

    def list_queue(self, status: str | None = None) -> list[QueueItem]: ...
    def get_queue_item(self, item_id: int) -> QueueItem: ...
    def retry(self, item_id: int) -> None: ...
    def delete_queue_item(self, item_id: int) -> None: ...
