"""The Dashboard tab: is the gateway working, and what needs an admin's attention.

Milter workers up (their heartbeats), the store and the directory reachable, certificates that
expire within 7 and 30 days, CRLs past their nextUpdate and CRL URLs whose last download
failed, the delivery queue's depths, and messages per hour by direction and result over the
last 24 hours as an SVG chart (smimegate.web.chart). All from smimegate.service.monitoring,
a few small queries that read no certificate or CRL bytes.
"""

from __future__ import annotations

import datetime as dt

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.service import monitoring
from smimegate.web import chart
from smimegate.web.pages.base import Page, page


def _utc(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def dashboard(current: Page) -> Response:
    store = current.store
    view = monitoring.overview(store)
    directory = monitoring.directory_status(current.web.config)
    workers = [{"node": w.node, "worker": w.worker, "pid": w.pid, "up": w.up(view.at),
                "seen": _ago(max(0, view.at - w.seen)), "since": _utc(w.started)}
               for w in view.workers]
    certs = view.certificates
    queue = {status: sum(n for (_, s), n in view.queue.items() if s == status)
             for status in ("pending", "running", "failed")}
    checks = [
        ("Milter workers", f"{view.workers_up} of {len(view.workers)} up"
         if view.workers else "none has reported (is the milter running, with "
                             "[milter] stats_interval > 0?)",
         bool(view.workers) and view.workers_up == len(view.workers)),
        ("Store", f"{store.dialect}, schema version {store.schema_version()}, reachable", True),
        ("Directory (LDAP)", directory, not directory.startswith("unreachable")),
        ("Certificates expiring within 7 days", str(certs["days7"]), certs["days7"] == 0),
        ("Certificates expiring within 30 days", str(certs["days30"]), True),
        ("CRLs past their next update", f"{len(view.stale_crls)} of {len(view.crls)}",
         not view.stale_crls),
        ("CRL URLs failing to download", str(len(view.failing_downloads)),
         not view.failing_downloads),
        ("Delivery queue", ", ".join(f"{n} {s}" for s, n in queue.items()),
         queue["failed"] == 0),
    ]
    facts = [
        ("Certificates", f"{certs['total']} ({certs['expired']} expired)"),
        ("Domain rules", len(store.list_domains())),
        ("Users", len(store.list_users())),
        ("Built-in CAs", len(store.list_cas())),
    ]
    stale = [{"issuer": c.issuer, "next_update": _utc(c.next_update)} for c in view.stale_crls]
    failing = [{"url": d.url, "failures": d.failures, "error": d.last_error or "",
                "last_success": _utc(d.last_success)} for d in view.failing_downloads]
    series_rows = [{"direction": d, "result": r, "counts": counts, "total": sum(counts)}
                   for (d, r), counts in view.series.items()]
    return current.render(
        "overview.html", title="Dashboard", checks=checks, facts=facts, workers=workers,
        stale=stale, failing=failing, chart=chart.hourly(view.hours, view.series),
        hours=[f"{dt.datetime.fromtimestamp(h, dt.UTC):%H}" for h in view.hours],
        series=series_rows)


ROUTES: list[BaseRoute] = [
    Route("/dashboard", page(dashboard)),
]
