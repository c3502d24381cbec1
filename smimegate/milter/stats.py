"""Message counters, the latency histogram, the message log lines and the heartbeat of one
milter worker, written to the store in batches (issue 12: the Dashboard, Logs and /metrics).

On a message's path only ``MessageStats.record`` runs: it appends the finished log line and
the processing time to a list under a lock (no parsing, no I/O). ``StatsFlusher``, a daemon
thread of every worker, takes that list every ``[milter] stats_interval`` seconds, reads the
lines' ``direction=`` and ``result=`` fields (the lines are written to be read back:
smimegate.log quotes as a POSIX shell does), adds them to per-hour counters and writes
counters, lines and the worker's heartbeat in one transaction
(smimegate.store.operations.OperationsStore.flush). Counters are added to the rows
(``ON CONFLICT DO UPDATE SET n = n + excluded.n``), so workers and nodes sharing a PostgreSQL
store sum up. A failed write keeps the counters for the next round (they are small: one entry
per hour, direction and result) and at most MAX_LINES log lines, the newest.

What is counted: every end-of-message line (``result=`` ok, refused, malformed, tempfail,
internal ...; ``direction=`` inbound, outbound, internal, reinjected ...), and each recipient
refused at RCPT (``action=rcpt-refused``: direction ``unknown``, result ``refused`` for a 5xx,
``tempfail`` for a 4xx reply). Lines of reinjected copies are stored in the log, not counted.
"""

from __future__ import annotations

import collections
import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable

from smimegate import log
from smimegate.config import Config
from smimegate.store.base import Store, StoreError
from smimegate.store.operations import Batch, hour_of, operations_of

_LOG = logging.getLogger("smimegate.milter.stats")

BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the latency histogram, Prometheus' default buckets."""

MAX_LINES = 10000
"""Log lines held while the store cannot be written; older ones are dropped (syslog has all)."""

PRUNE_EVERY = 600.0
"""Seconds between two prunings of the stored message log by a worker."""


def le_label(bound: float) -> str:
    """A bucket bound as Prometheus writes it (Go's float format: 0.005, 1.0, +Inf)."""
    return repr(float(bound))


LABELS: tuple[str, ...] = (*(le_label(b) for b in BUCKETS), "+Inf")


def bucket_of(seconds: float) -> str:
    for bound, label in zip(BUCKETS, LABELS, strict=False):
        if seconds <= bound:
            return label
    return "+Inf"


def parse_line(line: str) -> tuple[str, dict[str, str]] | None:
    """(queue id, fields) of a message log line ``QUEUEID: smimegate: k=v ...``; None for a
    line of another form (a warning, a line without fields)."""
    head, sep, rest = line.partition(f": {log.TAG}: ")
    if not sep or rest.startswith("warning:"):
        return None
    try:
        words = shlex.split(rest)
    except ValueError:  # an unbalanced quote: not a line we wrote
        return None
    fields: dict[str, str] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if eq:
            fields[key] = value
    return head, fields


def _addresses(text: str) -> str:
    """``<a@x>,<b@y>`` -> ``a@x b@y`` (lower case), for the Logs page's address filter."""
    parts = [p.strip().strip("<>").lower() for p in text.split(",")]
    return " ".join(p for p in parts if p)


