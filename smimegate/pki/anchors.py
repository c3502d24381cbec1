"""TrustAnchors from the store: trusted roots, the CA certificates it holds, its CRLs.

trust.check() does no I/O and takes its roots, intermediates and CRLs as a TrustAnchors value;
this module reads them from the store (issue 4, item 1):

- roots: the store's trusted roots (``smimegate root add``, ``ca create``);
- intermediates: every other stored certificate that is a CA (basicConstraints cA TRUE, RFC 5280
  4.2.1.9), e.g. our own issuing CAs and intermediates harvested from messages. They only
  complete paths; they are never trusted by themselves;
- crls: every stored CRL (trust.check works out which one speaks for which certificate).

Blocked certificates are left out of both lists. ``CachedAnchors`` keeps one TrustAnchors per
process (the milter checks trust for every signer and recipient, the store changes rarely)
and reloads it on refresh(), after a CRL download, or when it is older than max_age;
invalidate() makes the next get() reload.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.pki.trust import TrustAnchors
from smimegate.store.base import CertificateRecord, Store, StoreError

__all__ = ["CachedAnchors", "load_anchors"]


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _certificates(records: Iterable[CertificateRecord]) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for record in records:
        if record.blocked:
            continue
        try:
            out.append(record.certificate())
        except ValueError:
            # The store parsed it when it was added; a newer cryptography may be stricter.
            # One unreadable certificate must not take every trust decision down with it.
            continue
    return out


def _crls(store: Store) -> list[x509.CertificateRevocationList]:
    out: list[x509.CertificateRevocationList] = []
    for record in store.list_crls():
        try:
            out.append(x509.load_der_x509_crl(record.der))
        except ValueError:
            continue  # as for certificates above
    return out


def load_anchors(
    store: Store | None, extra_roots: Iterable[x509.Certificate] = ()
) -> TrustAnchors:
    """The store's roots, CA certificates and CRLs as a TrustAnchors, plus ``extra_roots``.

    ``store`` None gives only ``extra_roots`` (e.g. ``message inspect --trust`` without a
    configured store). A certificate that is both a root and a CA appears only as a root.
    Raises StoreError (StoreUnavailable ...) from the store.
    """
    roots: dict[bytes, x509.Certificate] = {}
    intermediates: dict[bytes, x509.Certificate] = {}
    crls: list[x509.CertificateRevocationList] = []
    if store is not None:
        root_records = store.list_roots()
        root_fps = {r.fingerprint for r in root_records}
        for cert in _certificates(root_records):
            roots[_der(cert)] = cert
        ca_records = [r for r in store.list_certificates() if r.is_ca and r.fingerprint not in
                      root_fps]
        for cert in _certificates(ca_records):
            intermediates[_der(cert)] = cert
        crls = _crls(store)
    for cert in extra_roots:
        key = _der(cert)
        roots[key] = cert
        intermediates.pop(key, None)
    return TrustAnchors(
        roots=tuple(roots.values()), intermediates=tuple(intermediates.values()),
        crls=tuple(crls),
    )


class CachedAnchors:
    """One TrustAnchors per process, read from the store on first use and on refresh().

    ``max_age`` (seconds; None: never) makes get() reload an older value, so that roots added or
    CRLs imported with the CLI reach a running milter without a reload signal. Thread-safe: the
    milter asks from one thread per SMTP connection. ``clock`` is for tests.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age is not None and max_age <= 0:
            raise ValueError(f"max_age: must be positive or None, got {max_age}")
        self._store = store
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._value: TrustAnchors | None = None
        self._loaded_at = 0.0

    def get(self) -> TrustAnchors:
        """The cached anchors, loading them when absent or older than max_age.

        Raises StoreError only when nothing was loaded yet and the store fails: when a reload
        for max_age fails, the value loaded before is returned (and reloading is tried again on
        the next call), so a database hiccup does not turn every trust decision into an error.
        """
        with self._lock:
            value = self._value
            stale = (
                value is None
                or (self._max_age is not None
                    and self._clock() - self._loaded_at >= self._max_age)
            )
            if not stale and value is not None:
                return value
            try:
                return self._load()
            except StoreError:
                if value is None:
                    raise
                return value

    def refresh(self) -> TrustAnchors:
        """Reload from the store now (after `crl fetch`, a reload signal ...); return the value.

        Raises StoreError from the store; the previous value stays in use then.
        """
        with self._lock:
            return self._load()

    def invalidate(self) -> None:
        """Forget the value: the next get() reads the store again (a reload signal). Never
        raises, so a reload does not fail when the store is down."""
        with self._lock:
            self._value = None

    def _load(self) -> TrustAnchors:
        value = load_anchors(self._store)
        self._value = value
        self._loaded_at = self._clock()
        return value
