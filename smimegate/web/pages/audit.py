"""The Audit tab: every change and key export, newest first."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.service import audit
from smimegate.web.pages.base import PER_PAGE, Page, page, page_number, utc


def audit_log(current: Page) -> Response:
    page_no = page_number(current)
    q = current.query("q")
    rows = audit.entries(current.store, limit=PER_PAGE + 1, offset=(page_no - 1) * PER_PAGE,
                         search=q)
    entries = [{**vars(e), "when": utc(e.at)} for e in rows[:PER_PAGE]]
    return current.render("audit.html", title="Audit log", entries=entries, q=q,
                          page=page_no, more=len(rows) > PER_PAGE)

ROUTES: list[BaseRoute] = [
    Route("/audit", page(audit_log)),
]