class MessageStats:
    """The lines a worker logged since the last flush. Thread-safe; record() is cheap."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[float, str, float | None]] = []
        self.enabled = False  # set by a running StatsFlusher: nothing piles up without one

    def record(self, line: str, seconds: float | None = None) -> None:
        """A message log line as logged, and the processing time it took (end-of-message
        lines) or None (lines that are not a message's outcome)."""
        if not self.enabled:
            return
        with self._lock:
            self._pending.append((time.time(), line, seconds))

    def take(self) -> list[tuple[float, str, float | None]]:
        with self._lock:
            taken, self._pending = self._pending, []
        return taken


class StatsFlusher:
    """Writes a worker's MessageStats to the store every ``[milter] stats_interval`` seconds
    (see the module doc); a final write and the heartbeat's removal at stop()."""

    def __init__(self, stats: MessageStats, store: Store, config: Callable[[], Config], *,
                 worker: int = 0, node: str | None = None) -> None:
        self._stats = stats
        self._ops = operations_of(store)
        self._config = config
        self._worker = worker
        self._node = node or socket.gethostname()
        self._started = int(time.time())
        self._counts: dict[tuple[int, str, str], tuple[int, int]] = {}
        self._latency: dict[tuple[int, str, str], int] = {}
        self._lines: collections.deque[tuple[int, str, str, str, str, str, str, str]] = (
            collections.deque(maxlen=MAX_LINES))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self._pruned = 0.0

    def start(self) -> StatsFlusher:
        """Start the thread (once), unless stats_interval is 0; returns self."""
        if self._thread is not None:
            raise RuntimeError("StatsFlusher already started")
        if self._config().milter.stats_interval <= 0:
            return self
        self._stats.enabled = True
        self._thread = threading.Thread(target=self._loop, name="smimegate-stats", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread, write what is left and remove the heartbeat (a worker that stopped
        is not down). A store that cannot be written then is logged, not raised."""
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(timeout)
        try:
            self.flush()
            self._ops.remove_worker(self._node, self._worker)
        except StoreError as exc:
            _LOG.warning(log.warning_line(None, "message counters not written at stop",
                                          {"reason": str(exc)}))

    def _take(self) -> None:
        keep = self._config().milter.message_log_rows > 0
        for at, line, seconds in self._stats.take():
            parsed = parse_line(line)
            if parsed is None:
                continue
            queue_id, fields = parsed
            action = fields.get("action", "")
            direction = fields.get("direction", "")
            result = fields.get("result", "")
            if action == "rcpt-refused":
                direction = "unknown"
                result = "tempfail" if fields.get("reply", "").startswith("4") else "refused"
            if keep:
                self._lines.append((int(at), self._node, queue_id, direction, result,
                                    _addresses(fields.get("from", "")),
                                    _addresses(fields.get("to", "")), line))
            if not result or action == "reinject":
                continue
            hour = hour_of(at)
            key = (hour, direction or "unknown", result)
            n, us = self._counts.get(key, (0, 0))
            self._counts[key] = (n + 1, us + int((seconds or 0.0) * 1_000_000))
            if seconds is not None:
                bucket = (hour, direction or "unknown", bucket_of(seconds))
                self._latency[bucket] = self._latency.get(bucket, 0) + 1

    def flush(self) -> None:
        """Take the recorded lines and write everything held. Raises StoreError (then
        everything stays held for the next call)."""
        self._take()
        config = self._config().milter
        batch = Batch(dict(self._counts), dict(self._latency), list(self._lines),
                      node=self._node, worker=self._worker, pid=os.getpid(),
                      started=self._started, every_s=max(config.stats_interval, 1))
        self._ops.flush(batch)
        self._counts.clear()
        self._latency.clear()
        self._lines.clear()
        now = time.monotonic()
        if now - self._pruned >= PRUNE_EVERY:
            self._pruned = now
            self._ops.prune_log(int(time.time()) - config.message_log_days * 86400,
                                config.message_log_rows)

    def _loop(self) -> None:
        delay = float(self._config().milter.stats_interval)
        while not self._stop.wait(delay):
            interval = self._config().milter.stats_interval
            if interval <= 0:  # turned off by a reload: hold, look again at the old pace
                self._stats.enabled = False
                continue
            self._stats.enabled = True
            delay = float(interval)
            try:
                self.flush()
            except StoreError as exc:
                if not self._failing:  # once per outage, not every round
                    _LOG.warning(log.warning_line(None, "message counters not written",
                                                  {"reason": str(exc)}))
                self._failing = True
                continue
            except Exception as exc:  # noqa: BLE001
                # Boundary of a daemon thread: log with the traceback, the next round comes.
                _LOG.warning(log.warning_line(None, "message counters crashed",
                                              {"reason": repr(exc)}), exc_info=True)
                continue
            self._failing = False
