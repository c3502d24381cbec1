"""What the Dashboard and /metrics show of the running gateway, read from the store in a few
small queries (no certificate or CRL bytes are read), and the recording of CRL download
outcomes that they show.

Milter workers: up when their heartbeat (smimegate.milter.stats) is younger than three of
their flush intervals. Store: reachable when these queries answer. Directory: when ``[ldap]``
is configured, one bind with the configured credentials. CRLs: stale when past their
nextUpdate (RFC 5280 5.1.2.5); failing when the last download of a distribution point URL
failed (smimegate.pki.fetch through the milter's periodic download or ``crl fetch``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from smimegate.config import Config
from smimegate.pki.fetch import FetchReport
from smimegate.store import Store, StoreError
from smimegate.store.operations import (
    HOUR,
    CrlDownload,
    CrlSummary,
    Worker,
    hour_of,
    operations_of,
)

DAY = 86400


def record_crl_report(store: Store, report: FetchReport) -> None:
    """Keep each URL's outcome for the Dashboard and /metrics. A store without the tables
    (not SQL) keeps nothing. Raises StoreError from the store."""
    try:
        ops = operations_of(store)
    except StoreError:
        return
    ops.record_downloads([(o.url, o.detail if o.status == "failed" else None)
                          for o in report.outcomes])


@dataclass(frozen=True)
class Overview:
    at: int
    workers: list[Worker]
    certificates: dict[str, int]  # total, expired, days7, days30
    crls: list[CrlSummary]
    downloads: list[CrlDownload]
    queue: dict[tuple[str, str], int]
    hours: list[int] = field(default_factory=list)  # the last 24 hour starts, oldest first
    # (direction, result) -> messages per hour, aligned with hours
    series: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    @property
    def workers_up(self) -> int:
        return sum(w.up(self.at) for w in self.workers)

    @property
    def stale_crls(self) -> list[CrlSummary]:
        return [c for c in self.crls if c.next_update is not None and c.next_update < self.at]

    @property
    def failing_downloads(self) -> list[CrlDownload]:
        return [d for d in self.downloads if d.failures > 0]


def overview(store: Store, at: int | None = None) -> Overview:
    """Everything the Dashboard shows but the directory check. Raises StoreError."""
    now = int(time.time()) if at is None else at
    ops = operations_of(store)
    last = hour_of(now)
    hours = [last - HOUR * n for n in range(23, -1, -1)]
    series: dict[tuple[str, str], list[int]] = {}
    for hour, direction, result, messages, _us in ops.counts(hours[0]):
        row = series.setdefault((direction, result), [0] * len(hours))
        row[(hour - hours[0]) // HOUR] += messages
    return Overview(
        at=now, workers=ops.workers(),
        certificates=ops.certificate_expiry(now, {"days7": 7 * DAY, "days30": 30 * DAY}),
        crls=ops.crl_summaries(), downloads=ops.crl_downloads(), queue=ops.queue_depths(),
        hours=hours, series=dict(sorted(series.items())))


def directory_status(config: Config) -> str:
    """"not configured", "reachable" or "unreachable: why" for the [ldap] directory: one
    connection, bind and base-scope search of base_dn with the configured credentials,
    bounded by its timeouts."""
    if not config.ldap.enabled:
        return "not configured"
    from smimegate.store.ldapconn import DirectoryConnection, DirectoryError

    try:
        conn = DirectoryConnection(config.ldap)
    except DirectoryError as exc:
        return f"unreachable: {exc}"
    try:
        conn.search(config.ldap.base_dn, "(objectClass=*)", ["1.1"], scope="BASE")
    except DirectoryError as exc:
        return f"unreachable: {exc}"
    finally:
        conn.close()
    return "reachable"
