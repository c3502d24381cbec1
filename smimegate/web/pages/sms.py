"""The SMS tab: the configured transport."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.web.pages.base import Page, page
from smimegate.web.pages.queues import queue_depths


def sms(current: Page) -> Response:
    """The SMS transport as configured (read-only here: it lives in the configuration file).
    The auth header file is named, never read: it holds a secret."""
    conf = current.web.config.sms
    facts: list[tuple[str, object]] = [("Transport", conf.transport)]
    if conf.transport == "http":
        facts += [("URL", conf.url), ("Method", conf.method), ("Content-Type", conf.content_type),
                  ("Body template", conf.body_template),
                  ("Auth header file", conf.auth_header_file or "none")]
    elif conf.transport == "command":
        facts.append(("Command", " ".join(conf.command)))
    else:
        facts.append(("File", conf.file))
    facts += [("Timeout", f"{conf.timeout:g} s"),
              ("Queued SMS", queue_depths(current.store, "sms"))]
    return current.render("dashboard.html", title="SMS", facts=facts,
                          intro="Set in the [sms] section of the configuration file; "
                                "sending a test message from here comes later.")

ROUTES: list[BaseRoute] = [
    Route("/sms", page(sms)),
]
