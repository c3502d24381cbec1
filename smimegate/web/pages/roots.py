"""The Roots tab: the trusted roots."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.web import views
from smimegate.web.pages.base import Page, listing, page


def roots(current: Page) -> Response:
    rows = [{**item, "href": "", "not_after": item["not_after"][:10]}
            for item in views.roots(current.store)]
    columns = [("subject", "Subject", True), ("not_after", "Valid until", True),
               ("fingerprint", "SHA-256", False)]
    return listing(current, "Roots", rows, columns,
                    "No trusted roots (add one with `smimegate root add FILE`).")

ROUTES: list[BaseRoute] = [
    Route("/roots", page(roots)),
]
