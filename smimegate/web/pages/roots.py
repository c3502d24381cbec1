"""The Roots tab: the trusted roots; add (a certificate or a bundle, uploaded) and remove
(confirmed), through smimegate.service.roots as ``smimegate root`` does."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.service import roots as root_service
from smimegate.service.errors import InvalidInput, OperationFailed
from smimegate.web import views
from smimegate.web.pages.base import (
    MAX_UPLOAD,
    Page,
    confirmed,
    form_field,
    listing,
    make_form,
    page,
    unplaced,
)


def roots(current: Page) -> Response:
    error: InvalidInput | None = None
    notice = problem = ""
    if current.request.method == "POST":
        try:
            if current.form.get("action") == "remove":
                fingerprint = current.form.get("fingerprint", "")
                asked = confirmed(current, f"Stop trusting root {fingerprint}? The certificate "
                                  "stays stored.", "Remove", "/roots")
                if asked is not None:
                    return asked
                notice = f"Root {root_service.remove(current.store, current.actor, fingerprint)}"\
                         " no longer trusted."
            else:
                upload = current.files.get("file")
                if upload is None:
                    raise InvalidInput("choose a file with the root certificate(s)", "file")
                name, data = upload
                if len(data) > MAX_UPLOAD:
                    raise InvalidInput(f"{name}: larger than {MAX_UPLOAD // 1024} KiB", "file")
                try:
                    report = root_service.add_data(current.store, current.actor, data, name)
                except OperationFailed as exc:
                    raise InvalidInput(str(exc), "file") from None
                notice = " ".join(f"Trusted root {r.fingerprint} {r.subject}."
                                  for r in report.trusted)
                problem = "; ".join(report.problems)
        except InvalidInput as exc:
            error = exc
    rows = [{**item, "href": f"/certificates/{item['fingerprint']}",
             "not_after": item["not_after"][:10],
             "actions": [{"label": "Remove", "action": "/roots",
                          "fields": [("action", "remove"),
                                     ("fingerprint", item["fingerprint"])]}]}
            for item in views.roots(current.store)]
    columns = [("subject", "Subject", True), ("not_after", "Valid until", True),
               ("fingerprint", "SHA-256", False)]
    forms = [make_form("root", "Add trusted roots", "/roots", "Add", [
        form_field(current, "file", "File (PEM, DER or PKCS#7 bundle)", "file", error=error),
    ], multipart=True)]
    return listing(current, "Roots", rows, columns, "No trusted roots.",
                   status=400 if error else 200, notice=notice,
                   problem=problem or unplaced(error, forms), forms=forms, row_actions=True)


ROUTES: list[BaseRoute] = [
    Route("/roots", page(roots, uploads=True), methods=["GET", "POST"]),
]
