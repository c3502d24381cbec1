"""What the web admin and /metrics show of the running gateway (sql/0007_operations*.sql):
message counters and the latency histogram per hour, the workers' heartbeats, the message
log lines, the outcome of CRL downloads, and summaries that read no DER (the dashboard).

Kept apart from SqlStore, over the same connections (SqlStore.backend), as accounts.py is.
The milter workers write here only from their flush thread (smimegate.milter.stats), never
on a message's path. Times are whole seconds since the epoch, UTC.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smimegate.store.base import Store, StoreError
from smimegate.store.dialect import Backend
from smimegate.store.sql import SqlStore

HOUR = 3600
COUNTS_KEEP_HOURS = 90 * 24
"""Hourly counter rows kept (the dashboard shows the last day); older hours are folded into
one row per direction and result at hour 0, so that the /metrics counters never go down."""


def hour_of(at: float) -> int:
    """The start of the UTC hour holding ``at`` (seconds)."""
    return int(at) // HOUR * HOUR


@dataclass(frozen=True)
class LogLine:
    id: int
    at: int
    node: str
    queue_id: str
    direction: str
    result: str
    sender: str
    recipients: str  # space-separated bare addresses
    line: str


@dataclass(frozen=True)
class Worker:
    node: str
    worker: int
    pid: int
    started: int
    seen: int
    every_s: int

    def up(self, at: int) -> bool:
        """Seen within three flush intervals (a missed flush is no death)."""
        return at - self.seen <= 3 * max(self.every_s, 1)


@dataclass(frozen=True)
class CrlDownload:
    url: str
    last_attempt: int
    last_success: int | None
    failures: int  # consecutive failed attempts; 0 after a success
    last_error: str | None


@dataclass(frozen=True)
class CrlSummary:
    issuer: str
    this_update: int
    next_update: int | None
    verified: bool | None


@dataclass
class Batch:
    """What one worker flushes at once: counters to add, log lines, its heartbeat.

    counts: (hour, direction, result) -> (messages, duration in microseconds);
    latency: (hour, direction, le) -> messages in that bucket (not cumulative).
    """

    counts: dict[tuple[int, str, str], tuple[int, int]]
    latency: dict[tuple[int, str, str], int]
    lines: list[tuple[int, str, str, str, str, str, str, str]]  # at .. line, as message_log
    node: str = ""
    worker: int = 0
    pid: int = 0
    started: int = 0
    every_s: int = 0


def operations_of(store: Store) -> OperationsStore:
    """The operations tables of an SQL store. Raises StoreError for any other kind of store."""
    if not isinstance(store, SqlStore):
        raise StoreError("this store keeps no counters or message log")
    return OperationsStore(store.backend)


class OperationsStore:
    """Every method may raise StoreUnavailable."""

    def __init__(self, backend: Backend) -> None:
        self._db = backend

    # -- written by the milter workers ----------------------------------------------------
    def flush(self, batch: Batch, at: int | None = None) -> None:
        """Add the batch's counters, append its lines and write the heartbeat, in one
        transaction: a failed flush adds nothing, so the caller may retry it whole."""
        seen = int(time.time()) if at is None else at
        with self._db.transaction() as cur:
            cur.many(
                "INSERT INTO message_counts (hour, direction, result, messages, duration_us)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (hour, direction, result) DO UPDATE SET"
                " messages = message_counts.messages + excluded.messages,"
                " duration_us = message_counts.duration_us + excluded.duration_us",
                [(*key, n, us) for key, (n, us) in sorted(batch.counts.items())])
            cur.many(
                "INSERT INTO message_latency (hour, direction, le, messages) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (hour, direction, le) DO UPDATE SET"
                " messages = message_latency.messages + excluded.messages",
                [(*key, n) for key, n in sorted(batch.latency.items())])
            cur.many(
                "INSERT INTO message_log (at, node, queue_id, direction, result, sender,"
                " recipients, line) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch.lines)
            if batch.node:
                cur.run(
                    "INSERT INTO milter_workers (node, worker, pid, started, seen, every_s)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (node, worker) DO UPDATE SET"
                    " pid = excluded.pid, started = excluded.started, seen = excluded.seen,"
                    " every_s = excluded.every_s",
                    (batch.node, batch.worker, batch.pid, batch.started, seen, batch.every_s))

    def remove_worker(self, node: str, worker: int) -> None:
        """A worker that stopped cleanly says so (it is then not 'down')."""
        with self._db.connection() as cur:
            cur.run("DELETE FROM milter_workers WHERE node = ? AND worker = ?", (node, worker))

    def prune_log(self, before: int, keep_rows: int) -> int:
        """Delete log lines older than ``before`` and all but the newest ``keep_rows``;
        workers that stopped more than a day ago; fold counter hours older than
        COUNTS_KEEP_HOURS into hour 0. Returns the lines deleted."""
        with self._db.transaction() as cur:
            gone = cur.run("DELETE FROM message_log WHERE at < ?", (before,))
            row = cur.one("SELECT MAX(id) FROM message_log")
            if row and row[0] is not None:
                gone += cur.run("DELETE FROM message_log WHERE id <= ?",
                                (int(row[0]) - keep_rows,))
            cur.run("DELETE FROM milter_workers WHERE seen < ?", (before - 86400,))
            self._fold_old_hours(cur, hour_of(time.time()) - COUNTS_KEEP_HOURS * HOUR)
        return gone

    @staticmethod
    def _fold_old_hours(cur: Any, cutoff: int) -> None:
        # The sums over all hours are what /metrics exports as counters (Prometheus counters
        # only grow), so old hours are added to the hour-0 row before they go.
        cur.run(
            "INSERT INTO message_counts (hour, direction, result, messages, duration_us)"
            " SELECT 0, direction, result, SUM(messages), SUM(duration_us) FROM message_counts"
            " WHERE hour > 0 AND hour < ? GROUP BY direction, result"
            " ON CONFLICT (hour, direction, result) DO UPDATE SET"
            " messages = message_counts.messages + excluded.messages,"
            " duration_us = message_counts.duration_us + excluded.duration_us", (cutoff,))
        cur.run("DELETE FROM message_counts WHERE hour > 0 AND hour < ?", (cutoff,))
        cur.run(
            "INSERT INTO message_latency (hour, direction, le, messages)"
            " SELECT 0, direction, le, SUM(messages) FROM message_latency"
            " WHERE hour > 0 AND hour < ? GROUP BY direction, le"
            " ON CONFLICT (hour, direction, le) DO UPDATE SET"
            " messages = message_latency.messages + excluded.messages", (cutoff,))
        cur.run("DELETE FROM message_latency WHERE hour > 0 AND hour < ?", (cutoff,))

    # -- read by the web admin and /metrics -----------------------------------------------
    def counts(self, since_hour: int = 0) -> list[tuple[int, str, str, int, int]]:
        """(hour, direction, result, messages, duration_us) from since_hour on, by hour."""
        with self._db.connection() as cur:
            rows = cur.all(
                "SELECT hour, direction, result, messages, duration_us FROM message_counts"
                " WHERE hour >= ? ORDER BY hour, direction, result", (since_hour,))
        return [(int(h), d, r, int(n), int(us)) for h, d, r, n, us in rows]

    def totals(self) -> list[tuple[str, str, int, int]]:
        """(direction, result, messages, duration_us) summed over every hour: the counters
        /metrics exports (they only grow)."""
        with self._db.connection() as cur:
            rows = cur.all(
                "SELECT direction, result, SUM(messages), SUM(duration_us) FROM message_counts"
                " GROUP BY direction, result ORDER BY direction, result")
        return [(d, r, int(n), int(us)) for d, r, n, us in rows]

    def latency_totals(self) -> list[tuple[str, str, int]]:
        """(direction, le, messages) summed over every hour (per bucket, not cumulative)."""
        with self._db.connection() as cur:
            rows = cur.all(
                "SELECT direction, le, SUM(messages) FROM message_latency"
                " GROUP BY direction, le ORDER BY direction, le")
        return [(d, le, int(n)) for d, le, n in rows]

    def workers(self) -> list[Worker]:
        with self._db.connection() as cur:
            rows = cur.all("SELECT node, worker, pid, started, seen, every_s"
                           " FROM milter_workers ORDER BY node, worker")
        return [Worker(n, int(w), int(p), int(s), int(seen), int(e))
                for n, w, p, s, seen, e in rows]

    _LOG_SELECT = ("SELECT id, at, node, queue_id, direction, result, sender, recipients, line"
                   " FROM message_log")

    def log_lines(self, *, queue_id: str = "", address: str = "", direction: str = "",
                  result: str = "", after: int = 0, before: int = 0,
                  limit: int = 100) -> list[LogLine]:
        """Lines newest first, filtered: queue_id exact (case-insensitive), address a
        substring of the sender or the recipients, direction and result exact; after/before:
        ids (the live tail asks for the lines after the last one it shows)."""
        where: list[str] = []
        params: list[object] = []
        if queue_id:
            where.append("LOWER(queue_id) = ?")
            params.append(queue_id.lower())
        if address:
            escaped = address.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
            where.append("(sender LIKE ? ESCAPE '!' OR recipients LIKE ? ESCAPE '!')")
            params += [f"%{escaped}%"] * 2
        if direction:
            where.append("direction = ?")
            params.append(direction)
        if result:
            where.append("result = ?")
            params.append(result)
        if after:
            where.append("id > ?")
            params.append(after)
        if before:
            where.append("id < ?")
            params.append(before)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._db.connection() as cur:
            rows = cur.all(f"{self._LOG_SELECT}{clause} ORDER BY id DESC LIMIT ?",
                           (*params, limit))
        return [LogLine(int(r[0]), int(r[1]), *r[2:]) for r in rows]

    def log_values(self) -> tuple[list[str], list[str]]:
        """The directions and results present in the log (the Logs page's choices)."""
        with self._db.connection() as cur:
            directions = [str(r[0]) for r in cur.all(
                "SELECT DISTINCT direction FROM message_log WHERE direction <> ''"
                " ORDER BY direction")]
            results = [str(r[0]) for r in cur.all(
                "SELECT DISTINCT result FROM message_log WHERE result <> '' ORDER BY result")]
        return directions, results

    # -- CRL downloads ----------------------------------------------------------------------
    def record_downloads(self, outcomes: Sequence[tuple[str, str | None]],
                         at: int | None = None) -> None:
        """(url, None for success or the reason it failed) for each URL of a download run."""
        when = int(time.time()) if at is None else at
        with self._db.transaction() as cur:
            for url, error in outcomes:
                if error is None:
                    cur.run(
                        "INSERT INTO crl_downloads (url, last_attempt, last_success, failures,"
                        " last_error) VALUES (?, ?, ?, 0, NULL) ON CONFLICT (url) DO UPDATE SET"
                        " last_attempt = excluded.last_attempt,"
                        " last_success = excluded.last_success, failures = 0, last_error = NULL",
                        (url, when, when))
                else:
                    cur.run(
                        "INSERT INTO crl_downloads (url, last_attempt, failures, last_error)"
                        " VALUES (?, ?, 1, ?) ON CONFLICT (url) DO UPDATE SET"
                        " last_attempt = excluded.last_attempt,"
                        " failures = crl_downloads.failures + 1, last_error = excluded.last_error",
                        (url, when, error[:500]))

    def crl_downloads(self) -> list[CrlDownload]:
        with self._db.connection() as cur:
            rows = cur.all("SELECT url, last_attempt, last_success, failures, last_error"
                           " FROM crl_downloads ORDER BY url")
        return [CrlDownload(u, int(a), int(s) if s is not None else None, int(f), e)
                for u, a, s, f, e in rows]

    # -- summaries without DER --------------------------------------------------------------
    def crl_summaries(self) -> list[CrlSummary]:
        """Issuer and times of every stored CRL, without reading its bytes."""
        with self._db.connection() as cur:
            rows = cur.all("SELECT issuer, this_update, next_update, verified FROM crls"
                           " ORDER BY issuer, this_update DESC")
        return [CrlSummary(i, int(t), int(n) if n is not None else None,
                           bool(v) if v is not None else None) for i, t, n, v in rows]

    def certificate_expiry(self, at: int, horizons: Mapping[str, int]) -> dict[str, int]:
        """Counts of certificates: "total", "expired" (not_after before at), and for each
        horizon name, those still valid at ``at`` that expire within that many seconds."""
        with self._db.connection() as cur:
            total_row = cur.one("SELECT COUNT(*) FROM certificates")
            expired_row = cur.one("SELECT COUNT(*) FROM certificates WHERE not_after <= ?",
                                  (at,))
            out = {"total": int(total_row[0]) if total_row else 0,
                   "expired": int(expired_row[0]) if expired_row else 0}
            for name, seconds in horizons.items():
                row = cur.one("SELECT COUNT(*) FROM certificates"
                              " WHERE not_after > ? AND not_after <= ?", (at, at + seconds))
                out[name] = int(row[0]) if row else 0
        return out

    def queue_depths(self) -> dict[tuple[str, str], int]:
        """(kind, status) -> items, read without opening the sealed payloads."""
        with self._db.connection() as cur:
            rows = cur.all("SELECT kind, status, COUNT(*) FROM queue GROUP BY kind, status")
        return {(str(k), str(s)): int(n) for k, s, n in rows}
