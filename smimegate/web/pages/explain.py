"""The Explain page: what the milter would do with a message (issue 12 point 1).

A GET form (sender, recipients, Subject, whether the client is authorised) and, once filled in,
smimegate.service.explain's answer: the gateway's own decision code run read-only, so an
auditor may use it and nothing is written. No CSRF token: it changes nothing.
"""

from __future__ import annotations

import re

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.service import explain as explain_service
from smimegate.service.errors import InvalidInput
from smimegate.web.pages.base import Page, page

CLIENTS = {"authorised": "authorised (SMTP AUTH, trusted network or originating listener)",
           "unauthorised": "not authorised (a client from outside)"}


def recipients_of(text: str) -> list[str]:
    """Recipients as typed: separated by commas, semicolons, white space or lines."""
    return [part for part in re.split(r"[,;\s]+", text) if part]


def explain_page(current: Page) -> Response:
    asked = {"sender": current.query("sender").strip(),
             "recipients": current.request.query_params.get("recipients", "")[:8000],
             "subject": current.request.query_params.get("subject", "")[:1000],
             "client": current.query("client", "authorised")}
    if asked["client"] not in CLIENTS:
        asked["client"] = "authorised"
    answer, error = None, None
    if asked["sender"] or asked["recipients"].strip():
        try:
            question = explain_service.question(
                asked["sender"], recipients_of(asked["recipients"]),
                asked["subject"] or None, asked["client"] == "authorised")
            answer = explain_service.explain(current.store, current.web.config, question)
        except InvalidInput as exc:
            error = exc
    return current.render(
        "explain.html", 400 if error is not None else 200, title="Explain", asked=asked,
        clients=CLIENTS, answer=answer,
        error_field=error.field if error is not None else "",
        error_text=str(error) if error is not None else "",
        intro="What the milter would do with a plain message from this sender to these "
              "recipients, decided by the milter's own code over the store as it is now. "
              "Nothing is sent or changed.")


ROUTES: list[BaseRoute] = [Route("/explain", page(explain_page))]
