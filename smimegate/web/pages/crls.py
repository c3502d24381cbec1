"""The CRLs tab: stored CRLs with freshness and verified state; create (a built-in CA's),
import (upload), download now (the distribution points), through smimegate.service.crls."""

from __future__ import annotations

import datetime as dt
import functools

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.pki.crl import DEFAULT_NEXT_UPDATE_DAYS, REASONS
from smimegate.service import crls as crl_service
from smimegate.service.certificates import parse_reason_text, parse_serial_text
from smimegate.service.errors import InvalidInput
from smimegate.web import views
from smimegate.web.pages.base import (
    MAX_UPLOAD,
    Page,
    form_field,
    listing,
    make_form,
    page,
    unplaced,
)

_VERIFIED = {True: "yes", False: "NO: signature not verified", None: "issuer unknown"}


def crl_list(current: Page) -> Response:
    error: InvalidInput | None = None
    notice = problem = ""
    if current.request.method == "POST":
        try:
            notice, problem = _change(current)
            current.form = {}
        except InvalidInput as exc:
            error = exc
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
    f = functools.partial(form_field, current, error=error)
    cas = [""] + [c.name for c in current.store.list_cas()]
    forms = [
        make_form("create", "Create a CRL of a built-in CA", "/crls", "Create", [
            f("action", "", "hidden", default="create"), f("ca", "CA (empty: the default)",
                                                           "select", cas),
            f("revoke", "Serials to revoke (hex, space-separated)"),
            f("reason", "Reason", "select", ("", *REASONS)),
            f("next_update_days", "Days until next update", "number",
              default=str(DEFAULT_NEXT_UPDATE_DAYS)),
            f("update_existing", "Keep entries of the current CRL not recorded", "checkbox"),
        ]),
        make_form("import", "Import CRLs", "/crls", "Import", [
            f("action", "", "hidden", default="import"),
            f("file", "File (DER, PEM or PEM bundle)", "file"),
        ], multipart=True),
        make_form("fetch", "Download now", "/crls", "Download", [
            f("action", "", "hidden", default="fetch"),
            f("url", "URL (empty: every distribution point of the stored certificates)"),
        ]),
    ]
    return listing(current, "CRLs", rows, columns, "No CRLs.", status=400 if error else 200,
                   notice=notice, problem=problem or unplaced(error, forms), forms=forms)


def _change(current: Page) -> tuple[str, str]:
    action, form = current.form.get("action", ""), current.form
    if action == "create":
        serials = [parse_serial_text(s) for s in form.get("revoke", "").split()]
        days = form.get("next_update_days", "").strip() or str(DEFAULT_NEXT_UPDATE_DAYS)
        if not days.isdigit() or len(days) > 6:
            raise InvalidInput(f"not a number of days: {days!r}", "next_update_days")
        record = crl_service.create(
            current.store, current.actor, form.get("ca") or None, revoke=serials,
            reason=parse_reason_text(form.get("reason")),
            update_existing=form.get("update_existing") == "yes", next_update_days=int(days))
        return (f"CRL {record.crl_number} of {record.issuer}: {record.entries} revoked.", "")
    if action == "import":
        upload = current.files.get("file")
        if upload is None:
            raise InvalidInput("choose a file with the CRL(s)", "file")
        name, data = upload
        if len(data) > MAX_UPLOAD:
            raise InvalidInput(f"{name}: larger than {MAX_UPLOAD // 1024} KiB", "file")
        done = crl_service.import_data(current.store, current.actor, data, name)
        good = [f"Imported CRL {d.record.crl_number} of {d.record.issuer}{d.note}."
                for d in done if d.record is not None]
        bad = [f"{d.label}: {d.note}" for d in done if d.record is None]
        if not good and bad:
            raise InvalidInput("; ".join(bad), "file")
        return " ".join(good), "; ".join(bad)
    if action == "fetch":
        url = form.get("url", "").strip()
        report = crl_service.fetch(current.store, current.actor,
                                   current.web.config.crl.fetch_timeout, [url] if url else None)
        lines = [f"{o.status} {o.url} {o.detail}" for o in report.outcomes]
        text = "; ".join(lines) + (f". {report.summary()}" if report.outcomes else
                                   "No CRL distribution points in the stored certificates.")
        return (text, "") if not report.all_failed else ("", text)
    raise InvalidInput(f"unknown action {action!r}", "action")

ROUTES: list[BaseRoute] = [
    Route("/crls", page(crl_list, uploads=True), methods=["GET", "POST"]),
]
