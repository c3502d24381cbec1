"""The Certificates tab: the list, one certificate, its PEM."""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.service.certificates import issuer_chain, normal_fingerprint
from smimegate.store.certinfo import name_string
from smimegate.web import views
from smimegate.web.pages.base import Page, listing, page


def certificates(current: Page) -> Response:
    rows = [{**item, "href": f"/certificates/{item['fingerprint']}",
             "emails": ", ".join(item["emails"]) or "-", "not_after": item["not_after"][:10],
             "trust": "trusted" if item["trusted"] else f"not trusted: {item['trust_info']}"}
            for item in views.certificates(current.store)]
    columns = [("emails", "Email", True), ("subject", "Subject", True),
               ("issuer", "Issuer", True), ("not_after", "Valid until", True),
               ("trust", "Trust", True), ("fingerprint", "SHA-256", False)]
    return listing(current, "Certificates", rows, columns, "No certificates.")


_CERT_FACTS = (
    ("fingerprint", "SHA-256"), ("subject", "Subject"), ("issuer", "Issuer"),
    ("serial", "Serial"), ("emails", "Addresses"), ("not_before", "Valid from"),
    ("not_after", "Valid until"), ("ski", "Key identifier"), ("is_ca", "CA"),
    ("has_key", "Private key in escrow"), ("trusted_root", "Trusted root"),
    ("trusted", "Trusted"), ("trust_info", "Why not trusted"), ("source", "Source"),
    ("blocked", "Blocked"),
)


def certificate(current: Page) -> Response:
    """One certificate as ``cert show --json`` describes it, with its stored issuer chain."""
    fingerprint = normal_fingerprint(current.request.path_params["fingerprint"])
    record = current.store.get_certificate(fingerprint)
    item = views.describe(current.store, record)
    facts = []
    for key, label in _CERT_FACTS:
        value = item[key]
        if key == "trust_info" and value is None:
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = ", ".join(value) or "-"
        facts.append((label, "-" if value is None else value))
    chain = [name_string(c.subject) for c in issuer_chain(current.store,
                                                              record.certificate())]
    return current.render("certificate.html", title="Certificate", facts=facts, chain=chain,
                          fingerprint=record.fingerprint, active="/certificates")


def certificate_pem(current: Page) -> Response:
    """The public certificate (never its key) as a PEM download."""
    fingerprint = normal_fingerprint(current.request.path_params["fingerprint"])
    record = current.store.get_certificate(fingerprint)
    pem = record.certificate().public_bytes(Encoding.PEM)
    return Response(pem, media_type="application/pem-certificate-chain", headers={
        "content-disposition": f'attachment; filename="{record.fingerprint[:16]}.pem"'})

ROUTES: list[BaseRoute] = [
    Route("/certificates", page(certificates)),
    Route("/certificates/{fingerprint}.pem", page(certificate_pem)),
    Route("/certificates/{fingerprint}", page(certificate)),
]
