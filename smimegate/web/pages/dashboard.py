"""The Dashboard tab."""

from __future__ import annotations

import datetime as dt

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.web.pages.base import Page, page
from smimegate.web.pages.queues import queue_depths


def dashboard(current: Page) -> Response:
    store = current.store
    now = dt.datetime.now(dt.UTC)
    certs = store.list_certificates()
    live = [c for c in certs if c.not_after > now]
    crls = store.list_crls()
    stale = [c for c in crls if c.next_update is not None and c.next_update < now]
    facts = [
        ("Store", f"{store.dialect}, schema version {store.schema_version()}, reachable"),
        ("Domain rules", len(store.list_domains())),
        ("Users", len(store.list_users())),
        ("Certificates", f"{len(certs)} ({len(certs) - len(live)} expired)"),
        ("Expiring within 7 days", sum(c.not_after < now + dt.timedelta(days=7) for c in live)),
        ("Expiring within 30 days",
         sum(c.not_after < now + dt.timedelta(days=30) for c in live)),
        ("Trusted roots", len(store.list_roots())),
        ("Built-in CAs", len(store.list_cas())),
        ("CRLs", f"{len(crls)} ({len(stale)} past their next update)"),
        ("Queued deliveries", queue_depths(store)),
    ]
    return current.render("dashboard.html", title="Dashboard", facts=facts)

ROUTES: list[BaseRoute] = [
    Route("/dashboard", page(dashboard)),
]
