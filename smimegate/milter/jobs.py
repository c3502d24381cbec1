"""The milter process's background work: CRL download and the delivery queue (issue 4 item 8).

Two daemon threads, started by runner.py after the privilege drop and stopped at shutdown:

- smimegate.pki.fetch.PeriodicFetcher: every ``[crl] fetch_interval`` seconds it downloads the
  CRLs the stored certificates name; after a run that stored one, ``refresh`` (the gateway's
  reload of its caches) makes the new CRL count at once. On PostgreSQL it holds a job lock
  (an advisory lock on a pool connection) while the run uses a second connection, so the
  store's pool must allow two (runner.py opens it with at least JOB_POOL_MIN).
- QueueWorker: every ``[queue] interval`` seconds smimegate.delivery.queue.run_due sends what
  is due (PKCS#12 mail, password SMS). Items are claimed one at a time (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL), so every node may run one; it needs no job lock. It reads the
  configuration anew each round, so a reload (SIGUSR1) of ``[smtp]``/``[sms]`` counts, and
  hands run_due the key of the PKCS#12 mail's marker that the gateway read before the
  privilege drop (Gateway.marker_secret).

Each thread is the boundary of its work (DESIGN.md Style 5): a failing round is logged as a
``warning:`` line and the next round still comes; nothing escapes to kill the process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from smimegate import log
from smimegate.config import Config
from smimegate.delivery.queue import Outcome, run_due
from smimegate.pki.fetch import FetchReport, PeriodicFetcher, log_report
from smimegate.service.monitoring import record_crl_report
from smimegate.store.base import Store, StoreError

_LOG = logging.getLogger("smimegate.milter.jobs")

JOB_POOL_MIN = 2
"""Connections the store pool needs at least: the CRL job lock holds one for its run."""

FIRST_DELAY = 10.0
"""Seconds after start before the first round (at most the interval): the milter serves first."""

QUEUE_BATCH = 20
"""Items sent per run_due call; between calls the worker checks whether it should stop."""


class QueueWorker:
    """Runs smimegate.delivery.queue.run_due every ``[queue] interval`` seconds in a daemon
    thread. An interval of 0 when started turns it off (start() then does nothing)."""

    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        *,
        first_delay: float = FIRST_DELAY,
        marker_secret: Callable[[], bytes | None] | None = None,
    ) -> None:
        """``config`` returns the configuration in force and ``marker_secret`` the marker key
        (both asked every round). Raises ValueError for a negative first_delay."""
        if first_delay < 0:
            raise ValueError(f"first_delay: must not be negative, got {first_delay}")
        self._store = store
        self._config = config
        self._marker_secret = marker_secret or (lambda: None)
        self._first_delay = first_delay
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> QueueWorker:
        """Start the thread (once); returns self. Raises RuntimeError when already started."""
        if self._thread is not None:
            raise RuntimeError("QueueWorker already started")
        if self._config().queue.interval <= 0:
            return self
        self._thread = threading.Thread(target=self._loop, name="smimegate-queue", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to end and wait for it (up to timeout seconds). A delivery in
        progress finishes first (bounded by [smtp]/[sms] timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_once(self) -> list[Outcome]:
        """Send what is due now, in batches, until nothing is due or stop() was called.

        Raises StoreError from the store.
        """
        outcomes: list[Outcome] = []
        while not self._stop.is_set():
            batch = run_due(self._store, self._config(), max_items=QUEUE_BATCH,
                            marker_secret=self._marker_secret())
            outcomes.extend(batch)
            if len(batch) < QUEUE_BATCH:
                break
        return outcomes

    def _loop(self) -> None:
        delay = min(self._first_delay, float(self._config().queue.interval))
        while not self._stop.wait(delay):
            interval = self._config().queue.interval
            if interval <= 0:
                continue  # turned off by a reload: look again at the old pace
            delay = float(interval)
            try:
                self.run_once()
            except StoreError as exc:
                _LOG.warning(log.warning_line(None, "delivery queue run skipped",
                                              {"reason": str(exc)}))
            except Exception as exc:  # noqa: BLE001
                # Boundary of a daemon thread: log with the traceback, the next round comes.
                _LOG.warning(log.warning_line(None, "delivery queue run crashed",
                                              {"reason": repr(exc)}), exc_info=True)


class BackgroundJobs:
    """The CRL fetcher and the queue worker of one milter process."""

    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        refresh: Callable[[], object] | None = None,
        marker_secret: Callable[[], bytes | None] | None = None,
    ) -> None:
        """``config`` returns the configuration in force; ``refresh`` is called after a CRL
        download stored something (the gateway's cache reload); ``marker_secret``: see
        QueueWorker."""
        current = config()

        def on_report(report: FetchReport) -> None:
            log_report(report)
            try:  # each URL's outcome, for the web admin's Dashboard and /metrics
                record_crl_report(store, report)
            except StoreError as exc:
                _LOG.warning(log.warning_line(None, "CRL download outcomes not stored",
                                              {"reason": str(exc)}))

        self.fetcher = PeriodicFetcher(
            store, current, refresh=refresh,
            first_delay=min(FIRST_DELAY, float(current.crl.fetch_interval)),
            on_report=on_report,
        )
        self.queue = QueueWorker(store, config, marker_secret=marker_secret)

    def start(self) -> BackgroundJobs:
        """Start both threads (each stays off when its interval is 0); returns self."""
        self.fetcher.start()
        self.queue.start()
        _LOG.info(f"{log.TAG}: background jobs; " + log.format_fields({
            "crl_fetch": self.fetcher.running, "queue": self.queue.running}))
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask both threads to end and wait for them up to ``timeout`` seconds in all; a thread
        still busy then (a slow download) is left behind, being a daemon thread."""
        deadline = time.monotonic() + timeout
        self.fetcher.stop(0)
        self.queue.stop(0)
        self.fetcher.stop(max(0.0, deadline - time.monotonic()))
        self.queue.stop(max(0.0, deadline - time.monotonic()))
