"""Per-process memory of trust decisions (issue 5 item 12: per-message CPU).

smimegate.pki.trust.check builds and validates a path with pyhanko-certvalidator on a private
event loop: ~5-7 ms for a two-certificate path, paid for every signer of every inbound message
(the same few correspondents, again and again). ``TrustCache`` remembers each result:

- keyed by the certificate (SHA-256 of its DER), the purpose and the extra certificates that
  may complete its path (a message's own certificates), and valid for ONE TrustAnchors value
  only: handing it another anchors object (smimegate.pki.anchors.CachedAnchors reloads roots,
  CA certificates and CRLs every ANCHORS_MAX_AGE seconds, after a CRL download and on
  SIGUSR1) forgets everything. So a new CRL or a removed root takes effect with the anchors.
- a result is kept at most ``ttl`` seconds, and never past the notAfter of a certificate of
  its path nor past the nextUpdate of a held CRL, so that time alone (expiry, a CRL going
  stale) cannot leave a stale answer behind. A certificate that is not yet valid is answered
  "untrusted" for at most ``ttl`` seconds after its notBefore.
- only decisions "now" without a CRL fetcher are cached; the rest goes straight to trust.check.
- bounded: past ``max_entries`` it starts again empty.

Thread-safe (the milter asks from one thread per MTA connection); checks run outside the lock,
so two threads may both compute the same entry once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.pki import trust
from smimegate.smime.certmemo import per_certificate
from smimegate.smime.results import Layer

__all__ = ["TrustCache"]

_Key = tuple[bytes, str, bytes]


def _digest(certs: Sequence[x509.Certificate]) -> bytes:
    """One digest of a set of certificates, in any order."""
    h = hashlib.sha256()
    for digest in sorted(_cert_digest(c) for c in certs):
        h.update(digest)
    return h.digest()


@per_certificate(maxsize=1024)
def _cert_digest(cert: x509.Certificate) -> bytes:
    """SHA-256 of a certificate's DER, remembered per certificate: every inbound message asks
    for its signer's and the certificates it carries (bench/cost_bench.py)."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()


class TrustCache:
    """trust.check and trust.apply_trust with memory (see the module docstring)."""

    def __init__(self, ttl: float = 60.0, max_entries: int = 10000,
                 clock: Callable[[], float] = time.time) -> None:
        """``clock``: wall-clock seconds (certificate and CRL times are wall-clock times).
        Raises ValueError for a ttl that is not positive or max_entries below 1."""
        if ttl <= 0:
            raise ValueError(f"ttl: must be positive, got {ttl}")
        if max_entries < 1:
            raise ValueError(f"max_entries: must be at least 1, got {max_entries}")
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._anchors: trust.TrustAnchors | None = None
        self._items: dict[_Key, tuple[float, trust.TrustResult]] = {}

    def clear(self) -> None:
        """Forget every decision (a reload). Never raises."""
        with self._lock:
            self._items.clear()
            self._anchors = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def check(self, cert: x509.Certificate, anchors: trust.TrustAnchors, *,
              purpose: trust.Purpose, extra_certs: Sequence[x509.Certificate] = ()
              ) -> trust.TrustResult:
        """trust.check(cert, anchors, purpose=..., extra_certs=...) now, from memory when
        this process decided it already against the same ``anchors`` value. Raises what
        trust.check raises (ValueError for an unknown purpose)."""
        key: _Key = (_cert_digest(cert), purpose, _digest(extra_certs))
        now = self._clock()
        with self._lock:
            if anchors is not self._anchors:
                self._items.clear()
                self._anchors = anchors
            hit = self._items.get(key)
        if hit is not None and now < hit[0]:
            return hit[1]
        moment = datetime.fromtimestamp(now, UTC)
        result = trust.check(cert, anchors, purpose=purpose, at=moment, extra_certs=extra_certs)
        expires = self._expiry(now, cert, result, anchors)
        with self._lock:
            if anchors is self._anchors:
                if len(self._items) >= self._max:
                    self._items.clear()
                self._items[key] = (expires, result)
        return result

    def _expiry(self, now: float, cert: x509.Certificate, result: trust.TrustResult,
                anchors: trust.TrustAnchors) -> float:
        ends = [now + self._ttl, cert.not_valid_after_utc.timestamp()]
        ends += [c.not_valid_after_utc.timestamp() for c in result.path]
        next_update = anchors.next_crl_update(now)
        if next_update is not None:
            ends.append(next_update)
        return min(ends)

    def apply_trust(self, layer: Layer, anchors: trust.TrustAnchors) -> Layer:
        """trust.apply_trust(layer, anchors) now, each signer's check through this cache.
        Never raises for a bad certificate (an untrusted signer, as trust.apply_trust)."""
        if layer.kind != "signed":
            return layer
        signers = []
        for signer in layer.signers:
            if not signer.valid or signer.certificate is None:
                # trust.apply_trust's own wording for these two cases, no check needed.
                signers.append(trust.apply_trust(
                    dataclasses.replace(layer, signers=(signer,)), anchors).signers[0])
                continue
            result = self.check(signer.certificate, anchors, purpose="sign",
                                extra_certs=layer.certificates)
            signers.append(dataclasses.replace(signer, trusted=result.trusted,
                                               trust_info=result.reason,
                                               revocation=result.revocation))
        return dataclasses.replace(layer, signers=tuple(signers))
