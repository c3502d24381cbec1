"""A thread-safe cache of directory answers with separate lifetimes for "found" and "not found".

Per process, like every cache of ours (DESIGN.md "Scale-out"). Failures are never cached: an
unavailable directory is asked again by the next lookup, so recovery is seen at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")

_MISS = object()


class TtlCache(Generic[V]):
    """Maps a key to a value or to None ("not found"), each for its own number of seconds.

    ``max_entries`` bounds memory: the least recently stored entries go first.
    """

    def __init__(
        self,
        ttl: float,
        negative_ttl: float,
        *,
        max_entries: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[float, V | None]] = OrderedDict()

    def get(self, key: str) -> tuple[bool, V | None]:
        """(True, value) for a live entry (value None: cached "not found"), else (False, None)."""
        now = self._clock()
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return False, None
            expires, value = item
            if expires <= now:
                del self._items[key]
                return False, None
            return True, value

    def put(self, key: str, value: V | None) -> None:
        """Remember value (None: "not found") for the positive or negative lifetime."""
        ttl = self._ttl if value is not None else self._negative_ttl
        if ttl <= 0:
            return
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (self._clock() + ttl, value)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def invalidate(self, key: str | None = None) -> None:
        """Forget one key, or everything."""
        with self._lock:
            if key is None:
                self._items.clear()
            else:
                self._items.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
