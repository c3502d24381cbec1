"""The CA tab: the built-in CAs."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.web import views
from smimegate.web.pages.base import Page, listing, page


def ca_list(current: Page) -> Response:
    rows = [{"name": ca["name"], "href": "", "default": "yes" if ca["default"] else "",
             "key_type": ca["key_type"], "intermediate": ca["intermediate"]["subject"],
             "until": ca["intermediate"]["not_after"][:10], "root": ca["root"]["subject"],
             "next_crl": ca["next_crl_number"]}
            for ca in views.cas(current.store)]
    columns = [("name", "Name", True), ("default", "Default", True),
               ("key_type", "Key", True), ("intermediate", "Issuing CA", True),
               ("until", "Valid until", True), ("root", "Root", True),
               ("next_crl", "Next CRL number", False)]
    return listing(current, "CA", rows, columns,
                    "No built-in CA (create one with `smimegate ca create`).")

ROUTES: list[BaseRoute] = [
    Route("/ca", page(ca_list)),
]
