"""Values worked out once per certificate object and found again by identity.

cryptography's Certificate hashes its whole DER for every dict or lru_cache look-up (1.5 us in
a tight loop, more between the other work of a message), and an inbound message looked its few
certificates up ten times so (bench/cost_bench.py). The same certificate objects come back
message after message: verify reads a message's certificates through a cache by DER, and the
store's caches hand out the same key certificates. A memo keyed by identity finds them without
hashing anything.

Each entry holds its certificate, so while the entry lives the object cannot die and no other
object can have its id(): a hit is always the very certificate the value was worked out for.
Another object with the same DER gets an entry of its own (the value is the same). Bounded:
full, the memo starts again empty, as TrustCache does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from cryptography import x509

T = TypeVar("T")


class CertificateMemo(Generic[T]):
    """``compute(cert)``, remembered for at most ``maxsize`` certificate objects. What raises
    is not remembered."""

    def __init__(self, compute: Callable[[x509.Certificate], T], maxsize: int) -> None:
        self.__wrapped__ = compute
        self.__doc__ = compute.__doc__
        self._maxsize = maxsize
        self._items: dict[int, tuple[x509.Certificate, T]] = {}
        self._lock = threading.Lock()

    def __call__(self, cert: x509.Certificate) -> T:
        entry = self._items.get(id(cert))
        if entry is not None and entry[0] is cert:
            return entry[1]
        value = self.__wrapped__(cert)
        with self._lock:
            if len(self._items) >= self._maxsize:
                self._items.clear()
            self._items[id(cert)] = (cert, value)
        return value

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._items.clear()


def per_certificate(maxsize: int) -> Callable[[Callable[[x509.Certificate], T]],
                                              CertificateMemo[T]]:
    """Decorator: a CertificateMemo of the function, for ``maxsize`` certificates."""
    def wrap(compute: Callable[[x509.Certificate], T]) -> CertificateMemo[T]:
        return CertificateMemo(compute, maxsize)
    return wrap
