"""Store lookups the gateway needs, with the per-process caches (DESIGN.md "Scale-out": caches
are per process and hold nothing another node needs).

Every method may raise StoreUnavailable (the action table turns it into 451 4.7.1). Cached:
the trust anchors (smimegate.pki.anchors.CachedAnchors: roots, stored CA certificates as
intermediates, CRLs; read again on reload and when older than ANCHORS_MAX_AGE seconds), signing
identities and encryption certificates (CACHE_TTL seconds, so a newly imported certificate
is used within that time). Private keys for decryption are not cached: they are only taken
from the store for a message that needs them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography import x509

from smimegate.pki import trust
from smimegate.pki.anchors import CachedAnchors
from smimegate.policy import EffectivePolicy, resolve
from smimegate.smime.results import Layer
from smimegate.store.base import InvalidData, PolicyRows, Store
from smimegate.store.policyrows import address_policy

CACHE_TTL = 60.0
ANCHORS_MAX_AGE = 60.0

_T = TypeVar("_T")


@dataclass(frozen=True)
class SigningIdentity:
    """A key to sign with, its certificate and the intermediates to include."""

    certificate: x509.Certificate
    key: Any
    chain: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class EncryptionChoice:
    """The certificate to encrypt to (None: none usable) and why others were skipped."""

    certificate: x509.Certificate | None
    skipped: tuple[str, ...]


class _TtlCache:
    """A small thread-safe cache with expiry; values computed outside the lock."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, object]] = {}

    def get(self, key: str, compute: Callable[[], _T]) -> _T:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]  # type: ignore[return-value]
        value = compute()
        with self._lock:
            if len(self._items) > 10000:
                self._items.clear()
            self._items[key] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class Services:
    """Lookups over one Store for one process."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._anchors = CachedAnchors(store, max_age=ANCHORS_MAX_AGE)
        self._signing = _TtlCache(CACHE_TTL)
        self._encryption = _TtlCache(CACHE_TTL)

    def reload(self) -> None:
        """Forget every cached value."""
        self._anchors.invalidate()
        self._signing.clear()
        self._encryption.clear()

    # -- policy ---------------------------------------------------------------------------
    def policies(self, addresses: Sequence[str]) -> dict[str, EffectivePolicy]:
        """The effective policy of each address (one policy_rows query for all).

        The null sender ("") and addresses without a domain count as external. Raises
        StoreUnavailable, PolicyError for a bad stored value.
        """
        real = [a for a in addresses if "@" in a]
        rows: PolicyRows = self.store.policy_rows(real)
        out: dict[str, EffectivePolicy] = {}
        for address in addresses:
            if address not in real:
                out[address] = resolve(rows.settings, None, {"locality": "external"})
                continue
            # The same mapping as the CLI's ``user show``: a user whose enabled column is
            # cleared is disabled here too (smimegate.store.policyrows).
            out[address] = address_policy(rows, address)
        return out

    # -- trust ----------------------------------------------------------------------------
    def anchors(self) -> trust.TrustAnchors:
        """Roots, intermediates (stored CA certificates that are not roots) and CRLs
        (smimegate.pki.anchors), read again when older than ANCHORS_MAX_AGE seconds."""
        return self._anchors.get()

    # -- keys and certificates ------------------------------------------------------------
    def signing_identity(self, address: str) -> SigningIdentity | None:
        """The newest key of ``address`` whose certificate is trusted for signing, or None."""
        return self._signing.get(address.lower(), lambda: self._find_signing(address))

    def _find_signing(self, address: str) -> SigningIdentity | None:
        anchors = self.anchors()
        for record, key in self.store.keys_for_email(address):
            if record.blocked:
                continue
            cert = record.certificate()
            result = trust.check(cert, anchors, purpose="sign")
            if result.trusted:
                # The path runs leaf ... root: send the intermediates (RFC 8551 2.4.2: include
                # what the recipient needs to build the path), not the leaf twice nor the root.
                return SigningIdentity(cert, key, tuple(result.path[1:-1]))
        return None

    def encryption_certificate(self, address: str) -> EncryptionChoice:
        """The certificate to encrypt to ``address`` (pki.trust.choose_encryption_certificate
        over its stored, unblocked certificates)."""
        return self._encryption.get(address.lower(), lambda: self._choose(address))

    def _choose(self, address: str) -> EncryptionChoice:
        records = [r for r in self.store.find_certificates(address) if not r.blocked]
        if not records:
            return EncryptionChoice(None, ("no certificate",))
        chosen, skipped = trust.choose_encryption_certificate(
            [r.certificate() for r in records], self.anchors())
        return EncryptionChoice(chosen, tuple(reason for _cert, reason in skipped))

    def decryption_keys(self, addresses: Sequence[str]) -> list[tuple[x509.Certificate, Any]]:
        """Every (certificate, key) of the addresses, current and older (no duplicates)."""
        out: list[tuple[x509.Certificate, Any]] = []
        seen: set[str] = set()
        for address in addresses:
            for record, key in self.store.keys_for_email(address):
                if record.fingerprint not in seen:
                    seen.add(record.fingerprint)
                    out.append((record.certificate(), key))
        return out

    def key_certificates(self, address: str) -> list[x509.Certificate]:
        """Certificates of ``address`` that have a private key in the store."""
        return [r.certificate() for r in self.store.list_certificates(address) if r.has_key]

    def import_signers(self, layers: Sequence[Layer]) -> int:
        """Store the certificates of valid signers and the chain their layer carries, so that
        replies can be encrypted (trust is decided when they are used). Returns how many."""
        count = 0
        for layer in layers:
            if layer.kind != "signed" or not any(s.valid for s in layer.signers):
                continue
            wanted = [s.certificate for s in layer.signers if s.valid and s.certificate]
            wanted += [c for c in layer.certificates if _is_ca(c)]
            for cert in wanted:
                try:
                    self.store.add_certificate(cert, source="message")
                except InvalidData:
                    continue  # a certificate the store cannot keep is simply not harvested
                count += 1
        return count


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False
