"""TrustAnchors from the store: trusted roots, the CA certificates it holds, its CRLs.

trust.check() does no I/O and takes its roots, intermediates and CRLs as a TrustAnchors value;
this module reads them from the store (issues 4 and 10):

- roots: the store's trusted roots (``smimegate root add``, ``ca create``);
- intermediates: every other stored certificate that is a CA (basicConstraints cA TRUE, RFC 5280
  4.2.1.9), e.g. our own issuing CAs and intermediates harvested from messages. They only
  complete paths; they are never trusted by themselves;
- crls: every stored CRL, parsed once (smimegate.pki.crlindex). A reload is incremental: it
  asks the store for the fingerprints of its CRLs and reads and parses only the new ones; the
  parsed CRLs, CA index entries and checked signatures of the previous value are reused.

Blocked certificates are left out of both lists. A reload also settles the ``verified`` column
of stored CRLs whose issuer was unknown (NULL) or whose issuer name gained a CA certificate:
each is checked once against the CA certificates of its issuer's name and the result is kept
(issue 10 item 1).

``CachedAnchors`` keeps one TrustAnchors per process (the milter checks trust for every signer
and recipient, the store changes rarely) and reloads it on refresh(), after a CRL download, on
invalidate() (SIGUSR1), or when it is older than max_age: with ``background=True`` (the milter)
that last reload runs in a thread of its own while messages keep the previous value, so no
message waits for a reload (issue 10 items 2 and 6).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.log import get_logger, warning_line
from smimegate.pki.crlindex import IndexedCrl, SignatureMemo, parse_crl
from smimegate.pki.paths import Node
from smimegate.pki.revocation import signed_by_named
from smimegate.pki.trust import REVOCATION_MODES, OcspLookup, RevocationMode, TrustAnchors
from smimegate.store.base import CertificateRecord, Store, StoreError
from smimegate.x509errors import X509_ERRORS, check_readable

__all__ = ["CachedAnchors", "crl_verified", "load_anchors"]


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _certificates(records: Iterable[CertificateRecord]) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for record in records:
        if record.blocked:
            continue
        try:
            out.append(check_readable(record.certificate()))
        except X509_ERRORS:
            # The store parsed it when it was added; a newer cryptography may be stricter.
            # One unreadable certificate must not take every trust decision down with it.
            continue
    return out


def _crls(store: Store, previous: TrustAnchors | None) -> list[IndexedCrl]:
    """The store's CRLs, parsed; those of ``previous`` are reused by fingerprint."""
    held = {c.fingerprint: c for c in previous.crls if isinstance(c, IndexedCrl)} \
        if previous is not None else {}
    wanted = store.crl_fingerprints()
    out = [held[fp] for fp in wanted if fp in held]
    for record in store.get_crls([fp for fp in wanted if fp not in held]):
        try:
            out.append(parse_crl(record.der, source=record.source, verified=record.verified))
        except X509_ERRORS:
            continue  # as for certificates above
    return out


def crl_verified(crl: IndexedCrl, anchors: TrustAnchors) -> bool | None:
    """Whether a CA certificate of crl's issuer name in ``anchors`` signed it (RFC 5280 6.3.3
    (f): name, key identifier, cRLSign, signature); None when no CA of that name is known."""
    return signed_by_named(crl, anchors.ca_index.named(crl.issuer_key), anchors.memo)


def _settle_verified(store: Store, anchors: TrustAnchors, previous: TrustAnchors | None) -> None:
    """Check once the stored CRLs whose ``verified`` is NULL, or False while their issuer's
    name gained a CA certificate since the previous load, and keep the results (one
    transaction, and in the parsed CRLs so that the next reload does not write them again).
    Trust decisions do not read the column: they check signatures against the path's own
    certificates."""
    before = previous.ca_index if previous is not None else None
    settled: dict[str, bool] = {}
    for crl in anchors.crls:
        if not isinstance(crl, IndexedCrl) or crl.verified is True:
            continue
        if crl.verified is False and before is not None and (
                len(before.named(crl.issuer_key)) == len(anchors.ca_index.named(crl.issuer_key))):
            continue
        result = crl_verified(crl, anchors)
        if result is not None and result != crl.verified:
            settled[crl.fingerprint] = result
    try:
        store.set_crls_verified(settled)
    except StoreError as exc:
        get_logger().warning(warning_line(None, "CRL checks not recorded",
                                          {"crls": len(settled), "reason": str(exc)}))
        return
    for crl in anchors.crls:
        if isinstance(crl, IndexedCrl) and crl.fingerprint in settled:
            # A cache field of a value only this loader hands out: mutated in place.
            object.__setattr__(crl, "verified", settled[crl.fingerprint])


