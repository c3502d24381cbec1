"""The SMS tab: the configured transport."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.service import sms as sms_service
from smimegate.service.errors import InvalidInput
from smimegate.web.pages.base import Page, form_field, make_form, page
from smimegate.web.pages.queues import queue_depths


def sms(current: Page) -> Response:
    """The SMS transport as configured (it lives in the configuration file; the auth header
    file is named, never read) and a form that sends a test message now."""
    error: InvalidInput | None = None
    notice = ""
    if current.request.method == "POST":
        try:
            number = sms_service.send_test(current.store, current.web.config, current.actor,
                                           current.form.get("phone", ""))
            notice = f"Test message sent to {number}."
        except InvalidInput as exc:
            error = exc
    facts: list[tuple[str, object]] = [*sms_service.transport(current.web.config),
                                       ("Queued SMS", queue_depths(current.store, "sms"))]
    forms = [make_form("sms", "Send a test message", "/sms", "Send", [
        form_field(current, "phone", "Phone number (+ and digits)", error=error)])]
    return current.render("sms.html", 400 if error else 200, title="SMS", facts=facts,
                          forms=forms, notice=notice,
                          intro="Set in the [sms] section of the configuration file.")


ROUTES: list[BaseRoute] = [
    Route("/sms", page(sms), methods=["GET", "POST"]),
]
