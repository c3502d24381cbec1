"""The CA tab: the built-in CAs; create (after re-authentication) and export the chain,
through smimegate.service.cas as ``smimegate ca`` does."""

from __future__ import annotations

import functools

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.pki.signing import KEY_TYPES, SIGNATURE_ALGORITHMS
from smimegate.service import cas as ca_service
from smimegate.service.errors import InvalidInput
from smimegate.web import views
from smimegate.web.pages.base import (
    Page,
    download,
    form_field,
    listing,
    make_form,
    page,
    unplaced,
)
from smimegate.web.reauth import require_reauth


def ca_list(current: Page) -> Response:
    error: InvalidInput | None = None
    notice = ""
    if current.request.method == "POST":
        form = current.form
        try:
            days = form.get("days", "").strip()
            if days and (not days.isdigit() or len(days) > 6):
                raise InvalidInput(f"not a number of days: {days!r}", "days")
            opts = ca_service.CaOptions(
                form.get("root_cn", ""), form.get("intermediate_cn", ""),
                name=form.get("name") or None, days=int(days) if days else None,
                key_type=form.get("key_type", "rsa2048"),
                signature_algorithm=form.get("signature_algorithm") or None,
                email=form.get("email") or None, org=form.get("org") or None,
                default=form.get("default") == "yes")
            ca_service.check(opts)  # bad input is shown before the password is asked for
            asked = require_reauth(current, "create a CA")
            if asked is not None:
                return asked
            ca = ca_service.create(current.store, current.actor, opts)
            notice = f"CA {ca.name} created{' (default)' if ca.record.is_default else ''}."
            current.form = {}
        except InvalidInput as exc:
            error = exc
    rows = [{"name": ca["name"], "href": f"/ca/{ca['name']}.pem",
             "default": "yes" if ca["default"] else "",
             "key_type": ca["key_type"], "intermediate": ca["intermediate"]["subject"],
             "until": ca["intermediate"]["not_after"][:10], "root": ca["root"]["subject"],
             "next_crl": ca["next_crl_number"]}
            for ca in views.cas(current.store)]
    columns = [("name", "Name (chain as PEM)", True), ("default", "Default", True),
               ("key_type", "Key", True), ("intermediate", "Issuing CA", True),
               ("until", "Valid until", True), ("root", "Root", True),
               ("next_crl", "Next CRL number", False)]
    f = functools.partial(form_field, current, error=error)
    forms = [make_form("ca", "Create a CA (root and issuing intermediate)", "/ca", "Create", [
        f("root_cn", "Root common name"), f("intermediate_cn", "Intermediate common name"),
        f("name", "Name (empty: the intermediate's)"), f("days", "Days valid", "number"),
        f("key_type", "Key type", "select", KEY_TYPES, default="rsa2048"),
        f("signature_algorithm", "Signature algorithm", "select", ("", *SIGNATURE_ALGORITHMS)),
        f("email", "emailAddress"), f("org", "Organization"),
        f("default", "Make it the default CA", "checkbox"),
    ])]
    return listing(current, "CA", rows, columns, "No built-in CA.",
                   status=400 if error else 200, notice=notice,
                   problem=unplaced(error, forms), forms=forms)


def ca_chain(current: Page) -> Response:
    """The chain (intermediate, root) as PEM; never a key."""
    name = current.request.path_params["name"]
    return download(ca_service.export_chain(current.store, name), f"{name}-chain.pem",
                    "application/pem-certificate-chain")


ROUTES: list[BaseRoute] = [
    Route("/ca", page(ca_list), methods=["GET", "POST"]),
    Route("/ca/{name}.pem", page(ca_chain)),
]