def load_anchors(
    store: Store | None,
    extra_roots: Iterable[x509.Certificate] = (),
    *,
    revocation_mode: RevocationMode = "soft-fail",
    ocsp: OcspLookup | None = None,
    previous: TrustAnchors | None = None,
) -> TrustAnchors:
    """The store's roots, CA certificates and CRLs as a TrustAnchors, plus ``extra_roots``.

    ``store`` None gives only ``extra_roots`` (e.g. ``message inspect --trust`` without a
    configured store). A certificate that is both a root and a CA appears only as a root.
    ``previous``: the value loaded before; what it parsed and checked is reused (incremental
    reload). Raises StoreError (StoreUnavailable ...) from the store.
    """
    roots: dict[bytes, x509.Certificate] = {}
    intermediates: dict[bytes, x509.Certificate] = {}
    crls: list[IndexedCrl] = []
    if store is not None:
        root_records = store.list_roots()
        root_fps = {r.fingerprint for r in root_records}
        for cert in _certificates(root_records):
            roots[_der(cert)] = cert
        ca_records = [r for r in store.ca_certificates()
                      if r.is_ca and r.fingerprint not in root_fps]
        for cert in _certificates(ca_records):
            intermediates[_der(cert)] = cert
        crls = _crls(store, previous)
    for cert in extra_roots:
        key = _der(cert)
        roots[key] = cert
        intermediates.pop(key, None)
    nodes: tuple[Node, ...] = previous.nodes if previous is not None else ()
    anchors = TrustAnchors(
        roots=tuple(roots.values()), intermediates=tuple(intermediates.values()),
        crls=tuple(crls), revocation_mode=revocation_mode, ocsp=ocsp,
        memo=previous.memo if previous is not None else SignatureMemo(), nodes=nodes,
    )
    if store is not None:
        _settle_verified(store, anchors, previous)
    return anchors


class CachedAnchors:
    """One TrustAnchors per process, read from the store on first use and on refresh().

    ``max_age`` (seconds; None: never) makes get() reload an older value, so that roots added or
    CRLs imported with the CLI (or by another milter process over the same store) reach a
    running milter without a reload signal. With ``background`` that reload runs in a thread
    and get() keeps answering with the previous value meanwhile. Thread-safe: the milter asks
    from one thread per SMTP connection. ``clock`` is for tests. ``revocation_mode`` and
    ``ocsp`` go into every TrustAnchors loaded.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        background: bool = False,
        revocation_mode: RevocationMode = "soft-fail",
        ocsp: OcspLookup | None = None,
    ) -> None:
        if max_age is not None and max_age <= 0:
            raise ValueError(f"max_age: must be positive or None, got {max_age}")
        self._store = store
        self._max_age = max_age
        self._clock = clock
        self._background = background
        self._mode: RevocationMode = revocation_mode
        self._ocsp = ocsp
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._value: TrustAnchors | None = None
        self._previous: TrustAnchors | None = None
        self._loaded_at = 0.0
        self._loader: threading.Thread | None = None

    def configure(self, *, revocation_mode: RevocationMode, ocsp: OcspLookup | None) -> None:
        """Take a changed ``[crl] revocation_mode`` / OCSP client (a reload): every load from
        now on uses them; invalidate() makes the next one happen. Raises ValueError for an
        unknown mode."""
        if revocation_mode not in REVOCATION_MODES:
            raise ValueError(f"revocation_mode must be one of {', '.join(REVOCATION_MODES)}, "
                             f"not {revocation_mode!r}")
        with self._lock:
            self._mode = revocation_mode
            self._ocsp = ocsp

    def get(self) -> TrustAnchors:
        """The cached anchors, loading them when absent or older than max_age.

        Raises StoreError only when nothing was loaded yet and the store fails: when a reload
        for max_age fails, the value loaded before is returned (and reloading is tried again on
        the next call), so a database hiccup does not turn every trust decision into an error.
        """
        with self._lock:
            value = self._value
            stale = value is not None and self._max_age is not None and (
                self._clock() - self._loaded_at >= self._max_age)
            if value is not None and not stale:
                return value
            if value is not None and self._background:
                self._start_loader()
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
        return self._load()

    def invalidate(self) -> None:
        """Read the store again (a reload signal, a CRL download), reusing what was parsed
        before. With ``background`` the load runs here, in the caller's thread (the signal
        or download thread), and messages keep the previous value until the new one is ready;
        without, the next get() loads. Never raises, so a reload does not fail when the store
        is down (the next get() then tries again)."""
        with self._lock:
            if self._value is not None:
                self._previous = self._value
            if not self._background:
                self._value = None
                return
        try:
            self._load()
        except StoreError:
            with self._lock:
                self._value = None

    def _start_loader(self) -> None:
        # Called with self._lock held.
        if self._loader is not None and self._loader.is_alive():
            return
        self._loader = threading.Thread(target=self._load_quietly, name="smimegate-anchors",
                                        daemon=True)
        self._loader.start()

    def _load_quietly(self) -> None:
        try:
            self._load()
        except StoreError as exc:
            get_logger().warning(warning_line(None, "trust anchors not reloaded",
                                              {"reason": str(exc)}))
            with self._lock:
                self._loaded_at = self._clock()  # try again after max_age, not at once

    def _load(self) -> TrustAnchors:
        with self._load_lock:  # one load at a time; a second caller reuses the first's work
            with self._lock:
                previous = self._value or self._previous
            value = load_anchors(self._store, revocation_mode=self._mode, ocsp=self._ocsp,
                                 previous=previous)
            with self._lock:
                self._value = value
                self._previous = value
                self._loaded_at = self._clock()
            return value
