"""The CRLs tab."""

from __future__ import annotations

import datetime as dt

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.web import views
from smimegate.web.pages.base import Page, listing, page

_VERIFIED = {True: "yes", False: "NO: signature not verified", None: "issuer unknown"}


def crl_list(current: Page) -> Response:
    now = dt.datetime.now(dt.UTC).isoformat()
    rows = [{**row, "href": "", "number": "-" if row["number"] is None else row["number"],
             "next_update": row["next_update"] or "-",
             "fresh": "stale" if row["next_update"] and row["next_update"] < now else "current",
             "verified": _VERIFIED[row["verified"]], "ca": row["ca"] or "-",
             "source": row["source"] or "-"}
            for row in views.crls(current.store)]
    columns = [("issuer", "Issuer", True), ("number", "Number", False),
               ("this_update", "This update", True), ("next_update", "Next update", True),
               ("fresh", "Freshness", True), ("entries", "Revoked", False),
               ("verified", "Verified", True), ("ca", "Our CA", True),
               ("source", "Source", True)]
    return listing(current, "CRLs", rows, columns, "No CRLs.")

ROUTES: list[BaseRoute] = [
    Route("/crls", page(crl_list)),
]
